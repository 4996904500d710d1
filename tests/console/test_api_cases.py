"""GET /api/v1/cases/{id}: a bot follows a private case without getting into the private channel —
no secure link, no one-time code, no personal data, no customer record — and every read is audited."""

from __future__ import annotations

from sqlalchemy import select

from models import AuditEvent, Case, CaseMessage, Customer, User
from tests.console.conftest import add_mention, bot_token

LINK = "http://127.0.0.1:8080/secure/" + "GzycuqYjFZPD7Al3RrbQtYQ83YLjDlKSOJZ10j7xWYU"


async def a_case(runtime) -> tuple[Case, int]:
    m = await add_mention(runtime, "someone hacked my account", sensitivity="security", outcome="escalate_private")
    async with runtime.db.session() as s:
        alice = await s.scalar(select(User).where(User.username == "alice"))
        customer = Customer(name="Maria Lopez", email="maria@example.com", phone="+1 415 555 0134")
        s.add(customer)
        await s.flush()
        case = Case(conversation_id=m.conversation_id, customer_id=customer.id, author_id=m.author_id,
                    opened_by_mention_id=m.id, category="security", status="verified", assigned_to=alice.id)
        s.add(case)
        await s.flush()
        s.add_all([
            CaseMessage(case_id=case.id, sender="customer", mention_id=m.id, body="someone hacked my account"),
            CaseMessage(case_id=case.id, sender="system", body=f"Continue here in private: {LINK}"),
            CaseMessage(case_id=case.id, sender="customer", body="my code is 482 913, mail me at maria@example.com"),
            CaseMessage(case_id=case.id, sender="agent", user_id=alice.id, body="Thanks, I have locked the account."),
        ])
        await s.commit()
        return case, m.id


async def test_a_bot_reads_a_case_redacted_and_the_read_is_audited(app_client, runtime):
    case, mention_id = await a_case(runtime)
    token = await bot_token(runtime, "alice", ["cases:read"])
    r = await app_client.get(f"/api/v1/cases/{case.id}", headers={"Authorization": f"Bearer {token}"})
    body = await r.json()
    assert r.status == 200
    assert (body["id"], body["status"], body["category"], body["assigned_to"]) == (case.id, "verified", "security",
                                                                                  "alice")
    assert body["conversation_id"] == case.conversation_id and body["mention_ids"] == [mention_id]
    assert body["created_at"] and body["resolved_at"] is None
    assert [m["sender"] for m in body["messages"]] == ["customer", "system", "customer", "agent"]
    # Timestamps are left out: their microseconds can hold any digits, the code's among them.
    text = str({**body, "created_at": None, "messages": [{**m, "at": None} for m in body["messages"]]})
    for secret in ("/secure/", "GzycuqYjFZ", "482", "913", "maria@example.com", "Maria", "Lopez", "555 0134"):
        assert secret not in text, secret
    assert body["messages"][3]["body"] == "Thanks, I have locked the account."
    assert "customer_id" not in body and "customer" not in body
    async with runtime.db.session() as s:
        [event] = (await s.scalars(select(AuditEvent).where(AuditEvent.action == "case.viewed"))).all()
    assert (event.actor, event.object_id, event.details["via"]) == ("token:alice", str(case.id), "token")


async def test_an_unknown_case_is_a_json_404_and_other_roles_are_refused(app_client, runtime):
    case, _ = await a_case(runtime)
    token = await bot_token(runtime, "alice", ["cases:read"])
    r = await app_client.get("/api/v1/cases/999999", headers={"Authorization": f"Bearer {token}"})
    assert r.status == 404 and (await r.json())["error"]["status"] == 404
    mod = await bot_token(runtime, "mod", ["*"])
    r = await app_client.get(f"/api/v1/cases/{case.id}", headers={"Authorization": f"Bearer {mod}"})
    assert r.status == 403
