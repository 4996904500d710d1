"""In-process bus for the embedded mode: asyncio, no servers, Redis-Streams semantics.

Each topic is an append-only log; each consumer group keeps its read position, its pending
deliveries and its own retry queue. A group created late still reads from the topic's start (like
``XGROUP CREATE ... 0``). A failed message is re-queued *behind* what is already in the topic (as
the Redis backend re-appends it), so it never holds up the messages after it; it and a retried
dead letter go back to their group only. Deliveries left
unacked longer than ``claim_idle_ms`` (a task that died mid-batch, or hangs) are handed to the next
reader one at a time, each alone in its batch, counting one attempt more; a worker still at work on
its batch keeps it by renewing it (:meth:`InProcessBus.renew`: its delivery time starts again).
Payloads are stored as JSON text, so every delivery gets its own copy and
a payload the Redis backend would refuse is refused here too; a flat payload of plain scalars (the
stages' ``{"mention_id": ..., "t0": ...}``), whose JSON round trip changes nothing, is kept as a
dict and copied per delivery instead, skipping the encoding and decoding. A dead letter of a post
whose content was removed (:meth:`~service.bus.base.Bus.remove_content`) is rewritten in place, its
id kept: an id read before still names it, as the Redis bus's old ids do (they follow the rewrite).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from listener.deletions import letter_without_content, post_of
from service.bus.base import REMEMBERED_S, Bus, DeadLetter, Envelope, removals, restores
from service.bus.codec import dumps_payload, loads_payload

log = logging.getLogger("socialcare.bus")
COMPACT_AFTER = 4096  # drop a topic's consumed prefix once every group is this far past it
_PLAIN = frozenset({str, int, float, bool, type(None)})  # exact types JSON gives back unchanged


def _stored(payload: dict[str, Any]) -> str | dict[str, Any]:
    """What an entry keeps of a payload: a copy of a flat one of plain scalars, else its JSON text."""
    if type(payload) is dict and all(type(k) is str and type(v) in _PLAIN for k, v in payload.items()):
        return dict(payload)
    return dumps_payload(payload)


def _delivered(data: str | dict[str, Any]) -> dict[str, Any]:
    """A delivery's own copy of an entry's payload."""
    return dict(data) if isinstance(data, dict) else loads_payload(data)


def _without_content(dead: DeadLetter) -> DeadLetter:
    """A dead letter without its post's words (its id, topic, key, attempts and times kept)."""
    payload, reason = letter_without_content(dead.payload, dead.reason)
    return replace(dead, payload=payload, reason=reason)


@dataclass(frozen=True)
class _Entry:
    seq: int
    key: str
    data: str | dict[str, Any]  # the payload as JSON text, or a flat one as a dict (see _stored)
    attempts: int
    published_at: float


@dataclass
class _Delivery:
    entry: _Entry
    consumer: str
    attempts: int
    since: float  # monotonic time of the last delivery
    claimed: bool = False  # handed out alone after a claim (its last delivery was not in a batch)


@dataclass
class _Group:
    position: int = 0  # index into the topic log of the next new entry
    pending: dict[str, _Delivery] = field(default_factory=dict)  # delivery id -> delivery
    retry: deque[_Entry] = field(default_factory=deque)  # failed entries, in seq order


@dataclass
class _Topic:
    log: list[_Entry] = field(default_factory=list)
    groups: dict[str, _Group] = field(default_factory=dict)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)


