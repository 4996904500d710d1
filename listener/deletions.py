"""Removing a deleted post's content, where its platform's terms require it.

X's Developer Agreement requires stored X content to reflect its current state: a tweet deleted,
made non-public (its author protected or suspended) or withheld where the team reads the console
must be removed from the service, not only hidden. Reddit's Data API terms require removing what
its author deleted (not what a moderator or the spam filter removed: a moderator may approve it
again, and the brand's moderators must still read it). Discourse is the brand's own forum: a
deletion there only hides the post. The connector knows why a post went and says so on the
``delete`` event (``remove_content``); ingest applies :func:`removed` to the row and
:func:`remove_copies` to what quotes it.

What goes: the text (:data:`~models.mentions.DELETED_TEXT`, distinct from the privacy erasure's
``[erased]`` so that ``service.privacy.erased()`` stays false and a later ``restore`` still brings
the post back with the words the platform shows then), the raw payload but for ids and the
deletion's reason (:data:`KEPT_RAW`), the words in its URL (a Reddit permalink's slug is the
submission's title), its content hash, the triage explanations and PII spans, the routing reason,
the copies kept as community answers (deactivated) and in the author's case messages, and the bodies
of the outgoing webhook deliveries about it (:func:`console.webhooks_deleted.remove_content`). What stays:
the row, its ids, thread, times, author and triage labels, so counts and threading stay right.

Outside the database: an ingest message of the post dead-lettered on the bus loses its words too
(:meth:`service.bus.Bus.remove_content`, with :func:`removal_of` and :func:`letter_without_content`),
when the deletion is put on the ingest topic; retried, it applies the deletion and stores no words.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from listener.protocol import NormalizedMention
from listener.text import content_key
from models import CaseMessage, CommunityAnswer, Mention, RouteDecision, TriageResult
from models.bulk import IDS
from models.mentions import DELETED_TEXT, ERASED_TEXT
from service.privacy import erase_again, rewrite, scrub_scores, without_reasons

DELETED_HASH = content_key(DELETED_TEXT)
# what a removed post's payload keeps: ids, and why it went (X's ``recheck``/``withheld``, Reddit's
# ``removed_by_category``); nothing reads more of a deleted post's payload, and a restore replaces it
KEPT_RAW = ("id", "name", "link_id", "parent_id", "recheck", "withheld", "removed_by_category")
SLUG = re.compile(r"(/comments/[0-9a-z]+/)[^/?#]+")  # a Reddit permalink's title slug
_M = Mention.__table__.c
# deleted X posts whose content is still here: deleted under an older release, or by a deletion
# published before it (no ``remove_content``); every X deletion removes content (the retention purge)
BACKLOG = and_(_M.platform == "x", _M.deleted.is_(True), _M.text.notin_((ERASED_TEXT, DELETED_TEXT)))
# erased (service.privacy) or content removed: one lookup for both (built once)
GONE_IDS = select(_M.id, _M.text).where(_M.id.in_(IDS), _M.deleted.is_(True), _M.text.in_((ERASED_TEXT, DELETED_TEXT)))


def url_without_words(platform: str, url: str | None) -> str | None:
    """The post's link with none of its words: a Reddit permalink with ``_`` for its title slug
    (Reddit resolves it), an X link as it is (its handle and id only); None elsewhere."""
    if not url:
        return None
    if platform == "reddit":
        return SLUG.sub(r"\1_", url)
    return url if platform == "x" else None


def removed(m: NormalizedMention, url: str | None) -> dict[str, Any]:
    """The columns of a post whose content ``m`` (a ``delete`` with ``remove_content``) removes."""
    return {**without_content(m.platform, url, m.raw), "deleted": True, "hidden": True}


def without_content(platform: str, url: str | None, raw: Any) -> dict[str, Any]:
    """A post's content columns once its content is removed: the marker, its hash, the link without
    words, the payload's ids and why it went (:data:`KEPT_RAW`)."""
    raw = raw if isinstance(raw, dict) else {}
    return dict(text=DELETED_TEXT, content_hash=DELETED_HASH, url=url_without_words(platform, url),
                raw={k: raw[k] for k in KEPT_RAW if k in raw})


def content_removed(mention: Any) -> bool:
    """Was this post's content removed on its deletion (a row, an ORM object or a Record)?"""
    return bool(mention.deleted) and mention.text == DELETED_TEXT


async def lock_rows(session: AsyncSession, mention_ids: list[int]) -> None:
    """PostgreSQL: lock these posts (``FOR UPDATE``) before their content goes. A stage writing about
    one of them (triage's explanations, a routing reason) holds only the foreign-key check's
    ``FOR KEY SHARE``, which a plain UPDATE does not wait for: each side would miss the other's
    uncommitted row, and the stage's words would stay. Locked first, the removal waits for the
    stage's commit (the stage's :func:`respect_erasure_and_removal` then finds nothing, and
    :func:`remove_copies` sees what it wrote), or the stage's insert waits for the removal's commit
    (and that check finds it). SQLite's one writer orders them already."""
    if mention_ids and session.bind.dialect.name == "postgresql":
        await session.execute(select(_M.id).where(_M.id.in_(mention_ids)).with_for_update())


