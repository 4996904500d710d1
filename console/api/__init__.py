"""The bot REST API under /api/v1 (JSON; bearer tokens with scopes) and its OpenAPI description."""

from __future__ import annotations

from aiohttp import web


def routes() -> list[web.RouteDef]:
    from console.api import mentions, openapi, templates, webhooks

    return [*mentions.routes(), *templates.routes(), *webhooks.routes(), *openapi.routes()]
