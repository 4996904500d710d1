"""Service measures: the dashboard page and ``/api/v1/metrics/summary`` (see console.measures)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from aiohttp import web

from console.api.common import ApiError, api
from console.auth import require
from console.digest import end_of_day
from console.keys import RUNTIME
from console.measures import latest_contact_before, summary
from console.render import render

WINDOWS = {"day": timedelta(days=1), "week": timedelta(days=7), "month": timedelta(days=30)}
VIEWERS = ("agent", "moderator", "marketing")


def _when(raw: str | None, name: str) -> datetime | None:
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise ApiError(400, f"{name} must be an ISO 8601 date-time") from None
    value = value if value.tzinfo else value.replace(tzinfo=UTC)
    if not datetime(2000, 1, 1, tzinfo=UTC) <= value <= datetime(2100, 1, 1, tzinfo=UTC):
        raise ApiError(400, f"{name} must be between 2000 and 2100")
    return value.astimezone(UTC)


def window_of(request: web.Request) -> tuple[str, datetime, datetime]:
    period = request.query.get("period", "week")
    if period not in WINDOWS:
        raise ApiError(400, "period must be day, week or month")
    end = _when(request.query.get("end"), "end") or datetime.now(UTC)
    start = _when(request.query.get("start"), "start") or end - WINDOWS[period]
    if start >= end or end - start > timedelta(days=366):
        raise ApiError(400, "start must be before end, at most a year apart")
    return period, start, end


async def _summary(request: web.Request):
    period, start, end = window_of(request)
    async with request.app[RUNTIME].db.session() as session:
        return period, await summary(session, start, end)


@require(*VIEWERS, scope="metrics")
@api
async def api_summary(request: web.Request) -> web.Response:
    _, s = await _summary(request)
    return web.json_response(s.to_dict())


@require(*VIEWERS)
async def dashboard(request: web.Request) -> web.Response:
    try:
        period, s = await _summary(request)
    except ApiError as exc:
        raise web.HTTPBadRequest(reason=str(exc)) from None
    latest = None
    if not s.contacts:
        async with request.app[RUNTIME].db.session() as session:
            latest = await latest_contact_before(session, datetime.fromisoformat(s.start))
    end = request.query.get("end", "")
    return render(request, "metrics.html", s=s, period=period, periods=list(WINDOWS),
                  earlier=end_of_day(latest) if latest else None,  # a window ending there holds its whole day
                  earlier_day=latest.isoformat() if latest else "",
                  end=end if end and not request.query.get("start") else "")


def routes() -> list[web.RouteDef]:
    return [web.get("/service-metrics", dashboard), web.get("/api/v1/metrics/summary", api_summary)]