async def remove_copies(session: AsyncSession, mention_ids: Iterable[int]) -> int:
    """What quotes these posts, in the caller's transaction: triage explanations and PII spans (the
    labels and scores stay), routing reasons, community answers copied from them (deactivated) and
    case messages copying them. Returns how many rows changed; a second run changes nothing."""
    ids = sorted(set(mention_ids))
    if not ids:
        return 0
    changed = await rewrite(session, TriageResult, TriageResult.mention_id.in_(ids), [TriageResult.scores],
                            lambda t: {"scores": scrub_scores(t.scores)})
    changed += await rewrite(session, RouteDecision, RouteDecision.mention_id.in_(ids),
                             [RouteDecision.reason, RouteDecision.details],
                             lambda d: {"reason": DELETED_TEXT, "details": without_reasons(d.details or {})})

    def copy(c: Any) -> dict[str, Any]:
        answer = c.answer_mention_id in ids
        return {"question": DELETED_TEXT if c.question_mention_id in ids else c.question, "active": False,
                "answer": DELETED_TEXT if answer else c.answer, "url": None if answer else c.url}

    changed += await rewrite(session, CommunityAnswer, or_(CommunityAnswer.answer_mention_id.in_(ids),
                                                           CommunityAnswer.question_mention_id.in_(ids)),
                             [CommunityAnswer.question_mention_id, CommunityAnswer.answer_mention_id,
                              CommunityAnswer.question, CommunityAnswer.answer, CommunityAnswer.url,
                              CommunityAnswer.active], copy)
    changed += await rewrite(session, CaseMessage, CaseMessage.mention_id.in_(ids), [CaseMessage.body],
                             lambda c: {"body": DELETED_TEXT})
    # the console's outgoing events (imported here: the console builds on this module)
    from console.webhooks_deleted import remove_content

    changed += await remove_content(session, ids)
    return changed


async def remove_stored(session: AsyncSession, mention_ids: Iterable[int]) -> int:
    """Remove now the content of these stored, deleted posts (:data:`BACKLOG`: deleted before their
    deletion removed content, under an older release or by a message published before the upgrade),
    and what quotes them; the retention purge's catch-up. Each row's write leaves a post erased
    meanwhile erased (as ingest's). Returns how many posts changed."""
    ids = sorted(set(mention_ids))
    await lock_rows(session, ids)
    rows = (await session.execute(select(_M.id, _M.platform, _M.url, _M.raw).where(_M.id.in_(ids)))).all()
    done = []
    for r in rows:
        result = await session.execute(update(Mention.__table__).where(
            _M.id == r.id, _M.deleted.is_(True), _M.text.notin_((ERASED_TEXT, DELETED_TEXT))).values(
                **without_content(r.platform, r.url, r.raw)))
        if result.rowcount:
            done.append(r.id)
    await remove_copies(session, done)
    return len(done)


async def respect_erasure_and_removal(session: AsyncSession, mention_ids: Iterable[int]) -> set[int]:
    """For a stage about to commit what it wrote about ``mention_ids`` (the triage stage's scores,
    the route stage's decision): ``service.privacy.respect_erasure`` for the posts erased since it
    read them, and :func:`remove_copies` again for those whose content was removed since, in one
    lookup. Returns the erased ones (the stage sends nothing on for them)."""
    ids = list(set(mention_ids))
    if not ids:
        return set()
    rows = (await session.execute(GONE_IDS, {"ids": ids})).all()
    erased = {r.id for r in rows if r.text == ERASED_TEXT}
    await erase_again(session, erased)
    await remove_copies(session, [r.id for r in rows if r.text == DELETED_TEXT])
    return erased


# --- dead letters on the bus (service.bus) ------------------------------------------------------
def post_of(payload: Any) -> tuple[str, str] | None:
    """The post (platform, external id) an ingest message's payload carries, or None (a later
    stage's message names its post by ``mention_id`` only, and holds no words)."""
    m = payload.get("mention") if isinstance(payload, dict) else None
    if isinstance(m, dict) and isinstance(m.get("platform"), str) and m.get("external_id") is not None:
        return m["platform"], str(m["external_id"])
    return None


def removal_of(payload: Any) -> tuple[str, str] | None:
    """The post whose content an ingest message removes (a ``delete`` with ``remove_content``), or None."""
    m = payload.get("mention") if isinstance(payload, dict) else None
    if isinstance(m, dict) and m.get("event") == "delete" and m.get("remove_content") is True:
        return post_of(payload)
    return None


def letter_without_content(payload: dict[str, Any], reason: str) -> tuple[dict[str, Any], str]:
    """An ingest message's payload and its failure's reason once its post's content was removed:
    the post becomes the content-removing ``delete`` of itself (the marker for its text, the link
    without words, the payload's ids: :func:`without_content`; its ids, thread, times and author
    stay), so a retry applies the deletion (a post never stored stays unstored) and stores no words,
    whatever event failed (a new post, an edit, a restore). The reason keeps the error's type only:
    its message may quote the post (a database error names the values it refused)."""
    m = payload["mention"]
    kept = without_content(str(m.get("platform")), m.get("url"), m.get("raw"))
    mention = {**m, "text": kept["text"], "url": kept["url"], "raw": kept["raw"], "event": "delete",
               "remove_content": True, "edited_at": None}
    kind, sep, message = reason.partition(": ")
    return {**payload, "mention": mention}, f"{kind}: {DELETED_TEXT}" if sep and message != DELETED_TEXT else reason
