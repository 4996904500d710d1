"""Scheduled digests: at the configured UTC time, mail the last complete day or week once.

"Once" holds across restarts and several web processes: the period's key is claimed by a
conditional UPDATE before anything is sent, so a digest is mailed at most once per period (a
failed send is recorded on the schedule for the console to show, not retried into duplicates).
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

log = logging.getLogger("socialcare.digest")


def due_key(s: DigestSchedule, now: datetime) -> str | None:
    """The period to mail now, or None: past today's send time (and the weekday, for weeks)."""
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
    if now - send_time > timedelta(hours=6):  # too late to be useful (the service was down)
        return None
    end = aligned_end(s.period, send_time)
    return f"{s.period}:{end.date().isoformat()}"


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
        async with db.session() as session:
            claimed = await session.execute(update(DigestSchedule).where(
                DigestSchedule.id == s.id,
                or_(DigestSchedule.last_sent_key.is_(None), DigestSchedule.last_sent_key != key))
                .values(last_sent_key=key, last_error=None))
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
        except Exception as exc:  # noqa: BLE001 - recorded for the console; never crash the loop
            log.warning("digest %s not mailed: %s", key, type(exc).__name__)
            async with db.session() as session:
                await session.execute(update(DigestSchedule).where(DigestSchedule.id == s.id)
                                      .values(last_error=f"{type(exc).__name__}: {str(exc)[:300]}"))
                await session.commit()
    return sent


SCHEDULER = web.AppKey("digest_scheduler", asyncio.Task)


def install(app: web.Application, interval_s: float = 60.0) -> None:
    from console.keys import RUNTIME

    async def loop(app: web.Application) -> None:
        rt = app[RUNTIME]
        while True:
            try:
                await run_due(rt.db, rt.settings)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("digest schedule pass failed")
            await asyncio.sleep(interval_s)

    async def start(app: web.Application) -> None:
        app[SCHEDULER] = asyncio.get_running_loop().create_task(loop(app), name="digest-schedule")

    async def stop(app: web.Application) -> None:
        if SCHEDULER in app:
            app[SCHEDULER].cancel()
            await asyncio.gather(app[SCHEDULER], return_exceptions=True)

    app.on_startup.append(start)
    app.on_shutdown.append(stop)
