"""Dead letters on the Redis Streams bus (:mod:`service.bus.redis_streams`) of posts whose content
their platform's terms require removed (:meth:`~service.bus.base.Bus.remove_content`).

A stream entry cannot be changed: such a dead letter is replaced by a copy without the words (XDEL,
then XADD, in one script: a retry or discard of the old one meanwhile leaves nothing to replace),
under a new id that a delete or retry by the old one still reaches, with its failure time, attempts
and first-publish time kept. The posts removed are remembered in a sorted set
(``{prefix}:deadletter:removed``, scored by when, pruned after ``REMEMBERED_S``): a burial adds its
entry to the stream and to its index by post and reads that set in one script
(:mod:`service.bus.redis_deadletters`), while :meth:`Removals.remember` adds to the set before it
reads the index, so whichever comes second sees the other's write. Through the index a removal reads
its posts' letters only, not the whole stream: it runs on the ingest publish path. A message
published after the removal (a restore, an edit of the post shown again) keeps its words, and a
restore published takes the post out of the set.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from listener.deletions import letter_without_content
from service.bus.base import REMEMBERED_S, DeadLetter
from service.bus.codec import Message, encode_dead_letter
from service.bus.redis_deadletters import member, post_member

if TYPE_CHECKING:
    import redis.asyncio as redis

    from service.bus.redis_streams import RedisStreamsBus


class Removals:
    def __init__(self, bus: RedisStreamsBus) -> None:
        self.bus = bus

    @property
    def key(self) -> str:
        """The sorted set of the posts whose content was removed (member: :func:`member`; score: when)."""
        return f"{self.bus.prefix}:deadletter:removed"

    @staticmethod
    def covers(score: Any, published_at: float) -> bool:
        """Does a removal at ``score`` (None: none) cover a message first published at ``published_at``:
        published before it, and the removal still remembered?"""
        if score is None:
            return False
        removed_at = float(score)
        return published_at <= removed_at and removed_at >= time.time() - REMEMBERED_S

    async def remember(self, posts: set[tuple[str, str]]) -> int:
        """:meth:`~service.bus.base.Bus.remove_content`: remember the posts, then rewrite their dead
        letters; returns how many changed."""
        if not posts:
            return 0
        bus, now = self.bus, time.time()

        async def add(c: redis.Redis) -> None:
            pipe = c.pipeline(transaction=False)
            pipe.zadd(self.key, {member(p): now for p in posts})
            pipe.zremrangebyscore(self.key, "-inf", f"({now - REMEMBERED_S}")
            await pipe.execute()

        await bus._call("remove content", add)  # before reading: see the module docstring
        changed = 0
        for dead in await bus._dead.of_posts(posts):  # the index holds each letter under its own post
            changed += await self.rewrite(dead)
        return changed

    async def forget(self, posts: set[tuple[str, str]]) -> None:
        """These posts are shown again: their messages from now on are not the removed words."""
        await self.bus._call("restore", lambda c: c.zrem(self.key, *map(member, posts)))

    async def rewrite(self, dead: DeadLetter) -> int:
        """Replace a dead letter by a copy without its post's words; 1 when this call did."""
        payload, reason = letter_without_content(dead.payload, dead.reason)
        if payload == dead.payload and reason == dead.reason:
            return 0
        msg = Message(dead.key, payload, dead.attempts, dead.extra.get("published_at") or 0.0)
        fields = encode_dead_letter(dead.topic, dead.extra.get("group", ""), dead.extra.get("entry_id", ""),
                                    reason, msg, failed_at=dead.failed_at)
        return int(await self.bus._dead.rewrite(dead.id, post_member(payload), fields) is not None)
