"""Accepted community answers: a Discourse post marked as the solution, a Reddit comment a
moderator distinguished. Each is kept with the question it answers, for later askers.

The copies never carry personal data: they are redacted when taken, and follow the posts they
copy when those are redacted or hidden later (:func:`sync_copies`, called by moderation).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from models import CommunityAnswer, Mention
from triage.pii import redact

ACCEPTED_DISTINGUISHED = ("moderator", "admin")
ACCEPTING_PLATFORMS = ("discourse", "reddit")  # the only ones whose posts can be accepted answers


def own_subreddits(settings: Any) -> frozenset[str]:
    """The brand's own subreddits (``reddit_subreddits``), lower case, without ``r/``."""
    return frozenset(s.strip().lower().removeprefix("r/") for s in settings.reddit_subreddits if s.strip())


def ours(mention: Any, own: frozenset[str]) -> bool:
    """Is this Reddit post in one of the brand's own subreddits? Only there is a moderator's mark the
    brand's community speaking: the keyword search reads all of Reddit, and anyone can open a
    subreddit and distinguish their own posts in it."""
    return (mention.channel or "").lower().removeprefix("r/") in own


def distinguished(mention: Any, own: frozenset[str]) -> bool:
    """A Reddit post a moderator or an admin of one of the brand's own subreddits distinguished."""
    raw = mention.raw if isinstance(mention.raw, dict) else {}
    return mention.platform == "reddit" and raw.get("distinguished") in ACCEPTED_DISTINGUISHED and ours(mention, own)


def accepted_source(mention: Mention, own: frozenset[str]) -> str | None:
    """Why this post counts as an accepted answer (``accepted`` / ``distinguished``), or None."""
    raw = mention.raw or {}
    if mention.platform == "discourse" and raw.get("accepted_answer") is True:
        return "accepted"
    if mention.in_reply_to and distinguished(mention, own):
        return "distinguished"
    return None


async def harvest(session: AsyncSession, mentions: list[Mention], own: frozenset[str]) -> set[int]:
    """Record the accepted answers among ``mentions`` (idempotent); returns their mention ids.
    The question is the parent post, or else the thread's first post. ``own``: the brand's own
    subreddits (:func:`own_subreddits`)."""
    answers = [(m, s) for m in mentions if (s := accepted_source(m, own))]
    if not answers:
        return set()
    parents = {(m.platform, m.in_reply_to or m.platform_conversation_id) for m, _ in answers}
    parents = {p for p in parents if p[1]}
    found = {(q.platform, q.external_id): q for q in await session.scalars(select(Mention).where(
        or_(*[and_(Mention.platform == p, Mention.external_id == e) for p, e in parents])))} if parents else {}
    have = {(c.platform, c.external_id): c for c in await session.scalars(select(CommunityAnswer).where(
        or_(*[and_(CommunityAnswer.platform == m.platform, CommunityAnswer.external_id == m.external_id)
              for m, _ in answers])))}
    for mention, source in answers:
        question = found.get((mention.platform, mention.in_reply_to or "")) or \
            found.get((mention.platform, mention.platform_conversation_id or ""))
        if question is None or question.id == mention.id:
            continue  # the question is not known (yet): nothing to pair the answer with
        row = have.get((mention.platform, mention.external_id)) or CommunityAnswer(
            platform=mention.platform, external_id=mention.external_id)
        row.answer_mention_id, row.question_mention_id = mention.id, question.id
        row.question, row.answer, row.url, row.source = redact(question.text), redact(mention.text), mention.url, source
        row.active = not mention.hidden and not mention.deleted
        session.add(row)
    return {m.id for m, _ in answers}


async def sync_copies(session: AsyncSession, mention: Mention) -> int:
    """Bring the copies of ``mention`` (as question or answer) in line with it after moderation:
    its redacted text, and no longer offered once the answer is hidden or deleted. Returns how
    many copies changed."""
    if mention.platform not in ACCEPTING_PLATFORMS:  # no copies of posts from elsewhere: no query
        return 0
    rows = list(await session.scalars(select(CommunityAnswer).where(or_(
        CommunityAnswer.answer_mention_id == mention.id, CommunityAnswer.question_mention_id == mention.id))))
    changed = 0
    for row in rows:
        before = (row.question, row.answer, row.active)
        if row.question_mention_id == mention.id:
            row.question = redact(mention.text)
        if row.answer_mention_id == mention.id:
            row.answer = redact(mention.text)
            row.active = row.active and not mention.hidden and not mention.deleted
        changed += before != (row.question, row.answer, row.active)
    return changed
