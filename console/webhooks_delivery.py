"""Posting outgoing webhook deliveries (:mod:`console.webhooks_out` finds the events and writes one
row per event and subscription).

Each body is signed: ``X-Socialcare-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>">``
with the subscription's secret (see :func:`verify` for the receiving side). Redirects are not
followed; a 410 unsubscribes. A delivery is leased by a conditional UPDATE before it is posted, so
two web processes never post the same one at once, and a post that failed is tried again with
exponential back-off; delivery is therefore at least once, receivers de-duplicate on the event id.

Subscriptions do not wait for one another. Each one's due deliveries are posted one after another,
in the order they fell due (then event order), while other subscriptions' are posted side by side
(at most :data:`CONCURRENCY` posts at once in a process). A subscription whose post just failed
(timed out, refused, any answer but a 2xx) is paused on its own: its other deliveries wait with it,
in the database too, so that the other web processes hold off as well, for a back-off that doubles
with each failure in a row and ends at its first success; everyone else's go on. A delivery is
given up after :data:`MAX_ATTEMPTS` tries, or at a failed try once its subscription has been failing
in a row as long as those tries would have taken (:func:`give_up_after`, counted from the first
failure of the row, in the process): such a subscription's pass then tries each of its deliveries
once instead of stopping at the first failure, so a dead endpoint's backlog does not grow for ever.
A delivery is never given up untried: a backlog merely old (a burst, a restart), or held back by a
failure or two, loses nothing.
The web process's sender keeps one :class:`Deliverer` and does not wait for a slow subscription's
posts before its next pass: it leaves that subscription out until they end.

The order is a process's, and best effort, as it was: two web processes may post two deliveries of
one subscription at once, and a delivery tried again later can be overtaken by newer ones.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import aiohttp
from sqlalchemy import false, func, or_, select, update

from models.base import utcnow
from models.console import WebhookDelivery, WebhookSubscription

log = logging.getLogger("socialcare.webhooks")
LEASE = timedelta(seconds=60)
MAX_ATTEMPTS = 8
BACKOFF_BASE_S = 10.0
BACKOFF_CAP_S = 3600.0
TIMEOUT_S = 10.0
TOLERANCE_S = 300
CONCURRENCY = 16  # posts under way at once in a process: a socket each, a database connection only around them
PER_SUBSCRIPTION = 50  # a subscription's due deliveries taken in one pass, in order
DUE_WINDOW = 2000  # the longest-due deliveries a pass looks among


# --- signing ------------------------------------------------------------------------------
def sign(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def signature_header(secret: str, body: bytes, timestamp: int | None = None) -> str:
    t = int(time.time()) if timestamp is None else timestamp
    return f"t={t},v1={sign(secret, t, body)}"


def verify(secret: str, header: str, body: bytes, *, now: float | None = None, tolerance_s: int = TOLERANCE_S) -> bool:
    """For receivers: the signature matches and is recent (replays of old bodies are refused)."""
    try:
        parts = dict(p.split("=", 1) for p in header.split(","))
        t = int(parts["t"])
    except (ValueError, KeyError):
        return False
    if abs((time.time() if now is None else now) - t) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, t, body), parts.get("v1", ""))


# --- back-off -----------------------------------------------------------------------------
def backoff(attempts: int, base_s: float = BACKOFF_BASE_S) -> timedelta:
    """Delay before the next try after ``attempts`` failures: base, 2×base, 4×base … capped."""
    return timedelta(seconds=min(BACKOFF_CAP_S, base_s * 2 ** max(0, attempts - 1)))


def pause(failures: int, base_s: float = BACKOFF_BASE_S) -> timedelta:
    """How long a subscription waits after ``failures`` failed posts in a row: a delivery's back-off,
    up to the longest a delivery waits between two of its tries."""
    return backoff(min(failures, MAX_ATTEMPTS - 1), base_s)


def give_up_after(base_s: float = BACKOFF_BASE_S) -> timedelta:
    """The time a delivery's :data:`MAX_ATTEMPTS` tries take, back-offs included (21 minutes by
    default): a subscription failing in a row that long is taken for dead (:meth:`_Pause.dead`)."""
    return sum((backoff(a, base_s) for a in range(1, MAX_ATTEMPTS)), timedelta())


# --- posting ------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Post:
    delivery_id: int
    subscription_id: int
    url: str
    secret: str
    event_type: str
    payload: Any


@dataclass
class _Pause:
    """A subscription's failures in a row (in the process): since when, how many, paused until when."""

    since: datetime
    failures: int = 0
    until: datetime | None = None

    def dead(self, now: datetime, base_s: float) -> bool:
        """Failing in a row for as long as a delivery's tries take: each delivery gets one try."""
        return now - self.since >= give_up_after(base_s)


DELIVERED, FAILED, SKIPPED = "delivered", "failed", "skipped"


