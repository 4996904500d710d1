"""What the console alone does with requests aiohttp's parser or its limits refuse, over a raw socket
to the server as `socialcare run` serves it: a person gets the console's error page, a method no
route takes is a JSON 405, and any runner (the test client's too) keeps the app-level limits. What
every server of the service answers alike: tests/service/test_bad_requests.py."""

from __future__ import annotations

import pytest

from service.bad_requests import MAX_FIELD, MAX_TARGET
from tests.raw_http import json_error, request, send
from tests.service.test_bad_requests import console_on_a_port

HTML = "text/html,application/xhtml+xml,*/*;q=0.8"


@pytest.fixture
async def port(tmp_path, sqlite_url):
    async with console_on_a_port(tmp_path, sqlite_url) as bound:
        yield bound


async def test_a_method_the_parser_knows_but_no_route_takes_is_a_json_405(port):
    status, headers, body = await send(port, request(b"/api/v1/mentions", method=b"PROPFIND"))
    assert status == 405 and "GET" in headers["allow"]
    json_error(status, headers, body)


async def test_a_person_with_an_over_long_console_address_gets_the_console_error_page(port):
    status, headers, body = await send(port, request(b"/queue?channel=" + b"a" * (MAX_TARGET + 100),
                                                     b"Accept: " + HTML.encode()))
    assert status == 414 and headers["content-type"].startswith("text/html")
    assert b"<h1>414 Request-URI Too Long</h1>" in body and b"longer than 8190 bytes" in body


async def test_any_runner_has_the_app_level_limits(app_client):
    """The test client serves with aiohttp's own runner: the limits come with the application."""
    r = await app_client.get("/api/v1/mentions", params={"q": "a" * (MAX_TARGET + 100)})
    assert r.status == 414 and (await r.json())["error"]["status"] == 414
    r = await app_client.get("/api/v1/mentions", headers={"X-Junk": "a" * (MAX_FIELD + 100)})
    assert r.status == 431 and (await r.json())["error"]["status"] == 431
