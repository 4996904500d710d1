"""Scheduled digests: at the configured UTC time, mail the last complete day or week once.

"Once" holds across restarts and several web processes: the period's key is claimed by a
conditional UPDATE before anything is sent, so a digest is mailed at most once per period. A
failed send gives the claim back and records the error: the next pass (a minute later) tries
again, until the slot is LATE_LIMIT old. The first send of a schedule is its next occurrence after
it was saved: saving a daily schedule at 09:00 for 07:00 mails tomorrow, not at once.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from sqlalchemy import or_, select, update

from console.digest import aligned_end, compute
from console.digest_mail import build_email, charts_for, send
from models.console import DigestSchedule
from service.outages import log_failure

log = logging.getLogger("socialcare.digest")


LATE_LIMIT = timedelta(hours=6)  # a digest due longer ago than this is not worth sending (the service was down)
INTERVAL_S = 60.0  # between two passes of the scheduler (and so between two tries of a failed send)


def due_key(s: DigestSchedule, now: datetime) -> str | None:
    """The period to mail now, or None: past today's send time (and the weekday, for weeks)."""
    slot = due_slot(s, now)
    return None if slot is None else f"{s.period}:{aligned_end(s.period, slot).date().isoformat()}"


def last_slot(s: DigestSchedule, now: datetime) -> datetime:
    """The latest send time at or before ``now``."""
    now = now.astimezone(UTC)
    hour, minute = (int(x) for x in s.send_at.split(":"))
    send_today = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if s.period == "week":
        monday = send_today - timedelta(days=now.weekday())
        send_time = monday + timedelta(days=s.weekday)
        if send_time > now:
            send_time -= timedelta(days=7)
    else:
        send_time = send_today if send_today <= now else send_today - timedelta(days=1)
    return send_time


def due_slot(s: DigestSchedule, now: datetime) -> datetime | None:
    """The send time to act on now: the last one, unless it is LATE_LIMIT old or came before the
    schedule was saved (the first send is the next occurrence)."""
    send_time = last_slot(s, now)
    if now.astimezone(UTC) - send_time > LATE_LIMIT:
        return None
    saved = s.updated_at.replace(tzinfo=UTC) if s.updated_at and s.updated_at.tzinfo is None else s.updated_at
    if saved is not None and send_time < saved:
        return None
    return send_time


def next_send(s: DigestSchedule, now: datetime) -> datetime:
    """When the schedule mails next (for the console's confirmation)."""
    slot = due_slot(s, now)
    if slot is not None and due_key(s, now) != s.last_sent_key:
        return now.astimezone(UTC)
    return last_slot(s, now) + (timedelta(days=7) if s.period == "week" else timedelta(days=1))


def retry_until(s: DigestSchedule, now: datetime) -> datetime | None:
    """After a failed send: until when the next passes keep trying (None: no try left)."""
    slot = due_slot(s, now)
    return None if slot is None or due_key(s, now) == s.last_sent_key else slot + LATE_LIMIT


async def send_once(db: Any, settings: Any, s: DigestSchedule, end: datetime, sender: Any = send) -> None:
    """Mail the digest ending at ``end`` to the schedule's recipients now (the console's "send now")."""
    async with db.session() as session:
        d = await compute(session, s.period, end)
    await sender(settings, build_email(d, await charts_for(d), sender=settings.smtp_from, recipients=list(s.recipients)))


async def run_due(db: Any, settings: Any, now: datetime | None = None, sender: Any = send) -> list[str]:
    """Mail every schedule that is due and not yet sent for its period; returns the keys sent."""
    now = now or datetime.now(UTC)
    sent = []
    async with db.session() as session:
        schedules = list(await session.scalars(select(DigestSchedule).where(DigestSchedule.active.is_(True))))
    for s in schedules:
        key = due_key(s, now)
        if key is None or key == s.last_sent_key or not s.recipients:
            continue
        async with db.session() as session:  # updated_at is the time the schedule was saved: kept
            claimed = await session.execute(update(DigestSchedule).where(
                DigestSchedule.id == s.id,
                or_(DigestSchedule.last_sent_key.is_(None), DigestSchedule.last_sent_key != key))
                .values(last_sent_key=key, updated_at=DigestSchedule.updated_at))
            await session.commit()
            if claimed.rowcount != 1:
                continue
            end = datetime.fromisoformat(key.split(":", 1)[1]).replace(tzinfo=UTC)
            d = await compute(session, s.period, end)
        try:
            msg = build_email(d, await charts_for(d), sender=settings.smtp_from, recipients=list(s.recipients))
            await sender(settings, msg)
            sent.append(key)
            log.info("digest %s mailed to %d recipients", key, len(s.recipients))
            async with db.session() as session:
                await session.execute(update(DigestSchedule).where(DigestSchedule.id == s.id)
                                      .values(last_error=None, updated_at=DigestSchedule.updated_at))
                await session.commit()
        except Exception as exc:  # noqa: BLE001 - recorded for the console; never crash the loop
            log.warning("digest %s not mailed: %s; trying again on the next pass", key, type(exc).__name__)
            async with db.session() as session:  # give the claim back: the next pass tries again
                await session.execute(update(DigestSchedule).where(
                    DigestSchedule.id == s.id, DigestSchedule.last_sent_key == key).values(
                    last_sent_key=s.last_sent_key, updated_at=DigestSchedule.updated_at,
                    last_error=f"{key}: {type(exc).__name__}: {str(exc)[:300]}"))
                await session.commit()
    return sent


SCHEDULER = web.AppKey("digest_scheduler", asyncio.Task)


def install(app: web.Application, interval_s: float = INTERVAL_S) -> None:
    from console.keys import RUNTIME

    async def loop(app: web.Application) -> None:
        rt = app[RUNTIME]
        while True:
            try:
                await run_due(rt.db, rt.settings)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the database away: one line per back-off, no traceback
                log_failure(log, exc, "digest schedule pass failed")
            await asyncio.sleep(interval_s)

    async def start(app: web.Application) -> None:
        app[SCHEDULER] = asyncio.get_running_loop().create_task(loop(app), name="digest-schedule")

    async def stop(app: web.Application) -> None:
        if SCHEDULER in app:
            app[SCHEDULER].cancel()
            await asyncio.gather(app[SCHEDULER], return_exceptions=True)

    app.on_startup.append(start)
    app.on_shutdown.append(stop)
