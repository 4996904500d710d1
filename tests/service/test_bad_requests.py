"""Over-long and unparsable requests, over a raw socket, to each server the service runs: the console
as `socialcare run` serves it and a stage worker's health and metrics server as `socialcare worker`
serves it (start_worker_server). Each answers in the JSON error body the OpenAPI description promises
for every 4xx (414, 431, 400), never aiohttp's plain text, and never echoes the request's bytes."""

from __future__ import annotations

import json
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import SimpleNamespace

import pytest
from aiohttp import web

from console.app import create_app
from service.bad_requests import HANDLER_ARGS, MAX_FIELD, MAX_TARGET, Runner
from service.health import start_worker_server
from service.runtime import Runtime
from service.settings import load_settings
from tests.raw_http import MARK, json_error, request, send


@dataclass
class Server:
    port: int
    path: bytes  # a path it serves with GET


class Up:
    async def ping(self) -> bool:
        return True


@asynccontextmanager
async def console_on_a_port(tmp_path, sqlite_url):  # noqa: ANN001, ANN201
    """The console on the embedded runtime, served by the service's Runner on a free port."""
    from console.webhooks_out import SENDER

    settings = load_settings(database_url=sqlite_url, bus="inprocess", var_dir=tmp_path / "var", demo=False,
                             dry_run=True, cookie_secure=False)
    rt = await Runtime.open(settings, stages=[], with_connectors=False, triager=SimpleNamespace(model_version="none"))
    app = create_app(rt)
    runner = Runner(app, access_log=None)
    try:
        await runner.setup()
        await app[SENDER].stop()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()
        await rt.close()


@asynccontextmanager
async def worker_on_a_port():  # noqa: ANN201
    """A stage worker's health server on a free port; a stand-in runtime (the refusals never reach it)."""
    runner, port = await start_worker_server(SimpleNamespace(db=Up(), bus=Up(), pipeline=None), "127.0.0.1", 0)
    try:
        yield port
    finally:
        await runner.cleanup()


@pytest.fixture(params=["console", "worker"])
async def server(request, tmp_path, sqlite_url):  # noqa: ANN001
    if request.param == "console":
        async with console_on_a_port(tmp_path, sqlite_url) as port:
            yield Server(port, b"/api/v1/mentions")
    else:
        async with worker_on_a_port() as port:
            yield Server(port, b"/healthz")


@pytest.mark.parametrize("size", [MAX_TARGET + 100, HANDLER_ARGS["max_line_size"] + 100])
async def test_an_over_long_address_is_a_json_414(server, size):
    """Just over the limit the app answers; far over it, aiohttp's parser does, in JSON all the same."""
    status, headers, body = await send(server.port, request(server.path + b"?q=" + MARK + b"a" * size))
    assert status == 414
    assert "longer than 8190 bytes" in json_error(status, headers, body)["message"]
    assert MARK not in body


@pytest.mark.parametrize("size", [MAX_FIELD + 100, HANDLER_ARGS["max_field_size"] + 100])
async def test_an_over_long_header_is_a_json_431(server, size):
    status, headers, body = await send(server.port, request(server.path, b"X-Junk: " + MARK + b"a" * size))
    assert status == 431
    assert "longer than 8190 bytes" in json_error(status, headers, body)["message"]
    assert MARK not in body


async def test_too_many_headers_is_a_json_431(server):
    many = [b"X-H%d: %s" % (n, MARK) for n in range(200)]
    status, headers, body = await send(server.port, request(server.path, *many))
    assert status == 431 and "headers" in json_error(status, headers, body)["message"]


@pytest.mark.parametrize("head", [
    lambda path: request(path, method=b"FOO"),  # a method llhttp does not know
    lambda path: request(path, method=b"get"),  # methods are case-sensitive
    lambda path: request(path + b"?" + MARK + b"\x01"),  # a control character in the address
    lambda path: request(path, b"X-Bad: " + MARK + b"\x01"),
    lambda path: MARK + b"\x00\xff not HTTP at all\r\n",
], ids=["unknown-method", "lowercase-method", "control-in-address", "control-in-header", "not-http"])
async def test_an_unparsable_request_is_a_json_400_that_does_not_quote_it(server, head):
    status, headers, body = await send(server.port, head(server.path))
    assert status == 400 and json_error(status, headers, body)["message"].startswith("malformed HTTP request")
    assert MARK not in body and b"FOO" not in body


async def test_requests_within_the_limits_are_served_as_before(server):
    status, _, body = await send(server.port, request(b"/healthz?q=" + b"a" * (MAX_TARGET - 100),
                                                      b"X-Long: " + b"a" * (MAX_FIELD - 100)))
    assert (status, json.loads(body)) == (200, {"status": "ok"})


async def test_a_worker_answers_unknown_paths_and_methods_in_json():
    async with worker_on_a_port() as port:
        status, headers, body = await send(port, request(b"/nope"))
        assert status == 404 and json_error(status, headers, body)
        status, headers, body = await send(port, request(b"/metrics", method=b"DELETE"))
        assert status == 405 and "GET" in headers["allow"] and json_error(status, headers, body)
        status, _, body = await send(port, request(b"/readyz"))
        assert (status, json.loads(body)) == (200, {"ready": True, "checks": {"database": True, "bus": True}})
