"""The filtered stream's client for the X stream connector (:mod:`listener.x.stream`).

The stream runs on tweepy's ``AsyncStreamingClient`` inside the event loop; tweepy's own endless
reconnect loop is cut short (``max_retries=0`` and errors handed back, :class:`_Stream`) so the
runner applies the project's rules (:func:`stream_error`): wait for a 429's reset, back off with
jitter on 5xx and dropped connections, stop on 401.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from tweepy.asynchronous import AsyncStreamingClient

from listener.errors import AuthError, RateLimited, StreamUnavailable, TransientError
from listener.x.errors import translate

_END = object()


class StreamHTTPError(Exception):
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        super().__init__(f"filtered stream answered {status}")
        self.status, self.headers, self.body = status, headers, body


class _Stream(AsyncStreamingClient):
    """Hands every line to a queue and every failure back to the connector (no silent retries)."""

    def __init__(self, bearer: str, queue: asyncio.Queue) -> None:
        super().__init__(bearer, return_type=dict, max_retries=0)
        self.queue = queue
        self.error: BaseException | None = None
        self.last_error_response: tuple[int, dict[str, str], bytes] | None = None

    async def on_data(self, raw_data: bytes) -> None:
        self.queue.put_nowait(raw_data)

    async def on_request_error(self, status_code: int) -> None:
        _, headers, body = self.last_error_response or (status_code, {}, b"")
        raise StreamHTTPError(status_code, headers, body)

    async def on_connection_error(self) -> None:
        raise TransientError("the filtered stream connection dropped or stalled")

    async def on_closed(self, resp: Any) -> None:
        raise TransientError("X closed the filtered stream")

    async def on_exception(self, exception: Exception) -> None:
        self.error = exception

    async def on_disconnect(self) -> None:
        self.queue.put_nowait(_END)

    async def probe(self, request: aiohttp.ClientRequest, handler: Any) -> aiohttp.ClientResponse:
        """Client middleware: keep an error response's headers and body (tweepy passes only the status)."""
        resp = await handler(request)
        if resp.status >= 400:
            self.last_error_response = (resp.status, dict(resp.headers), await resp.read())
        return resp


def stream_error(exc: BaseException) -> BaseException:
    if not isinstance(exc, StreamHTTPError):
        return translate(exc)
    if exc.status == 401:
        return AuthError("X refused the bearer token for the filtered stream (401)")
    if exc.status == 403:
        return StreamUnavailable(f"filtered stream not available on this account (403): {exc.body[:200]!r}")
    if exc.status == 429:
        reset = exc.headers.get("x-rate-limit-reset")
        return RateLimited("X filtered stream: too many connections (429)", reset_at=float(reset) if reset else None)
    return TransientError(f"filtered stream answered {exc.status}")


async def _get_rules(streamer: AsyncStreamingClient) -> list[dict[str, Any]]:
    return (await streamer.get_rules()).get("data") or []
