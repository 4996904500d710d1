"""A stage worker's health and metrics server, over a raw socket as `socialcare worker` serves it
(start_worker_server): over-long and unparsable requests get the JSON error body the console's API
gives (414, 431, 400), never aiohttp's plain text quoting the request; good requests as before."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from service.bad_requests import HANDLER_ARGS, MAX_FIELD, MAX_TARGET
from service.health import start_worker_server
from tests.console.test_bad_requests import MARK, json_error, request, send


class Up:
    async def ping(self) -> bool:
        return True


@pytest.fixture
async def port():
    """The worker's server on a free port; a stand-in runtime (the refusals never reach it)."""
    runner, bound = await start_worker_server(SimpleNamespace(db=Up(), bus=Up(), pipeline=None), "127.0.0.1", 0)
    yield bound
    await runner.cleanup()


@pytest.mark.parametrize("size", [MAX_TARGET + 100, HANDLER_ARGS["max_line_size"] + 100])
async def test_an_over_long_address_is_a_json_414(port, size):
    """Just over the limit the app answers; far over it, aiohttp's parser does, in JSON all the same."""
    status, headers, body = await send(port, request(b"/metrics?q=" + MARK + b"a" * size))
    assert status == 414
    assert "longer than 8190 bytes" in json_error(status, headers, body)["message"]
    assert MARK not in body


@pytest.mark.parametrize("size", [MAX_FIELD + 100, HANDLER_ARGS["max_field_size"] + 100])
async def test_an_over_long_header_is_a_json_431(port, size):
    status, headers, body = await send(port, request(b"/healthz", b"X-Junk: " + MARK + b"a" * size))
    assert status == 431
    assert "longer than 8190 bytes" in json_error(status, headers, body)["message"]
    assert MARK not in body


async def test_too_many_headers_is_a_json_431(port):
    status, headers, body = await send(port, request(b"/healthz", *[b"X-H%d: %s" % (n, MARK) for n in range(200)]))
    assert status == 431 and "headers" in json_error(status, headers, body)["message"]


@pytest.mark.parametrize("head", [
    request(b"/healthz", method=b"FOO"),  # a method llhttp does not know
    request(b"/readyz?" + MARK + b"\x01"),  # a control character in the address
    request(b"/healthz", b"X-Bad: " + MARK + b"\x01"),
    MARK + b"\x00\xff not HTTP at all\r\n",
])
async def test_garbage_is_a_json_400_that_does_not_quote_it(port, head):
    status, headers, body = await send(port, head)
    assert status == 400 and json_error(status, headers, body)["message"].startswith("malformed HTTP request")
    assert MARK not in body and b"FOO" not in body


async def test_unknown_paths_and_methods_are_json_too(port):
    status, headers, body = await send(port, request(b"/nope"))
    assert status == 404 and json_error(status, headers, body)
    status, headers, body = await send(port, request(b"/metrics", method=b"DELETE"))
    assert status == 405 and "GET" in headers["allow"] and json_error(status, headers, body)


async def test_requests_within_the_limits_are_served_as_before(port):
    status, _, body = await send(port, request(b"/healthz?q=" + b"a" * (MAX_TARGET - 100),
                                               b"X-Long: " + b"a" * (MAX_FIELD - 100)))
    assert (status, json.loads(body)) == (200, {"status": "ok"})
    status, _, body = await send(port, request(b"/readyz"))
    assert (status, json.loads(body)) == (200, {"ready": True, "checks": {"database": True, "bus": True}})