class Deliverer:
    """Posts due deliveries, each subscription's in order, the subscriptions side by side.

    :meth:`start` starts one task per subscription with due deliveries and returns at once; a
    subscription whose task is still running, or that is paused after a failure, is left out. A
    task ends after its subscription's deliveries of the pass, or at its first failure (unless the
    subscription is taken for dead: then each is tried once, given up if it fails)."""

    def __init__(self, db: Any, http: aiohttp.ClientSession, *, base_s: float = BACKOFF_BASE_S,
                 concurrency: int = CONCURRENCY, per_subscription: int = PER_SUBSCRIPTION) -> None:
        self.db, self.http, self.base_s, self.per_subscription = db, http, base_s, per_subscription
        self.slots = asyncio.Semaphore(concurrency)
        self.paused: dict[int, _Pause] = {}
        self.running: dict[int, asyncio.Task[int]] = {}

    async def start(self, now: datetime | None = None) -> list[asyncio.Task[int]]:
        """Start posting for each subscription with deliveries due at ``now`` (not already under way,
        not paused); each task's result is how many it delivered."""
        now = now or utcnow()
        skip = set(self.running) | {sid for sid, p in self.paused.items() if p.until is not None and p.until > now}
        tasks = []
        for sid, due in (await _due(self.db, now, skip, self.per_subscription)).items():
            task = asyncio.get_running_loop().create_task(self._subscription(sid, due, now),
                                                          name=f"webhooks-out:{sid}")
            self.running[sid] = task
            task.add_done_callback(partial(self._ended, sid))
            tasks.append(task)
        return tasks

    def _ended(self, sid: int, task: asyncio.Task[int]) -> None:
        if self.running.get(sid) is task:
            del self.running[sid]

    async def close(self, grace_s: float | None = None) -> None:
        """Let the posts under way end (at most ``grace_s``, the post timeout unless given), then
        cancel the rest: a cancelled post's lease runs out and it is tried again."""
        tasks = list(self.running.values())
        if not tasks:
            return
        _, late = await asyncio.wait(tasks, timeout=TIMEOUT_S + 1 if grace_s is None else grace_s)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)

    async def _subscription(self, sid: int, due: list[tuple[int, datetime]], now: datetime) -> int:
        delivered, failed_id = 0, None
        for delivery_id, at in due:
            async with self.slots:
                try:
                    outcome = await self._deliver(delivery_id, at, now)
                except Exception:  # noqa: BLE001 - one subscription's trouble must not stop the others
                    log.exception("webhook delivery %s to subscription %s", delivery_id, sid)
                    break  # its lease runs out: tried again
            if outcome == DELIVERED:
                delivered, failed_id = delivered + 1, None
            elif outcome == FAILED:
                failed_id = delivery_id
                paused = self.paused.get(sid)
                if paused is None or not paused.dead(utcnow(), self.base_s):
                    break  # paused: the rest wait with it
        if failed_id is not None and (paused := self.paused.get(sid)) is not None and paused.until is not None:
            await self._hold_back(sid, failed_id, paused.until, paused.dead(utcnow(), self.base_s))
        return delivered

    async def _deliver(self, delivery_id: int, at: datetime, now: datetime) -> str:
        post = await self._lease(delivery_id, at, now)
        if post is None:
            return SKIPPED
        body = json.dumps(post.payload, separators=(",", ":"), sort_keys=True).encode()
        headers = {"Content-Type": "application/json", "User-Agent": "socialcare-webhooks/1",
                   "X-Socialcare-Event": post.event_type, "X-Socialcare-Delivery": str(post.delivery_id),
                   "X-Socialcare-Signature": signature_header(post.secret, body)}
        status, err = None, None
        try:
            async with self.http.post(post.url, data=body, headers=headers, allow_redirects=False,
                                      timeout=aiohttp.ClientTimeout(total=TIMEOUT_S)) as resp:
                status = resp.status
                await resp.read()
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            err = type(exc).__name__
        return await self._record(post, status, err)

    async def _lease(self, delivery_id: int, at: datetime, now: datetime) -> _Post | None:
        """Take the delivery if it is still as it was read (due at ``at``, pending): what to post,
        or None. No database connection is held while it is posted."""
        async with self.db.session() as session:
            leased = await session.execute(update(WebhookDelivery).where(
                WebhookDelivery.id == delivery_id, WebhookDelivery.status == "pending",
                WebhookDelivery.next_attempt_at == at).values(next_attempt_at=max(now, utcnow()) + LEASE))
            await session.commit()
            if leased.rowcount != 1:
                return None  # another process has it, or its subscription was paused since
            d = await session.get(WebhookDelivery, delivery_id)
            if d is None:
                return None  # deleted since (its subscription, an erasure)
            sub = await session.get(WebhookSubscription, d.subscription_id)
            if sub is None or not sub.active:
                d.status, d.last_error = "failed", "subscription inactive"
                await session.commit()
                return None
            return _Post(d.id, sub.id, sub.url, sub.secret, d.event_type, d.payload)

    async def _record(self, post: _Post, status: int | None, err: str | None) -> str:
        """The post's outcome, in the delivery's row (one row's transaction: a 410's also in the
        subscription's); a failure counts in the subscription's row of failures, and pauses it
        (:meth:`_hold_back`, once its task stops)."""
        sid = post.subscription_id
        async with self.db.session() as session:
            if status == 410:  # the receiver says it is gone for good: the rest are failed as inactive
                await session.execute(update(WebhookSubscription).where(WebhookSubscription.id == sid)
                                      .values(active=False))
            d = await session.get(WebhookDelivery, post.delivery_id)
            if d is None:
                await session.commit()
                return SKIPPED  # deleted while posted (its subscription, an erasure)
            d.attempts += 1
            d.last_status = status
            if status is not None and 200 <= status < 300:
                d.status, d.delivered_at, d.last_error = "delivered", utcnow(), None
                await session.commit()
                self.paused.pop(sid, None)
                return DELIVERED
            d.last_error = err or f"HTTP {status}"
            log.info("webhook delivery %s to subscription %s failed (%s, attempt %d)", d.id, sid, d.last_error,
                     d.attempts)
            if status == 410:
                d.status = "failed"
                await session.commit()
                return SKIPPED
            now = utcnow()
            paused = self.paused.setdefault(sid, _Pause(since=now))
            paused.failures += 1
            paused.until = now + pause(paused.failures, self.base_s)
            if d.attempts >= MAX_ATTEMPTS or paused.dead(now, self.base_s):
                d.status = "failed"
            else:
                d.next_attempt_at = max(now + backoff(d.attempts, self.base_s), paused.until)
            await session.commit()
        return FAILED

    async def _hold_back(self, sid: int, failed_id: int, until: datetime, dead: bool) -> None:
        """The subscription's other pending deliveries wait until ``until``, in the database, so that
        the other web processes hold off too (one that another process is posting just now is not
        disturbed: its outcome is recorded over this); ``dead`` (:meth:`_Pause.dead`), those already
        tried are given up (never one not tried yet). Rows are locked in id order (PostgreSQL), so
        that two processes pausing the same subscription at once cannot deadlock; the other writes
        of the sender take one row each."""
        d = WebhookDelivery
        mine = (d.subscription_id == sid, d.status == "pending", d.id != failed_id)
        tried = d.attempts > 0 if dead else false()
        async with self.db.session() as session:
            await session.execute(select(d.id).where(*mine, or_(d.next_attempt_at < until, tried))
                                  .order_by(d.id).with_for_update())
            if dead:
                await session.execute(update(d).where(*mine, tried)
                                      .values(status="failed", last_error="given up: endpoint failing")
                                      .execution_options(synchronize_session=False))
            await session.execute(update(d).where(*mine, d.next_attempt_at < until).values(next_attempt_at=until)
                                  .execution_options(synchronize_session=False))
            await session.commit()


