"""A form body the console cannot read (bytes that are not UTF-8, an unknown charset, a broken
multipart body) or that holds what no database stores (NUL, a lone surrogate), or a file where no
form takes one, is refused 400 with a clear page or message on every console form, signed in or not,
before any handler runs (console.forms, from the error middleware): never a 500 with a traceback,
and never counted by the sign-in throttle."""

from __future__ import annotations

import logging

import pytest

from console.auth import AUTH
from console.forms import NOT_FORMS
from console.login import NAME_FAILURES
from tests.console.conftest import PASSWORDS, login

HTML = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
URLENCODED = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data; boundary=b"


def part(name: str, value: bytes, extra: bytes = b"") -> bytes:
    return b'--b\r\nContent-Disposition: form-data; name="' + name.encode() + b'"' + extra + b"\r\n\r\n" + value + b"\r\n"


BAD_BODIES = {
    "raw invalid UTF-8": (URLENCODED, b"username=\xff&password=x&csrf_token=CSRF"),
    "unknown charset": (URLENCODED + "; charset=bogus", b"username=a&password=b&csrf_token=CSRF"),
    "NUL": (URLENCODED, b"username=a%00b&password=x&csrf_token=CSRF"),
    "lone surrogate (utf-7)": (URLENCODED + "; charset=utf-7", b"username=+2AA-&csrf_token=CSRF"),
    "multipart, invalid UTF-8": (MULTIPART, part("csrf_token", b"CSRF") + part("username", b"\xff") + b"--b--\r\n"),
    "multipart, NUL": (MULTIPART, part("csrf_token", b"CSRF") + part("text", b"a\x00b") + b"--b--\r\n"),
    "multipart, no boundary": ("multipart/form-data", part("username", b"a") + b"--b--\r\n"),
    "multipart, truncated": (MULTIPART, b'--b\r\nContent-Disposition: form-data; name="u"\r\n\r\nx'),
    "multipart, unnamed part": (MULTIPART, b"--b\r\nContent-Disposition: form-data\r\n\r\nx\r\n--b--\r\n"),
    "multipart, a file": (MULTIPART, part("csrf_token", b"CSRF") + part("text", b"x", b'; filename="a.txt"')
                          + b"--b--\r\n"),
}
UNAUTHENTICATED_FORMS = ("/login", "/secure/code", "/secure/verify", "/secure/end", "/secure/" + "A" * 43)


def post_routes(app) -> list[str]:
    """A path for every console route that takes a POST (the API and the webhooks read no forms)."""
    paths = []
    for route in app.router.routes():
        if route.method != "POST":
            continue
        info = route.resource.get_info()
        if "path" in info:
            path = info["path"]
        else:
            path = info["formatter"]
            pattern = info["pattern"]
            for value in ("1", "A" * 43):
                filled = path
                for name in route.resource._pattern.groupindex:  # noqa: SLF001 - the route's own names
                    filled = filled.replace("{" + name + "}", value)
                if pattern.fullmatch(filled):
                    path = filled
                    break
        if not path.startswith(NOT_FORMS):
            paths.append(path)
    return sorted(set(paths))


@pytest.mark.parametrize("label", list(BAD_BODIES))
async def test_anyone_sending_an_unreadable_form_gets_400_and_a_page_for_a_browser(app_client, caplog, label):
    content_type, body = BAD_BODIES[label]
    caplog.set_level(logging.INFO, logger="socialcare")
    for path in UNAUTHENTICATED_FORMS:
        r = await app_client.post(path, data=body, headers={**HTML, "Content-Type": content_type},
                                  allow_redirects=False)
        page = await r.text()
        assert r.status == 400, (path, r.status, page[:300])
        assert r.content_type == "text/html" and "Traceback" not in page
        if path.startswith("/secure/"):  # a customer: the secure channel's own page, no console
            assert "Secure support" in page and "<nav>" not in page and "That didn" in page
        else:
            assert "<h1>400 Bad Request</h1>" in page and "The form" in page
        r = await app_client.post(path, data=body, headers={"Content-Type": content_type})  # a program
        assert r.status == 400 and "The form" in await r.text()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_the_sign_in_throttle_never_counts_an_unreadable_form(app_client):
    """Refused before the sign-in: ten times a NUL in the password is no ten failed sign-ins."""
    for _ in range(NAME_FAILURES + 2):
        r = await app_client.post("/login", data=b"username=alice&password=x%00", allow_redirects=False,
                                  headers={"Content-Type": URLENCODED})
        assert r.status == 400
    r = await app_client.post("/login", data={"username": "alice", "password": PASSWORDS["alice"]},
                              allow_redirects=False)
    assert r.status == 302, await r.text()


async def test_a_good_form_in_either_encoding_reaches_its_handler(app_client):
    import aiohttp

    form = aiohttp.FormData({"username": "alice", "password": PASSWORDS["alice"]}, default_to_multipart=True)
    r = await app_client.post("/login", data=form, allow_redirects=False)
    assert r.status == 302, await r.text()
    r = await app_client.post("/login", data={"username": "alice", "password": "wrong password x"},
                              allow_redirects=False)
    assert r.status == 401


@pytest.mark.parametrize("label", ["raw invalid UTF-8", "NUL", "unknown charset", "multipart, invalid UTF-8",
                                   "multipart, a file"])
async def test_signed_in_every_console_form_refuses_an_unreadable_body_with_400(app_client, label):
    csrf = await login(app_client, "root")
    assert app_client.server.app[AUTH]  # the admin opens every console form
    content_type, body = BAD_BODIES[label]
    body = body.replace(b"CSRF", csrf.encode())
    paths = post_routes(app_client.server.app)
    assert len(paths) >= 25, paths
    answers = {}
    for path in paths:
        r = await app_client.post(path, data=body, headers={**HTML, "Content-Type": content_type},
                                  allow_redirects=False)
        answers[path] = r.status
        if r.status == 400:  # the console's page, or the secure channel's for its own forms
            assert r.content_type == "text/html" and ("The form" in await r.text()
                                                      or path.startswith("/secure/") and "could not be read" in await r.text())
    assert {path: status for path, status in answers.items() if status != 400} == {}
