"""/api/v1/deadletters: the admin page's dead letters for programs. Admin tokens of scope
`deadletters` only (JSON 401/403 otherwise); rows and payloads redacted as on the page; retry puts a
message back on its topic and discard removes it, each audited with ids only, also when the bus
stops part-way; a bus that does not answer is a JSON 503; every answer matches its description."""

from __future__ import annotations

import socket

import pytest

from service.bus import BusUnavailable
from service.bus.redis_streams import RedisStreamsBus
from tests.console.conftest import bot_token, login
from tests.console.test_api_spec import Described
from tests.console.test_deadletters import SECRET, audit, bury, poison, redis_client  # noqa: F401

CARD = "card 4111 1111 1111 1111, mail jo.doe@example.com"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def admin(runtime) -> dict[str, str]:
    return bearer(await bot_token(runtime, "root", ["deadletters"]))


@pytest.fixture
async def described(app_client) -> Described:
    return Described(await (await app_client.get("/api/openapi.json")).json())


async def call(client, described: Described, method: str, path: str, template: str, **kw) -> tuple[int, dict]:
    async with client.request(method, path, **kw) as r:
        body = await r.json()
        described.check(method, template, r.status, body)
        return r.status, body


async def test_only_an_admin_token_with_the_scope_gets_in(app_client, runtime, described):
    await bury(runtime.bus, "act", "k", {"text": CARD})
    [dead] = await runtime.bus.dead_letters()
    calls = [("GET", "/api/v1/deadletters", "/api/v1/deadletters", {}),
             ("GET", f"/api/v1/deadletters/{dead.id}", "/api/v1/deadletters/{id}", {}),
             ("POST", "/api/v1/deadletters/retry", "/api/v1/deadletters/retry", {"json": {"ids": [dead.id]}}),
             ("POST", "/api/v1/deadletters/discard", "/api/v1/deadletters/discard", {"json": {"ids": [dead.id]}})]
    agent = bearer(await bot_token(runtime, "alice", ["*"]))
    mod = bearer(await bot_token(runtime, "mod", ["deadletters"]))
    unscoped = bearer(await bot_token(runtime, "root", ["webhooks"]))
    for method, path, template, kw in calls:
        for headers, status, said in ((agent, 403, "role agent"), (mod, 403, "role moderator"),
                                      (unscoped, 403, "lacks scope deadletters"),
                                      ({}, 401, "authentication required"),
                                      (bearer("sc_forged"), 401, "invalid or expired token")):
            got, body = await call(app_client, described, method, path, template, headers=headers, **kw)
            assert (got, body["error"]["status"]) == (status, status), (method, path, headers)
            assert said in body["error"]["message"]
    await login(app_client, "alice")  # a signed-in agent is refused the same
    r = await app_client.get("/api/v1/deadletters")
    assert r.status == 403 and (await r.json())["error"]["status"] == 403
    assert await runtime.bus.dead_letters() == [dead]  # nothing was done
    assert await audit(runtime, "deadletter.payload_viewed") == []


async def test_the_list_has_the_pages_rows_without_personal_data(app_client, runtime, admin, described):
    await poison(runtime)  # a real failure through a StageWorker: act, key m:7, the SECRET in its payload
    await bury(runtime.bus, "triage", "t:1", {"text": CARD})
    await bury(runtime.bus, "triage", "t:2", {"n": 2})
    status, page = await call(app_client, described, "GET", "/api/v1/deadletters", "/api/v1/deadletters",
                              headers=admin)
    assert status == 200 and page["total"] == 3 and page["more"] == 0 and page["bus"] == "inprocess"
    assert page["counts"] == {"act": 1, "triage": 2}
    first = page["deadletters"][0]
    assert (first["topic"], first["key"], first["attempts"]) == ("act", "m:7", 5)
    assert "RuntimeError: poison message" in first["reason"] and "payload" not in first
    text = str(page)
    assert "7700 900123" not in text and "jo.doe" not in text and "4111 1111" not in text
    status, some = await call(app_client, described, "GET", "/api/v1/deadletters?topic=triage&limit=1",
                              "/api/v1/deadletters", headers=admin)
    assert [d["key"] for d in some["deadletters"]] == ["t:1"] and (some["total"], some["more"]) == (2, 1)
    for bad in ("?topic=nope", "?limit=0", "?limit=10001", "?topik=act"):
        status, _ = await call(app_client, described, "GET", "/api/v1/deadletters" + bad,
                                  "/api/v1/deadletters", headers=admin)
        assert status == 400, bad


