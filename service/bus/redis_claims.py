"""Claims on the Redis Streams bus (:mod:`service.bus.redis_streams`): taking over the entries a dead
or stuck consumer left pending, and keeping a live consumer's entries its own while it works on them.

* A stale entry (pending longer than ``claim_idle_ms``) is claimed **alone**, one per read, counting
  one delivery more. A read that claims one returns it at once (the next read looks again straight
  away, so a whole batch left behind is recovered quickly); a read that finds none looks again only
  after ``min(1 s, claim_idle / 2)``. One at a time, a message that kills every consumer it reaches
  spends its own attempts only: the others of the batch it took down are delivered once more each,
  handled alone and acked, instead of being claimed with it, crashed with it and buried with it.
  The look is one script: ``XPENDING <stream> <group> IDLE <claim_idle> - + 10`` (the oldest stale
  entries; the server scans the whole pending list) then ``XCLAIM <stream> <group> <consumer>
  <claim_idle> <id>`` of the first still there. XCLAIM's min-idle argument turns a concurrent claim
  by another reader into a no-op, it increments the entry's delivery counter, and it drops an entry
  deleted from the stream from the pending list (Redis 7), the next candidate is then tried.
  ``XAUTOCLAIM ... COUNT 1`` would not do: it looks at no more than ten pending entries a call, so
  behind the fresh batches of live consumers it misses the stale one.
* An entry's **first** claim spends no attempt when it is at its last already (:func:`_counted`): it
  was read in a batch whose consumer died, maybe taken down by another message of it, and was never
  handled alone at that attempt; buried at once, it would be dead-lettered with the crasher. It runs
  once, alone, then: failing, it is dead-lettered with its own reason; killing that consumer too,
  its next claim (delivered again, counted) buries it. So a message that kills every consumer is
  handed out at most once more than its attempts, never for ever.
* A consumer still at work on its entries renews them (:meth:`Claims.renew`, every third of the
  claim-idle time): ``XCLAIM <stream> <group> <consumer> 0 <ids> JUSTID`` of those still its own
  (checked by ``XPENDING`` in the same script, so an entry another consumer took over meanwhile is
  not taken back). XCLAIM restarts the idle time; with ``JUSTID`` it leaves the delivery counter
  alone, so renewing spends no attempt (the Redis manual says so; ``tests/service/bus/test_claims.py``
  checks it against the server).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from redis.exceptions import ResponseError

from service.bus.base import Envelope
from service.bus.codec import CodecError, decode
from service.bus.redis_common import CHUNK, Scripts, _s
from service.logs import log_id

if TYPE_CHECKING:
    import redis.asyncio as redis

    from service.bus.redis_streams import RedisStreamsBus

log = logging.getLogger("socialcare.bus")
LOOKS = 50  # stale entries one read goes through at most when they are buried or skipped, not returned
# KEYS[1] stream; ARGV group, consumer, min idle ms. Nil: nothing stale; 0: the candidates were gone
# from the stream (dropped by XCLAIM): look again; else {id, {field, value, ...}, times delivered}.
_CLAIM_SCRIPT = """
local stale = redis.call('XPENDING', KEYS[1], ARGV[1], 'IDLE', ARGV[3], '-', '+', 10)
if #stale == 0 then return false end
for _, p in ipairs(stale) do
  local got = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], p[1])
  if got[1] then return {got[1][1], got[1][2], p[4] + 1} end
