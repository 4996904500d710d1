"""Bot API for outgoing webhook subscriptions (admins only: the secret signs every body)."""

from __future__ import annotations

import secrets
from typing import Any

from aiohttp import web
from pydantic import Field, field_validator
from sqlalchemy import select
from yarl import URL

from console.api.common import ApiError, Body, SafeStr, api, parse, path_id, query_int
from console.auth import require
from console.keys import PRINCIPAL, RUNTIME
from models.console import WEBHOOK_EVENTS, WebhookDelivery, WebhookSubscription
from service.audit import record


class SubscriptionIn(Body):
    name: SafeStr = Field(min_length=1, max_length=100)
    url: SafeStr = Field(min_length=8, max_length=500)
    events: list[SafeStr] = Field(min_length=1, max_length=len(WEBHOOK_EVENTS))
    secret: SafeStr | None = Field(None, min_length=16, max_length=200)

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        try:
            url = URL(value)
        except (ValueError, TypeError):
            raise ValueError("not a URL") from None
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError("an http(s) URL with a host")
        return value

    @field_validator("events")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(WEBHOOK_EVENTS))
        if unknown:
            raise ValueError(f"unknown events {unknown}; known: {list(WEBHOOK_EVENTS)}")
        return sorted(set(value))


def sub_json(s: WebhookSubscription, *, secret: bool = False) -> dict[str, Any]:
    out = {"id": s.id, "name": s.name, "url": s.url, "events": list(s.events or []), "active": s.active,
           "created_by": s.created_by, "created_at": s.created_at.isoformat()}
    if secret:
        out["secret"] = s.secret
    return out


@require("admin", scope="webhooks")
@api
async def list_subscriptions(request: web.Request) -> web.Response:
    async with request.app[RUNTIME].db.session() as session:
        rows = list(await session.scalars(select(WebhookSubscription).order_by(WebhookSubscription.id)))
    return web.json_response({"webhooks": [sub_json(s) for s in rows], "events": list(WEBHOOK_EVENTS)})


@require("admin", scope="webhooks")
@api
async def create_subscription(request: web.Request) -> web.Response:
    """Subscribe; the secret (given or generated) is returned once, here."""
    p = request[PRINCIPAL]
    body = await parse(request, SubscriptionIn)
    async with request.app[RUNTIME].db.session() as session:
        sub = WebhookSubscription(name=body.name, url=body.url, events=body.events,
                                  secret=body.secret or secrets.token_urlsafe(32), created_by=p.actor)
        session.add(sub)
        await session.flush()
        record(session, p.actor, "webhook.created", "webhook", sub.id, events=body.events)
        await session.commit()
        return web.json_response(sub_json(sub, secret=True), status=201)


@require("admin", scope="webhooks")
@api
async def delete_subscription(request: web.Request) -> web.Response:
    p = request[PRINCIPAL]
    sub_id = path_id(request)
    async with request.app[RUNTIME].db.session() as session:
        sub = await session.get(WebhookSubscription, sub_id)
        if sub is None:
            raise ApiError(404, "no such webhook")
        await session.delete(sub)
        record(session, p.actor, "webhook.deleted", "webhook", sub_id)
        await session.commit()
    return web.Response(status=204)


@require("admin", scope="webhooks")
@api
async def list_deliveries(request: web.Request) -> web.Response:
    sub_id = path_id(request)
    limit = query_int(request, "limit", 50, 1, 500)
    async with request.app[RUNTIME].db.session() as session:
        if await session.get(WebhookSubscription, sub_id) is None:
            raise ApiError(404, "no such webhook")
        rows = list(await session.scalars(select(WebhookDelivery).where(WebhookDelivery.subscription_id == sub_id)
                                          .order_by(WebhookDelivery.id.desc()).limit(limit)))
    return web.json_response({"deliveries": [{
        "id": d.id, "event_id": d.event_id, "event_type": d.event_type, "status": d.status, "attempts": d.attempts,
        "last_status": d.last_status, "last_error": d.last_error, "next_attempt_at": d.next_attempt_at.isoformat(),
        "delivered_at": d.delivered_at.isoformat() if d.delivered_at else None} for d in rows]})


def routes() -> list[web.RouteDef]:
    return [web.get("/api/v1/webhooks", list_subscriptions), web.post("/api/v1/webhooks", create_subscription),
            web.delete("/api/v1/webhooks/{id:\\d+}", delete_subscription),
            web.get("/api/v1/webhooks/{id:\\d+}/deliveries", list_deliveries)]
