"""The bus contract: one interface, two backends (in-process asyncio, Redis Streams).

Delivery is at-least-once. A stage reads a batch from its topic (the topic, the consumer group
and the stage share one name), does its work, commits, publishes what follows, and only then
acks. A message that is never acked is delivered again (to this or another consumer); a message
whose handling fails ``max_deliveries`` times goes to the dead-letter stream with its reason and
never blocks the messages behind it. Consumers are idempotent, so redelivery creates nothing twice.

A delivery left unacknowledged longer than the claim-idle time is taken over by the next reader, one
more attempt counted: its consumer died (a crash, an out-of-memory kill) or hangs. Such deliveries
are handed out one at a time, each alone in its batch, so a message that kills its consumer spends
its own attempts only: the others of the batch it took down are each handled once, by themselves,
never dead-lettered with it (one already at its last attempt spends none on its first claim: it never
ran alone at that attempt). A consumer still at work on a batch (slow, or holding it through a
database outage) keeps it by renewing its claim (:meth:`Bus.renew`) well within that time, which
spends no attempt: no other consumer takes it meanwhile.

A post deleted on its platform whose terms require its content removed (``remove_content``:
:mod:`listener.deletions`) must not keep its words in a dead letter either: when such a deletion is
put on the ingest topic, the bus first rewrites the dead letters of that post
(:meth:`Bus.remove_content`, the same the database's copies get), and remembers the post for
:data:`REMEMBERED_S`, so that a message of it dead-lettered later (still being retried when the
deletion came) is written without its words too.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

REMEMBERED_S = 7 * 86400  # how long the bus remembers a post whose content was removed (its later dead letters)


class BusUnavailable(RuntimeError):
    """The backend did not answer within its retry window (e.g. Redis down for longer than that)."""


@dataclass(frozen=True)
class Envelope:
    """One delivery of a message. ``key`` is the message's idempotency key."""

    id: str  # backend delivery id (Redis stream entry id, or an in-process sequence number)
    topic: str
    key: str
    payload: dict[str, Any]
    attempts: int = 1  # 1 on first delivery, counting crashes and failures


@dataclass(frozen=True)
class DeadLetter:
    id: str
    topic: str
    key: str
    payload: dict[str, Any]
    attempts: int
    reason: str
    failed_at: str  # ISO 8601 UTC
    extra: dict[str, Any] = field(default_factory=dict)  # group, original id, first publish, raw fields...


