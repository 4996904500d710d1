"""The ingest stage: normalized mentions in, stored mention ids out (to triage).

A new, edited or restored post goes to triage, and so does each post a thread's recovery shows
again (``revealed``: :mod:`listener.threads`), and a post stored already and never triaged (the
redelivery of a message whose worker died between storing it and passing it on); a post stored
deleted (its thread is) does not.

A post an erased person published before their erasure, reaching ingest after it (it was on the
stream meanwhile), is dropped, never stored (:mod:`service.tombstones`); their later posts are new
data and stored as usual.
"""

from __future__ import annotations

import logging

from sqlalchemy import exists, select
from sqlalchemy.exc import IntegrityError

from listener import unseen
from listener.ingest import Ingested, ingest_batch
from listener.protocol import NormalizedMention
from models import Mention, TriageResult
from models.bulk import IDS
from models.mentions import ERASED_TEXT
from service.bus import Envelope
from service.stages.base import Outgoing, StageContext, trace
from service.tombstones import Tombstones, privacy_key

log = logging.getLogger("socialcare.privacy")
_M, _T = Mention.__table__.c, TriageResult.__table__.c
UNTRIAGED = select(_M.id).where(_M.id.in_(IDS), _M.deleted.is_(False), _M.text != ERASED_TEXT,
                                ~exists().where(_T.mention_id == _M.id))


class IngestStage:
    name = "ingest"

    def __init__(self, ctx: StageContext) -> None:
        self.ctx = ctx
        self.tombstones = Tombstones(privacy_key(ctx.settings) if ctx.settings is not None else None)

    async def warm_up(self) -> None:
        """The tombstone lookup compiled and the erasures counted before the first message."""
        async with self.ctx.db.session() as session:
            await self.tombstones.erased_posts(session, [], lock=False)

    async def handle(self, batch: list[Envelope]) -> list[Outgoing]:
        mentions = [NormalizedMention.from_dict(env.payload["mention"]) for env in batch]
        for attempt in range(3):  # a concurrent worker may insert the same author or thread first
            try:
                results = await self._store(mentions)
                break
            except IntegrityError:
                if attempt == 2:
                    raise
        if not self.ctx.db.is_sqlite:
            await self._crossed(mentions, results)
        untriaged = await self._untriaged([r.mention_id for r in results if r is not None and r.outcome == "duplicate"])
        out, sent = [], set()
        for env, res in zip(batch, results):
            if res is None:
                continue
            again = list(res.revealed)  # shown again by their thread's recovery: triaged again, as restored posts
            if res.outcome in ("new", "edited", "restored") or res.mention_id in untriaged:  # restored: triaged again
                again.insert(0, res.mention_id)
            for mention_id in again:
                if (mention_id, env.key) not in sent:
                    sent.add((mention_id, env.key))
                    key = f"m:{mention_id}" + (":edit:" + env.key if res.outcome != "new" else "")
                    out.append(Outgoing("triage", key, {"mention_id": mention_id, **trace(env.payload)}))
        if self.ctx.events:
            self._tell_live_pages(mentions, results)
        return out

    async def _untriaged(self, ids: list[int | None]) -> set[int]:
        """Of these posts stored already, those not triaged (nor deleted, nor erased): a redelivery of
        the message that stored one, its worker gone between the commit and passing it on, passes it
        on now (a duplicate is otherwise not triaged again)."""
        ids = [i for i in ids if i is not None]
        if not ids:
            return set()
        async with self.ctx.db.session() as session:
            return set(await session.scalars(UNTRIAGED, {"ids": ids}))

    async def _crossed(self, mentions: list[NormalizedMention], results: list[Ingested | None]) -> None:
        """PostgreSQL, after the commit: a deletion a concurrent batch kept for a post this one stored
        (or the other way round) is applied now (:func:`listener.unseen.crossed`)."""
        keys = {(m.platform, m.external_id) for m, r in zip(mentions, results) if r is not None and (
            r.outcome == "new" or (m.event == "delete" and r.mention_id is None))}
        if not keys:
            return
        async with self.ctx.db.session() as session:
            late = await unseen.crossed(session, keys)
            if late:
                await ingest_batch(session, late)
                log.info("applied %d deletion(s) that crossed their post's creation", len(late))
            await session.commit()

    def _tell_live_pages(self, mentions: list[NormalizedMention], results: list[Ingested | None]) -> None:
        """New posts, and posts gone from their platform (deleted alone or with their thread), change
        what the agent queue shows: its open pages refresh. A restored post is told of once routed."""
        new = [r.mention_id for r in results if r is not None and r.outcome == "new"]
        gone = [(m, r) for m, r in zip(mentions, results) if r is not None and (
            r.outcome == "deleted" or (r.outcome == "thread" and m.event == "thread_delete"))]
        if new:
            self.ctx.events("ingested", new)
        if gone:
            self.ctx.events("deleted", [r.mention_id for _, r in gone if r.mention_id is not None])

    async def _store(self, mentions: list[NormalizedMention]) -> list[Ingested | None]:
        """Ingest the batch in one transaction, without the erased persons' earlier posts (None in
        their place). Where the tombstones are looked up, and why: :mod:`service.tombstones`."""
        sqlite, dropped = self.ctx.db.is_sqlite, set()
        while True:
            async with self.ctx.db.session() as session:
                if not sqlite:  # first statement, holding the gate until the commit
                    dropped |= await self.tombstones.erased_posts(session, mentions, lock=True)
                kept = [i for i in range(len(mentions)) if i not in dropped]
                stored = await ingest_batch(session, [mentions[i] for i in kept])
                if sqlite and (late := await self.tombstones.erased_posts(session, mentions, lock=False) - dropped):
                    dropped |= late  # after the writes, in their transaction: store the batch again without them
                    await session.rollback()
                    continue
                await session.commit()
            if dropped:
                log.info("%d post(s) not stored: published by an erased account before its erasure", len(dropped))
            results: list[Ingested | None] = [None] * len(mentions)
            for i, res in zip(kept, stored):
                results[i] = res
            return results
