"""A reply that may be on its platform twice, and its copies until one is gone.

When an attempt given up for dead posts after all besides the attempt sent again
(:mod:`service.stranded`), both copies are the reply's: :func:`record_twice` audits
``reply.posted_twice`` with both attempts' platform ids and keeps every id in the reply's
``external_ids``, so that taking the reply back (:func:`community.replybot.revert_reply`) deletes
every copy we know was posted, not only the one recorded last.

The care team then removes one copy: the service deletes it on the platform, or a person says they
deleted it there (:func:`console.settle.copy_gone`), audited ``reply.copy_deleted`` with the copy's
ids, which leave ``external_ids``. :func:`doubled` says which replies may still be out twice: those
audited ``reply.posted_twice`` whose copies are both still up (none deleted that way) and that were
not taken back (``deleted``: every id it held was deleted).
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from models import AuditEvent, Reply
from service.audit import record

log = logging.getLogger("socialcare.dispatch")
TWICE = "reply.posted_twice"
COPY_DELETED = "reply.copy_deleted"
COPIES = ("earlier", "later")  # the copy an attempt given up for dead posted, and the attempt's sent again


def ids_of(values: Any) -> list[str]:
    return [str(i) for i in values or []]


async def record_twice(session: AsyncSession, reply: Reply, attempt: int, stale_ids: list[str],
                       current_ids: list[str], **details: Any) -> None:
    """Audit ``reply.posted_twice`` (with ``details``) and add whichever of both copies' ids the reply's
    row lacks (the row is locked by the caller's statement before this one; the caller commits)."""
    stale_ids, current_ids = ids_of(stale_ids), ids_of(current_ids)
    record(session, "system", TWICE, "reply", reply.id, mention_id=reply.mention_id,
           kind=reply.kind, attempt=attempt, external_ids=current_ids, stale_external_ids=stale_ids, **details)
    held = ids_of(await session.scalar(select(Reply.external_ids).where(Reply.id == reply.id)))
    missing = [i for i in dict.fromkeys([*current_ids, *stale_ids]) if i not in held]
    if missing:
        await session.execute(update(Reply).where(Reply.id == reply.id).values(external_ids=[*held, *missing])
                              .execution_options(synchronize_session=False))
    log.warning("reply %s: attempt %s posted (platform ids %s) besides an earlier attempt's late post (platform "
                "ids %s): it is on %s twice; check there", reply.id, attempt, current_ids, stale_ids, reply.platform)


async def doubled(session: AsyncSession, statuses: dict[int, str]) -> dict[int, dict[str, list[str]]]:
    """Of these replies (id -> status), those that may still be on their platform twice, with each
    copy's platform ids (``earlier``, ``later``): one query."""
    if not statuses:
        return {}
    events = await session.execute(select(AuditEvent.object_id, AuditEvent.action, AuditEvent.details).where(
        AuditEvent.action.in_((TWICE, COPY_DELETED)), AuditEvent.object_type == "reply",
        AuditEvent.object_id.in_([str(i) for i in statuses])).order_by(AuditEvent.id))
    copies: dict[str, tuple[list[str], list[str]]] = {}
    gone: dict[str, set[str]] = {}
    for object_id, action, details in events.all():
        details = details or {}
        if action == COPY_DELETED:
            gone.setdefault(object_id, set()).update(ids_of(details.get("external_ids")))
            continue
        earlier, later = copies.setdefault(object_id, ([], []))
        earlier += [i for i in ids_of(details.get("stale_external_ids")) if i not in earlier]
        later += [i for i in ids_of(details.get("external_ids")) if i not in later]
    out = {}
    for object_id, (earlier, later) in copies.items():
        later = [i for i in later if i not in earlier]
        deleted = gone.get(object_id, set())
        if statuses[int(object_id)] == "deleted" or not earlier or not later \
                or set(earlier) <= deleted or set(later) <= deleted:
            continue  # taken back, or one copy is gone: no duplicate remains
        out[int(object_id)] = {"earlier": earlier, "later": later}
    return out


async def copy_deleted(session: AsyncSession, reply: Reply, copies: dict[str, list[str]], which: str, actor: str,
                       *, by_us: bool) -> list[str]:
    """Record that copy ``which`` of the reply is gone from its platform (``by_us``: the service deleted
    it; else a person says it is): its ids leave ``external_ids``, the other copy's stay (added if an
    older version left them out). Audited ``reply.copy_deleted``; returns the ids kept. The caller
    commits."""
    gone, other = copies[which], copies["later" if which == "earlier" else "earlier"]
    held = ids_of(await session.scalar(select(Reply.external_ids).where(Reply.id == reply.id).with_for_update()))
    kept = [i for i in dict.fromkeys([*held, *other]) if i not in gone]
    await session.execute(update(Reply).where(Reply.id == reply.id).values(external_ids=kept)
                          .execution_options(synchronize_session=False))
    record(session, actor, COPY_DELETED, "reply", reply.id, mention_id=reply.mention_id, kind=reply.kind, copy=which,
           external_ids=gone, deleted_by_us=by_us)
    return kept
