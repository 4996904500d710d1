"""Over-long and unparsable HTTP requests answered in JSON, by every server the service runs (the
console, a stage worker's health and metrics), instead of aiohttp's plain-text 400 that quotes the
request's bytes. Here, not in console/, so that a worker serves it without the console.

aiohttp's parser refuses such a request before any middleware runs, so there are two layers:

* The parser's limits are raised (``HANDLER_ARGS``, set on the Application, so every runner and test
  server has them) above the ones the service keeps, aiohttp's own 8190 bytes (``MAX_TARGET``,
  ``MAX_FIELD``). A request between the two reaches the app, where ``limits`` refuses it with 414
  or 431 like any other refusal (the console's error middleware, or :func:`json_errors`, words it).
* Past the parser's limits, or for what it cannot parse at all (an unknown method, a control
  character in the address), nothing of the request is known, neither its path nor what it
  accepts: ``Runner`` serves connections whose ``handle_error`` answers those in JSON, with the
  status that fits, and echoes none of the request's bytes.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, BadHttpMethod, HttpProcessingError, LineTooLong

MAX_TARGET = 8190  # bytes of the request target (path and query) the service accepts
MAX_FIELD = 8190  # bytes of one header, name and value
# The parser's own limits, above those so the app can answer; they differ so that a parser refusal
# says which one was crossed (its exception carries only the limit).
HANDLER_ARGS = {"max_line_size": 4 * MAX_TARGET, "max_field_size": 2 * MAX_FIELD}
KEPT_HEADERS = ("WWW-Authenticate", "Allow", "Retry-After")  # what a client needs to act on a refusal
log = logging.getLogger("socialcare.http")


def json_error(status: int, message: str) -> web.Response:
    """The service's error body, ``{"error": {"status", "message"}}`` (console.api.common.error's)."""
    return web.json_response({"error": {"status": status, "message": message}}, status=status)


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


@web.middleware
async def json_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """Every refusal as the JSON error body, for a server only programs call (a worker's probes and
    scrapes); the console has its own, which gives people its error page instead."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = json_error(exc.status, exc.reason)
        for header in KEPT_HEADERS:
            if header in exc.headers:
                response.headers[header] = exc.headers[header]
        return response


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
    """``web.AppRunner`` whose connections answer unparsable requests in JSON. The app should be
    built with ``handler_args=HANDLER_ARGS`` and the ``limits`` middleware, or a header past
    aiohttp's default limit would be called a long address (both limits are 8190 there).
    aiohttp has no public hook for this (aio-libs/aiohttp#3287); tests/service/test_bad_requests.py
    checks it against live servers (the console and a worker's), so an aiohttp upgrade that moves it
    is noticed."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _Server
        return server
