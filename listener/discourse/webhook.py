"""Discourse webhooks: ``post_created``, ``post_edited``, ``post_destroyed``, ``post_recovered``,
``topic_created``.

``POST /webhooks/discourse``. The ``X-Discourse-Event-Signature`` header (``sha256=<hex>``, the
HMAC-SHA256 of the raw body with the webhook's secret) is verified before anything is parsed.
Edits update the stored mention, deletions hide it, and a recovery (by its author or a moderator;
its body is the post, as for an edit) brings it back unless it was erased on a privacy request
(:mod:`listener.ingest`). The body is read as JSON whatever its ``Content-Type``: Discourse sends
JSON under either content type a webhook may be given. ``topic_created`` is acknowledged without a
mention: its payload has no body, and the topic's first post arrives as ``post_created`` with the
title. Events of other kinds (``ping``, user events...) are acknowledged and ignored.

What this endpoint misses while it is unreachable (or the webhook disabled) is caught up by the
connector (:mod:`listener.discourse.connector`): new posts by its poll, edits, deletions and
recoveries of the posts of the last day by its re-check (:mod:`listener.discourse.recheck`).
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from listener.discourse.normalize import is_ours, post_to_mention
from listener.ingest import in_terms_of, mention_problems, parse_time, text_problems
from listener.webhook import (
    BodyTooLarge,
    Publish,
    RefusalLog,
    TooDeep,
    json_error,
    loads,
    read_limited,
    signature_ok,
)

log = logging.getLogger("socialcare.listener.discourse")
PATH = "/webhooks/discourse"
POST_EVENTS = ("post_created", "post_edited", "post_destroyed", "post_recovered")
MAX_ID = 2**62
# each integer field and its lowest value (system users have negative ids)
IDS = {"topic_id": 1, "post_number": 1, "reply_to_post_number": 1, "category_id": 1, "user_id": -MAX_ID}
TEXTS = ("username", "name", "raw", "cooked", "topic_title", "topic_slug", "topic_archetype", "category_slug")
# the post's field for each mention field, to name it in problems
FIELDS = {"author_id": "user_id", "author_handle": "username", "author_name": "name", "channel": "category_slug",
          "url": "topic_slug"}


def post_problems(post: Any) -> list[str]:
    """What is wrong with a post, by field, checked before it is normalized: normalizing would take
    a float (even infinity), a boolean or a repr as an id, overflow on out-of-range times, and
    publish strings that ingest cannot store (to be retried, dead-lettered and lost)."""
    if not isinstance(post, dict):
        return ["post: an object"]
    problems = []
    for key, lowest in IDS.items():
        value = post.get(key)
        if value is None and key not in ("topic_id", "post_number"):
            continue
        if key == "user_id" and isinstance(value, str):
            continue
        if type(value) is not int or not lowest <= value < MAX_ID:
            required = "required, " if key in ("topic_id", "post_number") else ""
            problems.append(f"post.{key}: {required}{'a positive' if lowest == 1 else 'an'} integer")
    for key in ("created_at", "updated_at"):
        if post.get(key) not in (None, ""):
            try:
                parse_time(post[key])
            except ValueError as exc:
                problems.append(f"post.{key}: {exc}")
    problems += [f"post.{key}: a string" for key in TEXTS if not isinstance(post.get(key), (str, type(None)))]
    return problems + text_problems(post, "post")


def routes(settings: Any, publish: Publish) -> list[web.RouteDef]:
    """The webhook route; none unless ``SOCIALCARE_DISCOURSE_WEBHOOK_SECRET`` is set."""
    secret = settings.secret("discourse_webhook_secret")
    if not secret:
        return []
    base_url = settings.discourse_url or ""
    limit, ours = settings.webhook_max_bytes, settings.discourse_api_username
    refusals = RefusalLog(log, f"discourse webhook {PATH}")

    async def receive(request: web.Request) -> web.Response:
        try:
            body = await read_limited(request, limit)
        except BodyTooLarge:
            return json_error(413, f"body larger than {limit} bytes")
        if not signature_ok(secret, body, request.headers.get("X-Discourse-Event-Signature")):
            refusals.refused(request, "X-Discourse-Event-Signature does not match SOCIALCARE_DISCOURSE_WEBHOOK_SECRET")
            return json_error(401, "invalid signature")
        event = request.headers.get("X-Discourse-Event", "")
        try:
            payload = loads(body)
        except TooDeep as exc:
            return json_error(400, str(exc))
        except ValueError:
            return json_error(400, "malformed JSON")
        if event not in POST_EVENTS:
            return web.json_response({"accepted": 0, "ignored": event or "no X-Discourse-Event header"})
        post = payload.get("post") if isinstance(payload, dict) else None
        if problems := post_problems(post):
            return json_error(400, "invalid post", problems=problems[:20])
        if is_ours(post, ours):  # type: ignore[arg-type]
            return web.json_response({"accepted": 0, "ignored": f"{event} of our own post"})
        mention = post_to_mention(post, base_url, event)  # type: ignore[arg-type]
        if bad := mention_problems(mention):  # what is left: lengths the columns hold
            return json_error(400, "invalid post", problems=in_terms_of(bad, "post", FIELDS)[:20])
        if instance := request.headers.get("X-Discourse-Instance"):
            mention.raw = {**mention.raw, "instance": instance}
        try:
            await publish([mention])
        except Exception:
            log.exception("discourse webhook: publishing %s failed", event)
            return json_error(503, "could not queue the post; redeliver later")
        return web.json_response({"accepted": 1, "event": event, "external_id": mention.external_id}, status=202)

    return [web.post(PATH, receive)]
