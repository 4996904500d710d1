"""The Redis Streams bus's dead-letter stream (``{prefix}:deadletter``) and its index by post.

A content removal (:mod:`service.bus.redis_removals`) runs on the ingest publish path and wants the
letters of a few posts only: reading the whole stream for them took seconds once it held thousands.
So every write to the stream is one Lua script that also keeps an index, and no client ever sees
the two disagree:

* ``{prefix}:deadletter:post-of`` (hash): entry id -> its post as :func:`member` (platform and
  external id), or "" for a letter of no post (a later stage's, an undecodable entry); one field per
  letter, so that a letter removed can be taken out of the index by its id alone.
* ``{prefix}:deadletter:by-post`` (hash): post -> the ids of its letters, space-separated.
* ``{prefix}:deadletter:topic-of`` (hash): entry id -> its topic, and ``{prefix}:deadletter:per-topic``
  (hash): topic -> how many letters it has. ``/metrics`` and ``deadletter list`` count the letters by
  topic with these (:meth:`DeadLetterStore.counts`, a few commands) instead of reading and decoding
  the whole stream (seconds per scrape once it held 30,000). Letters buried by a release that kept
  no counts are counted by the index's rebuild below, once, in a task a scrape's time-out does not
  cancel (that scrape keeps the last values).

Nothing else is kept (no words, no author), and nothing longer than its letter: a burial adds its
letter, a retry, a discard, an erasure or the retention purge (:meth:`DeadLetterStore.delete`) and a
rewrite take it out, each in the script that writes the stream. A letter is in the index if and only
if it is in the stream, so they have the same size (``XLEN`` and ``HLEN``, read together before
each lookup). When they do not (letters buried by a release before the index, or by one still
running during an upgrade, or a letter deleted by hand), the lookup first rebuilds the index
(:meth:`DeadLetterStore.rebuild`, once: about 4 s for 20,000 letters): each letter not in it added if
still in the stream, then each id whose letter is gone taken out, both by script, so writes meanwhile
keep it right. (Were an older release, still running during an upgrade, to bury one letter and
delete another between two lookups, the sizes would match and a removal would miss the one it
buried; the retention purge still takes it.)

A stream entry cannot change: a letter rewritten without its post's words is deleted and added
again, under a new id, and the rewriting script records the old id's successor for :data:`MOVED_S`
(``{prefix}:deadletter:moved:<old id>``, ids only). A delete by an id read before the rewrite
follows it in its own script, a retry looks it up when the letter is gone: an erasure, which matches
the person's letters and then deletes them by id, the purge, or an admin's discard of a letter
listed a moment before, removes the letter chosen, not nothing. Following is right because the
successor is that letter (its key, attempts, failure time and author kept), only without the words;
an erasure re-reading until nothing of the person is left would cost another pass over the whole
stream and would leave the admin's discard and the purge's ids to miss it. One step reaches it: a
letter is rewritten once at most — its successor has no words left, so a second removal changes
nothing (:meth:`~service.bus.redis_removals.Removals.rewrite`), and of two rewrites racing on one
letter (a burial's own and a removal's) only the one whose script deletes it writes a successor —
and a successor retried and buried again is a new letter, not a rewrite. The delete script builds
the successors' key names itself: one standalone Redis, as the bus's other scripts, which span
streams, already need.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from listener.deletions import post_of
from service.bus.base import DeadLetter
from service.bus.codec import CodecError, decode_dead_letter, encode
from service.bus.redis_common import CHUNK, Scripts, _s

if TYPE_CHECKING:
    import redis.asyncio as redis

    from service.bus.redis_streams import RedisStreamsBus

log = logging.getLogger("socialcare.bus")


def _rebuild_failed(done: asyncio.Future) -> None:
    """A rebuild no scrape waited for to its end: its failure is logged, not left unread."""
    if not done.cancelled() and (exc := done.exception()) is not None:
        log.warning("rebuilding the dead letters' index failed (%s: %s); the next count tries again",
                    type(exc).__name__, exc)
MOVED_S = 86400  # how long an id read before a rewrite still reaches the letter (a listing left open)

_INDEX = """
local function topic_add(id, topic)
  if redis.call('HSETNX', KEYS[4], id, topic) == 1 then redis.call('HINCRBY', KEYS[5], topic, 1) end
