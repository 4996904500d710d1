"""Erasure tombstones: a post of an erased person still on the ingest stream (published before the
erasure, ingested after it) is not stored, while what they publish after the erasure is.

An erasure (:mod:`service.erasure`) leaves, per platform account of the person (handle and user
id), a keyed hash (HMAC-SHA256 with the settings' ``secret_key``, as in its audit entry) and the
erasure's time (``models.privacy.ErasureTombstone``). Ingest drops a post whose author's hash is
tombstoned and whose ``created_at`` is before that time.

Cost: one statement per ingest batch, by primary key. Until the first erasure the batch's hashes
are not even computed (the gate row's count, read by that statement, says none exists).

Order between an erasure and a batch in flight, so the one sees the other: the erasure's first
statement bumps the gate row. On PostgreSQL the batch's lookup, its first statement, holds the
gate ``FOR SHARE`` until it commits: an erasure waits for the batches under way (and then reads
what they stored), a batch that starts during an erasure waits for it (and, seeing the count
change, looks again with a fresh snapshot). On SQLite the bump takes the write lock, and the batch
looks after its writes, inside its write transaction: it sees every erasure committed before, and
none can commit before it ends; a hit rolls the batch back and it is stored again without the post.

Lifetime (:func:`lifetime`): a tombstone only has to outlive the posts published before its
erasure that may still reach ingest; the retention purge (:mod:`service.retention`) removes it once
it is older than that lifetime *and* than the retention period (:func:`purge`).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from listener.protocol import NormalizedMention, utc
from models.base import utcnow
from models.privacy import GATE, ErasureTombstone

log = logging.getLogger("socialcare.privacy")
# the shortest lifetime of a tombstone (see :func:`lifetime`; a module constant, not a setting)
MIN_LIFETIME = timedelta(days=30)
RECHECKS = ("reddit", "x", "discourse")  # connectors that read recent posts again (``<name>_recheck_*`` settings)
KEY_FILE = "privacy.key"  # under var_dir, when no secret_key is set (one machine: embedded mode)
_T = ErasureTombstone.__table__
_g, _t = _T.alias("g"), _T.alias("t")
LOOKUP = select(_g.c.erasures, _t.c.key, _t.c.erased_at).select_from(
    _g.outerjoin(_t, _t.c.key.in_(bindparam("keys", expanding=True)))).where(_g.c.key == GATE)
LOOKUP_SHARED = LOOKUP.with_for_update(read=True, of=_g)  # PostgreSQL: FOR SHARE OF g


def privacy_key(settings: Any) -> str:
    """The key of the subjects' hashes: ``secret_key``, else one kept in ``var_dir`` (created once,
    readable by its owner only), so the erasure command and ``socialcare run`` on one machine agree.
    Processes that share no var dir (production) must share ``SOCIALCARE_SECRET_KEY``."""
    if secret := settings.secret("secret_key"):
        return secret
    path = Path(settings.var_dir) / KEY_FILE
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first
            return path.read_text().strip()
        with os.fdopen(fd, "w") as f:
            f.write(key := secrets.token_urlsafe(32))
        return key


def handle_key(handle: str) -> str:
    """A handle as every privacy lookup compares it: without '@', lower-case."""
    return handle.strip().lstrip("@").lower()


def subject_key(secret: str, platform: str, kind: str, value: str) -> str:
    """A keyed hash of one handle or user id, so a repeated request is recognised without keeping
    the value (unreadable without the service's secret key)."""
    return hmac.new(secret.encode(), f"{platform}\n{kind}\n{value}".encode(), hashlib.sha256).hexdigest()


def post_keys(secret: str, batch: Sequence[NormalizedMention]) -> dict[str, list[int]]:
    """Each author account's hash in ``batch`` (as :func:`subject_key` with the erasure's handle and
    id forms), with the positions of the posts it wrote."""
    base = hmac.new(secret.encode(), digestmod=hashlib.sha256)
    out: dict[str, list[int]] = {}
    for i, m in enumerate(batch):
        for kind, value in (("handle", handle_key(m.author_handle) if m.author_handle else None),
                            ("id", str(m.author_id) if m.author_id else None)):
            if value:
                h = base.copy()
                h.update(f"{m.platform}\n{kind}\n{value}".encode())
                out.setdefault(h.hexdigest(), []).append(i)
    return out


# --- the erasure's side ---------------------------------------------------------------------------
async def begin_erasure(session: AsyncSession) -> None:
    """An erasure's first statement: bump the gate (see the module docstring for why first)."""
    done = await session.execute(update(_T).where(_T.c.key == GATE).values(
        erasures=_T.c.erasures + 1, erased_at=utcnow()))
    if done.rowcount == 0:  # a schema not made by the migrations
        await session.execute(insert(_T).values(key=GATE, erasures=1, erased_at=utcnow()))


async def remember(session: AsyncSession, secret: str, accounts: Iterable[tuple[str, str, str]]) -> int:
    """Tombstone these accounts ((platform, "handle" | "id", value)) as erased now, after
    :func:`begin_erasure` (which serialises erasures); how many."""
    keys = {subject_key(secret, p, kind, v) for p, kind, v in accounts if v}
    if not keys:
        return 0
    now = utcnow()
    known = set(await session.scalars(select(_T.c.key).where(_T.c.key.in_(keys))))
    if known:
        await session.execute(update(_T).where(_T.c.key.in_(known)).values(erased_at=now, erasures=_T.c.erasures + 1))
    if new := keys - known:
        await session.execute(insert(_T), [{"key": k, "erased_at": now, "erasures": 1} for k in sorted(new)])
    return len(keys)


# --- ingest's side --------------------------------------------------------------------------------
class Tombstones:
    """An ingest worker's view of the tombstones: the erasures counted when it last looked."""

    def __init__(self, secret: str | None) -> None:
        self.secret, self.seen = secret, 0  # no secret (a stage built without settings): no check

    async def erased_posts(self, session: AsyncSession, batch: Sequence[NormalizedMention], *,
                           lock: bool) -> set[int]:
        """The positions in ``batch`` of posts published by an erased account before its erasure.
        ``lock``: hold the gate until the transaction ends (PostgreSQL, as the batch's first statement)."""
        if self.secret is None:
            return set()
        keys = post_keys(self.secret, batch) if self.seen else {}
        rows = (await session.execute(LOOKUP_SHARED if lock else LOOKUP, {"keys": list(keys)})).all()
        count = rows[0].erasures if rows else 0
        if count != self.seen:  # an erasure since: its tombstones may postdate that statement's snapshot
            self.seen = count
            if not count:
                return set()
            keys = post_keys(self.secret, batch)
            rows = (await session.execute(LOOKUP, {"keys": list(keys)})).all()
        erased_at = {r.key: r.erased_at for r in rows if r.key is not None}
        return {i for key, at in erased_at.items() for i in keys[key] if before(batch[i].created_at, at)}


def before(created_at: datetime | None, erased_at: datetime | None) -> bool:
    return created_at is not None and erased_at is not None and utc(created_at) < utc(erased_at)


# --- lifetime and purge ---------------------------------------------------------------------------
def lifetime(settings: Any = None) -> timedelta:
    """How long after its erasure a tombstone is kept at least: longer than a post published before
    the erasure can take to reach ingest.

    * the ingest stream: an unacknowledged message is claimed again after ``bus_claim_idle_ms``, at
      most ``bus_max_deliveries`` times (minutes), then dead-lettered;
    * the connectors' re-checks (``reddit_recheck_*``, ``x_recheck_*``, ``discourse_recheck_*``): a
      post first seen up to ``*_recheck_hours`` before the erasure
      is read again that long after it, every ``*_recheck_seconds``, and an edit or a restore
      arrives with its old ``created_at``;
    * catch-up polls (X: ``since_id`` and recent search, which reaches back 7 days; Discourse:
      ``/posts.json`` from its cursor), stage workers or a connector down for a while, a dead letter
      retried on /admin/deadletters: bounded only by how long something stays down or unattended,
      which :data:`MIN_LIFETIME` (30 days) covers.

    The largest of these (without settings: :data:`MIN_LIFETIME`). The purge keeps a tombstone for
    the retention period too, when that is longer (see :func:`purge`)."""
    if settings is None:
        return MIN_LIFETIME
    stream = timedelta(milliseconds=settings.bus_claim_idle_ms * settings.bus_max_deliveries)
    recheck = max(timedelta(hours=getattr(settings, f"{p}_recheck_hours"),
                            seconds=getattr(settings, f"{p}_recheck_seconds")) for p in RECHECKS)
    return max(MIN_LIFETIME, recheck + stream)


def purge_before(cutoff: datetime, keep: timedelta, now: datetime | None = None) -> datetime:
    """The tombstones of erasures before this time go: older than the retention ``cutoff`` and than
    ``keep`` (:func:`lifetime`). Past both, whatever it would stop is older than the retention
    period: a dead letter from before the erasure goes with the same purge (given its bus), a post
    that still arrives (after an outage longer than the lifetime) is erased by age at the next one."""
    return min(cutoff, (now or utcnow()) - keep)


def _expired(before: datetime) -> Any:
    return (_T.c.key != GATE) & (_T.c.erased_at < before)


async def expired(session: AsyncSession, before: datetime) -> int:
    """How many tombstones :func:`purge` would remove."""
    return await session.scalar(select(func.count()).select_from(_T).where(_expired(before))) or 0


async def purge(session: AsyncSession, before: datetime) -> int:
    """Delete the tombstones of erasures before ``before`` (never the gate, whose count ingest
    relies on); how many. The gate is locked first (``FOR UPDATE`` on PostgreSQL; SQLite's write
    lock does the same): an erasure under way, which may be renewing one of these
    (:func:`remember`), is waited for and its newer time spares the row, and one that starts
    meanwhile waits for this transaction, so no renewal is lost. Commit soon: ingest waits too."""
    await session.execute(select(_T.c.key).where(_T.c.key == GATE).with_for_update())
    return (await session.execute(delete(_T).where(_expired(before)))).rowcount
