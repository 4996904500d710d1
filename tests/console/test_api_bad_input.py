"""Bad input to the bot API and the ingest API: a clear 4xx in JSON naming the problem, never a 500."""

from __future__ import annotations

import json

import pytest

from tests.console.conftest import add_mention, bot_token

INGEST = "/api/v1/ingest"
LOCAL = {"Authorization": "Bearer local-ingest-token"}


def line(**fields) -> dict:
    base = {"platform": "x", "external_id": "t1", "text": "can't log in", "created_at": "2026-11-20T08:00:00Z"}
    return {**base, **fields}


def jsonl(*rows) -> bytes:
    return "\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows).encode()


@pytest.fixture
async def ingest(app_client, runtime):
    runtime.ingest_token = "local-ingest-token"
    return app_client


async def queued(runtime) -> int:
    return await runtime.bus.lag("ingest", "ingest")


@pytest.mark.parametrize("depth", [950, 20_000])
async def test_deeply_nested_json_bodies_are_a_400_not_a_500(app_client, runtime, depth):
    m = await add_mention(runtime, "charged twice")
    h = {"Authorization": f"Bearer {await bot_token(runtime, 'alice', ['replies:write'])}",
         "Content-Type": "application/json"}
    for raw in (b"[" * depth + b"]" * depth, b'{"text":' * depth + b'"x"' + b"}" * depth):
        r = await app_client.post(f"/api/v1/mentions/{m.id}/replies", data=raw, headers=h)
        body = await r.json()
        assert r.status == 400 and body["error"]["status"] == 400 and "JSON" in body["error"]["message"]


@pytest.mark.parametrize("depth", [950, 20_000])
async def test_deeply_nested_ingest_lines_are_a_400_not_a_500(ingest, runtime, depth):
    r = await ingest.post(INGEST, data=jsonl(line(), "[" * depth + "]" * depth), headers=LOCAL)
    body = await r.json()
    assert r.status == 400 and [e["line"] for e in body["error"]["lines"]] == [2]
    assert "nested too deeply" in body["error"]["lines"][0]["error"]
    assert await queued(runtime) == 0


async def test_ingest_lines_with_bad_times_are_refused_naming_the_field(ingest, runtime):
    rows = [line(created_at="9999-12-31T23:59:59-14:00"), line(created_at="0001-01-01T00:00:00+14:00"),
            line(created_at=12), line(edited_at="yesterday"), line(author_created_at=[1])]
    r = await ingest.post(INGEST, data=jsonl(*rows), headers=LOCAL)
    errors = {e["line"]: e["error"] for e in (await r.json())["error"]["lines"]}
    assert r.status == 400 and sorted(errors) == [1, 2, 3, 4, 5]
    assert all("created_at" in errors[n] for n in (1, 2, 3)) and "edited_at" in errors[4]
    assert "author_created_at" in errors[5]
    assert await queued(runtime) == 0


async def test_ingest_errors_name_the_missing_and_invalid_fields_in_plain_words(ingest, runtime):
    rows = [{"platform": "x"}, [1, 2], line(author_id="\ud800", author_handle=["x"], kind="tweet", is_public="yes"),
            line(extra_field=1, text=None)]
    r = await ingest.post(INGEST, data=jsonl(*rows), headers=LOCAL)
    errors = {e["line"]: e["error"] for e in (await r.json())["error"]["lines"]}
    assert r.status == 400 and sorted(errors) == [1, 2, 3, 4]
    assert "missing" in errors[1] and all(f in errors[1] for f in ("external_id", "text", "created_at"))
    assert "__init__" not in errors[1] and "positional" not in errors[1]
    assert "object" in errors[2]
    assert all(f in errors[3] for f in ("author_id", "author_handle", "kind", "is_public"))
    assert "text" in errors[4]
    assert await queued(runtime) == 0


async def test_good_ingest_lines_are_still_accepted(ingest, runtime):
    r = await ingest.post(INGEST, data=jsonl(line(), line(external_id="t2", raw={"id": "t2"})), headers=LOCAL)
    assert r.status == 202 and (await r.json()) == {"accepted": 2}
    assert await queued(runtime) == 2


async def test_ingest_tells_a_stranger_from_a_known_caller_without_the_right(ingest, runtime):
    assert (await ingest.post(INGEST, data=jsonl(line()))).status == 401
    forged = await ingest.post(INGEST, data=jsonl(line()), headers={"Authorization": "Bearer sc_forged"})
    assert forged.status == 401
    agent = await bot_token(runtime, "alice", ["*"])  # a valid token, but an agent's, not an admin's
    r = await ingest.post(INGEST, data=jsonl(line()), headers={"Authorization": f"Bearer {agent}"})
    assert r.status == 403 and "admin" in (await r.json())["error"]["message"]


async def test_the_local_ingest_token_works_whatever_the_case_of_its_scheme(ingest, runtime):
    r = await ingest.post(INGEST, data=jsonl(line()), headers={**LOCAL, "Authorization": "bearer local-ingest-token"})
    assert r.status == 202 and await queued(runtime) == 1
