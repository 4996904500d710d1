"""A secure link a customer quoted in a post opens their private channel to whoever reads it: the
moderation page masks it as every other console page does, in each list that quotes the post (held,
alerts open and acknowledged, interrupted, recent) and in the confirmation that names it."""

from __future__ import annotations

import re

from models import ModerationAction
from tests.console.conftest import add_mention, login

TOKEN = "Zq9" + "k" * 40
TEXT = f"my link https://care.example.com/secure/{TOKEN} is broken"
MASKED = "my link [secure link] is broken"


def row_of(page: str, attr: str, row_id: int) -> str:
    match = re.search(rf'<tr {attr}="{row_id}"[^>]*>(.*?)</tr>', page, re.DOTALL)
    assert match, f"no row {attr}={row_id}"
    return match.group(1)


def action(key: str, mention_id: int, kind: str, status: str, **details) -> ModerationAction:
    return ModerationAction(dedup_key=key, mention_id=mention_id, action=kind, rule="spam", actor="system",
                            status=status, reason="spam?", details=details)


async def test_every_list_on_the_moderation_page_masks_a_secure_link_the_post_quotes(app_client, runtime):
    m = await add_mention(runtime, TEXT, handle="ivy")
    rows = {
        "data-action-id": action("t:hold", m.id, "hold", "pending"),
        "data-unknown-action-id": action("t:hide", m.id, "hide", "unknown"),
        "data-recent-id": action("t:lock", m.id, "lock", "done"),
        "data-alert-id": action("t:alert", m.id, "notify", "alert", notify="legal"),
        "data-acknowledged-id": action("t:seen", m.id, "notify", "acknowledged", notify="legal",
                                       acknowledged_by="session:mod",
                                       acknowledged_at="2024-05-01T10:00:00+00:00"),
    }
    async with runtime.db.session() as s:
        s.add_all(rows.values())
        await s.commit()
    await login(app_client, "mod")
    page = await (await app_client.get("/moderation")).text()
    assert TOKEN not in page
    for attr, row in rows.items():
        assert MASKED in row_of(page, attr, row.id), attr


async def test_the_confirmation_naming_the_post_masks_its_secure_link(app_client, runtime):
    m = await add_mention(runtime, TEXT, handle="ivy")
    async with runtime.db.session() as s:
        alert = action("t:alert", m.id, "notify", "alert", notify="legal")
        s.add(alert)
        await s.commit()
    csrf = await login(app_client, "mod")
    r = await app_client.post(f"/moderation/alerts/{alert.id}/acknowledge", data={"csrf_token": csrf})
    html = await r.text()
    assert r.status == 200 and f"Alert on «{MASKED}» acknowledged." in html and TOKEN not in html
