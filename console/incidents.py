"""Agent views of incidents: the list, an incident's timeline, posting a status message to
everyone affected and closing with a "fixed" follow-up (both delivered through the connectors)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiohttp import web
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from community import broadcast
from community.incidents import SpikePolicy
from console import events
from console.auth import Principal, require
from console.keys import PRINCIPAL, RUNTIME
from console.paths import path_id
from console.queries import public_text
from console.render import render
from listener.protocol import utc  # stored naive on SQLite, always UTC
from models import Author, Incident, IncidentMention, IncidentUpdate, Mention, Reply, TriageResult
from models.base import utcnow
from service.dispatch import Dispatcher
from service.stranded import PACED_KINDS

SHOWN = 50  # affected posts listed on an incident's page


@dataclass(frozen=True)
class Collecting:
    """An open incident still collecting reports, as the queue's banner shows it."""

    incident: Incident
    reports: int
    latest: datetime  # the newest report's time (event time), else when it opened
    status_at: datetime | None  # when the last status message went out; None: nobody was told anything yet


async def collecting(session: AsyncSession, policy: SpikePolicy) -> list[Collecting]:
    """The open incidents a report written now would still join (community.incidents): their newest
    report is within ``quiet_after`` of the service's clock. That clock is event time, as the
    detector's: the newest post ingested, never past now, so a replayed day (the demo's) shows its
    spike while it streams, and live traffic reads the wall clock."""
    opened = list(await session.scalars(select(Incident).where(Incident.status == "open")
                                        .order_by(Incident.opened_at.desc()).limit(50)))
    if not opened:
        return []
    stats = {iid: (n, latest) for iid, n, latest in await session.execute(
        select(IncidentMention.incident_id, func.count(), func.max(Mention.created_at))
        .join(Mention, Mention.id == IncidentMention.mention_id)
        .where(IncidentMention.incident_id.in_([i.id for i in opened])).group_by(IncidentMention.incident_id))}
    told = dict((await session.execute(
        select(IncidentUpdate.incident_id, func.max(IncidentUpdate.created_at))
        .where(IncidentUpdate.incident_id.in_([i.id for i in opened]), IncidentUpdate.kind == "status")
        .group_by(IncidentUpdate.incident_id))).all())
    newest = await session.scalar(select(func.max(Mention.created_at)))
    now = utcnow()
    clock = min(now, utc(newest)) if newest is not None else now
    out = []
    for incident in opened:
        reports, latest = stats.get(incident.id, (0, None))
        latest = utc(latest or incident.opened_at)
        if latest + policy.quiet_after >= clock:
            status_at = told.get(incident.id)
            out.append(Collecting(incident, int(reports), latest, utc(status_at) if status_at else None))
    return out


def _incident_id(request: web.Request) -> int:
    return path_id(request, "incident_id")


def _dry_run_channels(settings) -> set[str]:  # noqa: ANN001
    from community.replybot import ChannelPolicy

    return {p for p in ("x", "reddit", "discourse", *settings.bot_channels) if ChannelPolicy.for_channel(settings, p).dry_run}


def _sends_nothing(settings, channel: str) -> bool:  # noqa: ANN001
    """Replies on ``channel`` are recorded, not sent: the whole service in dry run, or its bot channel."""
    return settings.dry_run or channel in _dry_run_channels(settings)


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
        affected = await broadcast.affected(session, incident.id, policy)
        posts = await _posts(session, affected)
    return render(request, "incident.html", incident=incident, events=events, affected=len(affected),
                  posts=posts, more=max(0, len(affected) - len(posts)), error=request.query.get("error"),
                  dry_run=_sends_nothing(request.app[RUNTIME].settings, incident.channel))


async def _posts(session: AsyncSession, affected: list[tuple[Mention, Author | None]]) -> list[dict[str, Any]]:
    """The affected authors' latest reports, newest first (at most :data:`SHOWN`), redacted, each with
    what the incident told it: an agent checks who a status message reaches before posting it."""
    latest = sorted(affected, key=lambda ma: ma[0].created_at, reverse=True)[:SHOWN]
    ids = [m.id for m, _ in latest]
    if not ids:
        return []
    triage = {t.mention_id: t for t in await session.scalars(select(TriageResult).where(TriageResult.mention_id.in_(ids)))}
    told: dict[int, Reply] = {}
    for r in await session.scalars(select(Reply).where(Reply.mention_id.in_(ids), Reply.kind.in_(PACED_KINDS))
                                   .order_by(Reply.id)):
        told[r.mention_id] = r  # the latest
    return [{"mention": m, "author": a.handle if a else None, "text": public_text(m, triage.get(m.id)),
             "told": told.get(m.id)} for m, a in latest]


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
    events.emit(request, "incident", [incident_id])  # the queues' banners say whether a status went out
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
