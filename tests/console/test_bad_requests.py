"""Over-long and unparsable requests, sent over a raw socket to the server as `socialcare run` serves
it: a JSON error under /api (as the OpenAPI description promises for every 4xx), the console's error
page for a person, and never the request's own bytes echoed back."""

from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp import web

from console.app import create_app
from service.bad_requests import HANDLER_ARGS, MAX_FIELD, MAX_TARGET, Runner

HTML = "text/html,application/xhtml+xml,*/*;q=0.8"


@pytest.fixture
async def port(runtime):
    from console.webhooks_out import SENDER

    app = create_app(runtime)
    runner = Runner(app, access_log=None)
    await runner.setup()
    await app[SENDER].stop()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield runner.addresses[0][1]
    await runner.cleanup()


async def send(port: int, head: bytes) -> tuple[int, dict[str, str], bytes]:
    """One request (``head`` without the blank line); the answer's status, headers and body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head + b"\r\n")
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    top, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = top.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


def request(target: bytes, *extra: bytes, method: bytes = b"GET") -> bytes:
    top = [method + b" " + target + b" HTTP/1.1", b"Host: localhost", b"Connection: close"]
    return b"\r\n".join([*top, *extra, b""])


def json_error(status: int, headers: dict[str, str], body: bytes) -> dict:
    assert headers["content-type"].startswith("application/json"), (status, headers, body[:200])
    error = json.loads(body)["error"]
    assert error["status"] == status and error["message"]
    return error


MARK = b"x7q" * 20  # would show up if the answer quoted the request


@pytest.mark.parametrize("size", [MAX_TARGET + 100, HANDLER_ARGS["max_line_size"] + 100])
async def test_an_over_long_api_address_is_a_json_414(port, size):
    """Just over the limit the app answers; far over it, aiohttp's parser does, in JSON all the same."""
    target = b"/api/v1/mentions?q=" + MARK + b"a" * size
    status, headers, body = await send(port, request(target))
    assert status == 414
    assert "longer than 8190 bytes" in json_error(status, headers, body)["message"]
    assert MARK not in body


@pytest.mark.parametrize("size", [MAX_FIELD + 100, HANDLER_ARGS["max_field_size"] + 100])
async def test_an_over_long_header_is_a_json_431(port, size):
    status, headers, body = await send(port, request(b"/api/v1/mentions", b"X-Junk: " + MARK + b"a" * size))
    assert status == 431
    assert "longer than 8190 bytes" in json_error(status, headers, body)["message"]
    assert MARK not in body


async def test_too_many_headers_is_a_json_431(port):
    many = [b"X-H%d: %s" % (n, MARK) for n in range(200)]
    status, headers, body = await send(port, request(b"/api/v1/mentions", *many))
    assert status == 431 and "headers" in json_error(status, headers, body)["message"]


@pytest.mark.parametrize("head", [
    request(b"/api/v1/mentions", method=b"FOO"),  # a method llhttp does not know
    request(b"/api/v1/mentions", method=b"get"),  # methods are case-sensitive
    request(b"/api/v1/mentions?" + MARK + b"\x01"),  # a control character in the address
    request(b"/api/v1/mentions", b"X-Bad: " + MARK + b"\x01"),
])
async def test_an_unparsable_request_is_a_json_400_that_does_not_quote_it(port, head):
    status, headers, body = await send(port, head)
    assert status == 400 and json_error(status, headers, body)["message"].startswith("malformed HTTP request")
    assert MARK not in body and b"FOO" not in body


async def test_a_method_the_parser_knows_but_no_route_takes_is_a_json_405(port):
    status, headers, body = await send(port, request(b"/api/v1/mentions", method=b"PROPFIND"))
    assert status == 405 and "GET" in headers["allow"]
    json_error(status, headers, body)


async def test_a_person_with_an_over_long_console_address_gets_the_console_error_page(port):
    status, headers, body = await send(port, request(b"/queue?channel=" + b"a" * (MAX_TARGET + 100),
                                                     b"Accept: " + HTML.encode()))
    assert status == 414 and headers["content-type"].startswith("text/html")
    assert b"<h1>414 Request-URI Too Long</h1>" in body and b"longer than 8190 bytes" in body


async def test_requests_within_the_limits_are_served_as_before(port):
    status, headers, body = await send(port, request(b"/healthz?q=" + b"a" * (MAX_TARGET - 100),
                                                     b"X-Long: " + b"a" * (MAX_FIELD - 100)))
    assert (status, json.loads(body)) == (200, {"status": "ok"})


async def test_any_runner_has_the_app_level_limits(app_client):
    """The test client serves with aiohttp's own runner: the limits come with the application."""
    r = await app_client.get("/api/v1/mentions", params={"q": "a" * (MAX_TARGET + 100)})
    assert r.status == 414 and (await r.json())["error"]["status"] == 414
    r = await app_client.get("/api/v1/mentions", headers={"X-Junk": "a" * (MAX_FIELD + 100)})
    assert r.status == 431 and (await r.json())["error"]["status"] == 431
