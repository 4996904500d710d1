"""Redis Streams bus: one stream per topic (``{prefix}:{topic}``), consumer groups, XACK after the
stage commits, claims of the entries a crashed or hung consumer left pending (one at a time, while
live consumers renew theirs: :mod:`service.bus.redis_claims`), and a dead-letter stream
(``{prefix}:deadletter``).

Attempts of a delivery = the entry's ``a`` field (a failed handling re-appends a copy with ``a+1``,
so the entries behind it never wait) + the times this entry was delivered beyond the first (to
consumers that died before acking). A retry copy names its group (``g``); other groups of the topic
ack and skip it, which their ``lag`` counts until they pass it. A stream is trimmed (:meth:`trim`) only
below what every group has acknowledged: nothing pending or unread is lost. While Redis
restarts, every call retries with back-off for ``retry_seconds`` and then raises
:class:`BusUnavailable`; a lost consumer group is re-created.

Dead letters are written with an index by post (:mod:`service.bus.redis_deadletters`), which a
content removal reads to rewrite a post's letters without the words (:mod:`service.bus.redis_removals`).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from service.bus.base import Bus, BusUnavailable, DeadLetter, Envelope, removals, restores
from service.bus.codec import CodecError, Message, decode, decode_dead_letter, encode, encode_dead_letter
from service.bus.redis_claims import Claims
from service.bus.redis_common import CHUNK, _s
from service.bus.redis_deadletters import DeadLetterStore, post_member
from service.bus.redis_removals import Removals
from service.logs import log_id
from service.outages import REDIS, note_outage

__all__ = ["BusUnavailable", "RedisStreamsBus"]
log = logging.getLogger("socialcare.bus")
T = TypeVar("T")
ENTRY_ID = re.compile(r"^\d{1,20}-\d{1,20}$")
WAITAOF_MS = 2_000  # how long a durable publish waits for the append-only file (fsync every second)

def _entry_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms or 0), int(seq or 0)


class RedisStreamsBus(Bus):
    def __init__(self, url: str, *, prefix: str = "socialcare", max_deliveries: int = 5,
                 claim_idle_ms: int = 30_000, retry_seconds: float = 30.0) -> None:
        if max_deliveries < 1:
            raise ValueError("max_deliveries must be at least 1")
        self.url = url
        self.prefix = prefix
        self.max_deliveries = max_deliveries
        self.claim_idle_ms = claim_idle_ms
        self.retry_seconds = retry_seconds
        self.client: redis.Redis | None = None
        self._claims = Claims(self)
        self._removals = Removals(self)
        self._dead = DeadLetterStore(self)
        self._waitaof: bool | None = None  # does this Redis confirm writes on disk (None: not asked yet)
        parts = urlsplit(url)  # never log a password
        self._where = f"{parts.hostname or 'localhost'}:{parts.port or 6379}{parts.path or ''}"

    def stream(self, topic: str) -> str:
        return f"{self.prefix}:{topic}"

    @property
    def dead_stream(self) -> str:
        return f"{self.prefix}:deadletter"

    async def start(self) -> None:
        if self.client is None:
            # One immediate reconnect inside redis-py hides a stale pooled connection; longer
            # outages are ridden out by _call with its own bounded back-off.
            self.client = redis.Redis.from_url(
                self.url, socket_connect_timeout=5, socket_keepalive=True, health_check_interval=15,
                retry=Retry(NoBackoff(), 1), client_name=f"socialcare-bus:{self.prefix}")

    async def close(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            await client.aclose()

    async def _call(self, what: str, fn: Callable[[redis.Redis], Awaitable[T]]) -> T:
        """Run one Redis operation, retrying connection errors with back-off for ``retry_seconds``."""
        await self.start()
        deadline: float | None = None
        delay = 0.05
        while True:
            try:
                return await fn(self.client)
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                now = time.monotonic()
                deadline = deadline if deadline is not None else now + self.retry_seconds
                if now >= deadline:
                    raise BusUnavailable(f"Redis at {self._where} did not answer for {self.retry_seconds:g} s "
                                         f"({what}: {type(exc).__name__})") from exc
                note_outage(log, REDIS, exc, f"Redis at {self._where} during {what}; retrying for up to "
                                             f"{self.retry_seconds:g} s")
                await asyncio.sleep(min(delay, deadline - now))
                delay = min(delay * 2, 2.0)

    async def ping(self) -> bool:
        try:
            await self.start()
            return bool(await asyncio.wait_for(self.client.ping(), 3))
        except Exception:  # noqa: BLE001 - readiness: any failure is "not ready"
            return False

    async def publish(self, topic: str, payload: dict[str, Any], key: str) -> str:
        return (await self.publish_many(topic, [(key, payload)]))[0]

    async def publish_many(self, topic: str, items: list[tuple[str, dict[str, Any]]], *,
                           durable: bool = False) -> list[str]:
        now = time.time()
        encoded = [encode(key, payload, 1, now) for key, payload in items]  # refuse before sending any
        if posts := removals(items):  # first: a dead letter retried meanwhile is back before the deletion
            await self.remove_content(posts)
        if back := restores(items):  # shown again: its messages from now on are not the removed words
            await self._removals.forget(back)
        ids: list[str] = []
        for start in range(0, len(encoded), CHUNK):
            last = start + CHUNK >= len(encoded)
            wait = durable and last and self._waitaof is not False

            async def go(c: redis.Redis, chunk: list[dict[str, str]] = encoded[start:start + CHUNK],
                         wait: bool = wait) -> list[Any]:
                pipe = c.pipeline(transaction=False)  # one connection: WAITAOF waits for its own writes
                for fields in chunk:
                    pipe.xadd(self.stream(topic), fields)
                if wait:
                    pipe.execute_command("WAITAOF", 1, 0, WAITAOF_MS)
                return await pipe.execute(raise_on_error=False)

            done = await self._call("publish", go)
            if wait:
                self._persisted(done.pop())
            for result in done:
                if isinstance(result, Exception):
                    raise result
            ids += [_s(i) for i in done]
        return ids

    def _persisted(self, answer: Any) -> None:
        """What ``WAITAOF 1 0`` said: the writes are in the append-only file on disk, or it timed out
        (logged), or this Redis cannot tell (before 7.2, or ``appendonly no``: logged once, not asked
        again; a crash of such a Redis may lose the last second of writes, README "Production stack")."""
        if isinstance(answer, Exception):
            self._waitaof = False
            log.warning("Redis at %s cannot confirm that messages reached its disk (%s); a crash of it may "
                        "lose the last second of what connectors fetched: run Redis 7.2 or later with "
                        "appendonly yes", self._where, str(answer)[:200])
        elif not answer or int(answer[0]) < 1:
            log.warning("Redis at %s did not write the append-only file within %d ms", self._where, WAITAOF_MS)
        else:
            self._waitaof = True

    async def ensure_group(self, topic: str, group: str) -> None:
        await self._call("ensure_group", lambda c: self._create_group(c, topic, group))

    async def _create_group(self, c: redis.Redis, topic: str, group: str) -> None:
        try:
            await c.xgroup_create(self.stream(topic), group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def read(self, topic: str, group: str, consumer: str, count: int, block_ms: int, *,
                   claim: bool = True) -> list[Envelope]:
        if claim and count > 0 and (claimed := await self._claims.stale(topic, group, consumer)):
            return claimed  # alone
        stream = self.stream(topic)

        async def go(c: redis.Redis) -> Any:
            for _ in range(2):
                try:
                    return await c.xreadgroup(group, consumer, {stream: ">"}, count=count,
                                              block=block_ms if block_ms > 0 else None)
                except ResponseError as exc:
                    if "NOGROUP" not in str(exc):
                        raise
                    await self._create_group(c, topic, group)  # lost with a Redis that restarted empty
            return []

        result = await self._call("read", go)
        rows = result.items() if isinstance(result, dict) else (result or [])
        entries = [(_s(eid), fields) for _name, batch in rows for eid, fields in batch]
        return await self._envelopes(topic, group, entries, {})

    async def _envelopes(self, topic: str, group: str, entries: list[tuple[str, Any]],
                         delivered: dict[str, int]) -> list[Envelope]:
        out: list[Envelope] = []
        foreign: list[str] = []
        for eid, fields in entries:
            try:
                msg = decode(fields)
            except CodecError as exc:
                await self._bury(topic, group, eid, None, "undecodable", fields, str(exc))
                continue
            if msg.group is not None and msg.group != group:  # another group's retry copy
                foreign.append(eid)
                continue
            attempts = msg.attempts + max(0, delivered.get(eid, 1) - 1)
            if attempts > self.max_deliveries:  # every consumer it reached died before acking
                msg = Message(msg.key, msg.payload, attempts, msg.published_at)
                await self._bury(topic, group, eid, msg,
                                 f"delivered {attempts} times without an ack (consumer crashed or hung)")
                continue
            out.append(Envelope(id=eid, topic=topic, key=msg.key, payload=msg.payload, attempts=attempts))
        await self.ack(topic, group, foreign)
        return out

    async def renew(self, topic: str, group: str, consumer: str, ids: list[str]) -> list[str]:
        return await self._claims.renew(topic, group, consumer, ids)

    async def remove_consumer(self, topic: str, group: str, consumer: str) -> bool:
        return bool(await self._claims.forget(topic, group, consumer=consumer))

    async def prune_consumers(self, topic: str, group: str, idle_ms: int, keep: str = "") -> list[str]:
        return await self._claims.forget(topic, group, idle_ms=idle_ms, keep=keep)

    async def ack(self, topic: str, group: str, ids: list[str]) -> None:
        if ids:
            await self._call("ack", lambda c: c.xack(self.stream(topic), group, *ids))

    async def fail(self, topic: str, group: str, envelope: Envelope, reason: str) -> bool:
        stream = self.stream(topic)
        rows = await self._call("fail", lambda c: c.xrange(stream, min=envelope.id, max=envelope.id, count=1))
        try:  # the message as published (the stage may have mutated its payload), with its first-publish time
            original = decode(rows[0][1]) if rows else None
        except CodecError:
            original = None
        msg = Message(envelope.key, original.payload if original else envelope.payload, envelope.attempts,
                      original.published_at if original else time.time())
        if envelope.attempts >= self.max_deliveries:
            await self._bury(topic, group, envelope.id, msg, reason)
            return True
        copy = encode(msg.key, msg.payload, msg.attempts + 1, msg.published_at, group)

        async def go(c: redis.Redis) -> None:
            pipe = c.pipeline(transaction=True)
            pipe.xadd(stream, copy)
            pipe.xack(stream, group, envelope.id)
            await pipe.execute()

        await self._call("fail", go)
        return False

    async def _bury(self, topic: str, group: str, eid: str, msg: Message | None, reason: str,
                    raw: dict[Any, Any] | None = None, error: str = "") -> None:
        """Dead-letter an entry, index it and ack it, in one script; with it, whether its post's
        content was removed meanwhile (then it is rewritten without the words at once)."""
        fields = encode_dead_letter(topic, group, eid, reason, msg, raw, error)
        post = post_member(msg.payload if msg is not None else None)
        dead_id, removed_at = await self._call("dead-letter", lambda c: self._dead.bury(
            c, self.stream(topic), group, eid, post, self._removals.key, fields))
        self._buried(topic)
        if removed_at is not None and self._removals.covers(removed_at, msg.published_at):
            await self._removals.rewrite(decode_dead_letter(dead_id, fields))
        log.error("dead letter on %s (entry %s, %s attempts): %s", topic, log_id(eid), fields["attempts"],
                  "undecodable" if msg is None else "handling failed",
                  extra={"stage": topic, "entry_id": eid, "dead_letter_id": dead_id,
                         **({"message_key": msg.key} if msg is not None else {})})

    async def pending(self, topic: str, group: str) -> int:
        async def go(c: redis.Redis) -> int:
            try:
                return int((await c.xpending(self.stream(topic), group))["pending"])
            except ResponseError:  # no stream or no group yet
                return 0

        return await self._call("pending", go)

    async def lag(self, topic: str, group: str) -> int:
        stream = self.stream(topic)

        async def go(c: redis.Redis) -> int:
            try:
                groups = await c.xinfo_groups(stream)
            except ResponseError:  # no stream: nothing published
                return 0
            info = next((g for g in groups if _s(g["name"]) == group), None)
            if info is None:  # the group will read the whole stream
                return int(await c.xlen(stream))
            last = _s(info["last-delivered-id"])
            top = await c.xrevrange(stream, count=1)
            if not top or _entry_key(_s(top[0][0])) <= _entry_key(last):
                return 0  # everything was delivered, whatever the counter says (see below)
            if info.get("lag") is not None:
                # Redis derives lag from the group's entries-read counter, which a restart from the
                # append-only file can leave behind (seen: lag 38,196 with nothing left to read);
                # the check above keeps such a stale counter from reporting work that is not there.
                return int(info["lag"])
            n, start = 0, f"({_s(info['last-delivered-id'])}"  # lag unknown after deletions: count
            while rows := await c.xrange(stream, min=start, count=CHUNK * 10):
                n, start = n + len(rows), f"({_s(rows[-1][0])}"
            return n

        return await self._call("lag", go)

    async def trim(self, topic: str) -> int:
        stream = self.stream(topic)

        async def go(c: redis.Redis) -> int:
            try:
                groups = await c.xinfo_groups(stream)
            except ResponseError:  # no stream yet
                return 0
            if not groups:
                return 0
            floors = []
            for g in groups:  # a group still needs its oldest pending entry and all it has not read
                summary = await c.xpending(stream, _s(g["name"]))
                if summary["pending"]:
                    floors.append(_entry_key(_s(summary["min"])))
                else:
                    ms, seq = _entry_key(_s(g["last-delivered-id"]))
                    floors.append((ms, seq + 1))
            ms, seq = min(floors)
            return int(await c.xtrim(stream, minid=f"{ms}-{seq}", approximate=False))

        return await self._call("trim", go)

    async def dead_letters(self, topic: str | None = None, limit: int = 100) -> list[DeadLetter]:
        """Oldest first, reading no more than it returns (of a topic: its letters, and the others'
        topic field only, none decoded)."""
        out: list[DeadLetter] = []
        start = "-"
        while len(out) < limit:
            count = CHUNK if topic is not None else min(CHUNK, limit - len(out))
            rows = await self._call("dead_letters", lambda c, start=start, count=count: c.xrange(
                self.dead_stream, min=start, count=count))
            for eid, fields in rows:
                if len(out) < limit and (topic is None or _s(fields.get(b"topic", b"")) == topic):
                    out.append(decode_dead_letter(_s(eid), fields))
            if len(rows) < count:
                break
            start = f"({_s(rows[-1][0])}"
        return out[: max(limit, 0)]

    async def dead_letter_counts(self) -> dict[str, int]:
        return await self._dead.counts()

    async def retry_dead_letter(self, dead_letter_id: str) -> bool:
        if not ENTRY_ID.match(dead_letter_id):
            return False
        return await self._dead.retry(dead_letter_id)

    async def remove_content(self, posts: set[tuple[str, str]]) -> int:
        return await self._removals.remember(posts)

    async def delete_dead_letters(self, ids: list[str]) -> int:
        return await self._dead.delete([i for i in dict.fromkeys(ids) if isinstance(i, str) and ENTRY_ID.match(i)])
