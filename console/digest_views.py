"""The digest in the console (marketing): the page, its CSV, the e-mail HTML, its schedule, JSON."""

from __future__ import annotations

import re

from aiohttp import web
from sqlalchemy import select

from console.api.common import ApiError, api
from console.auth import require
from console.digest import PERIODS, compute, to_csv, to_json
from console.digest_mail import charts_for, page_charts, render_html
from console.keys import PRINCIPAL, RUNTIME
from console.render import render
from models.console import DigestSchedule
from service.audit import record

EMAIL = re.compile(r"^[^@\s,;<>]{1,64}@[A-Za-z0-9.-]{1,190}\.[A-Za-z]{2,}$")
MARKETING = ("marketing",)


def _period(request: web.Request) -> str:
    period = request.query.get("period", "week")
    if period not in PERIODS:
        raise web.HTTPBadRequest(reason="period must be day or week")
    return period


async def _digest(request: web.Request, period: str):
    async with request.app[RUNTIME].db.session() as session:
        return await compute(session, period)


async def _page(request: web.Request, period: str, *, error: str | None = None, status: int = 200) -> web.Response:
    d = await _digest(request, period)
    async with request.app[RUNTIME].db.session() as session:
        schedule = await session.scalar(select(DigestSchedule).where(DigestSchedule.period == period))
    return render(request, "digest.html", status=status, d=d, charts=page_charts(await charts_for(d)),
                  schedule=schedule, schedule_error=error)


@require(*MARKETING)
async def digest_page(request: web.Request) -> web.Response:
    return await _page(request, _period(request))


@require(*MARKETING)
async def digest_csv(request: web.Request) -> web.Response:
    period = _period(request)
    d = await _digest(request, period)
    return web.Response(text=to_csv(d), content_type="text/csv", headers={
        "Content-Disposition": f'attachment; filename="digest-{period}-{d.end:%Y%m%d}.csv"'})


@require(*MARKETING)
async def digest_html(request: web.Request) -> web.Response:
    """The standalone file (charts as data URIs) — what `socialcare digest --out` writes."""
    period = _period(request)
    d = await _digest(request, period)
    return web.Response(text=render_html(d, await charts_for(d)), content_type="text/html", headers={
        "Content-Disposition": f'attachment; filename="digest-{period}-{d.end:%Y%m%d}.html"',
        "Content-Security-Policy": "default-src 'none'; img-src data:; style-src 'unsafe-inline'"})


@require(*MARKETING)
async def save_schedule(request: web.Request) -> web.Response:
    p = request[PRINCIPAL]
    form = await request.post()
    period = str(form.get("period", ""))
    if period not in PERIODS:
        raise web.HTTPBadRequest(reason="period must be day or week")
    send_at = str(form.get("send_at", ""))
    recipients = [r.strip() for r in re.split(r"[,;\s]+", str(form.get("recipients", ""))) if r.strip()]
    problems = []
    if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", send_at):
        problems.append("the time must be HH:MM")
    bad = [r for r in recipients if not EMAIL.match(r)]
    if bad or len(recipients) > 50:
        problems.append(f"{len(bad)} recipient address(es) are not valid e-mail addresses" if bad
                        else "at most 50 recipients")
    try:
        weekday = int(form.get("weekday", "0") or 0)
    except ValueError:
        weekday = -1
    if not 0 <= weekday <= 6:
        problems.append("the weekday must be 0 (Monday) to 6")
    active = form.get("active") == "1"
    if active and not recipients:
        problems.append("a scheduled digest needs at least one recipient")
    if problems:
        return await _page(request, period, error="; ".join(problems), status=400)
    async with request.app[RUNTIME].db.session() as session:
        s = await session.scalar(select(DigestSchedule).where(DigestSchedule.period == period))
        if s is None:
            s = DigestSchedule(period=period)
            session.add(s)
        s.send_at, s.weekday, s.recipients, s.active, s.updated_by = send_at, weekday, recipients, active, p.actor
        # recipients are personal data: the audit log keeps only their number
        record(session, p.actor, "digest.schedule_saved", "digest_schedule", period, active=active,
               send_at=send_at, recipients=len(recipients))
        await session.commit()
    raise web.HTTPFound(f"/digest?period={period}")


@require(*MARKETING, scope="digest:read")
@api
async def api_digest(request: web.Request) -> web.Response:
    period = request.query.get("period", "week")
    if period not in PERIODS:
        raise ApiError(400, "period must be day or week")
    return web.json_response(to_json(await _digest(request, period)))


def routes() -> list[web.RouteDef]:
    return [web.get("/digest", digest_page), web.get("/digest.csv", digest_csv), web.get("/digest.html", digest_html),
            web.post("/digest/schedule", save_schedule), web.get("/api/v1/digest", api_digest)]
