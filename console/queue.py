"""The care team's live queue, and the routes of the queue and its conversations.

The queue's pages refresh live: every change an agent makes (console.claims, console.replies,
console.conversation) is pushed to the other agents' pages (console.events).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy import select

from community.incidents import SpikePolicy
from community.routing import PRIVATE_SENSITIVITY
from console import claims, events, flash, replies
from console.auth import require
from console.conversation import AGENTS, conversation_page, report, set_tags
from console.incidents import collecting
from console.keys import RUNTIME
from console.queue_data import clean_filters, queue_items, unknown_replies
from console.render import render
from models import Mention
from triage.protocol import DEFAULT_ISSUE_TYPES, SENSITIVITY_LABELS, SENTIMENT_LABELS

# what the queue can hold: security and fraud posts are routed private, never to the queue
QUEUE_SENSITIVITIES = tuple(s for s in SENSITIVITY_LABELS if s not in PRIVATE_SENSITIVITY)


def _filter_options() -> dict[str, Any]:
    return {"issue_types": DEFAULT_ISSUE_TYPES, "sentiments": SENTIMENT_LABELS, "sensitivities": QUEUE_SENSITIVITIES}


@require(*AGENTS)
async def queue_page(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    filters = clean_filters(request.query)
    carried = flash.take(request)  # a resolve says which conversation it resolved (console.claims)
    async with rt.db.session() as session:
        items = await queue_items(session, filters)
        channels = sorted(set(await session.scalars(select(Mention.platform).distinct())))
        unknown = await unknown_replies(session)
        incidents = await collecting(session, SpikePolicy.from_settings(rt.settings))
    response = render(request, "queue.html", items=items, filters=filters, channels=channels, unknown=unknown,
                      incidents=incidents,
                      notice=carried.get("notice"), resolved=carried.get("resolved"), **_filter_options())
    flash.forget(request, response)
    return response


@require(*AGENTS)
async def queue_rows(request: web.Request) -> web.Response:
    """The queue's rows alone, for the live page to swap in when something changes."""
    rt = request.app[RUNTIME]
    async with rt.db.session() as session:
        filters = clean_filters(request.query)
        items = await queue_items(session, filters)
    return render(request, "queue_rows.html", items=items, filters=filters)


@require(*AGENTS)
async def queue_incidents(request: web.Request) -> web.Response:
    """The banners of the incidents collecting reports, for the live page to swap in with its rows."""
    rt = request.app[RUNTIME]
    async with rt.db.session() as session:
        incidents = await collecting(session, SpikePolicy.from_settings(rt.settings))
    return render(request, "queue_incidents.html", incidents=incidents)


@require("agent", "moderator")
async def queue_events(request: web.Request) -> web.StreamResponse:
    return await events.stream(request)


def routes() -> list[web.RouteDef]:
    cid = "/conversations/{id:\\d+}"
    return [
        web.get("/queue", queue_page),
        web.get("/queue/rows", queue_rows),
        web.get("/queue/events", queue_events),
        web.get("/queue/incidents", queue_incidents),
        web.get(cid, conversation_page),
        web.post(cid + "/claim", claims.claim),
        web.post(cid + "/release", claims.release),
        web.post(cid + "/reply", replies.reply),
        web.post(cid + "/private", replies.take_private),
        web.post(cid + "/resolve", claims.resolve),
        web.post(cid + "/tags", set_tags),
        web.post(cid + "/report", report),
    ]
