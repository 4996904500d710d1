"""Local fakes of the platforms' APIs, speaking their documented wire formats (X v2, Reddit, Discourse)."""

from __future__ import annotations

from aiohttp.test_utils import TestServer


async def serve(fake) -> TestServer:  # noqa: ANN001
    """Start ``fake`` on 127.0.0.1 and point its ``base`` there (what the connector's base-URL setting
    gets); the caller closes the returned server."""
    server = TestServer(fake.app(), host="127.0.0.1")
    await server.start_server()
    fake.base = str(server.make_url("")).rstrip("/")
    return server
