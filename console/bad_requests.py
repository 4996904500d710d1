"""Over-long and unparsable requests get the answer every other refusal gets (a JSON error under
/api, the console's page for a person) instead of aiohttp's plain-text 400.

aiohttp's parser refuses such a request before any middleware runs, so there are two layers:

* The parser's limits are raised (``HANDLER_ARGS``, set on the Application, so every runner and test
  server has them) above the ones the service keeps, aiohttp's own 8190 bytes (``MAX_TARGET``,
  ``MAX_FIELD``). A request between the two reaches the app, where ``limits`` refuses it with 414
  or 431 like any other refusal (console.app.errors picks JSON or the error page by path).
* Past the parser's limits, or for what it cannot parse at all (an unknown method, a control
  character in the address), nothing of the request is known, neither its path nor what it
  accepts: ``Runner`` serves connections whose ``handle_error`` answers those in JSON, with the
  status that fits, and echoes none of the request's bytes (aiohttp's text quotes them).
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, BadHttpMethod, HttpProcessingError, LineTooLong

from console.api.common import error as json_error

MAX_TARGET = 8190  # bytes of the request target (path and query) the service accepts
MAX_FIELD = 8190  # bytes of one header, name and value
# The parser's own limits, above those so the app can answer; they differ so that a parser refusal
# says which one was crossed (its exception carries only the limit).
HANDLER_ARGS = {"max_line_size": 4 * MAX_TARGET, "max_field_size": 2 * MAX_FIELD}
log = logging.getLogger("socialcare.web")


@web.middleware
async def limits(request: web.Request, handler: Any) -> web.StreamResponse:
    """414 for a target over MAX_TARGET bytes, 431 for a header over MAX_FIELD (before anything
    reads the database)."""
    if len(request.raw_path.encode("utf-8", "surrogateescape")) > MAX_TARGET:
        raise web.HTTPRequestURITooLong(reason=f"the address is longer than {MAX_TARGET} bytes")
    for name, value in request.raw_headers:
        if len(name) + len(value) > MAX_FIELD:
            raise web.HTTPRequestHeaderFieldsTooLarge(
                reason=f"the {name[:64].decode('latin-1')} header is longer than {MAX_FIELD} bytes")
    return await handler(request)


class _JsonParseErrors(web.RequestHandler):
    """A connection whose unparsable requests are answered in JSON; other errors as aiohttp does."""

    __slots__ = ()

    def handle_error(self, request: Any, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if not isinstance(exc, HttpProcessingError):
            return super().handle_error(request, status, exc, message)
        status, reason = self._refusal(exc)
        # a client's mistake, not the server's: one line, without the bytes; TLS probes only in debug
        log.log(logging.DEBUG if isinstance(exc, BadHttpMethod) else logging.INFO,
                "refused an unparsable request from %s: %d %s", request.remote, status, reason)
        response = json_error(status, reason)
        response.force_close()  # what follows on the connection cannot be framed
        return response

    def _refusal(self, exc: HttpProcessingError) -> tuple[int, str]:
        if isinstance(exc, LineTooLong) and len(exc.args) > 1:
            if exc.args[1] == self.max_line_size:
                return 414, f"the address is longer than {MAX_TARGET} bytes"
            if exc.args[1] == self.max_field_size:
                return 431, f"a header is longer than {MAX_FIELD} bytes"
        if isinstance(exc, BadHttpMessage) and exc.message.startswith("Too many headers"):
            return 431, f"more than {self.max_headers} headers"
        # llhttp's messages are "<what>:\n\n  <the bytes>\n  ^": keep only what went wrong
        what, sep, _ = exc.message.partition(":\n")
        what = what.strip() if sep and what.isascii() and what.isprintable() else ""
        return 400, f"malformed HTTP request: {what[:100]}" if what else "malformed HTTP request"


class _Server(web.Server):
    def __call__(self) -> web.RequestHandler:
        handler = super().__call__()  # aiohttp's construction, keyword checks included
        handler.__class__ = _JsonParseErrors  # same slots: only handle_error changes
        return handler


class Runner(web.AppRunner):
    """``web.AppRunner`` for the console: its connections answer unparsable requests in JSON.
    aiohttp has no public hook for this (aio-libs/aiohttp#3287); tests/console/test_bad_requests.py
    checks it against a live server, so an aiohttp upgrade that moves it is noticed."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _Server
        return server
