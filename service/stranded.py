"""Sends stranded in ``sending``, what a dead process left before any claim, and public replies held
back while their post's hide is unsettled (used by one reply's delivery, :mod:`service.reply_delivery`,
and the pacer's pass, :mod:`service.pacer`).

Every claim of a reply or a moderation action is timed (``claimed_at``, migration 0012). A claim
older than ``stranded_send_minutes`` whose sender never recorded the outcome (its process killed
mid platform call) is swept by :func:`sweep_stranded`, audited with ids only:

* a reply becomes ``unknown`` (``error`` :data:`INTERRUPTED`), for a person to check on the
  platform: it may have been posted, and a message is never sent twice blindly;
* a moderation action is put back to ``queued`` and performed again by the pacer's pass: hiding,
  removing, filtering, approving, unhiding, locking and banning set a state the platform keeps, so
  doing one twice is doing it once. Its ``details["interrupted"]`` counts its interruptions; the
  :data:`MAX_INTERRUPTIONS`-th leaves it ``unknown`` (``details["error"]`` :data:`INTERRUPTED`),
  for a person. An action of the bot API (rule ``api``) is ``unknown`` at once: the API asks the
  platform for its own kinds and records their effect on the post only as the call answers.

A row ``sending`` without ``claimed_at`` was claimed by a process of the version before 0012 (a
rolling upgrade; the migration stamped the rows ``sending`` then): the sweep stamps it as first
seen and sweeps it one bound later, never while its call may be under way. The sweep writes status,
error and claim time with conditional statements; the ``details`` of a moderation action are read
only once the sweep's own update has locked the row, so an erasure committed meanwhile is never
undone. A sender that outlives the bound still records what the platform said over ``unknown``
(:func:`record_reply_outcome`, audited ``reply.late_result``), never over another status, and only
while the reply is at the attempt it claimed (``send_attempt``, migration 0016, raised by each claim
and by a person's "send it again"): the late answer of an attempt a newer one followed never
overwrites that attempt's claim or post, and a late "posted" is audited with both attempts' platform
ids instead (``reply.stale_posted`` while the newer attempt is ``sending``, ``reply.posted_twice`` once
it is ``sent`` too): the reply may be on its platform twice, and both copies' ids are then the reply's
(:mod:`service.duplicates`: taking it back deletes both; the care team deletes one). While the newer attempt has not posted
(still ``pending``, ``queued`` or held back, ``failed``, ``unknown``) the late "posted" is the reply's:
``sent`` with its ids (audited ``reply.late_result`` with both attempts), so the newer attempt is never
claimed and the reply never reads ``failed`` while it is out.

The pacer's pass also takes up what a process that died before any claim left behind, older than
the bound: replies ``pending`` (:data:`ORPHANED_REPLIES`; not those held back already) and moderation
actions ``queued`` (:data:`TO_PERFORM`, with those put back by the sweep; not the API's) — an
in-process bus's batch lost with its process, an act message dead-lettered after its stops, a
console request or CLI command killed between committing an incident's status and delivering it.
Every creator of a ``pending`` reply delivers it at once (the act stage, the console, the API, the
CLI), so none of them waits that long on purpose. An incident's replies (:data:`PACED_KINDS`) are
delivered paced: :func:`queue_orphans` puts them in their channel's queue (where their deliverer
would have put them), and the queue is released as ever (:meth:`service.dispatch.Dispatcher.release_queued`,
which supersedes a status reply whose incident was fixed meanwhile).

A public reply waits while a hide or removal of its post is ``sending`` or ``unknown`` and no later
hide, removal or filter of the post is ``done``, ``recorded`` or ``dry_run`` (:func:`hold_back`):
it keeps its status, its ``error`` beginning :data:`HELD`, and goes with the pacer's next pass once
settled (:data:`HELD_READY`), or is cancelled if the post is deleted on its platform or erased
meanwhile. A ``failed`` hide holds nothing: X cannot hide a top-level tweet, and the reply goes as
it would have without a hide (a product decision).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, exists, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from community import moderation
from models import AuditEvent, Mention, ModerationAction, Reply
from service.audit import record
from service.duplicates import record_twice

log = logging.getLogger("socialcare.dispatch")
DEFAULT_STRANDED_AFTER = timedelta(minutes=10)  # Settings.stranded_send_minutes
SWEEP_LIMIT = 500  # rows taken per table and pass
MAX_INTERRUPTIONS = 3  # a moderation action interrupted this many times is left unknown, for a person
INTERRUPTED = "interrupted while sending; check the platform"
HELD = "held back: "  # how the error of a public reply waiting for its post's hide begins
PACED_KINDS = ("status", "status_fixed")  # incident replies to everyone affected
# platform actions that set a state: performed again after an interruption (a ban blocks on X)
PERFORMED_AGAIN = ("hide", "remove", "filter", "approve", "unhide", "lock", "ban")
API_RULE = "api"  # console.api.mentions: its own kinds, its effects recorded in the request
SETTLES = (*moderation.REMOVAL_ACTIONS, "filter")  # a later one of these, settled, settles a hide
SETTLED = ("done", "recorded", "dry_run")
# a newer attempt that never posted (not claimed yet, held back, refused) or that nobody knows about:
# an older attempt's late "posted" is the reply's then (record_reply_outcome)
LATE_POST_OVER = ("pending", "queued", "failed", "unknown")
_R, _A, _M = Reply.__table__.c, ModerationAction.__table__.c, Mention.__table__.c
_L = ModerationAction.__table__.alias("later")
# a hide or removal of the post that may not have happened, and no later one settled it: its public replies wait
_UNSETTLED = (_A.action.in_(moderation.REMOVAL_ACTIONS), _A.status.in_(moderation.UNSETTLED),
              ~exists().where(_L.c.mention_id == _A.mention_id, _L.c.action.in_(SETTLES),
                              _L.c.status.in_(SETTLED), _L.c.id > _A.id))
UNSETTLED_HIDE = (select(_A.id, _A.status).where(_A.mention_id == bindparam("mention_id"), *_UNSETTLED)
                  .order_by(_A.id).limit(1))
NOT_HELD = or_(_R.visibility != "public", _R.mention_id.is_(None),
               ~exists().where(_A.mention_id == _R.mention_id, *_UNSETTLED))
_HELD_BACK = _R.error.startswith(HELD, autoescape=True)
_GONE = _R.mention_id.in_(select(_M.id).where(_M.deleted.is_(True)))  # deleted on its platform (erased too)
# held replies whose post's hide is settled now, or whose post is gone (cancelled as they are taken up)
HELD_READY = (select(_R.id).where(_R.status == "pending", _HELD_BACK, or_(NOT_HELD, _GONE))
              .order_by(_R.id).limit(SWEEP_LIMIT))
# queued public replies to a post gone meanwhile: cancelled without waiting for a slot of the pace
GONE_QUEUED = (select(_R.id).where(_R.status == "queued", _R.visibility == "public", _GONE)
               .order_by(_R.id).limit(SWEEP_LIMIT))
_CUTOFF = bindparam("cutoff")
# never taken up (held-back ones are HELD_READY's; one whose hide is unsettled is held back as it is taken up)
_ORPHANED = (_R.status == "pending", _R.claimed_at.is_(None), _R.created_at < _CUTOFF,
             or_(_R.error.is_(None), ~_HELD_BACK))
ORPHANED_REPLIES = select(_R.id).where(*_ORPHANED, _R.kind.not_in(PACED_KINDS)).order_by(_R.id).limit(SWEEP_LIMIT)
ORPHANED_PACED = select(_R.id).where(*_ORPHANED, _R.kind.in_(PACED_KINDS)).order_by(_R.id).limit(SWEEP_LIMIT)
TO_PERFORM = (select(_A.id).where(_A.status == "queued", or_(_A.rule.is_(None), _A.rule != API_RULE),
                                  or_(_A.claimed_at.is_not(None), _A.created_at < _CUTOFF))
              .order_by(_A.id).limit(SWEEP_LIMIT))  # put back by the sweep, or left unclaimed


def _stale(model: Any, cutoff: datetime) -> tuple[Any, ...]:
    return model.status == "sending", model.claimed_at.is_not(None), model.claimed_at < cutoff


async def sweep_stranded(db: Any, now: datetime, older_than: timedelta) -> dict[str, list[int]]:
    """Replies and moderation actions claimed (``sending``) before ``now - older_than`` whose sender
    never recorded the outcome: see the module doc. Returns the ids marked ``unknown`` (``replies``,
    ``actions``) and the actions put back to ``queued`` (``requeued``)."""
    cutoff = now - older_than
    await _stamp_untimed(db, now)
    out: dict[str, list[int]] = {"replies": [], "actions": [], "requeued": []}
    async with db.session() as session:
        rows = (await session.execute(select(Reply.id, Reply.mention_id, Reply.kind).where(*_stale(Reply, cutoff))
                                      .order_by(Reply.id).limit(SWEEP_LIMIT))).all()
        out["replies"] = await interrupt_replies(session, rows, cutoff)
        await session.commit()
    async with db.session() as session:
        action_ids = list(await session.scalars(select(ModerationAction.id).where(*_stale(ModerationAction, cutoff))
                                                .order_by(ModerationAction.id).limit(SWEEP_LIMIT)))
    for action_id in action_ids:
        requeued = await _sweep_action(db, action_id, cutoff)
        if requeued is not None:
            out["requeued" if requeued else "actions"].append(action_id)
    if out["replies"] or out["actions"]:
        log.warning("interrupted mid-send, now unknown (check the platform): replies %s, moderation actions %s",
                    out["replies"], out["actions"])
    if out["requeued"]:
        log.warning("moderation actions %s interrupted mid-call: queued to be performed again", out["requeued"])
    return out


async def _stamp_untimed(db: Any, now: datetime) -> None:
    """Claims without a time (a process of the version before 0012) count from now."""
    async with db.session() as session:
        stamped = False
        for model in (Reply, ModerationAction):
            untimed = (model.status == "sending", model.claimed_at.is_(None))
            ids = list(await session.scalars(select(model.id).where(*untimed).order_by(model.id).limit(SWEEP_LIMIT)))
            if ids:
                await session.execute(update(model).where(model.id.in_(ids), *untimed).values(claimed_at=now)
                                      .execution_options(synchronize_session=False))
                log.info("%s %s sending without a claim time (an older version's claim): timed from now",
                         model.__tablename__, ids)
                stamped = True
        if stamped:
            await session.commit()


async def interrupt_replies(session: AsyncSession, rows: Any, cutoff: datetime) -> list[int]:
    """Mark ``unknown`` those of these replies (each with ``id``, ``mention_id``, ``kind``) still
    ``sending`` under a claim older than ``cutoff``: one conditional statement each (status and error
    only), audited ``reply.send_interrupted``. Returns their ids; the caller commits."""
    marked = []
    for row in rows:
        done = await session.execute(update(Reply).where(Reply.id == row.id, *_stale(Reply, cutoff))
                                     .values(status="unknown", error=INTERRUPTED)
                                     .execution_options(synchronize_session=False))
        if done.rowcount == 1:  # else its sender recorded it meanwhile
            marked.append(row.id)
            record(session, "system", "reply.send_interrupted", "reply", row.id, mention_id=row.mention_id,
                   kind=row.kind)
    return marked


async def _sweep_action(db: Any, action_id: int, cutoff: datetime) -> bool | None:
    """One stranded moderation action, in its own transaction: put back to ``queued`` (True) or left
    ``unknown`` for a person (False); None when its executor recorded it meanwhile."""
    async with db.session() as session:
        # the conditional update first: it locks the row (PostgreSQL) or the database (SQLite) ...
        taken = await session.execute(update(ModerationAction).where(
            ModerationAction.id == action_id, *_stale(ModerationAction, cutoff)).values(status="unknown")
            .execution_options(synchronize_session=False))
        if taken.rowcount != 1:
            await session.rollback()
            return None
        # ... then its details are read: as an erasure committed before left them, and none can meanwhile
        row = await session.get(ModerationAction, action_id, populate_existing=True)
        details = dict(row.details or {})
        try:
            times = int(details.get("interrupted") or 0) + 1
        except (TypeError, ValueError):
            times = MAX_INTERRUPTIONS
        again = times < MAX_INTERRUPTIONS and row.action in PERFORMED_AGAIN and row.rule != API_RULE
        row.details = {**details, "interrupted": times, **({} if again else {"error": INTERRUPTED})}
        row.status = "queued" if again else "unknown"
        record(session, "system", "moderation.action_requeued" if again else "moderation.action_interrupted",
               "moderation_action", row.id, mention_id=row.mention_id, kind=row.action, interrupted=times)
        await session.commit()
        return again


async def queue_orphans(db: Any, cutoff: datetime) -> list[int]:
    """Queue an incident's replies left ``pending`` unclaimed since before ``cutoff`` for their
    channel's pace; returns their ids. Conditional (still ``pending``): one a late deliverer took
    meanwhile is left to it, nothing goes twice."""
    async with db.session() as session:
        ids = list(await session.scalars(ORPHANED_PACED, {"cutoff": cutoff}))
        if not ids:
            return []
        queued = sorted(await session.scalars(update(Reply.__table__).where(_R.id.in_(ids), _R.status == "pending")
                                              .values(status="queued").returning(_R.id)))
        await session.commit()
    if queued:
        log.warning("incident replies %s pending unclaimed since before %s: queued", queued, cutoff)
    return queued


async def hold_back(session: AsyncSession, reply: Reply) -> bool:
    """Is this public reply held back because a hide or removal of its post may not have happened?
    Its ``error`` then says so and how to settle it (its status stays; committed): the pacer's pass
    sends it once settled."""
    if reply.visibility != "public" or reply.mention_id is None:
        return False
    hide = (await session.execute(UNSETTLED_HIDE, {"mention_id": reply.mention_id})).first()
    if hide is None:
        return False
    reply.error = (f"{HELD}hiding its post (moderation action #{hide.id}) is {hide.status}: the post may still "
                   "show. It goes once the post is hidden: check the post on its platform, hide or remove it "
                   "there if it still shows, and record that with a hide or removal of the post on the "
                   "moderation page or through the API")
    await session.commit()
    log.warning("reply %s held back: moderation action %s on its post is %s", reply.id, hide.id, hide.status)
    return True


async def record_reply_outcome(session: AsyncSession, reply: Reply, values: dict[str, Any], *,
                               attempt: int | None = None) -> bool:
    """Write a send's outcome (``values``: status, error, external ids, time) only while the row is at
    the send's ``attempt`` (its ``send_attempt`` as claimed; by default as ``reply`` was read) and only
    over ``sending``, or over ``unknown`` — the sweep took the sender for dead, the platform's answer is
    the truth then (audited ``reply.late_result``, ids only) — never over a status a person or an
    erasure set. The answer of an older attempt is never written over a newer one's claim or post
    (:func:`_stale_outcome`), but its "posted" is the reply's while the newer attempt has not posted
    (:func:`_late_post_over_newer`), and a refusal of a newer attempt after an older one's late post
    records that post (:func:`_refused_after_a_stale_post`). Returns whether an outcome was written;
    the caller commits."""
    attempt = reply.send_attempt if attempt is None else attempt
    refused_after = None
    if values["status"] == "failed" and attempt > 1:  # refused: a duplicate of an earlier attempt's late post?
        refused_after = await _stale_posts(session, reply, lambda current: current == attempt)
        if refused_after:  # the reply is out, by the older attempt
            values = {**values, "status": "sent", "error": None, "external_ids": _ids(
                i for d in refused_after for i in d.get("stale_external_ids") or [])}
    for was in ("sending", "unknown"):
        done = await session.execute(update(Reply).where(Reply.id == reply.id, Reply.status == was,
                                                         Reply.send_attempt == attempt).values(**values)
                                     .execution_options(synchronize_session=False))
        if done.rowcount == 1:
            if refused_after:
                _refused_after_a_stale_post(session, reply, attempt, refused_after, was)
            elif was == "unknown":
                record(session, "system", "reply.late_result", "reply", reply.id, mention_id=reply.mention_id,
                       kind=reply.kind, status=values["status"])
                log.warning("reply %s: a late outcome (%s) replaces unknown", reply.id, values["status"])
            if values["status"] == "sent" and attempt > 1 and not refused_after:  # was an earlier one posted too?
                await _posted_after_a_stale_post(session, reply, attempt, values)
            return True
    for _ in range(3):  # a claim or a person changed the row between this read and the statement: read again
        # locked (PostgreSQL): the newer attempt records its own answer, or is claimed, before this read or
        # after this commit
        now = (await session.execute(select(Reply.status, Reply.send_attempt, Reply.external_ids)
                                     .where(Reply.id == reply.id).with_for_update())).first()
        if now is None or now.send_attempt == attempt:
            if now is not None and values["status"] == "sent" and now.status == "sent":
                await _posted_over_a_late_post(session, reply, attempt, values, now)
            log.warning("reply %s: its outcome (%s) was not recorded: its status changed meanwhile", reply.id,
                        values["status"])
            return False
        if values["status"] != "sent" or now.status not in LATE_POST_OVER:
            await _stale_outcome(session, reply, attempt, values, now)
            return False
        if await _late_post_over_newer(session, reply, attempt, values, now):
            return True
    log.warning("reply %s: the late post of attempt %s was not recorded: its row kept changing", reply.id, attempt)
    return False


def _ids(values: Any) -> list[str]:
    return [str(i) for i in values or []]


async def _late_post_over_newer(session: AsyncSession, reply: Reply, attempt: int, values: dict[str, Any],
                                now: Any) -> bool:
    """An older attempt was posted after all while the newer one has not: not claimed yet (``pending``,
    ``queued``, held back), refused (``failed``: X refuses a duplicate) or ``unknown``. The post is the
    reply's: ``sent`` with its platform ids and time, in one conditional statement on the row as read
    (its status and attempt), so a claim racing it either came first (then this one reads again) or
    finds the reply ``sent`` and sends nothing. Audited ``reply.late_result`` with both attempts; ids a
    refused newer attempt kept (a part of a thread) are kept too, and audited ``reply.posted_twice``."""
    stale_ids, current_ids = _ids(values.get("external_ids")), _ids(now.external_ids)
    kept = [i for i in current_ids if i not in stale_ids]
    done = await session.execute(update(Reply).where(
        Reply.id == reply.id, Reply.status == now.status, Reply.send_attempt == now.send_attempt)
        .values(**{**values, "external_ids": [*stale_ids, *kept]}).execution_options(synchronize_session=False))
    if done.rowcount != 1:
        return False
    record(session, "system", "reply.late_result", "reply", reply.id, mention_id=reply.mention_id, kind=reply.kind,
           status="sent", attempt=attempt, current_attempt=now.send_attempt, replaced=now.status,
           external_ids=stale_ids)
    log.warning("reply %s: attempt %s was posted after all (platform ids %s) while attempt %s is %s: recorded "
                "sent", reply.id, attempt, stale_ids, now.send_attempt, now.status)
    if kept:
        await record_twice(session, reply, now.send_attempt, stale_ids, kept)
    return True


def _refused_after_a_stale_post(session: AsyncSession, reply: Reply, attempt: int, stale: list[dict[str, Any]],
                                was: str) -> None:
    """A newer attempt was refused (``failed``: X refuses a duplicate) after an older one's late "posted"
    came while it was under way (``stale``: those ``reply.stale_posted``): the reply is out, by the older
    attempt, and was recorded ``sent`` with its platform ids. Audited ``reply.late_result`` with both."""
    stale_ids = _ids(i for d in stale for i in d.get("stale_external_ids") or [])
    record(session, "system", "reply.late_result", "reply", reply.id, mention_id=reply.mention_id, kind=reply.kind,
           status="sent", attempt=stale[-1].get("attempt"), current_attempt=attempt, replaced="failed",
           external_ids=stale_ids)
    log.warning("reply %s: attempt %s was refused (it was %s) after an earlier attempt's late post (platform ids "
                "%s): recorded sent", reply.id, attempt, was, stale_ids)


async def _stale_posts(session: AsyncSession, reply: Reply, during: Callable[[int], bool]) -> list[dict[str, Any]]:
    """The ``reply.stale_posted`` audits of this reply (older attempts' late posts) made while an
    attempt ``during`` accepts (its number) was under way."""
    earlier = list(await session.scalars(select(AuditEvent.details).where(
        AuditEvent.action == "reply.stale_posted", AuditEvent.object_type == "reply",
        AuditEvent.object_id == str(reply.id)).order_by(AuditEvent.id)))
    return [d for d in earlier if during(int(d.get("current_attempt") or 0))]


async def _stale_outcome(session: AsyncSession, reply: Reply, attempt: int, values: dict[str, Any], now: Any) -> None:
    """The answer of an attempt a newer one followed (a person had it sent again once it was ``unknown``)
    that is under way (``sending``) or posted (``sent``), or that ended otherwise (cancelled, dry run):
    the row is the newer attempt's and keeps its status and ids. A "not posted" changes nothing. A
    "posted" means the reply may be on the platform twice: audited with both attempts' platform ids
    (``reply.posted_twice`` if the newer attempt is ``sent`` already, else ``reply.stale_posted``,
    and its own recording says ``posted_twice`` if it posts), so that the care team can delete one."""
    if values["status"] != "sent":
        log.info("reply %s: the answer (%s) of attempt %s is not recorded: attempt %s followed it",
                 reply.id, values["status"], attempt, now.send_attempt)
        return
    stale_ids, current_ids = list(values.get("external_ids") or []), list(now.external_ids or [])
    if set(map(str, stale_ids)) & set(map(str, current_ids)):  # the same post (an id a person pasted)
        log.info("reply %s: attempt %s was posted after all, as recorded already", reply.id, attempt)
        return
    if now.status == "sent":  # both copies are the reply's: a take-back deletes both (service.duplicates)
        await record_twice(session, reply, attempt, stale_ids, current_ids, current_attempt=now.send_attempt,
                           current_status=now.status)
        return
    record(session, "system", "reply.stale_posted", "reply", reply.id, mention_id=reply.mention_id, kind=reply.kind,
           attempt=attempt, stale_external_ids=stale_ids, current_attempt=now.send_attempt, current_status=now.status,
           external_ids=current_ids)
    log.warning("reply %s: attempt %s was posted after all (platform ids %s) though attempt %s followed it "
                "(now %s, platform ids %s): it may be on %s twice; check there", reply.id, attempt, stale_ids,
                now.send_attempt, now.status, current_ids, reply.platform)


async def _posted_after_a_stale_post(session: AsyncSession, reply: Reply, attempt: int,
                                     values: dict[str, Any]) -> None:
    """An attempt sent again just posted: if an earlier attempt's late "posted" came while this one was
    under way (``reply.stale_posted``), the reply is out twice: audited ``reply.posted_twice`` with both."""
    stale_ids = _ids(i for d in await _stale_posts(session, reply, lambda current: current <= attempt)
                     for i in d.get("stale_external_ids") or [])
    if stale_ids:
        await record_twice(session, reply, attempt, stale_ids, list(values.get("external_ids") or []))


async def _posted_over_a_late_post(session: AsyncSession, reply: Reply, attempt: int, values: dict[str, Any],
                                   now: Any) -> None:
    """This attempt posted, but an older attempt's late post was recorded as the reply's meanwhile (this
    one was ``unknown`` then: :func:`_late_post_over_newer`): the reply is out twice, audited
    ``reply.posted_twice`` with both (not for an id already recorded: a person pasted it)."""
    current_ids = _ids(values.get("external_ids"))
    if not current_ids or set(current_ids) & set(_ids(now.external_ids)):
        return
    late = list(await session.scalars(select(AuditEvent.details).where(
        AuditEvent.action == "reply.late_result", AuditEvent.object_type == "reply",
        AuditEvent.object_id == str(reply.id)).order_by(AuditEvent.id)))
    stale_ids = [str(i) for d in late if d.get("attempt") is not None and d.get("current_attempt") == attempt
                 for i in d.get("external_ids") or []]
    if stale_ids:
        await record_twice(session, reply, attempt, stale_ids, current_ids)
