"""Discourse webhooks: ``post_created``, ``post_edited``, ``post_destroyed``, ``topic_created``.

``POST /webhooks/discourse``. The ``X-Discourse-Event-Signature`` header (``sha256=<hex>``, the
HMAC-SHA256 of the raw body with the webhook's secret) is verified before anything is parsed.
Edits update the stored mention, deletions hide it. ``topic_created`` is acknowledged without a
mention: its payload has no body, and the topic's first post arrives as ``post_created`` with the
title. Events of other kinds (``ping``, user events...) are acknowledged and ignored.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import web

from listener.discourse.normalize import post_to_mention
from listener.webhook import BodyTooLarge, Publish, json_error, read_limited, signature_ok

log = logging.getLogger("socialcare.listener.discourse")
PATH = "/webhooks/discourse"
POST_EVENTS = ("post_created", "post_edited", "post_destroyed")


def routes(settings: Any, publish: Publish) -> list[web.RouteDef]:
    """The webhook route; none unless ``SOCIALCARE_DISCOURSE_WEBHOOK_SECRET`` is set."""
    secret = settings.secret("discourse_webhook_secret")
    if not secret:
        return []
    base_url = settings.discourse_url or ""
    limit = settings.webhook_max_bytes

    async def receive(request: web.Request) -> web.Response:
        try:
            body = await read_limited(request, limit)
        except BodyTooLarge:
            return json_error(413, f"body larger than {limit} bytes")
        if not signature_ok(secret, body, request.headers.get("X-Discourse-Event-Signature")):
            return json_error(401, "invalid signature")
        event = request.headers.get("X-Discourse-Event", "")
        try:
            payload = json.loads(body)
        except ValueError:
            return json_error(400, "malformed JSON")
        if event not in POST_EVENTS:
            return web.json_response({"accepted": 0, "ignored": event or "no X-Discourse-Event header"})
        post = payload.get("post") if isinstance(payload, dict) else None
        try:
            mention = post_to_mention(post, base_url, event)  # type: ignore[arg-type]
        except (TypeError, KeyError, ValueError):
            return json_error(400, "a post event needs post.topic_id and post.post_number")
        if instance := request.headers.get("X-Discourse-Instance"):
            mention.raw = {**mention.raw, "instance": instance}
        try:
            await publish([mention])
        except Exception:
            log.exception("discourse webhook: publishing %s failed", event)
            return json_error(503, "could not queue the post; redeliver later")
        return web.json_response({"accepted": 1, "event": event, "external_id": mention.external_id}, status=202)

    return [web.post(PATH, receive)]
