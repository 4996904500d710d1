"""Outgoing webhook deliveries of posts deleted on their platform.

A post whose platform's terms require its content removed (:mod:`listener.deletions`) loses its
words in the deliveries of its events too, in the deletion's transaction (:func:`remove_content`):
pending ones still go out, as a scan would build them now (the marker for the text, the labels and
ids without the explanations and reasons that quote it), so a receiver still gets every event once
and the words never leave after the deletion; delivered and failed ones keep their ids, status and
times. A scan that read a post just before its deletion, or its erasure, checks again before it
commits (:func:`respect_removal`).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, select
from sqlalchemy.ext.asyncio import AsyncSession

from listener.deletions import GONE_IDS, url_without_words
from models import Mention
from models.console import WebhookDelivery
from models.mentions import DELETED_TEXT, ERASED_TEXT
from service.privacy import rewrite, stubbed

WORDED = ("mention.triaged", "mention.routed")  # the events whose body quotes a post (its text, a reason)
_M = Mention.__table__.c


def without_words(event_type: str, payload: Any) -> dict[str, Any]:
    """An event's body once its post's content was removed on its platform, as a scan builds it
    now: the marker (:data:`~models.mentions.DELETED_TEXT`) for the text and the routing reason, the
    link without words, the triage labels and scores without their explanations; ids, event id,
    type and times stay. A second pass changes nothing; an erased post's stub is left as it is."""
    body = dict(payload) if isinstance(payload, dict) else {}
    data = dict(body.get("data") or {})
    if data.get("erased"):  # service.privacy's stub: nothing of the post is left in it
        return body
    if event_type == "mention.triaged":
        if "text" in data:
            data["text"] = DELETED_TEXT
        if data.get("url"):
            data["url"] = url_without_words(str(data.get("platform")), data["url"])
        if isinstance(data.get("triage"), dict):
            data["triage"] = wordless_triage(data["triage"])
    elif event_type == "mention.routed" and "reason" in data:
        data["reason"] = DELETED_TEXT
    return {**body, "data": data}


def wordless_triage(triage: dict[str, Any]) -> dict[str, Any]:
    """A triage body without its explanations, which quote the post's words ("word 'hacked'")."""
    triage = dict(triage)
    if "priority_explanation" in triage:
        triage["priority_explanation"] = []
    if isinstance(triage.get("scores"), dict):
        triage["scores"] = {task: {**score, "explanation": []} if isinstance(score, dict) else score
                            for task, score in triage["scores"].items()}
    return triage


async def remove_content(session: AsyncSession, mention_ids: list[int]) -> int:
    """In the caller's transaction (a deletion's, :func:`listener.deletions.remove_copies`): the
    deliveries of these posts' events that quote them (:data:`WORDED`), whatever their status, lose
    the words (:func:`without_words`); a pending one goes out so. Found by the indexed ``mention_id``;
    one read and one executemany UPDATE. Returns how many changed; a second run changes nothing."""
    ids = sorted(set(mention_ids))
    if not ids:
        return 0
    return await rewrite(session, WebhookDelivery,
                         and_(WebhookDelivery.mention_id.in_(ids), WebhookDelivery.event_type.in_(WORDED)),
                         [WebhookDelivery.event_type, WebhookDelivery.payload],
                         lambda d: {"payload": without_words(d.event_type, d.payload)})


async def respect_removal(session: AsyncSession, written: list[WebhookDelivery]) -> None:
    """Before a scan commits: its deliveries about posts whose content was removed since it read
    them lose the words, and those about posts erased since (whatever the event) become the
    erasure's stub (:func:`service.privacy.stubbed`), as the erasure would have made them had they
    existed. A removal or erasure that commits later finds them (:func:`remove_content`,
    :func:`service.privacy.stub_deliveries`): on SQLite the scan writes first (its flush), and no
    other write commits before its own; on PostgreSQL it holds the posts ``FOR SHARE``, which the
    removal's ``FOR UPDATE`` (:func:`listener.deletions.lock_rows`) and the erasure's wait for, or
    waits for their commit and reads it."""
    about = [d for d in written if d.mention_id is not None]
    ids = sorted({d.mention_id for d in about})
    if not ids:
        return
    await session.flush()
    if session.bind.dialect.name == "postgresql":
        await session.execute(select(_M.id).where(_M.id.in_(ids)).order_by(_M.id).with_for_update(read=True))
    gone = {r.id: r.text for r in await session.execute(GONE_IDS, {"ids": ids})}
    for d in about:
        if gone.get(d.mention_id) == ERASED_TEXT:
            d.payload = stubbed(d.payload)
        elif gone.get(d.mention_id) == DELETED_TEXT and d.event_type in WORDED:
            d.payload = without_words(d.event_type, d.payload)
