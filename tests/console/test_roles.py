"""Every route checks who is asking: a table over the app's router, not a list kept by hand.

Anything not on the explicit public allow-list must refuse an anonymous caller (401 JSON under
/api, a redirect to /login elsewhere) and a signed-in user of a role it does not name (403).
Unsafe requests authenticated by the session cookie need the CSRF token of that session.
"""

from __future__ import annotations

import re

import pytest

from tests.console.conftest import Browser, login

PUBLIC = [
    ("GET", r"/"),  # redirects to /mentions, which is guarded
    ("GET", r"/healthz"), ("GET", r"/readyz"),
    ("GET", r"/login"), ("POST", r"/login"), ("POST", r"/logout"),
    ("GET", r"/static/.*"),
    ("GET", r"/api/openapi\.json"),  # the description; no data
    ("POST", r"/api/v1/ingest"),  # its own local token, checked in the handler
    ("*", r"/secure/.*"),  # customer pages: secure-link token and customer session
    ("POST", r"/webhooks/.*"),  # inbound webhooks: their own signatures
]
ROLES = ("agent", "moderator", "marketing")
USER_OF = {"agent": "alice", "moderator": "mod", "marketing": "mia"}


def route_table(app):
    rows = []
    for route in app.router.routes():
        if route.method == "HEAD" or route.resource is None:
            continue
        info = route.resource.get_info()
        raw = info.get("path") or info.get("formatter") or (info.get("prefix", "") + "/{filename}")
        rows.append((route.method, raw, route.handler))
    return rows


def is_public(method: str, raw: str) -> bool:
    return any(m in ("*", method) and re.fullmatch(p, raw) for m, p in PUBLIC)


def concrete(raw: str) -> str:
    return re.sub(r"\{[^}]+\}", lambda m: "1" if "\\d" in m.group(0) or "id" in m.group(0) else "x", raw)


def guarded_routes(app):
    return [(m, raw, h) for m, raw, h in route_table(app) if not is_public(m, raw)]


async def test_the_route_table_is_not_empty_and_every_guarded_route_declares_its_roles(app_client):
    rows = guarded_routes(app_client.server.app)
    assert len(rows) >= 30
    undeclared = [(m, raw) for m, raw, h in rows if not hasattr(h, "roles")]
    assert undeclared == [], f"routes without @require (or an allow-list entry): {undeclared}"


async def test_every_guarded_route_refuses_an_anonymous_caller(app_client):
    failures = []
    for method, raw, _ in guarded_routes(app_client.server.app):
        r = await app_client.request(method, concrete(raw), allow_redirects=False)
        if raw.startswith("/api/"):
            ok = r.status == 401 and (await r.json())["error"]["status"] == 401
        else:
            ok = r.status in (302, 303) and r.headers["Location"].startswith("/login")
        if not ok:
            failures.append((method, raw, r.status))
    assert failures == []


async def test_every_guarded_route_refuses_a_role_it_does_not_name(app_client):
    base = str(app_client.make_url("/")).rstrip("/") + "/"
    browsers = {}
    try:
        for role, user in USER_OF.items():
            browsers[role] = Browser(base)
            await login(browsers[role], user)
        failures, checked = [], 0
        for method, raw, handler in guarded_routes(app_client.server.app):
            wrong = [r for r in ROLES if r not in handler.roles]
            if not wrong:
                continue  # any signed-in role may use it (the anonymous test covers it)
            async with browsers[wrong[0]].session.request(method, concrete(raw), allow_redirects=False) as r:
                checked += 1
                if r.status != 403:
                    failures.append((method, raw, wrong[0], r.status))
        assert failures == [] and checked >= 20
    finally:
        for b in browsers.values():
            await b.session.close()


@pytest.mark.parametrize("path,data", [
    ("/conversations/{cid}/claim", {}),
    ("/conversations/{cid}/tags", {"tags": "x"}),
    ("/digest/schedule", {"period": "day", "send_at": "07:00"}),
])
async def test_unsafe_requests_need_the_sessions_csrf_token(app_client, second_browser, runtime, path, data):
    from tests.console.conftest import add_mention

    m = await add_mention(runtime, "csrf target")
    path = path.format(cid=m.conversation_id)
    user = "alice" if path.startswith("/conversations") else "mia"
    token = await login(app_client, user)
    await login(second_browser, "bob" if user == "alice" else "root")
    other = re.search(r'name="csrf_token" value="([0-9a-f]+)"', await (await second_browser.get("/mentions")).text())
    for bad in ({}, {"csrf_token": "0" * 64}, {"csrf_token": other.group(1)}):
        r = await app_client.post(path, data={**data, **bad}, allow_redirects=False)
        assert r.status == 403, bad
    r = await app_client.post(path, data={**data, "csrf_token": token}, allow_redirects=False)
    assert r.status in (302, 400)  # accepted (a 400 is the form's own validation, past the CSRF check)
    r = await app_client.post(path, data=data, headers={"X-CSRF-Token": token}, allow_redirects=False)
    assert r.status in (302, 400)
