"""Who did something reads as a person says it: "mod1", "a bot (triagebot)", "the service", never
the stored "session:mod1" (the audit log keeps the exact form, and its filter takes it)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from models import Incident, IncidentUpdate, ModerationAction
from tests.console.conftest import add_mention, login


@pytest.mark.parametrize("stored, shown", [
    ("session:mod1", "mod1"), ("token:triagebot", "a bot (triagebot)"), ("bot", "the service"),
    ("system", "the service"), ("detector", "the service"), ("customer", "the customer"), (None, "the service"),
    ("someone-else", "someone-else"),
])
def test_stored_actors_in_words(stored, shown):
    from console.actors import actor_name

    assert actor_name(stored) == shown


async def test_recent_moderation_actions_name_people_bots_and_the_service(app_client, runtime):
    m = await add_mention(runtime, "buy followers here", handle="ivy")
    rows = {actor: ModerationAction(dedup_key=f"t:{n}", mention_id=m.id, action="lock", rule="spam", actor=actor,
                                    status="done", reason="spam?")
            for n, actor in enumerate(("session:mod", "token:modbot", "system"))}
    async with runtime.db.session() as s:
        s.add_all(rows.values())
        await s.commit()
    await login(app_client, "mod")
    page = await (await app_client.get("/moderation")).text()
    for actor, shown in (("session:mod", "mod"), ("token:modbot", "a bot (modbot)"), ("system", "the service")):
        row = re.search(rf'<tr data-recent-id="{rows[actor].id}"[^>]*>(.*?)</tr>', page, re.DOTALL).group(1)
        assert f"<td><bdi>{shown}</bdi></td>" in row and actor not in row, actor


async def test_the_incident_timeline_names_people_and_the_service(app_client, runtime):
    async with runtime.db.session() as s:
        incident = Incident(dedup_key="outage:x:names", issue_type="outage", channel="x", title="Spike",
                            opened_at=datetime.now(UTC))
        s.add(incident)
        await s.flush()
        s.add_all([IncidentUpdate(incident_id=incident.id, kind="opened", actor="detector", message="Spike"),
                   IncidentUpdate(incident_id=incident.id, kind="status", actor="session:alice", message="On it")])
        await s.commit()
    await login(app_client, "alice")
    page = await (await app_client.get(f"/incidents/{incident.id}")).text()
    cells = re.findall(r'<tr class="event-(\w+)"><td>[^<]*</td><td>\w+</td><td><bdi>([^<]*)</bdi></td>', page)
    assert ("opened", "the service") in cells and ("status", "alice") in cells
    assert "session:alice" not in page
