"""The bot API: mentions with triage, replies and actions by bots, templates, errors, OpenAPI."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from console.api.openapi import spec
from models import Author, Conversation, KnowledgeArticle, Mention, ModerationAction, Reply
from tests.console.conftest import add_mention, bot_token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_bot_reads_a_mention_with_its_triage_explanations_and_no_personal_data(app_client, runtime):
    m = await add_mention(runtime, "card 4111 1111 1111 1111 was charged twice",
                          pii=[{"type": "card_number", "start": 5, "end": 24}])
    token = await bot_token(runtime, "alice", ["mentions:read"])
    r = await app_client.get(f"/api/v1/mentions/{m.id}", headers=bearer(token))
    body = await r.json()
    assert r.status == 200 and body["id"] == m.id and "4111" not in body["text"]
    assert body["triage"]["scores"]["sentiment"]["explanation"] == ["word 'refund' (+0.40)"]
    assert body["route"]["outcome"] == "agent_queue"
    assert (await app_client.get("/api/v1/mentions/99999", headers=bearer(token))).status == 404
    huge = await app_client.get(f"/api/v1/mentions/{10**30}", headers=bearer(token))
    assert huge.status == 404 and (await huge.json())["error"]["status"] == 404


async def test_a_secure_link_waiting_in_the_outbox_is_never_shown_to_a_reader(app_client, runtime):
    """The link opens the customer's private channel: until it is delivered (and scrubbed) it sits in
    the outbox in clear, where a read-only bot must not find it."""
    m = await add_mention(runtime, "someone hacked my account", sensitivity="security")
    link = "http://127.0.0.1:8080/secure/" + "GzycuqYjFZPD7Al3RrbQtYQ83YLjDlKSOJZ10j7xWYU"
    async with runtime.db.session() as s:
        s.add(Reply(dedup_key=f"dm:{m.id}", mention_id=m.id, platform="x", visibility="private",
                    kind="secure_link_dm", text=f"Continue here in private: {link}", status="pending", sent_by="bot"))
        await s.commit()
    token = await bot_token(runtime, "alice", ["mentions:read"])  # the care team reads the DM, link masked
    body = await (await app_client.get(f"/api/v1/mentions/{m.id}", headers=bearer(token))).json()
    [dm] = [r for r in body["replies"] if r["kind"] == "secure_link_dm"]
    assert dm["text"] == "Continue here in private: [secure link]"
    assert "/secure/" not in str(body)
    marketing = await bot_token(runtime, "mia", ["mentions:read"])  # a takeover report is not marketing's at all
    r = await app_client.get(f"/api/v1/mentions/{m.id}", headers=bearer(marketing))
    assert r.status == 404 and "/secure/" not in await r.text()


async def test_a_token_without_the_scope_is_refused(app_client, runtime):
    m = await add_mention(runtime, "hello")
    token = await bot_token(runtime, "alice", ["mentions:read"])
    r = await app_client.post(f"/api/v1/mentions/{m.id}/replies", json={"text": "hi"}, headers=bearer(token))
    assert r.status == 403 and "replies:write" in (await r.json())["error"]["message"]
    mia = await bot_token(runtime, "mia", ["*"])  # marketing may read but not reply
    r = await app_client.post(f"/api/v1/mentions/{m.id}/replies", json={"text": "hi"}, headers=bearer(mia))
    assert r.status == 403


async def test_a_bot_reply_is_recorded_once_per_idempotency_key(app_client, runtime):
    m = await add_mention(runtime, "how do I export my data?")
    token = await bot_token(runtime, "alice", ["replies:write"])
    payload = {"text": "Here is how: Settings → Export.", "idempotency_key": "bot-42"}
    first = await app_client.post(f"/api/v1/mentions/{m.id}/replies", json=payload, headers=bearer(token))
    again = await app_client.post(f"/api/v1/mentions/{m.id}/replies", json=payload, headers=bearer(token))
    assert first.status == 201 and again.status == 200
    assert (await first.json())["reply"]["id"] == (await again.json())["reply"]["id"]
    assert (await first.json())["reply"]["status"] == "dry_run"
    async with runtime.db.session() as s:
        assert len((await s.scalars(select(Reply).where(Reply.mention_id == m.id))).all()) == 1


async def test_a_bot_reply_from_a_template_and_bad_bodies_get_clear_errors(app_client, runtime):
    m = await add_mention(runtime, "charged twice", handle="zoe")
    token = await bot_token(runtime, "alice", ["replies:write", "templates:write", "templates:read"])
    h = bearer(token)
    created = await app_client.post("/api/v1/templates", headers=h, json={
        "name": "double_charge", "issue_types": ["billing"], "variants": {"friendly": "Sorry {{ author_name }}!"}})
    assert created.status == 201
    r = await app_client.post(f"/api/v1/mentions/{m.id}/replies", headers=h, json={"template": "double_charge"})
    assert r.status == 201 and (await r.json())["reply"]["text"] == "Sorry zoe!"
    cases = [
        (b"{not json", "application/json", 400),
        (b"[1, 2]", "application/json", 422),
        (b'{"text": "a\\u0000b"}', "application/json", 422),
        (b'{"text": "\\ud800"}', "application/json", 422),
        (b'{"text": "x", "template": "double_charge"}', "application/json", 422),
        (b'{"text": "x", "unexpected": 1}', "application/json", 422),
        (b"text=hi", "application/x-www-form-urlencoded", 415),
    ]
    for raw, ctype, status in cases:
        r = await app_client.post(f"/api/v1/mentions/{m.id}/replies", data=raw,
                                  headers={**h, "Content-Type": ctype})
        assert r.status == status, (raw, await r.text())
        assert (await r.json())["error"]["status"] == status
    broken = await app_client.post("/api/v1/templates", headers=h, json={
        "name": "broken", "variants": {"friendly": "{% if %}"}})
    assert broken.status == 422 and "friendly" in str(await broken.json())
    dup = await app_client.post("/api/v1/templates", headers=h, json={"name": "double_charge", "variants": {"a": "b"}})
    assert dup.status == 409
    put = await app_client.put("/api/v1/templates/double_charge", headers=h, json={"variants": {"formal": "Dear customer."}})
    assert put.status == 200 and (await put.json())["variants"] == {"formal": "Dear customer."}
    assert (await app_client.delete("/api/v1/templates/double_charge", headers=h)).status == 204
    assert (await app_client.get("/api/v1/templates/double_charge", headers=h)).status == 404


async def test_moderation_actions_are_recorded_once_and_ban_needs_a_reason(app_client, runtime):
    m = await add_mention(runtime, "spam spam", handle="spammer")
    token = await bot_token(runtime, "mod", ["actions:write"])
    h = bearer(token)
    for _ in range(2):
        r = await app_client.post(f"/api/v1/mentions/{m.id}/actions", headers=h, json={"action": "hide"})
        assert r.status == 200
    assert (await r.json())["repeated"] is True
    r = await app_client.post(f"/api/v1/mentions/{m.id}/actions", headers=h, json={"action": "ban"})
    assert r.status == 422
    r = await app_client.post(f"/api/v1/mentions/{m.id}/actions", headers=h, json={"action": "ban", "reason": "spam ring"})
    assert r.status == 200
    async with runtime.db.session() as s:
        mention = await s.get(Mention, m.id)
        author = await s.get(Author, mention.author_id)
        actions = [a.action for a in await s.scalars(select(ModerationAction).where(ModerationAction.mention_id == m.id))]
    assert mention.hidden and author.banned and sorted(actions) == ["ban", "hide"]


async def test_a_bots_approval_of_a_held_post_settles_the_hold_for_the_moderators(app_client, runtime):
    m = await add_mention(runtime, "is this a scam? giveaway link inside", handle="kai")
    async with runtime.db.session() as s:
        s.add(ModerationAction(dedup_key=f"mod:{m.id}", mention_id=m.id, action="hold", rule="likely-spam",
                               reason="held", actor="bot", status="pending"))
        await s.commit()
    h = bearer(await bot_token(runtime, "mod", ["actions:write"]))
    r = await app_client.post(f"/api/v1/mentions/{m.id}/actions", headers=h, json={"action": "approve"})
    assert r.status == 200
    async with runtime.db.session() as s:
        hold = await s.scalar(select(ModerationAction).where(ModerationAction.dedup_key == f"mod:{m.id}"))
    assert hold.status == "reviewed" and hold.details["decision"] == "approve" and hold.details["by"].endswith("mod")


async def test_hide_after_unhide_hides_again_and_a_retry_is_a_repeat(app_client, runtime):
    m = await add_mention(runtime, "spam spam", handle="spammer2")
    h = bearer(await bot_token(runtime, "mod", ["actions:write"]))
    url = f"/api/v1/mentions/{m.id}/actions"

    async def hidden() -> bool:
        async with runtime.db.session() as s:
            return (await s.get(Mention, m.id)).hidden

    steps = [("hide", True, False), ("hide", True, True), ("unhide", False, False), ("hide", True, False)]
    for action, want_hidden, repeated in steps:
        r = await app_client.post(url, headers=h, json={"action": action})
        assert r.status == 200 and (await r.json()).get("repeated", False) is repeated, (action, await r.json())
        assert await hidden() is want_hidden, action


async def test_a_tag_that_is_not_one_is_refused_and_the_tags_stay(app_client, runtime):
    m = await add_mention(runtime, "where is my refund", handle="tagged")
    h = bearer(await bot_token(runtime, "alice", ["actions:write"]))
    url = f"/api/v1/mentions/{m.id}/actions"
    r = await app_client.post(url, headers=h, json={"action": "tag", "tags": ["billing", "VIP"]})
    assert r.status == 200 and (await r.json())["tags"] == ["billing", "vip"]
    r = await app_client.post(url, headers=h, json={"action": "tag", "tags": ["Überfällig!"]})
    assert r.status == 422 and "is not" in (await r.json())["error"]["message"]
    async with runtime.db.session() as s:
        conv = await s.get(Conversation, (await s.get(Mention, m.id)).conversation_id)
        assert conv.tags == ["billing", "vip"]


async def test_concurrent_identical_actions_never_fail_with_a_server_error(app_client, runtime):
    import asyncio

    from community import moderation

    m = await add_mention(runtime, "buy followers", handle="spammer3")
    async with runtime.db.session() as s:  # held for the moderators: a moderator may escalate it (as /moderation)
        await moderation.report(s, await s.get(Mention, m.id), "agent:bob", "looks like a scam")
        await s.commit()
    h = bearer(await bot_token(runtime, "mod", ["actions:write"]))
    for action in ("hide", "escalate"):
        rs = await asyncio.gather(*[app_client.post(f"/api/v1/mentions/{m.id}/actions", headers=h,
                                                    json={"action": action}) for _ in range(8)])
        assert {r.status for r in rs} <= {200, 409}, [r.status for r in rs]
        assert 200 in {r.status for r in rs}
    async with runtime.db.session() as s:
        hides = (await s.scalars(select(ModerationAction).where(ModerationAction.mention_id == m.id,
                                                                 ModerationAction.action == "hide"))).all()
    assert len(hides) == 1


async def test_paging_outside_the_described_range_is_refused_not_quietly_moved(app_client, runtime):
    h = bearer(await bot_token(runtime, "alice", ["mentions:read"]))
    for query in ("limit=0", "limit=-5", "limit=501", "offset=-1", "limit=%D9%A1", "limit=1.5"):
        r = await app_client.get(f"/api/v1/mentions?{query}", headers=h)
        assert r.status == 400 and "must be an integer from" in (await r.json())["error"]["message"], query
    ok = await app_client.get("/api/v1/mentions?limit=500&offset=0", headers=h)
    assert ok.status == 200 and (await ok.json())["limit"] == 500


async def test_an_id_in_other_digits_is_not_found_and_a_wrong_method_names_the_allowed_ones(app_client, runtime):
    m = await add_mention(runtime, "hello there", handle="digits")
    h = bearer(await bot_token(runtime, "alice", ["mentions:read"]))
    arabic = "".join(chr(0x0660 + int(d)) for d in str(m.id))  # Arabic-Indic digits for the same number
    assert (await app_client.get(f"/api/v1/mentions/{arabic}", headers=h)).status == 404
    assert (await app_client.get(f"/api/v1/mentions/{m.id}", headers=h)).status == 200
    r = await app_client.delete("/api/v1/mentions", headers=h)
    assert r.status == 405 and "GET" in r.headers["Allow"] and (await r.json())["error"]["status"] == 405


async def test_a_post_hidden_for_exposing_personal_data_is_not_shown_again(app_client, runtime):
    """Unhiding it would put the card number back on the platform (the stored copy is redacted)."""
    m = await add_mention(runtime, "card 4111 1111 1111 1111 was charged twice", handle="exposed",
                          pii=[{"type": "card_number", "start": 5, "end": 24}])
    h = bearer(await bot_token(runtime, "mod", ["actions:write"]))
    for action in ("unhide", "approve"):
        r = await app_client.post(f"/api/v1/mentions/{m.id}/actions", headers=h, json={"action": action})
        assert r.status == 409 and "personal data" in (await r.json())["error"]["message"]
    plain = await add_mention(runtime, "nothing personal here", handle="plain")
    r = await app_client.post(f"/api/v1/mentions/{plain.id}/actions", headers=h, json={"action": "unhide"})
    assert r.status == 200


async def test_the_openapi_description_covers_every_api_route(app_client):
    r = await app_client.get("/api/openapi.json")
    doc = await r.json()
    assert r.status == 200 and doc["openapi"].startswith("3.0")
    import schemathesis

    schema = schemathesis.openapi.from_dict(doc)  # refuses a description that is not valid OpenAPI
    assert len(list(schema.get_all_operations())) >= 14
    documented = {(path, method.upper()) for path, ops in doc["paths"].items() for method in ops}
    routed = set()
    for route in app_client.server.app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter") or ""
        if path.startswith("/api/v1/") and route.method != "HEAD":  # ingest included
            routed.add((path.replace("{id:\\d+}", "{id}"), route.method))
    assert routed <= documented, routed - documented
    for path, ops in spec()["paths"].items():  # served as written, plus who may call each operation
        for method, op in ops.items():
            served = doc["paths"][path][method]
            assert {k: v for k, v in served.items() if not k.startswith("x-") and k != "description"} == \
                {k: v for k, v in op.items() if not k.startswith("x-") and k != "description"}
            assert "Roles:" in served["description"]


async def test_unknown_api_paths_and_methods_answer_json(app_client):
    r = await app_client.get("/api/v1/nope")
    assert r.status == 404 and (await r.json())["error"]["status"] == 404
    r = await app_client.patch("/api/v1/templates")
    assert r.status == 405 and (await r.json())["error"]["status"] == 405


async def test_a_bot_may_not_say_sensitive_things_in_public_but_may_in_private(app_client, runtime):
    token = await bot_token(runtime, "alice", ["replies:write"])
    plain = await add_mention(runtime, "charged twice", handle="gus")
    r = await app_client.post(f"/api/v1/mentions/{plain.id}/replies", headers=bearer(token),
                              json={"text": "Refunded to card 4111 1111 1111 1111"})
    assert r.status == 422 and "card number" in (await r.json())["error"]["message"]
    hacked = await add_mention(runtime, "someone got into my account", sensitivity="security", handle="hal",
                               outcome="escalate_private")
    r = await app_client.post(f"/api/v1/mentions/{hacked.id}/replies", headers=bearer(token),
                              json={"text": "We've locked your account and reset your password"})
    assert r.status == 422 and "private channel" in (await r.json())["error"]["message"]
    r = await app_client.post(f"/api/v1/mentions/{hacked.id}/replies", headers=bearer(token),
                              json={"text": "We've locked your account and reset your password", "visibility": "private"})
    assert r.status == 201 and (await r.json())["reply"]["visibility"] == "private"
    async with runtime.db.session() as s:
        public = (await s.scalars(select(Reply).where(Reply.mention_id.in_([plain.id, hacked.id]),
                                                      Reply.visibility == "public"))).all()
    assert public == []


async def test_paging_through_mentions_of_equal_priority_and_time_neither_repeats_nor_skips(app_client, runtime):
    same = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    made = {(await add_mention(runtime, f"app down #{i}", created_at=same)).id for i in range(11)}
    token = await bot_token(runtime, "alice", ["mentions:read"])
    seen: list[int] = []
    for offset in range(0, 12, 3):
        page = await (await app_client.get(f"/api/v1/mentions?limit=3&offset={offset}", headers=bearer(token))).json()
        seen += [m["id"] for m in page["mentions"]]
    assert seen == sorted(made, reverse=True)  # the newest first among equals, each once


async def test_a_bot_reply_from_a_template_carries_its_articles_link_like_the_bots_own_answers(app_client, runtime):
    m = await add_mention(runtime, "codes never arrive", handle="ivy", issue_type="account_access")
    async with runtime.db.session() as s:
        s.add(KnowledgeArticle(slug="reset-password", title="Reset your password", body="Steps.",
                               url="https://help.acme.example/articles/reset-password", issue_types=["account_access"]))
        await s.commit()
    token = await bot_token(runtime, "alice", ["replies:write", "templates:write"])
    h = bearer(token)
    created = await app_client.post("/api/v1/templates", headers=h, json={
        "name": "codes_missing", "issue_types": ["account_access"], "article_slug": "reset-password",
        "variants": {"friendly": "Hi {{ author_name }}, steps here: {{ article_url }}"}})
    assert created.status == 201
    r = await app_client.post(f"/api/v1/mentions/{m.id}/replies", headers=h, json={"template": "codes_missing"})
    assert (await r.json())["reply"]["text"] == "Hi ivy, steps here: https://help.acme.example/articles/reset-password"


async def test_a_bot_polls_new_mentions_with_since_id_in_id_order(app_client, runtime):
    """A cursor that does not shift: mentions after ``since_id`` in id order, whatever their priority;
    ``next_since_id`` is the cursor for the next poll (unchanged when nothing is new)."""
    first = [await add_mention(runtime, f"post {i}", priority=p) for i, p in enumerate((10, 90, 50))]
    h = bearer(await bot_token(runtime, "alice", ["mentions:read"]))
    body = await (await app_client.get("/api/v1/mentions?since_id=0&limit=2", headers=h)).json()
    assert [m["id"] for m in body["mentions"]] == [first[0].id, first[1].id]
    body = await (await app_client.get(f"/api/v1/mentions?since_id={body['next_since_id']}", headers=h)).json()
    assert [m["id"] for m in body["mentions"]] == [first[2].id]
    later = await add_mention(runtime, "post 3", priority=99)
    body = await (await app_client.get(f"/api/v1/mentions?since_id={body['next_since_id']}", headers=h)).json()
    assert [m["id"] for m in body["mentions"]] == [later.id] and body["next_since_id"] == later.id
    body = await (await app_client.get(f"/api/v1/mentions?since_id={later.id}", headers=h)).json()
    assert body["mentions"] == [] and body["next_since_id"] == later.id
    default = await (await app_client.get("/api/v1/mentions", headers=h)).json()  # the default stays by priority
    assert [m["id"] for m in default["mentions"]][:2] == [later.id, first[1].id]
    r = await app_client.get("/api/v1/mentions?since_id=0&offset=5", headers=h)
    assert r.status == 400 and "since_id" in (await r.json())["error"]["message"]


async def test_a_cursor_stops_before_a_mention_not_routed_yet_so_it_is_never_skipped(app_client, runtime):
    from models import RouteDecision

    a = await add_mention(runtime, "first")
    b = await add_mention(runtime, "second, still in triage")
    c = await add_mention(runtime, "third")
    async with runtime.db.session() as s:  # b is ingested but not routed yet
        await s.delete(await s.get(RouteDecision, (await s.scalar(
            select(RouteDecision.id).where(RouteDecision.mention_id == b.id)))))
        await s.commit()
    h = bearer(await bot_token(runtime, "alice", ["mentions:read"]))
    body = await (await app_client.get(f"/api/v1/mentions?since_id={a.id - 1}", headers=h)).json()
    assert [m["id"] for m in body["mentions"]] == [a.id] and body["next_since_id"] == a.id
    async with runtime.db.session() as s:
        s.add(RouteDecision(mention_id=b.id, outcome="agent_queue", reason="late", router_version="t"))
        await s.commit()
    body = await (await app_client.get(f"/api/v1/mentions?since_id={a.id}", headers=h)).json()
    assert [m["id"] for m in body["mentions"]] == [b.id, c.id]


@pytest.mark.parametrize("path,names", [
    ("/api/v1/mentions?sentimnet=negative", "sentimnet"),
    ("/api/v1/mentions?outcome=bogus", "outcome"),
    ("/api/v1/queue?sensitivity=bogus", "sensitivity"),
    ("/api/v1/queue?sentiment=angry", "sentiment"),
    ("/api/v1/queue?outcome=agent_queue", "outcome"),
    ("/api/v1/queue?limit=0", "limit"),
])
async def test_unknown_parameters_and_filter_values_are_a_400_naming_the_parameter(app_client, runtime, path, names):
    await add_mention(runtime, "charged twice")
    h = bearer(await bot_token(runtime, "alice", ["mentions:read"]))
    r = await app_client.get(path, headers=h)
    body = await r.json()
    assert r.status == 400 and body["error"]["status"] == 400 and names in body["error"]["message"]


async def test_the_queue_pages_and_says_when_more_follow(app_client, runtime):
    ids = [(await add_mention(runtime, f"help {i}", priority=80 - i)).conversation_id for i in range(5)]
    h = bearer(await bot_token(runtime, "alice", ["mentions:read"]))
    first = await (await app_client.get("/api/v1/queue?limit=3", headers=h)).json()
    rest = await (await app_client.get("/api/v1/queue?limit=3&offset=3", headers=h)).json()
    assert first["has_more"] is True and rest["has_more"] is False
    assert [i["conversation_id"] for i in first["items"] + rest["items"]] == ids


async def test_a_lowercase_bearer_scheme_is_accepted(app_client, runtime):
    m = await add_mention(runtime, "hello")
    token = await bot_token(runtime, "alice", ["mentions:read"])
    for scheme in ("bearer", "BEARER", "Bearer"):
        r = await app_client.get(f"/api/v1/mentions/{m.id}", headers={"Authorization": f"{scheme} {token}"})
        assert r.status == 200, scheme


async def test_a_blank_reply_says_the_text_must_not_be_empty(app_client, runtime):
    m = await add_mention(runtime, "hello")
    h = bearer(await bot_token(runtime, "alice", ["replies:write"]))
    for text in ("", "   \n"):
        r = await app_client.post(f"/api/v1/mentions/{m.id}/replies", json={"text": text}, headers=h)
        body = await r.json()
        assert r.status == 422 and body["error"]["details"] == [{"loc": ["text"], "message": "text must not be empty"}]
        assert "text must not be empty" in body["error"]["message"] and "item" not in body["error"]["message"]


async def test_every_403_to_a_token_is_json_even_outside_the_api(app_client, runtime):
    """An agent's token with ``metrics`` opens the service summary, not the Prometheus scrape (admin's):
    the refusal says so in JSON, as every answer to a program does."""
    h = bearer(await bot_token(runtime, "alice", ["metrics"]))
    assert (await app_client.get("/api/v1/metrics/summary", headers=h)).status == 200
    for accept in ("*/*", "text/html"):
        r = await app_client.get("/metrics", headers={**h, "Accept": accept})
        assert r.status == 403 and r.content_type == "application/json"
        assert (await r.json())["error"] == {"status": 403, "message": "role agent may not do this"}
    r = await app_client.get("/queue", headers=h, allow_redirects=False)
    assert r.status == 403 and "tokens are for the API" in (await r.json())["error"]["message"]
    root = bearer(await bot_token(runtime, "root", ["metrics"]))
    assert (await app_client.get("/metrics", headers=root)).status == 200
