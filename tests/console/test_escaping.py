"""Hostile post text (markup, a right-to-left override, zalgo) is inert in every view."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from tests.console.conftest import add_mention, bot_token, login
from tests.console.test_roles import concrete, guarded_routes

SCRIPT = "<script>alert('x')</script>"
RLO = "\u202e"
ZALGO = "Z\u0336\u0353\u0317A\u0335\u031b\u0354L\u0334\u0359G\u0337\u0332O\u0338\u0330"
HOSTILE = f"{SCRIPT} refund {RLO}gnp.exe {ZALGO} <img src=x onerror=alert(1)> \"quoted\" &amp;"
OWN_VIEWS = ("/queue", "/queue/rows", "/conversations/", "/digest", "/admin/")


async def _seed(runtime):
    now = datetime.now(UTC)
    ids = {}
    for outcome, sentiment in (("agent_queue", "negative"), ("escalate_private", "negative"),
                               ("moderate", "negative"), ("auto_answer", "positive")):
        m = await add_mention(runtime, HOSTILE, outcome=outcome, sentiment=sentiment, handle=f"{RLO}evil{outcome}",
                              created_at=now - timedelta(hours=2))
        ids[outcome] = m
    return ids


def rlo_outside_bdi(html: str) -> list[str]:
    """Fragments where the override character is not inside a <bdi> isolate."""
    outside, depth, pos = [], 0, 0
    for tag in re.finditer(r"<(/?)bdi>", html):
        chunk = html[pos:tag.start()]
        if depth == 0 and RLO in chunk:
            outside.append(chunk[max(0, chunk.index(RLO) - 60):chunk.index(RLO) + 20])
        depth += -1 if tag.group(1) else 1
        pos = tag.end()
    if RLO in html[pos:]:
        outside.append(html[pos:][:80])
    return outside


async def test_hostile_text_is_escaped_in_every_page(app_client, runtime):
    ids = await _seed(runtime)
    csrf = await login(app_client, "root")
    cid = ids["agent_queue"].conversation_id
    await app_client.post(f"/conversations/{cid}/tags", data={"csrf_token": csrf, "tags": SCRIPT})
    pages = 0
    for method, raw, _ in guarded_routes(app_client.server.app):
        if method != "GET" or raw.startswith("/api/") or raw.endswith(("/events", "/ws")):
            continue
        path = re.sub(r"\{[^}]+\}", str(cid), raw) if "conversation" in raw else concrete(raw)
        r = await app_client.get(path, allow_redirects=False)
        if r.status != 200 or not r.headers.get("Content-Type", "").startswith("text/html"):
            continue
        html = await r.text()
        pages += 1
        assert SCRIPT not in html and "<img src=x" not in html, path
        assert "onerror=alert(1)>" not in html.replace("&lt;img src=x onerror=alert(1)&gt;", ""), path
        if path.startswith(OWN_VIEWS) and RLO in html:
            assert rlo_outside_bdi(html) == [], path
    assert pages >= 8
    conversation = await (await app_client.get(f"/conversations/{cid}")).text()
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in conversation
    assert ZALGO in conversation  # shown, not mangled — the CSS contains it
    assert "Content-Security-Policy" in (await app_client.get(f"/conversations/{cid}")).headers


async def test_the_digest_file_and_the_api_keep_hostile_text_inert(app_client, runtime):
    ids = await _seed(runtime)
    await login(app_client, "mia")
    r = await app_client.get("/digest.html?period=day")
    html = await r.text()
    assert r.status == 200 and SCRIPT not in html and "&lt;script&gt;" in html
    assert "default-src 'none'" in r.headers["Content-Security-Policy"]
    token = await bot_token(runtime, "alice", ["mentions:read"])
    r = await app_client.get(f"/api/v1/mentions/{ids['agent_queue'].id}", headers={"Authorization": f"Bearer {token}"})
    assert r.headers["Content-Type"].startswith("application/json")
    assert (await r.json())["text"].startswith(SCRIPT)  # data is data in JSON; escaping is the viewer's job
