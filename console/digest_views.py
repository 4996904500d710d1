"""The digest in the console (marketing): the page, its CSV, the e-mail HTML, its schedule, JSON."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

from aiohttp import web
from sqlalchemy import select

from console.api.common import ApiError, api, known_query
from console.auth import require
from console.digest import PERIODS, compute, end_of_day, last_day, latest_day_before, to_csv, to_json
from console.digest_mail import charts_for, page_charts, render_html
from console.digest_schedule import next_send, retry_until, send_once
from console.keys import PRINCIPAL, RUNTIME
from console.paths import parse_int
from console.render import render
from models.base import utcnow
from models.console import DigestSchedule
from service.audit import record

EMAIL = re.compile(r"^[^@\s,;<>]{1,64}@[A-Za-z0-9.-]{1,190}\.[A-Za-z]{2,}$")
MARKETING = ("marketing",)


NOTICES = {"saved": "Schedule saved.", "sent": "Digest sent.", "off": "Schedule saved; it is switched off."}


def _period(value: object) -> str:
    """The period asked for (a query's or a form's value), or a 400."""
    period = str(value)
    if period not in PERIODS:
        raise web.HTTPBadRequest(reason="period must be day or week")
    return period


def _end(request: web.Request) -> datetime | None:
    """``end=YYYY-MM-DD``: the digest runs through that day (UTC), up to the midnight after it;
    absent, up to now. A day in the future or before 2000 is refused."""
    raw = request.query.get("end", "")
    if not raw:
        return None
    try:
        day = date.fromisoformat(raw) if re.fullmatch(r"\d{4}-\d{2}-\d{2}", raw) else None
    except ValueError:
        day = None
    if day is None or not date(2000, 1, 1) <= day <= datetime.now(UTC).date():
        raise web.HTTPBadRequest(reason="end must be a day (YYYY-MM-DD) from 2000 to today")
    return end_of_day(day)


async def _digest(request: web.Request, period: str, end: datetime | None = None):
    async with request.app[RUNTIME].db.session() as session:
        return await compute(session, period, end)


async def _page(request: web.Request, period: str, end: datetime | None = None, *, error: str | None = None,
                status: int = 200, form: dict[str, Any] | None = None) -> web.Response:
    """The page; after a refused schedule, ``form`` holds what was typed so nothing is lost."""
    d = await _digest(request, period, end)
    now = datetime.now(UTC)
    async with request.app[RUNTIME].db.session() as session:
        schedule = await session.scalar(select(DigestSchedule).where(DigestSchedule.period == period))
        earlier = await latest_day_before(session, d.start) if not d.total else None
    notice = NOTICES.get(request.query.get("notice", ""))
    if notice and request.query.get("notice") == "saved" and schedule is not None:
        notice = f"Schedule saved. The first digest goes out {next_send(schedule, now):%A %Y-%m-%d at %H:%M} UTC."
    shown = form or {"active": bool(schedule and schedule.active), "send_at": schedule.send_at if schedule else "07:00",
                     "weekday": schedule.weekday if schedule else 0,
                     "recipients": ", ".join(schedule.recipients) if schedule else ""}
    return render(request, "digest.html", status=status, d=d, charts=page_charts(await charts_for(d)),
                  schedule=schedule, schedule_error=error, form=shown, notice=notice, earlier=earlier,
                  end_day=(end - timedelta(days=1)).date().isoformat() if end else "",
                  today=now.date().isoformat(),
                  retry_until=retry_until(schedule, now) if schedule and schedule.last_error else None)


@require(*MARKETING)
async def digest_page(request: web.Request) -> web.Response:
    return await _page(request, _period(request.query.get("period", "week")), _end(request))


@require(*MARKETING)
async def digest_csv(request: web.Request) -> web.Response:
    period = _period(request.query.get("period", "week"))
    d = await _digest(request, period, _end(request))
    return web.Response(text=to_csv(d), content_type="text/csv", headers={
        "Content-Disposition": f'attachment; filename="digest-{period}-{last_day(d):%Y%m%d}.csv"'})


@require(*MARKETING)
async def digest_html(request: web.Request) -> web.Response:
    """The standalone file (charts as data URIs) — what `socialcare digest --out` writes."""
    period = _period(request.query.get("period", "week"))
    d = await _digest(request, period, _end(request))
    return web.Response(text=render_html(d, await charts_for(d)), content_type="text/html", headers={
        "Content-Disposition": f'attachment; filename="digest-{period}-{last_day(d):%Y%m%d}.html"',
        "Content-Security-Policy": "default-src 'none'; img-src data:; style-src 'unsafe-inline'"})


@require(*MARKETING)
async def save_schedule(request: web.Request) -> web.Response:
    p = request[PRINCIPAL]
    form = await request.post()
    period = _period(form.get("period", ""))
    send_at = str(form.get("send_at", ""))
    recipients = [r.strip() for r in re.split(r"[,;\s]+", str(form.get("recipients", ""))) if r.strip()]
    problems = []
    if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", send_at):
        problems.append("the time must be HH:MM")
    bad = [r for r in recipients if not EMAIL.match(r)]
    if bad:  # named, so the person sees which one to fix (shown to them only, never logged)
        shown = ", ".join(b[:80] for b in bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        problems.append(f"not a valid e-mail address: {shown}")
    elif len(recipients) > 50:
        problems.append("at most 50 recipients")
    weekday = parse_int(str(form.get("weekday") or "0"), 0, 6)  # the select's value: not "١", " 5" or "+5"
    if weekday is None:
        weekday = -1  # shown back as no day chosen
        problems.append("the weekday must be 0 (Monday) to 6")
    active = form.get("active") == "1"
    if active and not recipients:
        problems.append("a scheduled digest needs at least one recipient")
    if problems:
        typed = {"active": active, "send_at": send_at[:5], "weekday": weekday,
                 "recipients": str(form.get("recipients", ""))[:5000]}
        return await _page(request, period, error="; ".join(problems), status=400, form=typed)
    async with request.app[RUNTIME].db.session() as session:
        s = await session.scalar(select(DigestSchedule).where(DigestSchedule.period == period))
        if s is None:
            s = DigestSchedule(period=period)
            session.add(s)
        s.send_at, s.weekday, s.recipients, s.active, s.updated_by = send_at, weekday, recipients, active, p.actor
        s.updated_at = utcnow()  # the first send is the next occurrence after this (console.digest_schedule)
        # recipients are personal data: the audit log keeps only their number
        record(session, p.actor, "digest.schedule_saved", "digest_schedule", period, active=active,
               send_at=send_at, recipients=len(recipients))
        await session.commit()
    raise web.HTTPFound(f"/digest?period={period}&notice={'saved' if active else 'off'}#schedule")


@require(*MARKETING)
async def send_now(request: web.Request) -> web.Response:
    """Mail the digest as the page shows it (period, end day) to the schedule's recipients, now."""
    p = request[PRINCIPAL]
    form = await request.post()
    period = _period(form.get("period", ""))
    end = _end_of_form(str(form.get("end", "")))
    rt = request.app[RUNTIME]
    async with rt.db.session() as session:
        s = await session.scalar(select(DigestSchedule).where(DigestSchedule.period == period))
    if s is None or not s.recipients:
        return await _page(request, period, end, error="save a schedule with recipients first", status=400)
    try:
        await send_once(rt.db, rt.settings, s, end or datetime.now(UTC))
    except Exception as exc:  # noqa: BLE001 - the SMTP server's answer, shown to the person who asked
        return await _page(request, period, end, status=502,
                           error=f"the digest was not sent: {type(exc).__name__}: {str(exc)[:200]}")
    async with rt.db.session() as session:
        record(session, p.actor, "digest.sent_now", "digest_schedule", period, recipients=len(s.recipients))
        await session.commit()
    suffix = f"&end={(end - timedelta(days=1)).date().isoformat()}" if end else ""
    raise web.HTTPFound(f"/digest?period={period}{suffix}&notice=sent#schedule")


def _end_of_form(raw: str) -> datetime | None:
    try:
        day = date.fromisoformat(raw) if re.fullmatch(r"\d{4}-\d{2}-\d{2}", raw) else None
    except ValueError:
        day = None
    return end_of_day(day) if day else None


@require(*MARKETING, scope="digest:read")
@api
async def api_digest(request: web.Request) -> web.Response:
    """The digest's numbers; ``end=YYYY-MM-DD`` for the period through that day (UTC)."""
    known_query(request, "period", "end")
    period = request.query.get("period", "week")
    if period not in PERIODS:
        raise ApiError(400, "period must be day or week")
    try:
        end = _end(request)
    except web.HTTPBadRequest as exc:
        raise ApiError(400, exc.reason) from None
    return web.json_response(to_json(await _digest(request, period, end)))


def routes() -> list[web.RouteDef]:
    return [web.get("/digest", digest_page), web.get("/digest.csv", digest_csv), web.get("/digest.html", digest_html),
            web.post("/digest/schedule", save_schedule), web.post("/digest/send", send_now),
            web.get("/api/v1/digest", api_digest)]