end
return 0
"""
# KEYS[1] stream; ARGV group, consumer, ids. Returns the ids renewed: those still the consumer's.
_RENEW_SCRIPT = """
local claim = {'XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0}
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if p[1] and p[1][2] == ARGV[2] then claim[#claim + 1] = ARGV[i] end
end
if #claim == 5 then return {} end
claim[#claim + 1] = 'JUSTID'
return redis.call(unpack(claim))
"""


# KEYS[1] stream; ARGV group, a consumer to remove ('' none), min idle ms of others to remove ('' none),
# a consumer to keep. Removes only consumers with nothing pending (what one holds is claimed, never
# dropped); returns their names. A stream or group that is not there: nothing.
_FORGET_SCRIPT = """
local ok, consumers = pcall(redis.call, 'XINFO', 'CONSUMERS', KEYS[1], ARGV[1])
if not ok then return {} end
local gone = {}
for _, c in ipairs(consumers) do
  local f = {}
  for i = 1, #c, 2 do f[c[i]] = c[i + 1] end
  local mine = ARGV[2] ~= '' and f['name'] == ARGV[2]
  local stale = ARGV[3] ~= '' and f['name'] ~= ARGV[4] and tonumber(f['idle']) >= tonumber(ARGV[3])
  if tonumber(f['pending']) == 0 and (mine or stale) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], f['name'])
    gone[#gone + 1] = f['name']
  end
end
return gone
"""


class Claims:
    """The claiming part of one :class:`~service.bus.redis_streams.RedisStreamsBus`."""

    def __init__(self, bus: RedisStreamsBus) -> None:
        self.bus = bus
        self._quiet_until: dict[tuple[str, str, str], float] = {}  # (topic, group, consumer) -> next look
        self._scripts = Scripts()

    async def _run(self, c: redis.Redis, source: str, stream: str, args: list[Any]) -> Any:
        try:
            return await self._scripts.run(c, source, [stream], args)
        except ResponseError as exc:
            if "NOGROUP" in str(exc) or "no such key" in str(exc).lower():  # no stream or group (yet)
                return None
            raise

    async def stale(self, topic: str, group: str, consumer: str) -> list[Envelope]:
        """One stale entry of the group claimed for ``consumer`` ([] when there is none)."""
        marker = (topic, group, consumer)
        if time.monotonic() < self._quiet_until.get(marker, 0.0):
            return []
        stream, idle = self.bus.stream(topic), self.bus.claim_idle_ms
        for _ in range(LOOKS):
            got = await self.bus._call("claim", lambda c: self._run(c, _CLAIM_SCRIPT, stream, [group, consumer, idle]))
            if got is None:  # nothing stale: look again in a while
                self._quiet_until[marker] = time.monotonic() + min(1.0, idle / 2000)
                return []
            if got == 0:  # the candidates were deleted from the stream: the next ones
                continue
            eid, flat, delivered = _s(got[0]), got[1], int(got[2])
            log.info("claimed stale %s entry %s for %s (delivery %d)", topic, log_id(eid), consumer, delivered,
                     extra={"stage": topic, "entry_id": eid, "attempt": delivered})
            fields = dict(zip(flat[::2], flat[1::2], strict=True))
            delivered = _counted(fields, delivered, self.bus.max_deliveries)
            if out := await self.bus._envelopes(topic, group, [(eid, fields)], {eid: delivered}):
                return out
            # buried (delivered too often, or undecodable) or another group's retry copy: the next one
        return []

    async def renew(self, topic: str, group: str, consumer: str, ids: list[str]) -> list[str]:
        """Restart the idle time of those of ``ids`` still ``consumer``'s; returns them."""
        stream, kept = self.bus.stream(topic), []
        for start in range(0, len(ids), CHUNK):
            chunk = [group, consumer, *ids[start:start + CHUNK]]
            got = await self.bus._call("renew", lambda c, chunk=chunk: self._run(c, _RENEW_SCRIPT, stream, chunk))
            kept += [_s(i) for i in got or []]
        return kept


    async def forget(self, topic: str, group: str, consumer: str = "", idle_ms: int | None = None,
                     keep: str = "") -> list[str]:
        """Remove ``consumer`` and/or the group's consumers idle ``idle_ms`` or longer (but ``keep``),
        each only when it has nothing pending; returns the names removed."""
        args = [group, consumer, "" if idle_ms is None else int(idle_ms), keep]
        got = await self.bus._call("forget consumers", lambda c: self._run(
            c, _FORGET_SCRIPT, self.bus.stream(topic), args))
        return [_s(n) for n in got or []]


def _counted(fields: dict[Any, Any], delivered: int, limit: int) -> int:
    """The deliveries of a claimed entry that count as attempts: all of them, but for the first claim
    of one at its last attempt already, which spends none (module doc)."""
    if delivered != 2:  # claimed before: its last delivery was alone (a claim is handed out alone)
        return delivered
    try:
        attempts = decode(fields).attempts
    except CodecError:  # buried as undecodable whatever is counted
        return delivered
    return 1 if attempts >= limit else delivered
