"""Every route checks who is asking, against a table kept here: who may use it and which token scope.

The table is compared with the app's router both ways (a new route fails until it has a row), then
every guarded route is called by everyone: anonymous (401 JSON under /api, a redirect to /login
elsewhere), each role (the roles in its row and admin get in, the others get 403), bot tokens (only
routes with a scope open to them, and only with that scope; console pages refuse every token), and
every unsafe route refuses a cookie session without that session's CSRF token.
"""

from __future__ import annotations

import re

from tests.console.conftest import Browser, bot_token, login

PUBLIC = [
    ("GET", r"/"),  # redirects to /mentions, which is guarded
    ("GET", r"/healthz"), ("GET", r"/readyz"),
    ("GET", r"/login"), ("POST", r"/login"), ("GET", r"/logout"), ("POST", r"/logout"),  # logout: its own CSRF check
    ("GET", r"/static/.*"),
    ("GET", r"/api/openapi\.json"),  # the description; no data
    ("POST", r"/api/v1/ingest"),  # its own local token, checked in the handler
    ("*", r"/secure/.*"),  # customer pages: secure-link token and customer session
    ("POST", r"/webhooks/.*"),  # inbound webhooks: their own signatures
]
ROLES = ("agent", "moderator", "marketing", "admin")
USER_OF = {"agent": "alice", "moderator": "mod", "marketing": "mia", "admin": "root"}
A, M, K = "agent", "moderator", "marketing"
ANY = (A, M, K)