end
local function topic_del(id)
  local topic = redis.call('HGET', KEYS[4], id)
  if not topic then return end
  redis.call('HDEL', KEYS[4], id)
  if redis.call('HINCRBY', KEYS[5], topic, -1) <= 0 then redis.call('HDEL', KEYS[5], topic) end
end
local function index_add(id, post, topic)
  topic_add(id, topic)
  redis.call('HSET', KEYS[2], id, post)
  if post == '' then return end
  local ids = redis.call('HGET', KEYS[3], post)
  if not ids then
    redis.call('HSET', KEYS[3], post, id)
  elseif not string.find(' ' .. ids .. ' ', ' ' .. id .. ' ', 1, true) then
    redis.call('HSET', KEYS[3], post, ids .. ' ' .. id)
  end
end
local function index_del(id)
  topic_del(id)
  local post = redis.call('HGET', KEYS[2], id)
  if not post then return end
  redis.call('HDEL', KEYS[2], id)
  if post == '' then return end
  local ids = redis.call('HGET', KEYS[3], post)
  if not ids then return end
  local kept = {}
  for other in string.gmatch(ids, '%S+') do
    if other ~= id then kept[#kept + 1] = other end
  end
  if #kept == 0 then redis.call('HDEL', KEYS[3], post)
  else redis.call('HSET', KEYS[3], post, table.concat(kept, ' ')) end
end
"""
# Every script: KEYS[1] the dead-letter stream, KEYS[2] post-of, KEYS[3] by-post, KEYS[4] topic-of,
# KEYS[5] per-topic.
# Bury and ack; with it whether the post's content was removed (read in the same script: see
# redis_removals). KEYS[6] the topic's stream, KEYS[7] the removed posts; ARGV group, entry id, post,
# topic, fields...
_BURY = _INDEX + """
local id = redis.call('XADD', KEYS[1], '*', unpack(ARGV, 5))
index_add(id, ARGV[3], ARGV[4])
redis.call('XACK', KEYS[6], ARGV[1], ARGV[2])
if ARGV[3] == '' then return {id, false} end
return {id, redis.call('ZSCORE', KEYS[7], ARGV[3])}
"""
# Replace a letter by a copy (only if still there) and record its successor. KEYS[6] the old id's
# moved key; ARGV old id, post, seconds to keep the successor, topic, fields...
_REWRITE = _INDEX + """
if redis.call('XDEL', KEYS[1], ARGV[1]) == 0 then return false end
index_del(ARGV[1])
local id = redis.call('XADD', KEYS[1], '*', unpack(ARGV, 5))
index_add(id, ARGV[2], ARGV[4])
redis.call('SET', KEYS[6], id, 'EX', ARGV[3])
return id
"""
# Move a letter back to its topic only if this caller removed it: concurrent retries of one letter
# re-publish it once. KEYS[6] the topic's stream; ARGV id, fields...
_RETRY = _INDEX + """
if redis.call('XDEL', KEYS[1], ARGV[1]) == 0 then return false end
index_del(ARGV[1])
return redis.call('XADD', KEYS[6], '*', unpack(ARGV, 2))
"""
# Delete letters, each by its id or its successor's; how many went. ARGV moved-key prefix, ids...
_DELETE = _INDEX + """
local gone = 0
for i = 2, #ARGV do
  local id = ARGV[i]
  if redis.call('XDEL', KEYS[1], id) == 0 then
    id = redis.call('GET', ARGV[1] .. id)
    if id and redis.call('XDEL', KEYS[1], id) == 0 then id = false end
  end
  if id then
    index_del(id)
    gone = gone + 1
  end
end
return gone
"""
# Rebuild: index the letters given (id, post, topic triples) not in it yet (in either hash) and
# still in the stream.
_ADD_PRESENT = _INDEX + """
local added = 0
for i = 1, #ARGV, 3 do
  if (redis.call('HEXISTS', KEYS[2], ARGV[i]) == 0 or redis.call('HEXISTS', KEYS[4], ARGV[i]) == 0)
      and #redis.call('XRANGE', KEYS[1], ARGV[i], ARGV[i]) > 0 then
    index_add(ARGV[i], ARGV[i + 1], ARGV[i + 2])
    added = added + 1
  end
end
return added
"""
# Rebuild: take out the ids given whose letter is no longer in the stream.
_DROP_ABSENT = _INDEX + """
local dropped = 0
for i = 1, #ARGV do
  if #redis.call('XRANGE', KEYS[1], ARGV[i], ARGV[i]) == 0 then
    index_del(ARGV[i])
    dropped = dropped + 1
  end
end
return dropped
"""

def member(post: tuple[str, str]) -> str:
    """A post as the index and the set of removed posts name it: JSON, so no platform or id can
    run into the other."""
    return json.dumps(list(post))


def post_member(payload: dict[str, Any] | None) -> str:
    """The index's name of the post a letter's payload carries; "" for none."""
    post = post_of(payload) if payload is not None else None
    return member(post) if post is not None else ""


class DeadLetterStore:
    """The dead-letter stream's writes, each with its index, and the index's lookups."""

    def __init__(self, bus: RedisStreamsBus) -> None:
        self.bus = bus
        self._scripts = Scripts()
        self._rebuilding: asyncio.Future | None = None  # the index's rebuild under way for counts()

    @property
    def keys(self) -> list[str]:
        """The stream, the index's two hashes by post, then the topic index and the counts per
        topic (the first five keys of every script)."""
        base = self.bus.dead_stream
        return [base, f"{base}:post-of", f"{base}:by-post", f"{base}:topic-of", f"{base}:per-topic"]

    def moved(self, dead_id: str = "") -> str:
        """The key that names the successor of a letter rewritten (``dead_id``; "": the prefix)."""
        return f"{self.bus.dead_stream}:moved:{dead_id}"

    async def _run(self, c: redis.Redis, script: str, keys: list[str], args: list[Any]) -> Any:
        return await self._scripts.run(c, script, [*self.keys, *keys], args)

    async def bury(self, c: redis.Redis, topic_stream: str, group: str, entry_id: str, post: str,
                   removed_key: str, fields: dict[Any, Any]) -> tuple[str, float | None]:
        """Add a letter, index it and ack its entry, in one script; its id, and the score of its
        post in the removed set (None: not removed, or no post)."""
        new_id, score = await self._run(c, _BURY, [topic_stream, removed_key],
                                        [group, entry_id, post, _topic(fields), *_flat(fields)])
        return _s(new_id), float(score) if score is not None else None

    async def rewrite(self, dead_id: str, post: str, fields: dict[Any, Any]) -> str | None:
        """Replace a letter by ``fields``, its successor recorded; the new id, None when it was gone."""
        new_id = await self.bus._call("remove content", lambda c: self._run(
            c, _REWRITE, [self.moved(dead_id)], [dead_id, post, MOVED_S, _topic(fields), *_flat(fields)]))
        return _s(new_id) if new_id is not None else None

    async def retry(self, dead_id: str) -> bool:
        """Put a letter back on its topic (its successor's, when it was rewritten); False when gone."""
        if await self._retry(dead_id):
            return True
        # gone: retried or discarded, or rewritten (read before, or between the read and the script)
        successor = await self.bus._call("retry", lambda c: c.get(self.moved(dead_id)))
        return successor is not None and await self._retry(_s(successor))

    async def _retry(self, dead_id: str) -> bool:
        dead = await self._read(dead_id)
        if dead is None:
            return False
        if "undecodable" in dead.extra:
            raise CodecError(f"dead letter {dead_id} holds an undecodable entry and cannot be retried")
        fields = encode(dead.key, dead.payload, 1, dead.extra.get("published_at") or None,
                        dead.extra.get("group") or None)
        stream = self.bus.stream(dead.topic)
        back = await self.bus._call("retry", lambda c: self._run(c, _RETRY, [stream], [dead_id, *_flat(fields)]))
        return back is not None  # None: gone between the read and the script

    async def delete(self, ids: list[str]) -> int:
        """Remove these letters (each, if rewritten, by its successor); how many went."""
        removed = 0
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start:start + CHUNK]
            removed += int(await self.bus._call("delete dead letters", lambda c, chunk=chunk: self._run(
                c, _DELETE, [], [self.moved(), *chunk])))
        return removed

    async def _look(self, what: str, read: Callable[[Any], None]) -> tuple[bool, Any]:
        """Whether the index is whole (both hashes have one field per letter), and what ``read``
        asks of it, in one transaction: a script's writes are all in or all out."""
        stream, post_of_key, _, topic_of, _ = self.keys

        async def go(c: redis.Redis) -> list[Any]:
            pipe = c.pipeline(transaction=True)
            pipe.xlen(stream)
            pipe.hlen(post_of_key)
            pipe.hlen(topic_of)
            read(pipe)
            return await pipe.execute()

        letters, by_post, by_topic, answer = await self.bus._call(what, go)
        return letters == by_post == by_topic, answer

    async def counts(self) -> dict[str, int]:
        """Letters per topic, from the counts the scripts keep (a few commands, whatever the
        stream's size); the index rebuilt first when it is not whole (once: see the module doc),
        in a task of its own that a caller's time-out does not cancel half-way."""
        per_topic = self.keys[4]
        whole, counts = await self._look("count dead letters", lambda pipe: pipe.hgetall(per_topic))
        if not whole:
            if self._rebuilding is None or self._rebuilding.done():
                self._rebuilding = asyncio.ensure_future(self.rebuild())
                self._rebuilding.add_done_callback(_rebuild_failed)  # read even when no caller waits anymore
            await asyncio.shield(self._rebuilding)
            whole, counts = await self._look("count dead letters", lambda pipe: pipe.hgetall(per_topic))
        return {_s(t): int(n) for t, n in counts.items() if int(n) > 0}

    async def of_posts(self, posts: set[tuple[str, str]]) -> list[DeadLetter]:
        """The letters of these posts, read by the index (rebuilt first when it is not whole)."""
        stream, by_post = self.keys[0], self.keys[2]
        members = [member(p) for p in posts]
        whole, found = await self._look("remove content", lambda pipe: pipe.hmget(by_post, members))
        if not whole:
            await self.rebuild()
            whole, found = await self._look("remove content", lambda pipe: pipe.hmget(by_post, members))
        ids = [i for joined in found if joined for i in _s(joined).split()]
        if not ids:
            return []

        async def read(c: redis.Redis) -> list[Any]:
            pipe = c.pipeline(transaction=False)
            for dead_id in ids:
                pipe.xrange(stream, min=dead_id, max=dead_id, count=1)
            return await pipe.execute()

        rows = await self.bus._call("remove content", read)
        return [decode_dead_letter(_s(r[0][0]), r[0][1]) for r in rows if r]

    async def rebuild(self) -> tuple[int, int]:
        """Bring the index to the stream: the letters it lacks added, the ids of letters gone taken
        out; (added, dropped). Safe while others write: each id is decided in a script."""
        stream, post_of_key, _, topic_of, _ = self.keys
        added = dropped = 0
        start = "-"
        while rows := await self.bus._call("index dead letters", lambda c, start=start: c.xrange(
                stream, min=start, count=CHUNK)):
            triples = [x for eid, fields in rows
                       for dead in [decode_dead_letter(_s(eid), fields)]
                       for x in (dead.id, post_member(dead.payload), dead.topic)]
            added += int(await self.bus._call("index dead letters", lambda c, triples=triples: self._run(
                c, _ADD_PRESENT, [], triples)))
            start = f"({_s(rows[-1][0])}"
        for index in (post_of_key, topic_of):
            cursor: Any = 0
            while True:
                cursor, found = await self.bus._call("index dead letters", lambda c, cursor=cursor, index=index:
                                                     c.hscan(index, cursor, count=CHUNK))
                if found:
                    dropped += int(await self.bus._call("index dead letters", lambda c, ids=list(found): self._run(
                        c, _DROP_ABSENT, [], [_s(i) for i in ids])))
                if not int(cursor):
                    break
        log.info("dead-letter index rebuilt: %d letter(s) added, %d gone", added, dropped)
        return added, dropped

    async def _read(self, dead_id: str) -> DeadLetter | None:
        rows = await self.bus._call("retry", lambda c: c.xrange(self.bus.dead_stream, min=dead_id, max=dead_id,
                                                                count=1))
        return decode_dead_letter(dead_id, rows[0][1]) if rows else None


def _topic(fields: dict[Any, Any]) -> str:
    """The topic a letter's fields name (the topic index's value)."""
    return _s(fields.get("topic", fields.get(b"topic", "")))


def _flat(fields: dict[Any, Any]) -> list[Any]:
    return [x for kv in fields.items() for x in kv]
