"""Which mentions sit in the dead letters, as the database knows it.

Dead letters live on the bus (the in-process bus's memory, or the Redis dead-letter stream, indexed
by post only), where a database query cannot see them, and a later stage's letter names its mention
by ``mention_id`` alone. So when a stage worker dead-letters a message that names a mention
(:meth:`service.workers.StageWorker._failed`, either bus), the mention is recorded here as an audit
event (``mention.dead_lettered``, ids and topic only): the API's polling cursor then passes a mention
not routed that sits in the dead letters at once instead of holding every bot's feed back for
:data:`console.poll_cursor.ROUTING_HOLD` (:func:`dead_lettered`).

The record is never taken back: a letter retried and routed later was passed already, and named in
``passed_unrouted`` for a bot to read by id, as the cursor promises for every mention it passes.
A letter the bus buries by itself (a delivery never acknowledged ``max_deliveries`` times: its
consumer killed each time; an undecodable entry) is not recorded: the hour's bound still passes it.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import String, cast, exists
from sqlalchemy.sql.elements import ColumnElement

from models import AuditEvent
from service.audit import record

log = logging.getLogger("socialcare.worker")
DEAD_LETTERED = "mention.dead_lettered"


def mention_of(payload: Any) -> int | None:
    """The mention a later stage's message names (ingest's name a post, not yet a mention)."""
    value = payload.get("mention_id") if isinstance(payload, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


async def note_dead_letter(db: Any, topic: str, payload: Any) -> None:
    """Record that the message of ``topic`` naming a mention was dead-lettered (committed). Never
    raises: the letter is buried already, and the hour's bound still passes its mention."""
    mention_id = mention_of(payload)
    if db is None or mention_id is None:
        return
    try:
        async with db.session() as session:
            record(session, "system", DEAD_LETTERED, "mention", mention_id, topic=topic)
            await session.commit()
    except Exception:  # noqa: BLE001 - a database that fails now must not stop the worker
        log.warning("mention %s dead-lettered on %s: not recorded in the database", mention_id, topic,
                    exc_info=True)


def dead_lettered(mention_id: Any) -> ColumnElement[bool]:
    """SQL: the mention ``mention_id`` (a column) was dead-lettered (:func:`note_dead_letter`)."""
    return exists().where(AuditEvent.action == DEAD_LETTERED, AuditEvent.object_type == "mention",
                          AuditEvent.object_id == cast(mention_id, String))