class InProcessBus(Bus):
    def __init__(self, max_deliveries: int = 5, *, claim_idle_ms: int = 30_000) -> None:
        if max_deliveries < 1:
            raise ValueError("max_deliveries must be at least 1")
        self.max_deliveries = max_deliveries
        self.claim_idle_ms = claim_idle_ms
        self._topics: dict[str, _Topic] = {}
        self._seq = itertools.count(1)
        self._dead: dict[str, DeadLetter] = {}
        self._removed: dict[tuple[str, str], float] = {}  # post -> when its content was removed, oldest first

    def _topic(self, name: str) -> _Topic:
        topic = self._topics.get(name)
        if topic is None:
            topic = self._topics[name] = _Topic()
        return topic

    def _group(self, topic: str, group: str) -> tuple[_Topic, _Group]:
        t = self._topic(topic)
        return t, t.groups.setdefault(group, _Group())

    async def publish(self, topic: str, payload: dict[str, Any], key: str) -> str:
        return (await self.publish_many(topic, [(key, payload)]))[0]

    async def publish_many(self, topic: str, items: list[tuple[str, dict[str, Any]]], *,
                           durable: bool = False) -> list[str]:  # nothing on disk: it dies with the process
        encoded = [(key, _stored(payload)) for key, payload in items]  # refuse before appending any
        for key, _ in encoded:
            if not isinstance(key, str):
                raise TypeError(f"key must be a str, not {type(key).__name__}")
        if posts := removals(items):
            await self.remove_content(posts)
        for post in restores(items):  # shown again: its messages from now on are not the removed words
            self._removed.pop(post, None)
        t = self._topic(topic)
        now = time.time()
        entries = [_Entry(next(self._seq), key, data, 1, now) for key, data in encoded]
        t.log.extend(entries)
        await self._notify(t)
        return [str(e.seq) for e in entries]

    async def ensure_group(self, topic: str, group: str) -> None:
        self._group(topic, group)

    async def read(self, topic: str, group: str, consumer: str, count: int, block_ms: int, *,
                   claim: bool = True) -> list[Envelope]:
        t, g = self._group(topic, group)
        deadline = time.monotonic() + max(block_ms, 0) / 1000
        while True:
            out = self._claim(topic, group, g, consumer) if claim and count > 0 else []
            out = out or self._take(topic, t, g, consumer, count)
            remaining = deadline - time.monotonic()
            if out or remaining <= 0:
                return out
            try:
                async with t.changed:
                    await asyncio.wait_for(t.changed.wait_for(lambda: bool(g.retry) or g.position < len(t.log)),
                                           remaining)
            except TimeoutError:
                return []
            # another consumer of the group may have taken it first: loop while time remains

    def _claim(self, topic: str, group: str, g: _Group, consumer: str) -> list[Envelope]:
        """The oldest delivery idle past the claim time (its consumer died or hangs), alone: handled
        by itself, a message that kills its consumer spends no other message's attempts."""
        if not g.pending:
            return []
        cutoff = time.monotonic() - self.claim_idle_ms / 1000
        for did, d in list(g.pending.items()):
            if d.since > cutoff:
                continue
            if d.claimed or d.attempts < self.max_deliveries:  # the first claim of one at its last: not
                d.attempts += 1  # counted, it never ran alone at that attempt (service.bus.redis_claims)
            d.claimed = True
            if d.attempts > self.max_deliveries:
                del g.pending[did]
                self._bury(topic, group, did, d.entry, d.attempts, "delivered without an ack every time "
                                                              "(consumer crashed or hung)")
                continue
            d.consumer, d.since = consumer, time.monotonic()
            return [self._envelope(topic, did, d.entry, d.attempts)]
        return []

    def _take(self, topic: str, t: _Topic, g: _Group, consumer: str, count: int) -> list[Envelope]:
        """New entries for the group: the log and its retry queue merged in sequence order."""
        out: list[Envelope] = []
        now = time.monotonic()
        while len(out) < count:
            fresh = t.log[g.position] if g.position < len(t.log) else None
            if g.retry and (fresh is None or g.retry[0].seq < fresh.seq):
                entry = g.retry.popleft()
            elif fresh is not None:
                entry = fresh
                g.position += 1
            else:
                break
            did = str(entry.seq)
            g.pending[did] = _Delivery(entry, consumer, entry.attempts, now)
            out.append(self._envelope(topic, did, entry, entry.attempts))
        if out:
            self._compact(t)
        return out

    @staticmethod
    def _envelope(topic: str, did: str, entry: _Entry, attempts: int) -> Envelope:
        return Envelope(id=did, topic=topic, key=entry.key, payload=_delivered(entry.data), attempts=attempts)

    async def ack(self, topic: str, group: str, ids: list[str]) -> None:
        g = self._topic(topic).groups.get(group)
        if g is not None:
            for i in ids:
                g.pending.pop(i, None)

    async def renew(self, topic: str, group: str, consumer: str, ids: list[str]) -> list[str]:
        g = self._topic(topic).groups.get(group)
        if g is None:
            return []
        now, kept = time.monotonic(), []
        for did in ids:
            d = g.pending.get(did)
            if d is not None and d.consumer == consumer:  # not one another reader took over meanwhile
                d.since = now
                kept.append(did)
        return kept

    async def fail(self, topic: str, group: str, envelope: Envelope, reason: str) -> bool:
        t, g = self._group(topic, group)
        d = g.pending.pop(envelope.id, None)
        published = d.entry.published_at if d else time.time()
        data = d.entry.data if d else _stored(envelope.payload)  # the payload as published
        if envelope.attempts >= self.max_deliveries:
            entry = _Entry(0, envelope.key, data, envelope.attempts, published)
            self._bury(topic, group, envelope.id, entry, envelope.attempts, reason)
            return True
        g.retry.append(_Entry(next(self._seq), envelope.key, data, envelope.attempts + 1, published))
        await self._notify(t)
        return False

    def _bury(self, topic: str, group: str, did: str, entry: _Entry, attempts: int, reason: str) -> None:
        dead = DeadLetter(id=f"dl-{next(self._seq)}", topic=topic, key=entry.key, payload=_delivered(entry.data),
                          attempts=attempts, reason=reason, failed_at=datetime.now(UTC).isoformat(),
                          extra={"group": group, "entry_id": did, "published_at": entry.published_at})
        if self._removed:
            self._forget()
            removed_at = self._removed.get(post_of(dead.payload))
            # its content removed while it was being retried (a restore or edit published after keeps its words)
            if removed_at is not None and entry.published_at <= removed_at:
                dead = _without_content(dead)
        self._dead[dead.id] = dead
        self._buried(topic)
        log.error("dead letter %s on %s after %d attempts", dead.id, topic, attempts)

    async def pending(self, topic: str, group: str) -> int:
        g = self._topic(topic).groups.get(group)
        return len(g.pending) if g else 0

    async def lag(self, topic: str, group: str) -> int:
        t = self._topic(topic)
        g = t.groups.get(group)
        if g is None:
            return len(t.log)
        return len(t.log) - g.position + len(g.retry)

    def backlog(self, topic: str, group: str) -> int:
        """Lag plus pending, at once (no await): what a forced stop leaves in this process's queues."""
        t = self._topics.get(topic)
        g = t.groups.get(group) if t is not None else None
        if g is None:
            return len(t.log) if t is not None else 0
        return len(t.log) - g.position + len(g.retry) + len(g.pending)

    async def dead_letters(self, topic: str | None = None, limit: int = 100) -> list[DeadLetter]:
        out = [d for d in self._dead.values() if topic is None or d.topic == topic]
        return out[: max(limit, 0)]

    async def dead_letter_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for d in self._dead.values():  # no copy of a payload made
            counts[d.topic] = counts.get(d.topic, 0) + 1
        return counts

    async def retry_dead_letter(self, dead_letter_id: str) -> bool:
        dead = self._dead.pop(dead_letter_id, None)
        if dead is None:
            return False
        t = self._topic(dead.topic)
        g = t.groups.get(dead.extra.get("group", ""))
        if g is None:
            await self.publish(dead.topic, dead.payload, dead.key)
            return True
        # back to the group that failed it only: the topic's other groups handled it already
        g.retry.append(_Entry(next(self._seq), dead.key, _stored(dead.payload), 1,
                              dead.extra.get("published_at") or time.time()))
        await self._notify(t)
        return True

    async def delete_dead_letters(self, ids: list[str]) -> int:
        return sum(self._dead.pop(i, None) is not None for i in dict.fromkeys(ids))

    async def remove_content(self, posts: set[tuple[str, str]]) -> int:
        now = time.time()
        for post in posts:  # moved to the end: the dict stays oldest first
            self._removed.pop(post, None)
            self._removed[post] = now
        self._forget()
        changed = 0
        for dead_id, dead in self._dead.items():
            if post_of(dead.payload) in posts and (new := _without_content(dead)) != dead:
                self._dead[dead_id] = new
                changed += 1
        return changed

    def _forget(self) -> None:
        """Drop the posts remembered longer than REMEMBERED_S."""
        cutoff = time.time() - REMEMBERED_S
        while self._removed and next(iter(self._removed.values())) < cutoff:
            del self._removed[next(iter(self._removed))]

    @staticmethod
    async def _notify(t: _Topic) -> None:
        async with t.changed:
            t.changed.notify_all()

    @staticmethod
    def _compact(t: _Topic) -> None:
        """Drop the log prefix every group has read, keeping memory flat in a long-running process.
        (A group created after that starts at what is left: the embedded mode creates all its groups
        at start-up, before anything is published.)"""
        low = min(g.position for g in t.groups.values())
        if low >= COMPACT_AFTER and low * 2 >= len(t.log):
            del t.log[:low]
            for g in t.groups.values():
                g.position -= low