# (method, route as the router spells it): (roles besides admin, the token scope or None: no tokens)
ACCESS: dict[tuple[str, str], tuple[tuple[str, ...], str | None]] = {
    ("GET", "/mentions"): (ANY, None),
    ("GET", "/metrics"): ((), "metrics"),  # the Prometheus scrape
    ("GET", "/queue"): ((A,), None),
    ("GET", "/queue/rows"): ((A,), None),
    ("GET", "/queue/events"): ((A, M), None),
    ("GET", "/queue/incidents"): ((A,), None),
    ("GET", "/conversations/{id}"): ((A, M), None),  # moderators read it (a notify alert links here); forms: agents
    **{("POST", f"/conversations/{{id}}/{verb}"): ((A,), None)
       for verb in ("claim", "release", "reply", "private", "resolve", "tags", "report")},
    ("POST", "/conversations/{id}/replies/{reply_id}/settle"): ((A,), None),  # a reply left unknown: who may send
    ("POST", "/conversations/{id}/replies/{reply_id}/copies"): ((A,), None),  # a reply out twice loses a copy
    ("GET", "/api/v1/mentions"): (ANY, "mentions:read"),
    ("GET", "/api/v1/mentions/{id}"): (ANY, "mentions:read"),
    ("POST", "/api/v1/mentions/{id}/replies"): ((A,), "replies:write"),
    ("POST", "/api/v1/mentions/{id}/actions"): ((A, M), "actions:write"),
    ("POST", "/api/v1/replies/{id}/settle"): ((A,), "replies:write"),
    ("POST", "/api/v1/moderation-actions/{id}/settle"): ((A, M), "actions:write"),
    ("GET", "/api/v1/queue"): ((A,), "mentions:read"),
    ("GET", "/api/v1/templates"): ((A, M), "templates:read"),
    ("POST", "/api/v1/templates"): ((A,), "templates:write"),
    ("GET", "/api/v1/templates/{name}"): ((A, M), "templates:read"),
    ("PUT", "/api/v1/templates/{name}"): ((A,), "templates:write"),
    ("DELETE", "/api/v1/templates/{name}"): ((A,), "templates:write"),
    ("GET", "/api/v1/webhooks"): ((), "webhooks"),
    ("POST", "/api/v1/webhooks"): ((), "webhooks"),
    ("DELETE", "/api/v1/webhooks/{id}"): ((), "webhooks"),
    ("GET", "/api/v1/webhooks/{id}/deliveries"): ((), "webhooks"),
    ("GET", "/api/v1/deadletters"): ((), "deadletters"),
    ("GET", "/api/v1/deadletters/{id}"): ((), "deadletters"),
    ("POST", "/api/v1/deadletters/retry"): ((), "deadletters"),
    ("POST", "/api/v1/deadletters/discard"): ((), "deadletters"),
    ("GET", "/admin/users"): ((), None),
    ("POST", "/admin/users/{id}/active"): ((), None),
    ("POST", "/admin/users/{id}/role"): ((), None),
    ("POST", "/admin/tokens/{id}/revoke"): ((), None),
    ("GET", "/admin/audit"): ((), None),
    ("GET", "/admin/deadletters"): ((), None),
    ("POST", "/admin/deadletters/{id}/payload"): ((), None),
    ("POST", "/admin/deadletters/retry"): ((), None),
    ("POST", "/admin/deadletters/discard"): ((), None),
    ("GET", "/digest"): ((K,), None),
    ("GET", "/digest.csv"): ((K,), None),
    ("GET", "/digest.html"): ((K,), None),
    ("POST", "/digest/schedule"): ((K,), None),
    ("POST", "/digest/send"): ((K,), None),
    ("GET", "/api/v1/digest"): ((K,), "digest:read"),
    ("GET", "/service-metrics"): (ANY, None),
    ("GET", "/api/v1/metrics/summary"): (ANY, "metrics"),
    ("GET", "/cases"): ((A,), None),
    ("POST", "/cases/escalate"): ((A,), None),
    ("GET", "/cases/{case_id}"): ((A,), None),
    ("POST", "/cases/{case_id}/take"): ((A,), None),
    ("POST", "/cases/{case_id}/resolve"): ((A,), None),
    ("POST", "/cases/{case_id}/link"): ((A,), None),
    ("POST", "/cases/{case_id}/identity"): ((A,), None),
    ("GET", "/cases/{case_id}/ws"): ((A,), None),
    ("GET", "/customers/{customer_id}"): ((A,), None),
    ("POST", "/customers/{customer_id}"): ((A,), None),
    ("GET", "/api/v1/cases/breaches"): ((A,), "cases:read"),
    ("GET", "/api/v1/cases/{id}"): ((A,), "cases:read"),
    ("GET", "/incidents"): ((A,), None),
    ("GET", "/incidents/{incident_id}"): ((A,), None),
    ("POST", "/incidents/{incident_id}/status"): ((A,), None),
    ("POST", "/incidents/{incident_id}/close"): ((A,), None),
    ("GET", "/moderation"): ((M,), None),
    ("POST", "/moderation/{action_id}/review"): ((M,), None),
    ("POST", "/moderation/bulk"): ((M,), None),
    ("POST", "/moderation/alerts/{action_id}/acknowledge"): ((M,), None),
    ("POST", "/moderation/replies/{reply_id}/delete"): ((M,), None),
    ("POST", "/moderation/actions/{action_id}/settle"): ((M,), None),
    ("GET", "/knowledge"): (ANY, None),
    ("GET", "/knowledge/articles/{slug}"): (ANY, None),  # marketing reads, never saves
    ("POST", "/knowledge/articles/{slug}"): ((A, M), None),
    ("GET", "/knowledge/templates/{name}"): (ANY, None),  # marketing reads, never saves
    ("POST", "/knowledge/templates/{name}"): ((A, M), None),
    ("GET", "/connectors"): ((A, M), None),
    ("GET", "/api/v1/connectors"): ((A, M), "connectors:read"),
}
SAFE = ("GET", "HEAD", "OPTIONS")


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


def absent(raw: str) -> str:
    """The route with ids that exist nowhere: calling it proves the guard let us in (404/400),
    without changing anything."""
    return re.sub(r"\{[^}]+\}", lambda m: "999999" if "id" in m.group(0) else "no-such-thing", raw)


def guarded_routes(app):
    return [(m, raw, h) for m, raw, h in route_table(app) if not is_public(m, raw)]


def allowed(method: str, raw: str) -> tuple[str, ...]:
    return (*ACCESS[(method, raw)][0], "admin")


async def _status(session, method: str, path: str, **kw) -> tuple[int, str, str]:
    async with session.request(method, path, allow_redirects=False, **kw) as r:
        streaming = r.headers.get("Content-Type", "").startswith("text/event-stream") or r.status == 101
        text = "" if streaming else await r.text()
        return r.status, r.headers.get("Location", ""), text


