"""Hostile text (markup, an attribute breakout, a right-to-left override, zalgo) is inert in every view.

Every kind of row a page shows is seeded with it: mentions and author handles, a held and a reported
post, a case with messages, an incident's title and status message, a customer, a template and a
knowledge article. Every HTML page is then fetched by every role that may see it (the access table
of test_roles); anything but 200 is a failure, not a page quietly left out.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from community import moderation
from models import (
    Case,
    CaseMessage,
    Customer,
    Incident,
    IncidentMention,
    IncidentUpdate,
    KnowledgeArticle,
    Mention,
    Template,
)
from tests.console.conftest import add_mention, bot_token, login
from tests.console.test_roles import ACCESS, USER_OF, allowed, guarded_routes

SCRIPT = "<script>alert('x')</script>"
ESCAPED_SCRIPT = "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"
BREAKOUT = "\"><img src=x onerror=alert(1)>"
RLO = "\u202e"
ZALGO = "Z\u0336\u0353\u0317A\u0335\u031b\u0354L\u0334\u0359G\u0337\u0332O\u0338\u0330"
HOSTILE = f"{SCRIPT} refund {RLO}gnp.exe {ZALGO} {BREAKOUT} \"quoted\" &amp;"
HOSTILE_URL = "https://example.invalid/kb\"><svg/onload=alert(1)>"
# each seeded object must show up (escaped) on its page: a seed that never reaches a view proves nothing
MUST_SHOW = ("/moderation", "/conversations/{id}", "/cases/{case_id}", "/incidents", "/incidents/{incident_id}",
             "/knowledge", "/knowledge/articles/{slug}", "/knowledge/templates/{name}", "/queue", "/mentions")


async def _seed(runtime) -> dict[str, int]:
    now = datetime.now(UTC)
    async with runtime.db.session() as s:
        customer = Customer(name=HOSTILE[:200], plan="family", notes=HOSTILE, attributes={"last_order": HOSTILE})
        s.add(customer)
        await s.commit()
        cust_id = customer.id
    ms: dict[str, Mention] = {}
    for outcome, sentiment in (("agent_queue", "negative"), ("escalate_private", "negative"),
                               ("moderate", "negative"), ("auto_answer", "positive"), ("broadcast", "negative")):
        ms[outcome] = await add_mention(runtime, HOSTILE, outcome=outcome, sentiment=sentiment,
                                        handle=f"{RLO}evil{outcome}", created_at=now - timedelta(hours=2),
                                        customer_id=cust_id if outcome in ("agent_queue", "escalate_private") else None)
    async with runtime.db.session() as s:
        held = await s.get(Mention, ms["moderate"].id)
        await moderation.add_action(s, "test:hold", held, "hold", HOSTILE, rule="spam_links")
        await moderation.report(s, await s.get(Mention, ms["agent_queue"].id), "session:alice", HOSTILE)
        esc = ms["escalate_private"]
        case = Case(conversation_id=esc.conversation_id, customer_id=cust_id, author_id=esc.author_id,
                    opened_by_mention_id=esc.id, category="security", identity_pending=False,
                    first_response_due=now + timedelta(hours=1), resolution_due=now + timedelta(days=1))
        s.add(case)
        await s.flush()
        s.add_all([CaseMessage(case_id=case.id, sender="customer", body=HOSTILE, mention_id=esc.id),
                   CaseMessage(case_id=case.id, sender="agent", body=f"agent says {HOSTILE}")])
        incident = Incident(dedup_key="outage:x:test", issue_type="outage", channel="x", title=HOSTILE[:300],
                            status_message=HOSTILE, opened_at=now - timedelta(hours=1))
        s.add(incident)
        await s.flush()
        s.add_all([IncidentMention(incident_id=incident.id, mention_id=ms["broadcast"].id),
                   IncidentUpdate(incident_id=incident.id, kind="opened", message=HOSTILE),
                   IncidentUpdate(incident_id=incident.id, kind="status", message=HOSTILE, recipients=1)])
        s.add(KnowledgeArticle(slug="hostile-article", title=HOSTILE[:300], body=HOSTILE, url=HOSTILE_URL,
                               issue_types=["billing"], tags=[SCRIPT]))
        s.add(Template(name="hostile_tpl", issue_types=["billing"], article_slug="hostile-article",
                       variants={"friendly": f"{HOSTILE} {{{{ author_name }}}}"}))
        await s.commit()
        return {"conv": ms["agent_queue"].conversation_id, "case": case.id, "incident": incident.id,
                "customer": cust_id}


def rlo_outside_bdi(html: str) -> list[str]:
    """Fragments of rendered text where the override character is not inside a <bdi> isolate.
    Attribute values and a <textarea>'s text are not laid out with the page (a form control is
    its own box), so only text content counts; the <title> does (the tab shows it)."""
    html = re.sub(r"(<textarea\b[^>]*>).*?(</textarea>)", r"\1\2", html, flags=re.DOTALL)
    html = re.sub(r"<(?!/?bdi\b)[a-zA-Z/!][^>]*>", "<>", html)  # escaped attributes hold no raw ">"
    outside, depth, pos = [], 0, 0
    for tag in re.finditer(r"<(/?)bdi\b[^>]*>", html):
        chunk = html[pos:tag.start()]
        if depth == 0 and RLO in chunk:
            outside.append(chunk[max(0, chunk.index(RLO) - 60):chunk.index(RLO) + 20])
        depth += -1 if tag.group(1) else 1
        pos = tag.end()
    rest = html[pos:]
    if RLO in rest:
        outside.append(rest[max(0, rest.index(RLO) - 60):rest.index(RLO) + 20])
    return outside


def inert(html: str) -> list[str]:
    """What would run or break out of an attribute if the page did not escape."""
    problems = [p for p in (SCRIPT, "<img src=x", "<svg/onload") if p in html]
    if "onerror=alert(1)>" in html.replace("&lt;img src=x onerror=alert(1)&gt;", ""):
        problems.append("onerror")
    return problems + [f"RLO outside <bdi>: {f!r}" for f in rlo_outside_bdi(html)]


def concrete_for(raw: str, ids: dict[str, int]) -> str:
    """The route with its parameters pointing at the seeded rows (a new parameter fails loudly)."""
    fill = {"id": ids["conv"], "case_id": ids["case"], "incident_id": ids["incident"],
            "customer_id": ids["customer"], "slug": "hostile-article", "name": "hostile_tpl"}
    return re.sub(r"\{([^}]+)\}", lambda m: str(fill[m.group(1)]), raw)


async def test_hostile_text_is_inert_in_every_page_for_every_role_that_may_see_it(app_client, runtime):
    from tests.console.conftest import Browser

    ids = await _seed(runtime)
    csrf = await login(app_client, "alice")
    await app_client.post(f"/conversations/{ids['conv']}/tags", data={"csrf_token": csrf, "tags": SCRIPT})
    base = str(app_client.make_url("/")).rstrip("/") + "/"
    failures, pages, seen = [], 0, {}
    for role, user in USER_OF.items():
        b = Browser(base)
        try:
            await login(b, user)
            for method, raw, _ in guarded_routes(app_client.server.app):
                if method != "GET" or raw.startswith("/api/") or raw.endswith(("/events", "/ws")):
                    continue
                if role not in allowed(method, raw):
                    continue
                path = concrete_for(raw, ids)
                async with b.get(path, allow_redirects=False) as r:
                    body = await r.text()
                    if r.status != 200:
                        failures.append((role, path, r.status, body[:100]))
                        continue
                    if not r.headers.get("Content-Type", "").startswith("text/html"):
                        continue
                pages += 1
                seen[raw] = body
                failures += [(role, path, p) for p in inert(body)]
        finally:
            await b.session.close()
    assert failures == [], "\n".join(map(repr, failures))
    assert pages >= 30 and {raw for m, raw in ACCESS if m == "GET" and not raw.startswith("/api/")
                            and not raw.endswith(("/events", "/ws")) and raw not in ("/metrics", "/digest.csv")} \
        <= seen.keys()
    for raw in MUST_SHOW:
        assert ESCAPED_SCRIPT in seen[raw], f"the seeded hostile text never reached {raw}"
    conversation = seen["/conversations/{id}"]
    assert ZALGO in conversation  # shown, not mangled
    assert "Reported by <bdi>alice</bdi>" in seen["/moderation"]


async def test_the_customer_record_and_the_report_form_keep_hostile_text_inert(app_client, runtime):
    ids = await _seed(runtime)
    csrf = await login(app_client, "alice")
    r = await app_client.post(f"/customers/{ids['customer']}", data={"csrf_token": csrf,
                                                                     "reason": "checking the order history"})
    html = await r.text()
    assert r.status == 200 and ESCAPED_SCRIPT in html and inert(html) == []
    m = await add_mention(runtime, "you are all idiots", handle="rude")
    r = await app_client.post(f"/conversations/{m.conversation_id}/report", data={
        "csrf_token": csrf, "mention_id": str(m.id), "note": HOSTILE})
    assert r.status == 200 and "Held for the moderators" in await r.text()
    await login(app_client, "mod")
    html = await (await app_client.get("/moderation")).text()
    assert html.count(ESCAPED_SCRIPT) >= 3 and inert(html) == []


async def test_the_digest_file_and_the_api_keep_hostile_text_inert(app_client, runtime):
    await _seed(runtime)
    await login(app_client, "mia")
    r = await app_client.get("/digest.html?period=day")
    html = await r.text()
    assert r.status == 200 and SCRIPT not in html and "&lt;script&gt;" in html
    assert "default-src 'none'" in r.headers["Content-Security-Policy"]
    assert "Content-Security-Policy" in (await app_client.get("/digest")).headers
    token = await bot_token(runtime, "alice", ["mentions:read"])
    async with runtime.db.session() as s:
        from sqlalchemy import select

        mid = await s.scalar(select(Mention.id).order_by(Mention.id))
    r = await app_client.get(f"/api/v1/mentions/{mid}", headers={"Authorization": f"Bearer {token}"})
    assert r.headers["Content-Type"].startswith("application/json")
    assert (await r.json())["text"].startswith(SCRIPT)  # data is data in JSON; escaping is the viewer's job