async def test_one_payload_is_shown_redacted_after_its_view_is_audited(app_client, runtime, admin, described):
    await poison(runtime)
    [dead] = await runtime.bus.dead_letters()
    template = "/api/v1/deadletters/{id}"
    status, shown = await call(app_client, described, "GET", f"/api/v1/deadletters/{dead.id}", template,
                               headers=admin)
    assert status == 200 and shown["id"] == dead.id and shown["topic"] == "act"
    assert shown["payload"] == {"poison": True, "text": "call me on [phone] or at [email]", "mention_id": 7}
    [event] = await audit(runtime, "deadletter.payload_viewed")
    assert (event.actor, event.object_type, event.object_id) == ("token:root", "deadletter", dead.id)
    assert event.details == {"topic": "act"}
    for unknown in ("dl-999999", "no%20such", "x" * 101):
        status, body = await call(app_client, described, "GET", f"/api/v1/deadletters/{unknown}", template,
                                  headers=admin)
        assert status == 404 and "no such dead letter" in body["error"]["message"], unknown
    assert len(await audit(runtime, "deadletter.payload_viewed")) == 1


async def test_retry_puts_the_message_back_on_its_topic_and_the_stage_handles_it(app_client, runtime, admin,
                                                                                   described):
    stage, worker = await poison(runtime)
    [dead] = await runtime.bus.dead_letters()
    stage.fixed = True
    status, body = await call(app_client, described, "POST", "/api/v1/deadletters/retry",
                              "/api/v1/deadletters/retry", headers=admin, json={"ids": [dead.id, dead.id, "dl-424242"]})
    assert (status, body) == (200, {"retried": [dead.id], "missing": ["dl-424242"], "refused": []})
    assert await runtime.bus.dead_letters() == []
    await worker.run_once()
    assert stage.handled == ["m:7"]
    [event] = await audit(runtime, "deadletter.retried")
    assert event.actor == "token:root" and event.object_id is None  # two ids asked for
    assert event.details == {"ids": [dead.id], "missing": ["dl-424242"], "refused": [], "count": 1, "topic": None}
    status, again = await call(app_client, described, "POST", "/api/v1/deadletters/retry",
                               "/api/v1/deadletters/retry", headers=admin, json={"ids": [dead.id]})
    assert (status, again["retried"], again["missing"]) == (200, [], [dead.id])  # as the CLI and page: missing


async def test_discard_removes_it_for_good(app_client, runtime, admin, described):
    await bury(runtime.bus, "act", "keep", {"n": 1})
    await bury(runtime.bus, "act", "drop", {"text": SECRET})
    keep, drop = await runtime.bus.dead_letters()
    status, body = await call(app_client, described, "POST", "/api/v1/deadletters/discard",
                              "/api/v1/deadletters/discard", headers=admin, json={"ids": [drop.id]})
    assert (status, body) == (200, {"discarded": [drop.id], "missing": []})
    assert await runtime.bus.dead_letters() == [keep]
    assert await runtime.bus.read("act", "act", "c", 10, 0) == []  # not put back
    [event] = await audit(runtime, "deadletter.discarded")
    assert (event.object_id, event.details["ids"], event.details["count"]) == (drop.id, [drop.id], 1)
    assert "7700" not in str(event.details)


@pytest.mark.parametrize("body", [{}, {"ids": []}, {"ids": ["a/b"]}, {"ids": ["x" * 101]},
                                  {"ids": [f"dl-{n}" for n in range(1001)]}, {"ids": ["dl-1"], "all": True}])
async def test_a_bad_body_is_a_json_422_and_changes_nothing(app_client, runtime, admin, described, body):
    await bury(runtime.bus, "act", "k", {"n": 1})
    status, answer = await call(app_client, described, "POST", "/api/v1/deadletters/retry",
                                "/api/v1/deadletters/retry", headers=admin, json=body)
    assert status == 422 and answer["error"]["message"]
    assert len(await runtime.bus.dead_letters()) == 1 and await audit(runtime, "deadletter.retried") == []


