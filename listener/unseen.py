"""Deletions that reach ingest before the post they delete.

A post's creation can reach ingest after its deletion: its batch failed once and the bus delivered
it again behind later messages, a webhook was retried, or a connector caught up late. Dropped as
a duplicate, that deletion would leave the post stored live when it comes, triaged and maybe
answered, and its content kept where the platform's terms require its removal. So a deletion of a
post not stored is kept (:class:`models.PendingDeletion`), and a creation or edit of it arriving
after is stored deleted, with its content removed where the deletion said so; a ``restore`` (the
platform shows the post again, which it reports only after the deletion) stores it shown. Either
way the pending deletion is then spent: the row holds the post's state from there on. An intake
that learns the post shows again after the deletion reached ingest (:func:`kept_since`: a
Discourse staff whisper, "deleted" when edited, turned into a regular post later) publishes that
as a restore.

Cost: one lookup by primary key per ingest batch holding posts not stored yet. Pending deletions
older than :data:`LIFETIME` are pruned whenever new ones are kept: a creation delayed longer than
that is no longer expected.

Two ingest workers handling the creation and the deletion of one post at the same moment on
PostgreSQL (READ COMMITTED) each miss the other's uncommitted row: so there, after its commit, a
batch that stored new posts or kept deletions looks for posts now both stored and pending
(:func:`crossed`) and applies those deletions again. Each side writes, commits, then reads: whichever
commits second sees the other's row. SQLite's one writer orders them already.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import and_, bindparam, delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from listener.protocol import NormalizedMention, utc
from models import Mention, PendingDeletion
from models.base import utcnow
from models.bulk import IDS, add_rows, pair_params, pairs_in

LIFETIME = timedelta(days=30)
Key = tuple[str, str]  # (platform, external id)
_P = PendingDeletion.__table__.c
_M = Mention.__table__.c
BOTH = (select(_P.platform, _P.external_id, _P.remove_content)
        .join(Mention.__table__, and_(_M.platform == _P.platform, _M.external_id == _P.external_id))
        .where(pairs_in(_P.platform, _P.external_id)))
PENDING = select(_P.platform, _P.external_id, _P.remove_content).where(pairs_in(_P.platform, _P.external_id))
SPENT = delete(PendingDeletion.__table__).where(_P.platform == bindparam("on"), _P.external_id.in_(IDS))


async def pending(session: AsyncSession, keys: Iterable[Key]) -> dict[Key, bool]:
    """The deletions kept for these posts: whether each removes content."""
    wanted = set(keys)
    if not wanted:
        return {}
    # pairs_in matches each column apart: a row of another pair's platform and id is read, then left
    return {k: r.remove_content for r in await session.execute(PENDING, pair_params(wanted))
            if (k := (r.platform, r.external_id)) in wanted}


async def kept_since(session: AsyncSession, key: Key) -> datetime | None:
    """When the deletion kept for this post reached ingest (None: none kept). A platform event that
    shows the post after that time supersedes it (the Discourse webhook publishes such an edit as a
    restore: :mod:`listener.discourse.webhook`)."""
    row = await session.get(PendingDeletion, key)
    return utc(row.deleted_at) if row is not None else None


async def settle(session: AsyncSession, kept: dict[Key, bool], spent: Iterable[Key]) -> None:
    """In the batch's transaction: keep the deletions ``kept`` (new, or merged with one kept before:
    content removal is never taken back), forget those ``spent`` on a stored post, prune old ones."""
    by_platform: dict[str, list[str]] = defaultdict(list)
    for platform, external_id in set(spent) | set(kept):
        by_platform[platform].append(external_id)
    for platform, ids in by_platform.items():  # exact pairs (pairs_in would also match crossed ones)
        await session.execute(SPENT, {"on": platform, "ids": ids})
    if kept:
        now = utcnow()
        await add_rows(session, PendingDeletion, [dict(platform=p, external_id=e, remove_content=r, deleted_at=now)
                                                  for (p, e), r in kept.items()])
        await session.execute(delete(PendingDeletion).where(PendingDeletion.deleted_at < now - LIFETIME))


async def crossed(session: AsyncSession, keys: Iterable[Key]) -> list[NormalizedMention]:
    """After a batch's commit (PostgreSQL): of these posts, those both stored and pending a deletion
    (a concurrent batch kept it while this one stored the post, or the other way round), as the
    deletions to ingest again; their pending rows are spent in the caller's transaction."""
    wanted = set(keys)
    if not wanted:
        return []
    rows = [r for r in await session.execute(BOTH, pair_params(wanted)) if (r.platform, r.external_id) in wanted]
    if not rows:
        return []
    await settle(session, {}, {(r.platform, r.external_id) for r in rows})
    now = utcnow()
    return [NormalizedMention(platform=r.platform, external_id=r.external_id, text="", created_at=now,
                              event="delete", remove_content=r.remove_content) for r in rows]