class Signed:
    """One browser per role, signed in, with its CSRF token."""

    def __init__(self, base: str) -> None:
        self.base, self.browsers, self.csrf = base, {}, {}

    async def __aenter__(self):
        for role, user in USER_OF.items():
            self.browsers[role] = Browser(self.base)
            self.csrf[role] = await login(self.browsers[role], user)
        return self

    async def __aexit__(self, *exc):
        for b in self.browsers.values():
            await b.session.close()


def _base(app_client) -> str:
    return str(app_client.make_url("/")).rstrip("/") + "/"


async def test_the_access_table_names_every_guarded_route_and_nothing_else(app_client):
    rows = guarded_routes(app_client.server.app)
    assert len(rows) >= 50
    undeclared = [(m, raw) for m, raw, h in rows if not hasattr(h, "roles")]
    assert undeclared == [], f"routes without @require (or an allow-list entry): {undeclared}"
    in_app = {(m, raw) for m, raw, _ in rows}
    assert sorted(in_app - ACCESS.keys()) == [], "routes missing from ACCESS"
    assert sorted(ACCESS.keys() - in_app) == [], "ACCESS rows for routes that no longer exist"
    # `socialcare users token --scope` offers every scope a route names
    from service.cli.users_cmd import SCOPES

    assert {scope for _, scope in ACCESS.values() if scope} <= set(SCOPES)
    # a token opens nothing unsafe outside the API (no CSRF there to stand in for)
    assert [k for k, (_, scope) in ACCESS.items() if scope and k[0] not in SAFE and not k[1].startswith("/api/")] == []


def test_the_roles_each_scope_needs_are_the_roles_of_the_routes_it_opens():
    """`socialcare users token` refuses a scope the user's role can never use, from this table: it must
    say exactly which roles some route with that scope lets in (ingest, checked in its handler, is admin's)."""
    from console.auth import SCOPE_ROLES
    from service.cli.users_cmd import SCOPES

    opened: dict[str, set[str]] = {}
    for roles, scope in ACCESS.values():
        if scope:
            opened.setdefault(scope, set()).update(roles)
    opened["ingest"] = set()
    assert {s: set(r) for s, r in SCOPE_ROLES.items()} == opened
    assert set(SCOPE_ROLES) == set(SCOPES) - {"*"}


async def test_every_guarded_route_refuses_an_anonymous_caller(app_client):
    """A browser is sent to sign in wherever it may go after signing in; a program (the API, and the
    token routes outside it, such as the Prometheus scrape, asked for without HTML) gets a JSON 401."""
    failures = []
    for method, raw, handler in guarded_routes(app_client.server.app):
        for accept in ("text/html,*/*;q=0.8", "*/*"):
            r = await app_client.request(method, concrete(raw), allow_redirects=False, headers={"Accept": accept})
            program = raw.startswith("/api/") or (getattr(handler, "scope", None) is not None and accept == "*/*")
            if program:
                ok = r.status == 401 and (await r.json())["error"]["status"] == 401
            else:
                ok = r.status in (302, 303) and r.headers["Location"].startswith("/login")
            if not ok:
                failures.append((method, raw, accept, r.status))
    assert failures == []


async def test_each_role_gets_into_exactly_the_routes_its_row_names(app_client):
    """Allowed: past the guard (no 401/403, no login redirect, no crash). Others: 403 for the role."""
    failures, let_in, refused = [], 0, 0
    async with Signed(_base(app_client)) as signed:
        for method, raw, _ in guarded_routes(app_client.server.app):
            for role in ROLES:
                headers = {} if method in SAFE else {"X-CSRF-Token": signed.csrf[role]}
                status, location, text = await _status(signed.browsers[role].session, method, absent(raw),
                                                       headers=headers)
                if role in allowed(method, raw):
                    let_in += 1
                    if status in (401, 403) or status >= 500 or location.startswith("/login"):
                        failures.append((method, raw, role, status, text[:80]))
                else:
                    refused += 1
                    if status != 403 or f"role {role}" not in text:
                        failures.append((method, raw, role, status, text[:80]))
    assert failures == []
    assert let_in >= 80 and refused >= 80


