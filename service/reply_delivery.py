"""One reply's delivery, at most once: the checks made as it is taken up, its claim, the platform
call and the recording of what the platform said (mixed into :class:`service.dispatch.Dispatcher`,
which decides what is delivered when).

A reply is taken up from the status its deliverer expects (``pending``, or ``queued`` for the
pacer). Before anything goes out it is cancelled if its post was erased (:mod:`service.privacy_actions`)
or, when public, deleted on its platform (:func:`cancel_public_to_deleted`); recorded ``dry_run``
in dry run or without a connector; held back while a hide of its post is unsettled
(:func:`service.stranded.hold_back`); superseded if it is a status reply of an incident fixed
since; and a public notice of a case waits for the case's secure-link DM (reworded into a request
for a DM if none went out). Then it is claimed — ``sending``, timed, its ``send_attempt`` raised:
one conditional statement, committed, so that two deliverers never both send it — and the text
sent is the one read as it was claimed.

The outcome is written for the claimed attempt only (:func:`service.stranded.record_reply_outcome`):
a sender taken for dead (swept ``unknown``) whose call answers after a person had the reply sent
again cannot overwrite the newer attempt's claim or post; its late "posted" is audited with both
attempts' platform ids instead (the reply may be out twice), or, while the newer attempt has not
posted (not claimed yet, held back, refused, unknown), recorded as the reply's: a reply found ``sent``
is never claimed, so it does not go out a second time. A reply found ``sending`` is another
deliverer's, or a dead one's once its claim is older than the stranded bound (then ``unknown``, for a
person).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from community.broadcast import FIXED_FIRST, FIXED_SINCE
from escalation.public_guard import gone_refusal
from listener.protocol import Action
from models import Author, Mention, Reply
from service.privacy import CANCELLED, erased
from service.privacy_actions import cancel_replies, cancel_where
from service.stranded import hold_back, interrupt_replies, record_reply_outcome

log = logging.getLogger("socialcare.dispatch")
DM_WENT_OUT = ("pending", "sending", "sent", "dry_run", "unknown")
_R = Reply.__table__.c
# status replies whose incident was fixed since: the fix says more (as closing it does to those waiting)
SUPERSEDE_FIXED = update(Reply.__table__).where(FIXED_SINCE).values(status="superseded", error=FIXED_FIRST)


class ReplyDelivery:
    """Delivering one reply (:meth:`_deliver_one`), for the :class:`~service.dispatch.Dispatcher`."""

    db: Any
    connectors: dict[str, Any]
    dry_run: bool
    stranded_after: timedelta
    clock: Callable[[], datetime]

    async def _dm_before_notice(self, reply: Reply) -> None:
        """The case's secure-link DM first; without one that went out, the notice asks for a DM."""
        from escalation.handoff import DM_REQUEST_TEMPLATE, public_notice_text

        async with self.db.session() as session:
            dms = list(await session.scalars(select(Reply.id).where(
                Reply.case_id == reply.case_id, Reply.kind == "secure_link_dm", Reply.status == "pending")))
        for dm_id in dms:
            await self._deliver_one(dm_id)
        async with self.db.session() as session:
            went_out = await session.scalar(select(Reply.id).where(
                Reply.case_id == reply.case_id, Reply.kind == "secure_link_dm", Reply.status.in_(DM_WENT_OUT)))
            notice = await session.get(Reply, reply.id)
            mention = await session.get(Mention, notice.mention_id) if notice.mention_id else None
            if went_out is None and notice.status == "pending" and notice.template != DM_REQUEST_TEMPLATE \
                    and mention is not None:
                notice.text, notice.template = await public_notice_text(session, mention, dm_possible=False)
                log.info("reply %s: no secure-link DM went out; the public notice asks for a DM", notice.id)
                await session.commit()

    async def _deliver_one(self, reply_id: int, expect: str = "pending") -> int:
        """Deliver this reply if it is still ``expect`` (module doc); returns 1 if a platform call was
        made (the pace counts it), else 0."""
        async with self.db.session() as session:
            reply = await session.get(Reply, reply_id)
        if reply is not None and reply.status == expect and reply.kind == "secure_link" and reply.case_id \
                and reply.visibility == "public":
            await self._dm_before_notice(reply)
        async with self.db.session() as session:
            reply = await session.get(Reply, reply_id)
            if reply is None or reply.status not in (expect, "sending"):
                return 0
            if reply.status == "sending":  # another process is sending it, or died doing so
                cutoff = self.clock() - self.stranded_after
                if expect == "pending" and reply.claimed_at is not None and reply.claimed_at < cutoff:
                    await interrupt_replies(session, [reply], cutoff)  # for a person to check
                    await session.commit()
                return 0
            # the post locked (PostgreSQL) before the reply: an erasure under way finishes first, or waits
            mention = await session.get(Mention, reply.mention_id, with_for_update={"read": True}) \
                if reply.mention_id else None
            if mention is not None and erased(mention):
                await cancel_replies(session, [reply.id], statuses=(expect,))
                await session.commit()
                return 0
            if mention is not None and mention.deleted and await cancel_public_to_deleted(
                    session, [reply.id], statuses=(expect,)):
                await session.commit()
                return 0
            connector = self.connectors.get(reply.platform)
            if self.dry_run or connector is None:
                reply.status = "dry_run"
                reply.error = None if self.dry_run else f"no connector for {reply.platform}"
                await session.commit()
                return 0
            if await hold_back(session, reply):
                return 0
            if reply.kind == "status" and (await session.execute(  # its incident fixed since it was picked
                    SUPERSEDE_FIXED.where(_R.id == reply.id, _R.status == expect))).rowcount:
                await session.commit()
                log.info("reply %s: its incident was fixed since; superseded", reply.id)
                return 0
            author = await session.get(Author, mention.author_id) if mention and mention.author_id else None
            claimed = await session.execute(update(Reply).where(Reply.id == reply.id, Reply.status == expect)
                                            .values(status="sending", claimed_at=self.clock(),
                                                    send_attempt=Reply.send_attempt + 1)
                                            .execution_options(synchronize_session=False))
            if claimed.rowcount != 1:
                await session.rollback()
                return 0  # another process took it
            await session.refresh(reply)  # the text as claimed (a waiting status reply may have been updated)
            attempt = reply.send_attempt  # this send's: only its own outcome is recorded
            await session.commit()
            action = Action(
                kind="public_reply" if reply.visibility == "public" else "private_message",
                platform=reply.platform, target_external_id=mention.external_id if mention else None,
                text=reply.text, recipient_id=author.platform_user_id if author else None,
                recipient_handle=author.handle if author else None,
            )
            await self._call_and_record(session, reply, attempt, connector, action)
            return 1

    async def _call_and_record(self, session: AsyncSession, reply: Reply, attempt: int, connector: Any,
                               action: Action) -> None:
        """The platform call of a claimed reply, and its outcome written for ``attempt`` (committed)."""
        try:
            result = await connector.perform(action)
        except Exception as exc:  # noqa: BLE001 - a platform error must not kill the stage
            result = None
            error = f"{type(exc).__name__}: {exc}"
        status = "sent" if result and result.ok else "unknown" if result and result.uncertain else "failed"
        error = None if result and result.ok else (result.error if result else error)
        if status == "unknown":  # it may be on the platform: an agent looks before sending it again
            error = f"no answer in time, it may have been posted; check the platform ({error})"
        recorded = await record_reply_outcome(session, reply, {
            "status": status, "error": error, "external_ids": list(result.external_ids) if result else [],
            "sent_at": self.clock()}, attempt=attempt)
        await session.commit()
        if recorded:
            log.info("reply %s %s on %s", reply.id, status, reply.platform)


async def cancel_public_to_deleted(session: AsyncSession, reply_ids: list[int], *,
                                   statuses: tuple[str, ...] = ("pending",)) -> list[int]:
    """Cancel those of these public replies, still in ``statuses``, whose post was deleted on its
    platform since they were queued: the platform would refuse them, so nothing is sent and the
    reason (:func:`escalation.public_guard.gone_refusal`) is kept as the reply's error."""
    return await cancel_where(session, reply_ids, statuses, (Reply.visibility == "public", Mention.deleted.is_(True)),
                              lambda r: {"status": CANCELLED, "error": gone_refusal(r).reason}, "reply.cancelled",
                              "deleted", "public, and their post was deleted on its platform")