async def _due(db: Any, now: datetime, skip: set[int], per_subscription: int) -> dict[int, list[tuple[int, datetime]]]:
    """{subscription: its first ``per_subscription`` due deliveries as (id, due at), in order}, among
    the :data:`DUE_WINDOW` longest due (a subscription with a long backlog fills it at most for a
    pass: while its posts are under way it is in ``skip``)."""
    d = WebhookDelivery
    due = select(d.id, d.subscription_id, d.next_attempt_at).where(d.status == "pending", d.next_attempt_at <= now)
    if skip:
        due = due.where(d.subscription_id.not_in(skip))
    due = due.order_by(d.next_attempt_at, d.id).limit(DUE_WINDOW).subquery()
    rank = func.row_number().over(partition_by=due.c.subscription_id, order_by=(due.c.next_attempt_at, due.c.id))
    ranked = select(due.c.subscription_id, due.c.id, due.c.next_attempt_at, rank.label("rank")).subquery()
    out: dict[int, list[tuple[int, datetime]]] = {}
    async with db.session() as session:
        rows = await session.execute(select(ranked.c.subscription_id, ranked.c.id, ranked.c.next_attempt_at)
                                     .where(ranked.c.rank <= per_subscription)
                                     .order_by(ranked.c.subscription_id, ranked.c.rank))
        for sid, delivery_id, at in rows:
            out.setdefault(sid, []).append((delivery_id, at))
    return out


async def deliver_due(db: Any, http: aiohttp.ClientSession, now: datetime | None = None, *,
                      base_s: float = BACKOFF_BASE_S, limit: int = PER_SUBSCRIPTION,
                      concurrency: int = CONCURRENCY) -> int:
    """Post the deliveries due at ``now`` once (at most ``limit`` a subscription), each subscription's
    in order and the subscriptions side by side, and wait for them; returns how many were delivered.
    A subscription whose post fails waits, with its other deliveries, for its back-off."""
    deliverer = Deliverer(db, http, base_s=base_s, concurrency=concurrency, per_subscription=limit)
    return sum(await asyncio.gather(*await deliverer.start(now)))