async def test_tokens_open_only_routes_with_a_scope_and_only_with_that_scope(app_client, runtime):
    failures = []
    tokens: dict[tuple[str, str], str] = {}

    async def token(role: str, scope: str) -> dict[str, str]:
        if (role, scope) not in tokens:
            tokens[role, scope] = await bot_token(runtime, USER_OF[role], [scope])
        return {"Authorization": f"Bearer {tokens[role, scope]}"}

    for method, raw, _ in guarded_routes(app_client.server.app):
        scope = ACCESS[(method, raw)][1]
        path = absent(raw)
        for role in ROLES:
            wildcard = await _status(app_client.session, method, app_client.make_url(path), headers=await token(role, "*"))
            if scope is None or role not in allowed(method, raw):
                if wildcard[0] != 403:  # console pages refuse every token; a wrong role stays wrong
                    failures.append((method, raw, role, "*", wildcard[0]))
                continue
            own = await _status(app_client.session, method, app_client.make_url(path), headers=await token(role, scope))
            if own[0] in (401, 403) or own[0] >= 500:  # no CSRF needed: a token is no ambient credential
                failures.append((method, raw, role, scope, own[0], own[2][:80]))
            other = "webhooks" if scope != "webhooks" else "mentions:read"
            lacking = await _status(app_client.session, method, app_client.make_url(path),
                                    headers=await token(role, other))
            if lacking[0] != 403 or scope not in lacking[2]:
                failures.append((method, raw, role, other, lacking[0]))
    assert failures == []


async def test_a_read_only_agent_token_cannot_work_a_conversation_through_the_console(app_client, runtime):
    """The audit's case: a ``mentions:read`` token posting to the console's forms."""
    from sqlalchemy import select

    from models import Conversation, Reply
    from tests.console.conftest import add_mention

    m = await add_mention(runtime, "my parcel is late")
    h = {"Authorization": f"Bearer {await bot_token(runtime, 'alice', ['mentions:read'])}"}
    cid = m.conversation_id
    for path, data in (("claim", {}), ("reply", {"text": "hi", "mention_id": str(m.id)}), ("resolve", {}),
                       ("tags", {"tags": "x"}), ("report", {"note": "spam", "mention_id": str(m.id)})):
        r = await app_client.post(f"/conversations/{cid}/{path}", data=data, headers=h, allow_redirects=False)
        assert r.status == 403 and "tokens are for the API" in await r.text(), path
    assert (await app_client.get(f"/conversations/{cid}", headers=h, allow_redirects=False)).status == 403
    assert (await app_client.get(f"/api/v1/mentions/{m.id}", headers=h)).status == 200  # the API still works
    async with runtime.db.session() as s:
        conv = await s.get(Conversation, cid)
        assert conv.claimed_by is None and conv.status == "open" and not conv.tags
        assert (await s.scalars(select(Reply).where(Reply.conversation_id == cid))).all() == []


async def test_every_unsafe_route_needs_the_sessions_own_csrf_token(app_client):
    base = _base(app_client)
    failures, checked = [], 0
    async with Signed(base) as signed:
        for method, raw, _ in guarded_routes(app_client.server.app):
            if method in SAFE:
                continue
            role = allowed(method, raw)[0]
            other = next(r for r in ROLES if r != role)  # a real token, of another session
            session, path = signed.browsers[role].session, absent(raw)
            checked += 1
            for kw in ({"data": {"x": "1"}}, {"data": {"csrf_token": "0" * 64}},
                       {"data": {"csrf_token": signed.csrf[other]}}, {"headers": {"X-CSRF-Token": signed.csrf[other]}},
                       {"json": {"csrf_token": signed.csrf[role]}}):  # JSON bodies are not read for it
                status, _, text = await _status(session, method, path, **kw)
                if status != 403 or "CSRF" not in text:
                    failures.append((method, raw, role, kw, status))
            for kw in ({"data": {"csrf_token": signed.csrf[role]}}, {"headers": {"X-CSRF-Token": signed.csrf[role]}}):
                status, _, text = await _status(session, method, path, **kw)
                if status in (401, 403) or status >= 500:
                    failures.append((method, raw, role, "own token", status, text[:80]))
    assert failures == [] and checked >= 25
