"""Delivery of outbound replies and actions through the connectors, at most once.

A reply is committed as ``pending`` before anything is sent, flipped to ``sending`` (committed)
just before the platform call, then to ``sent``/``failed``. A reply found in ``sending`` after a
crash is marked ``unknown`` for an agent to check, never sent twice. In dry-run mode, or when no
connector serves the platform, the reply is recorded as ``dry_run`` (what would have been sent).
"""

from __future__ import annotations

import logging

from sqlalchemy import select, update

from listener.protocol import Action
from models import Author, Mention, Reply
from models.base import utcnow

log = logging.getLogger("socialcare.dispatch")


class Dispatcher:
    def __init__(self, db, connectors: dict, dry_run: bool) -> None:  # noqa: ANN001
        self.db = db
        self.connectors = connectors
        self.dry_run = dry_run

    async def deliver(self, reply_ids: list[int]) -> None:
        if not reply_ids:
            return
        if self.dry_run:  # what would have been sent is recorded in one statement
            async with self.db.session() as session:
                await session.execute(update(Reply).where(Reply.id.in_(reply_ids), Reply.status == "pending")
                                      .values(status="dry_run"))
                await session.commit()
            return
        for reply_id in reply_ids:
            await self._deliver_one(reply_id)

    async def _deliver_one(self, reply_id: int) -> None:
        async with self.db.session() as session:
            reply = await session.get(Reply, reply_id)
            if reply is None or reply.status not in ("pending", "sending"):
                return
            if reply.status == "sending":
                reply.status, reply.error = "unknown", "interrupted while sending; check the platform"
                await session.commit()
                return
            connector = self.connectors.get(reply.platform)
            if self.dry_run or connector is None:
                reply.status = "dry_run"
                reply.error = None if self.dry_run else f"no connector for {reply.platform}"
                await session.commit()
                return
            mention = await session.get(Mention, reply.mention_id) if reply.mention_id else None
            author = await session.get(Author, mention.author_id) if mention and mention.author_id else None
            reply.status = "sending"
            await session.commit()
            action = Action(
                kind="public_reply" if reply.visibility == "public" else "private_message",
                platform=reply.platform, target_external_id=mention.external_id if mention else None,
                text=reply.text, recipient_id=author.platform_user_id if author else None,
                recipient_handle=author.handle if author else None,
            )
            try:
                result = await connector.perform(action)
            except Exception as exc:  # noqa: BLE001 - a platform error must not kill the stage
                result = None
                error = f"{type(exc).__name__}: {exc}"
            reply.status = "sent" if result and result.ok else "failed"
            reply.error = None if result and result.ok else (result.error if result else error)
            reply.external_ids = list(result.external_ids) if result else []
            reply.sent_at = utcnow()
            await session.commit()
            log.info("reply %s %s on %s", reply.id, reply.status, reply.platform)


async def pending_replies(session, mention_ids: list[int]) -> list[int]:  # noqa: ANN001
    rows = await session.scalars(
        select(Reply.id).where(Reply.mention_id.in_(mention_ids), Reply.status.in_(("pending", "sending")))
    )
    return list(rows)
