"""Agent views of incidents: the list, an incident's timeline, posting a status message to
everyone affected and closing with a "fixed" follow-up (both delivered through the connectors)."""

from __future__ import annotations

from aiohttp import web
from sqlalchemy import func, select

from community import broadcast
from community.incidents import SpikePolicy
from console.auth import Principal, require
from console.keys import PRINCIPAL, RUNTIME
from console.paths import path_id
from console.render import render
from models import Incident, IncidentMention
from service.dispatch import Dispatcher


def _incident_id(request: web.Request) -> int:
    return path_id(request, "incident_id")


def _dry_run_channels(settings) -> set[str]:  # noqa: ANN001
    from community.replybot import ChannelPolicy

    return {p for p in ("x", "reddit", "discourse", *settings.bot_channels) if ChannelPolicy.for_channel(settings, p).dry_run}


async def _deliver(request: web.Request, reply_ids: list[int]) -> None:
    rt = request.app[RUNTIME]
    await Dispatcher.for_settings(rt.db, rt.connectors, rt.settings).deliver(reply_ids)


@require("agent")
async def incidents_page(request: web.Request) -> web.Response:
    async with request.app[RUNTIME].db.session() as session:
        counts = dict((await session.execute(select(IncidentMention.incident_id, func.count())
                                             .group_by(IncidentMention.incident_id))).all())
        rows = list(await session.scalars(select(Incident).order_by(Incident.status != "open", Incident.opened_at.desc())
                                          .limit(200)))
    return render(request, "incidents.html", incidents=rows, counts=counts)


@require("agent")
async def incident_page(request: web.Request) -> web.Response:
    async with request.app[RUNTIME].db.session() as session:
        incident = await session.get(Incident, _incident_id(request))
        if incident is None:
            raise web.HTTPNotFound()
        events = await broadcast.timeline(session, incident.id)
        policy = SpikePolicy.from_settings(request.app[RUNTIME].settings)
        affected = len(await broadcast.affected(session, incident.id, policy))
    return render(request, "incident.html", incident=incident, events=events, affected=affected,
                  error=request.query.get("error"))


async def _act(request: web.Request, closing: bool) -> web.Response:
    p: Principal = request[PRINCIPAL]
    rt = request.app[RUNTIME]
    form = await request.post()
    incident_id = _incident_id(request)
    policy = SpikePolicy.from_settings(rt.settings)  # who is affected: the detector's own report rule
    async with rt.db.session() as session:
        incident = await session.get(Incident, incident_id)
        if incident is None:
            raise web.HTTPNotFound()
        try:
            if closing:
                _, replies = await broadcast.close(session, incident, p.actor, policy=policy,
                                                   send_fixed=form.get("send_fixed") == "1",
                                                   note=str(form.get("note") or ""),
                                                   dry_run_channels=_dry_run_channels(rt.settings))
            else:
                _, replies = await broadcast.post_status(
                    session, incident, str(form.get("message") or ""), p.actor, policy=policy,
                    interval_minutes=rt.settings.incident_status_interval_minutes,
                    dry_run_channels=_dry_run_channels(rt.settings))
        except broadcast.IncidentError as exc:
            raise web.HTTPBadRequest(reason=str(exc)) from exc
        await session.commit()
    await _deliver(request, [r.id for r in replies])
    raise web.HTTPSeeOther(f"/incidents/{incident_id}")


@require("agent")
async def post_status(request: web.Request) -> web.Response:
    return await _act(request, closing=False)


@require("agent")
async def close_incident(request: web.Request) -> web.Response:
    return await _act(request, closing=True)


def routes() -> list[web.RouteDef]:
    return [
        web.get("/incidents", incidents_page),
        web.get(r"/incidents/{incident_id:\d+}", incident_page),
        web.post(r"/incidents/{incident_id:\d+}/status", post_status),
        web.post(r"/incidents/{incident_id:\d+}/close", close_incident),
    ]
