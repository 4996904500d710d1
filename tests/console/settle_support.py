"""What the tests of settling ``unknown`` sends share (tests/console/test_settle_replies.py,
test_settle_actions.py): their ``rt`` and ``client`` fixtures, a console on SQLite or PostgreSQL whose
sends reach fake platforms that record each call; rows left ``unknown`` as the sweep leaves them, and
a late platform answer slipped in just before a settling's own statement."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select, update

from console.app import create_app
from console.auth import create_user
from listener.protocol import ActionResult
from models import AuditEvent, Mention, ModerationAction, Reply
from models.base import utcnow
from service.runtime import Runtime
from service.settings import load_settings
from service.stranded import INTERRUPTED, record_reply_outcome
from tests.community.conftest import RecordingConnector
from tests.console.conftest import PASSWORDS, ROLES, NoTriage

X_REPLY = "https://x.com/brand/status/1790000000000000001"
SETTLED = ("reply.settled", "reply.sent_again", "moderation.action_settled", "moderation.action_retried")


@pytest.fixture
async def rt(tmp_path, any_database_url):
    """A console runtime whose sends reach fake platforms (X, Reddit; no dry run): SQLite, then PostgreSQL."""
    settings = load_settings(database_url=any_database_url, bus="inprocess", var_dir=tmp_path / "var",
                             demo=False, dry_run=False, bus_block_ms=50, cookie_secure=False)
    runtime = await Runtime.open(settings, stages=[], with_connectors=False, triager=NoTriage())
    runtime.connectors = [RecordingConnector("x"), RecordingConnector("reddit")]
    async with runtime.db.session() as s:
        for name, role in ROLES.items():
            await create_user(s, name, PASSWORDS[name], role)
        await s.commit()
    try:
        yield runtime
    finally:
        await runtime.close()


@pytest.fixture
async def client(rt):
    """The app on a test server; outgoing webhooks left to the test."""
    from console.webhooks_out import SENDER

    async with TestClient(TestServer(create_app(rt))) as c:
        await c.server.app[SENDER].stop()
        yield c


def platform(rt, name: str) -> RecordingConnector:
    return next(c for c in rt.connectors if c.platform == name)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def unknown_reply(rt, m: Mention, text: str = "Hi, we refunded the double charge today.", *,
                        kind: str = "agent", sent_by: str = "session:bob", visibility: str = "public") -> int:
    """A reply the sweep marked ``unknown``: its sender was killed during the platform call."""
    async with rt.db.session() as s:
        r = Reply(dedup_key=f"t:{uuid.uuid4().hex}", mention_id=m.id, conversation_id=m.conversation_id,
                  platform=m.platform, visibility=visibility, kind=kind, text=text, status="unknown",
                  error=INTERRUPTED, sent_by=sent_by, claimed_at=utcnow() - timedelta(minutes=15))
        s.add(r)
        await s.commit()
        return r.id


async def unknown_action(rt, m: Mention, action: str = "filter", *, rule: str = "likely-spam",
                         actor: str = "bot") -> int:
    """A moderation action left ``unknown`` at its third interruption (or its first, for the API's)."""
    times = 1 if rule == "api" else 3
    async with rt.db.session() as s:
        a = ModerationAction(dedup_key=f"t:{uuid.uuid4().hex}", mention_id=m.id, action=action, rule=rule,
                             reason="spam", actor=actor, status="unknown", claimed_at=utcnow() - timedelta(minutes=15),
                             details={"interrupted": times, "error": INTERRUPTED})
        s.add(a)
        await s.commit()
        return a.id


async def get(rt, model, row_id: int):
    async with rt.db.session() as s:
        return await s.get(model, row_id)


async def audited(rt, action: str) -> list[AuditEvent]:
    async with rt.db.session() as s:
        return list(await s.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)))


async def settle(client, csrf: str, m: Mention, reply_id: int, outcome: str, **form: str):
    return await client.post(f"/conversations/{m.conversation_id}/replies/{reply_id}/settle", allow_redirects=False,
                             data={"csrf_token": csrf, "outcome": outcome, **form})



def answer_first(rt, monkeypatch, *, status: str) -> None:
    """The platform's late answer (``status``) is committed just before the settling's conditional
    UPDATE runs, after everything it read: that statement alone must decide."""
    from console import settle as settling

    real = settling._take

    async def late(session, model, row_id, **values):
        async with rt.db.session() as other:
            if model is Reply:
                assert await record_reply_outcome(other, await other.get(Reply, row_id), {
                    "status": status, "error": None, "external_ids": ["late"], "sent_at": utcnow()})
            else:  # community.moderation.execute's late answer
                await other.execute(update(ModerationAction).where(ModerationAction.id == row_id)
                                    .values(status=status))
            await other.commit()
        return await real(session, model, row_id, **values)

    monkeypatch.setattr(settling, "_take", late)


class Gated:
    """X whose n-th call waits until ``release(n)``, then answers ``answers[n]``: a sender taken for dead
    whose call answers late (tests/service/test_*_stale_attempts.py)."""

    def __init__(self, *answers: ActionResult) -> None:
        self.name, self.platform, self.answers, self.calls = "gated-x", "x", answers, []
        self.started = [asyncio.Event() for _ in answers]
        self.gates = [asyncio.Event() for _ in answers]

    def release(self, n: int) -> None:
        self.gates[n].set()

    async def perform(self, action):  # noqa: ANN001, ANN201
        n = len(self.calls)
        self.calls.append(action)
        self.started[n].set()
        await self.gates[n].wait()
        return self.answers[n]