class Bus(ABC):
    """Abstract bus. All methods are coroutines; backends are safe to share between tasks."""

    max_deliveries: int
    claim_idle_ms: int | None = None  # an unacknowledged delivery idle this long is claimed; None: never

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Connect (Redis) or prepare; idempotent."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections; idempotent."""

    @abstractmethod
    async def publish(self, topic: str, payload: dict[str, Any], key: str) -> str:
        """Append one message to ``topic``; returns its id."""

    async def publish_many(self, topic: str, items: list[tuple[str, dict[str, Any]]], *,
                           durable: bool = False) -> list[str]:
        """Append ``(key, payload)`` pairs in order. Backends may pipeline this. ``durable``: return
        only once the backend has the messages on disk where it can say so (Redis: ``WAITAOF``), for
        a caller about to tell the outside world it has them (a connector saving its cursor in the
        database, a webhook answering 2xx): a backend restart losing its last second of writes
        would otherwise lose messages no platform sends again."""
        return [await self.publish(topic, payload, key) for key, payload in items]

    @abstractmethod
    async def ensure_group(self, topic: str, group: str) -> None:
        """Create the consumer group (and the stream) if missing; reads from the stream's start."""

    @abstractmethod
    async def read(self, topic: str, group: str, consumer: str, count: int, block_ms: int, *,
                   claim: bool = True) -> list[Envelope]:
        """Up to ``count`` deliveries for ``consumer``: a stale pending entry of a dead or stuck
        consumer first (claimed after the claim-idle time, one more attempt), alone: a batch of one,
        so that a message that crashes its consumer takes no other down with it; else new ones.
        ``claim=False`` reads new ones only (a batch being filled up takes no claimed entry). Waits
        up to ``block_ms`` when there is nothing; returns [] on time-out."""

    async def renew(self, topic: str, group: str, consumer: str, ids: list[str]) -> list[str]:
        """Keep these deliveries ``consumer``'s while it still works on them: their idle time starts
        again, so no other consumer claims them, and no attempt is spent. Called by a worker every
        third of the claim-idle time while it holds a batch. Returns the ids still this consumer's
        (acked, failed or taken over meanwhile are left out). A backend that never claims has
        nothing to do."""
        return list(ids)

    async def remove_consumer(self, topic: str, group: str, consumer: str) -> bool:
        """Remove ``consumer`` from the group if it has nothing pending (a worker's clean stop:
        consumer names carry the pid, so each restart would otherwise leave one behind for good);
        True when it went. A backend that keeps no consumers has nothing to do."""
        return False

    async def prune_consumers(self, topic: str, group: str, idle_ms: int, keep: str = "") -> list[str]:
        """Remove the group's consumers idle ``idle_ms`` or longer with nothing pending (workers that
        died, or stopped before :meth:`remove_consumer` existed), never ``keep`` nor one holding
        entries (those are claimed); returns their names."""
        return []

    @abstractmethod
    async def ack(self, topic: str, group: str, ids: list[str]) -> None:
        """Mark deliveries done (after the stage's work is committed)."""

    @abstractmethod
    async def fail(self, topic: str, group: str, envelope: Envelope, reason: str) -> bool:
        """Record a failed handling. Below ``max_deliveries`` the message is delivered again soon
        (without blocking the ones behind it); at the limit it moves to the dead-letter stream with
        ``reason`` and is acked. Returns True when it was dead-lettered."""

    @abstractmethod
    async def pending(self, topic: str, group: str) -> int:
        """Messages delivered to the group and not yet acked."""

    @abstractmethod
    async def lag(self, topic: str, group: str) -> int:
        """Messages in the topic not yet delivered to the group."""

    @abstractmethod
    async def dead_letters(self, topic: str | None = None, limit: int = 100) -> list[DeadLetter]:
        """Dead letters, oldest first, optionally of one topic."""

    async def dead_letter_counts(self) -> dict[str, int]:
        """How many dead letters each topic holds (topics with none left out). Backends keep it
        cheap: a scrape of ``/metrics`` asks it every time, whatever the stream holds."""
        counts: dict[str, int] = {}
        for d in await self.dead_letters(None, 10**9):
            counts[d.topic] = counts.get(d.topic, 0) + 1
        return counts

    @abstractmethod
    async def retry_dead_letter(self, dead_letter_id: str) -> bool:
        """Put a dead letter back on its topic (attempts reset) and remove it from the dead-letter
        stream. False when there is no such dead letter. An id read before the letter was rewritten
        (:meth:`remove_content`) still names it (see :meth:`delete_dead_letters`)."""

    @abstractmethod
    async def delete_dead_letters(self, ids: list[str]) -> int:
        """Remove these dead letters for good, without retrying them: their payloads can hold whole
        posts, and an erasure or the retention purge wants them gone. Unknown ids are skipped;
        returns how many went. A letter rewritten by :meth:`remove_content` after its id was read
        (an erasure matches the person's letters, then deletes them; an admin discards what a
        listing showed) goes all the same: the in-process bus keeps its id, Redis follows the old
        one to the new for a day (:mod:`service.bus.redis_deadletters`)."""

    async def remove_content(self, posts: set[tuple[str, str]]) -> int:
        """Posts (platform, external id) whose content their platform's terms require removed: their
        dead letters lose the words (:func:`listener.deletions.letter_without_content`; a retry then
        applies the deletion), and each is remembered for :data:`REMEMBERED_S`, so that one of
        their messages dead-lettered meanwhile is buried without them. Called by ``publish`` before
        it appends such a deletion; returns how many dead letters changed. A backend without dead
        letters has nothing to do."""
        return 0

    def count_burials(self, metrics: Any) -> None:
        """Count every dead letter this bus object writes in ``metrics.dead_letters`` (by topic): a
        worker's failed message and also what the bus buries by itself (an undecodable entry, one
        delivered too often without an ack), which no worker's ``fail`` sees. Once per metrics
        object, however many workers of the process share the bus."""
        watchers = self.__dict__.setdefault("_burial_metrics", [])
        if not any(m is metrics for m in watchers):
            watchers.append(metrics)

    def _buried(self, topic: str) -> None:
        for metrics in self.__dict__.get("_burial_metrics", ()):
            metrics.dead_letters.labels(topic).inc()

    async def ping(self) -> bool:
        """True when the backend answers (readiness)."""
        return True

    async def trim(self, topic: str) -> int:
        """Drop the entries every group of ``topic`` has acknowledged (they hold whole posts, personal
        data included, and would otherwise stay for ever); returns how many went. A topic no group
        reads yet is left whole: its first group reads it from the start."""
        return 0


def removals(items: Iterable[tuple[str, dict[str, Any]]]) -> set[tuple[str, str]]:
    """The posts whose content the messages to publish remove (their ``delete`` with ``remove_content``)."""
    from listener.deletions import removal_of  # the bus is below the listener; it only reads its payloads

    return {post for _, payload in items if (post := removal_of(payload)) is not None}


def restores(items: Iterable[tuple[str, dict[str, Any]]]) -> set[tuple[str, str]]:
    """The posts the messages to publish show again (their ``restore``): no longer removed, so a
    message of theirs dead-lettered from now on keeps its words (a restore's are what the platform
    shows now)."""
    from listener.deletions import post_of

    return {post for _, payload in items
            if isinstance(payload.get("mention"), dict) and payload["mention"].get("event") == "restore"
            and (post := post_of(payload)) is not None}
