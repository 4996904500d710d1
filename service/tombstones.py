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
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from listener.protocol import NormalizedMention, utc
from models.base import utcnow
from models.privacy import GATE, ErasureTombstone

log = logging.getLogger("socialcare.privacy")
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
