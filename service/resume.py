"""Work the database says is unfinished, handed to the stages again when an embedded process starts.

With the in-process bus the queues between the stages live in this process's memory. A stop that
does not drain them (a drain past ``shutdown_drain_seconds``, a crash, ``kill -9``) loses their
messages, but not the work: every stage after ingest starts from what the previous one stored. So
`socialcare run` starts by asking the database what was left half-done and publishing it again
(:func:`resume`): a post stored and never triaged goes to triage, one triaged and never routed to
route, a decision never acted on to act. The stages are idempotent, so a message that was in fact
still on its way does nothing twice. With Redis Streams the messages outlive the process and are
redelivered: nothing to do there (:meth:`service.runtime.Runtime.start`).

What no stage will ever finish is left out: posts deleted on their platform (never triaged) and
erased posts (never routed). The in-process bus keeps its dead letters in memory too, so a message
dead-lettered by the last process is gone with it: its post is handed to its stage again like the
rest (a poison message is dead-lettered again after its attempts, where an admin sees it).
What ingest had not stored is not in the database; the shutdown drains
the ingest queue first for that reason (:meth:`service.runtime.Runtime.close`).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from sqlalchemy import and_, exists, select

from models import Mention, RouteDecision, TriageResult
from models.mentions import ERASED_TEXT

log = logging.getLogger("socialcare.pipeline")
PAGE = 1000  # ids published per bus call

_M, _T, _D = Mention.__table__.c, TriageResult.__table__.c, RouteDecision.__table__.c
_LIVE = and_(_M.deleted.is_(False), _M.text != ERASED_TEXT)
UNTRIAGED = select(_M.id).where(_LIVE, ~exists().where(_T.mention_id == _M.id)).order_by(_M.id)
UNROUTED = (select(_M.id).select_from(Mention.__table__.join(TriageResult.__table__, _T.mention_id == _M.id))
            .where(_LIVE, ~exists().where(_D.mention_id == _M.id)).order_by(_M.id))
UNACTED = select(_D.mention_id, _D.outcome).where(_D.acted_at.is_(None)).order_by(_D.mention_id)


async def unfinished(db: Any) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """The messages each stage would have had: ``{topic: [(key, payload), ...]}`` (the keys the stages
    themselves give, so a copy still on its way is the same message)."""
    t0 = time.time()  # end-to-end latency counts from now: the first ingest time is not kept
    async with db.session() as session:
        triage = list(await session.scalars(UNTRIAGED))
        route = list(await session.scalars(UNROUTED))
        act = (await session.execute(UNACTED)).all()
    return {
        "triage": [(f"m:{i}", {"mention_id": i, "t0": t0}) for i in triage],
        "route": [(f"m:{i}", {"mention_id": i, "t0": t0}) for i in route],
        "act": [(f"m:{i}", {"mention_id": i, "outcome": outcome, "t0": t0}) for i, outcome in act],
    }


async def resume(db: Any, bus: Any) -> dict[str, int]:
    """Publish the unfinished work (:func:`unfinished`) to its stages; returns the count per stage."""
    counts = {}
    for topic, items in (await unfinished(db)).items():
        for start in range(0, len(items), PAGE):
            await bus.publish_many(topic, items[start:start + PAGE])
        counts[topic] = len(items)
    if any(counts.values()):
        log.warning("resuming work a previous process left unfinished: %s (posts stored but not triaged, "
                    "triaged but not routed, routed but not acted on)", counts)
    return counts
