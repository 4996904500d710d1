"""Base-URL redirection for client libraries that hard-code their host (tweepy).

``SOCIALCARE_X_API_BASE`` must send every request of the X connector — REST and stream, sync and
async — to another host (a staging proxy, or a local fake in tests). The sync classes get a requests
adapter mounted on their ``session``; the async ones an aiohttp client middleware. Path and query
are kept; the ``Host`` header follows the new host. Nothing happens when the target is the real
host, so production traffic takes exactly tweepy's own path.
"""

from __future__ import annotations

from typing import Any

import aiohttp
from requests.adapters import HTTPAdapter
from yarl import URL

X_HOST = "https://api.twitter.com"


def _rewrite(url: str, source: str, target: str) -> str | None:
    if url == source or url.startswith((source + "/", source + "?")):
        return target + url[len(source):]
    return None


def _differs(source: str, target: str | None) -> bool:
    return bool(target) and target.rstrip("/") != source.rstrip("/")


class RedirectAdapter(HTTPAdapter):
    """Sends requests whose URL starts with ``source`` to ``target`` instead."""

    def __init__(self, source: str, target: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.source = source.rstrip("/")
        self.target = target.rstrip("/")

    def send(self, request: Any, **kwargs: Any) -> Any:
        new = _rewrite(request.url, self.source, self.target)
        if new is not None:
            request.url = new
            request.headers.pop("Host", None)  # urllib3 derives it from the new URL
        return super().send(request, **kwargs)


def redirect_session(session: Any, source: str, target: str | None) -> None:
    """Mount the redirect on a requests session; a no-op when the target is the source."""
    if _differs(source, target):
        session.mount(source, RedirectAdapter(source, str(target)))


def aiohttp_redirect(source: str, target: str) -> Any:
    """An aiohttp client middleware doing the same for the async clients."""
    source, target = source.rstrip("/"), target.rstrip("/")

    async def redirect(request: aiohttp.ClientRequest, handler: Any) -> aiohttp.ClientResponse:
        new = _rewrite(str(request.url), source, target)
        if new is not None:
            request.url = URL(new, encoded=True)
            host = request.url.host_port_subcomponent
            if host:
                request.headers["Host"] = host
        return await handler(request)

    return redirect


def redirected_client_session(source: str, target: str | None, *, middlewares: tuple[Any, ...] = (),
                              **kwargs: Any) -> aiohttp.ClientSession:
    """An aiohttp session whose requests to ``source`` go to ``target`` (extra middlewares run after)."""
    chain = ((aiohttp_redirect(source, str(target)),) if _differs(source, target) else ()) + tuple(middlewares)
    return aiohttp.ClientSession(middlewares=chain, **kwargs)