async def test_a_bus_that_does_not_answer_is_a_json_503(app_client, runtime, admin, described):
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    own, runtime.bus = runtime.bus, RedisStreamsBus(f"redis://127.0.0.1:{port}/0", retry_seconds=0.2)
    try:
        for method, path, template, kw in (
                ("GET", "/api/v1/deadletters", "/api/v1/deadletters", {}),
                ("GET", "/api/v1/deadletters/1-0", "/api/v1/deadletters/{id}", {}),
                ("POST", "/api/v1/deadletters/retry", "/api/v1/deadletters/retry", {"json": {"ids": ["1-0"]}}),
                ("POST", "/api/v1/deadletters/discard", "/api/v1/deadletters/discard", {"json": {"ids": ["1-0"]}})):
            async with app_client.request(method, path, headers=admin, **kw) as r:
                body = await r.json()
                described.check(method, template, r.status, body)
                assert r.status == 503 and r.headers["Retry-After"] == "30", path
                assert "does not answer" in body["error"]["message"], path
    finally:
        await runtime.bus.close()
        runtime.bus = own
    assert await audit(runtime, "deadletter.retried") == []


async def test_a_bus_lost_part_way_still_audits_what_was_done(app_client, runtime, admin, described, monkeypatch):
    for n in range(3):
        await bury(runtime.bus, "act", f"k{n}", {"n": n})
    ids = [d.id for d in await runtime.bus.dead_letters()]
    real = runtime.bus.retry_dead_letter

    async def flaky(dead_id: str) -> bool:
        if dead_id == ids[1]:
            raise BusUnavailable("the message bus does not answer")
        return await real(dead_id)

    monkeypatch.setattr(runtime.bus, "retry_dead_letter", flaky)
    status, body = await call(app_client, described, "POST", "/api/v1/deadletters/retry",
                              "/api/v1/deadletters/retry", headers=admin, json={"ids": ids})
    assert status == 503 and (body["error"]["done"], body["error"]["untried"]) == ([ids[0]], ids[1:])
    [event] = await audit(runtime, "deadletter.retried")
    assert (event.details["ids"], event.details["untried"], event.details["count"]) == ([ids[0]], ids[1:], 1)


async def test_on_the_redis_bus_the_api_lists_shows_retries_and_discards_the_same(redis_client):  # noqa: F811
    client, rt = redis_client
    stage, worker = await poison(rt)
    await bury(rt.bus, "triage", "t:1", {"text": CARD})
    poisoned, other = await rt.bus.dead_letters()
    h = bearer(await bot_token(rt, "root", ["deadletters"]))
    page = await (await client.get("/api/v1/deadletters", headers=h)).json()
    assert [d["id"] for d in page["deadletters"]] == [poisoned.id, other.id] and page["bus"] == "redis"
    assert "7700 900123" not in str(page) and "4111 1111" not in str(page)
    shown = await (await client.get(f"/api/v1/deadletters/{other.id}", headers=h)).json()
    assert shown["payload"]["text"].startswith("card [") and "4111 1111" not in str(shown)
    stage.fixed = True
    r = await client.post("/api/v1/deadletters/retry", headers=h, json={"ids": [poisoned.id]})
    assert (await r.json())["retried"] == [poisoned.id]
    r = await client.post("/api/v1/deadletters/discard", headers=h, json={"ids": [other.id]})
    assert (await r.json())["discarded"] == [other.id]
    assert await rt.bus.dead_letters() == []
    await worker.run_once()
    assert stage.handled == ["m:7"]


def test_the_description_documents_the_four_operations():
    from console.api.openapi import spec

    paths = spec()["paths"]
    ops = {("get", "/api/v1/deadletters"), ("get", "/api/v1/deadletters/{id}"),
           ("post", "/api/v1/deadletters/retry"), ("post", "/api/v1/deadletters/discard")}
    for method, path in ops:
        op = paths[path][method]
        assert "`deadletters`" in op["summary"] and "503" in op["responses"] and "200" in op["responses"]
    assert paths["/api/v1/deadletters/retry"]["post"]["requestBody"]["content"]["application/json"]["schema"][
        "properties"]["ids"]["maxItems"] == 1000


async def test_a_secure_link_a_customer_quoted_is_masked_in_the_payload_shown(app_client, runtime, admin, described):
    token = "A" * 43  # a secure link opens the customer's private channel: whoever reads the payload must not
    text = f"this link fails https://care.example/secure/{token} mail jo.doe@example.com"
    await bury(runtime.bus, "ingest", "x:1", {"mention": {"text": text, "raw": {"text": text}}})
    [dead] = await runtime.bus.dead_letters()
    status, shown = await call(app_client, described, "GET", f"/api/v1/deadletters/{dead.id}",
                               "/api/v1/deadletters/{id}", headers=admin)
    assert status == 200 and token not in str(shown) and "jo.doe" not in str(shown)
    assert shown["payload"]["mention"]["text"] == "this link fails [secure link] mail [email]"
