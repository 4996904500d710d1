"""The OpenAPI description says what the server does: real answers of the main endpoints validate
against the response schemas it documents, with every object closed (a field the server sends and
the description does not name fails), and what the description promises about parameters, headers,
bodies, errors and access is true of the server."""

from __future__ import annotations

import copy
from typing import Any

import jsonschema_rs
import pytest

from models import ModerationAction, Reply
from tests.console.conftest import add_mention, bot_token


def json_schema(schema: Any) -> Any:
    """OpenAPI 3.0 → JSON Schema, strict: ``nullable`` becomes a null type, and every object that
    lists its properties admits no others (the description must name each field sent)."""
    if isinstance(schema, list):
        return [json_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: json_schema(v) for k, v in schema.items() if k != "nullable"}
    if schema.get("nullable"):
        if "type" in out:
            out["type"] = [out["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
        if "$ref" in out:
            out = {"anyOf": [{"$ref": out.pop("$ref")}, {"type": "null"}], **out}
    if out.get("type") == "object" and "properties" in out:
        out.setdefault("additionalProperties", False)
    return out


class Described:
    """The served description, and a check of one answer against what it documents."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.components = json_schema(copy.deepcopy(doc["components"]))

    def check(self, method: str, path: str, status: int, body: Any) -> None:
        responses = self.doc["paths"][path][method.lower()]["responses"]
        assert str(status) in responses, f"{method} {path}: {status} is not described"
        schema = json_schema(responses[str(status)]["content"]["application/json"]["schema"])
        validator = jsonschema_rs.validator_for({**schema, "components": self.components})
        errors = [f"{e.instance_path}: {e.message}" for e in validator.iter_errors(body)]
        assert errors == [], f"{method} {path} {status} differs from its description:\n" + "\n".join(errors[:10])


@pytest.fixture
async def described(app_client) -> Described:
    return Described(await (await app_client.get("/api/openapi.json")).json())


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def call(client, described: Described, method: str, path: str, template: str, **kw) -> tuple[int, Any]:
    async with client.request(method, path, **kw) as r:
        body = await r.json()
        described.check(method, template, r.status, body)
        return r.status, body


async def test_mention_list_detail_and_queue_answers_match_their_schemas(app_client, runtime, described):
    m = await add_mention(runtime, "charged twice, card 4111 1111 1111 1111",
                          pii=[{"type": "card_number", "start": 21, "end": 40}])
    await add_mention(runtime, "thanks, all good now", outcome="ignore", sentiment="positive")
    async with runtime.db.session() as s:
        s.add(Reply(dedup_key="t:1", mention_id=m.id, conversation_id=m.conversation_id, platform="x",
                    visibility="public", kind="agent", text="Sorry! Looking into it.", status="dry_run",
                    sent_by="alice"))
        await s.commit()
    h = bearer(await bot_token(runtime, "alice", ["mentions:read"]))
    status, page = await call(app_client, described, "GET", "/api/v1/mentions", "/api/v1/mentions", headers=h)
    assert status == 200 and len(page["mentions"]) == 2
    status, page = await call(app_client, described, "GET", "/api/v1/mentions?since_id=0", "/api/v1/mentions",
                              headers=h)
    assert status == 200 and page["next_since_id"] == page["mentions"][-1]["id"]
    status, one = await call(app_client, described, "GET", f"/api/v1/mentions/{m.id}", "/api/v1/mentions/{id}",
                             headers=h)
    assert status == 200 and one["replies"][0]["text"] == "Sorry! Looking into it."
    status, queue = await call(app_client, described, "GET", "/api/v1/queue", "/api/v1/queue", headers=h)
    assert status == 200 and [i["mention_id"] for i in queue["items"]] == [m.id]
    for bad in ("/api/v1/mentions?sensitivity=bogus", "/api/v1/queue?sensitivity=bogus"):
        status, _ = await call(app_client, described, "GET", bad, bad.split("?")[0], headers=h)
        assert status == 400


async def test_reply_and_each_kind_of_action_answer_as_described(app_client, runtime, described):
    m = await add_mention(runtime, "how do I export my data?")
    h = bearer(await bot_token(runtime, "alice", ["replies:write", "actions:write"]))
    path = "/api/v1/mentions/{id}/replies"
    body = {"text": "Settings → Export.", "idempotency_key": "k-1"}
    status, first = await call(app_client, described, "POST", f"/api/v1/mentions/{m.id}/replies", path, json=body,
                               headers=h)
    assert status == 201 and first["created"] is True
    status, again = await call(app_client, described, "POST", f"/api/v1/mentions/{m.id}/replies", path, json=body,
                               headers=h)
    assert status == 200 and again["created"] is False and again["reply"]["id"] == first["reply"]["id"]
    status, blank = await call(app_client, described, "POST", f"/api/v1/mentions/{m.id}/replies", path,
                               json={"text": "   "}, headers=h)
    assert status == 422 and blank["error"]["details"][0]["loc"] == ["text"]

    actions = "/api/v1/mentions/{id}/actions"
    url = f"/api/v1/mentions/{m.id}/actions"
    status, hid = await call(app_client, described, "POST", url, actions, json={"action": "hide"}, headers=h)
    assert status == 200 and hid["status"] == "done" and hid["dry_run"] is True
    status, rep = await call(app_client, described, "POST", url, actions, json={"action": "report", "reason": "spam"},
                             headers=h)
    assert status == 200 and rep["status"] == "pending"
    status, tag = await call(app_client, described, "POST", url, actions, json={"action": "tag", "tags": ["vip"]},
                             headers=h)
    assert status == 200 and tag["tags"] == ["vip"]
    status, esc = await call(app_client, described, "POST", url, actions, json={"action": "escalate"}, headers=h)
    assert status == 200 and esc["case_id"] > 0 and isinstance(esc["replies"], list)
    status, _ = await call(app_client, described, "POST", url, actions, json={"action": "remove"}, headers=h)
    assert status == 422
    async with runtime.db.session() as s:
        assert await s.get(ModerationAction, hid["moderation_action_id"]) is not None

    cases = "/api/v1/cases/{id}"
    h_case = bearer(await bot_token(runtime, "alice", ["cases:read"]))
    status, case = await call(app_client, described, "GET", f"/api/v1/cases/{esc['case_id']}", cases, headers=h_case)
    assert status == 200 and case["id"] == esc["case_id"]


async def test_an_action_on_an_erased_post_answers_410_as_described(app_client, runtime, described):
    from service.erasure import Subject, erase

    m = await add_mention(runtime, "hide me, I am Dora Vale", handle="dora_v")
    await erase(runtime.db, Subject(platform="x", handle="dora_v"), actor="dpo", reason="privacy request")
    h = bearer(await bot_token(runtime, "mod", ["actions:write"]))
    status, body = await call(app_client, described, "POST", f"/api/v1/mentions/{m.id}/actions",
                              "/api/v1/mentions/{id}/actions", json={"action": "hide"}, headers=h)
    assert status == 410 and "erased" in body["error"]["message"]


def test_the_description_documents_headers_patterns_required_reasons_and_errors():
    from console.api.openapi import SCHEMAS, spec

    doc = spec()
    reply = doc["paths"]["/api/v1/mentions/{id}/replies"]["post"]
    key = reply["requestBody"]["content"]["application/json"]["schema"]["properties"]["idempotency_key"]
    assert key["pattern"] == "^[A-Za-z0-9_.:-]+$"
    assert any(p["in"] == "header" and p["name"] == "Idempotency-Key" for p in reply["parameters"])
    variants = doc["paths"]["/api/v1/mentions/{id}/actions"]["post"]["requestBody"]["content"][
        "application/json"]["schema"]["oneOf"]
    needs = next(v for v in variants if "remove" in v["properties"]["action"]["enum"])
    assert set(needs["properties"]["action"]["enum"]) == {"remove", "ban", "report"}
    assert "reason" in needs["required"] and "default" not in needs["properties"]["reason"]
    assert "details" in SCHEMAS["Error"]["properties"]["error"]["properties"]
    assert "post" in doc["paths"]["/api/v1/ingest"]
    assert "since_id" in [p["name"] for p in doc["paths"]["/api/v1/mentions"]["get"]["parameters"]]
    assert "priority" in doc["paths"]["/api/v1/mentions"]["get"]["description"]


async def test_each_operation_names_the_roles_and_scope_its_guard_checks(app_client, described):
    from console.api.mentions import get_queue

    op = described.doc["paths"]["/api/v1/queue"]["get"]
    assert op["x-roles"] == sorted({*get_queue.roles, "admin"}, key=["agent", "moderator", "marketing",
                                                                       "admin"].index)
    assert op["x-token-scope"] == "mentions:read" and "Roles: agent, admin" in op["description"]
    assert described.doc["paths"]["/api/v1/webhooks"]["get"]["x-roles"] == ["admin"]
    assert "`webhooks`: admin" in described.doc["info"]["description"]
