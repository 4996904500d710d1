"""Discourse webhooks: ``post_created``, ``post_edited``, ``post_destroyed``, ``post_recovered``,
``topic_created``, ``topic_destroyed``, ``topic_recovered``.

``POST /webhooks/discourse``. The ``X-Discourse-Event-Signature`` header (``sha256=<hex>``, the
HMAC-SHA256 of the raw body with the webhook's secret) is verified before anything is parsed.
Edits update the stored mention, deletions hide it, and a recovery (by its author or a moderator;
its body is the post, as for an edit) brings it back unless it was erased on a privacy request
(:mod:`listener.ingest`). The body is read as JSON whatever its ``Content-Type``: Discourse sends
JSON under either content type a webhook may be given. ``topic_created`` is acknowledged without a
mention: its payload has no body, and the topic's first post arrives as ``post_created`` with the
title. Events of other kinds (``ping``, user events...) are acknowledged and ignored.

Staff whispers (``post_type`` 4) reach webhooks too (Discourse serializes the payload as its
system user, who sees them) though only staff see them on the forum: they are never published as
posts. A ``post_edited`` of one publishes a deletion, without its words: a public post a moderator
turned into a whisper has left the public's sight (turned back while in the re-check's window,
the re-check finds it on the pages again and restores it); its other events are acknowledged and
ignored. A whisper never stored leaves that deletion kept for it (:mod:`listener.unseen`); when
staff later turn it into a regular post, its ``post_edited`` (made after that deletion reached
ingest) is published as a restore, so that it is stored shown and triaged, not stored deleted
(:func:`shown_again`; with the database given to :func:`routes`).

A deleted topic takes every post of it off the forum, yet Discourse sends ``post_destroyed`` for
its first post alone, and ``topic_destroyed``'s body is the topic (``{"topic": {"id": ...,
"deleted_at": ...}}``, no post stream) naming none of them. So ``topic_destroyed`` publishes one
deletion of the topic's thread and ``topic_recovered`` one recovery (:func:`topic_to_mention`),
which ingest applies to the posts it holds (:mod:`listener.threads`). Our own topics count: a
private message we started holds the customer's replies. The webhook must send "Topic Event"s as
well as "Post Event"s.

A bus that fails, or does not take the post within ``webhook_publish_timeout_seconds`` (the generic
webhook's bound: with Redis away its client retries for 30 s, longer than Discourse waits for an
answer), is answered 503 with ``Retry-After``. Discourse retries an event answered with an error
status (one it got no answer for is not retried) when its ``retry_web_hook_events`` site setting is
on, up to 4 times, 1, 5, 25 and 125 minutes later; an admin can also redeliver it from the
webhook's event list. Each retry is a new delivery (its own ``X-Discourse-Event-Id``) of the same
body, so the same signature: nothing here refuses a signature seen before (Discourse signs no
timestamp to bound a replay guard), and ingest de-duplicates by post id whatever part of a
timed-out publish reached the bus.

What this endpoint misses while it is unreachable (or the webhook disabled) is caught up by the
connector (:mod:`listener.discourse.connector`): new posts by its poll, edits, deletions and
recoveries of the posts of the last day by its re-check (:mod:`listener.discourse.recheck`).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from listener.discourse.normalize import is_ours, post_to_mention, topic_to_mention, whisper
from listener.protocol import NormalizedMention, utc
from listener.unseen import kept_since
from listener.validation import in_terms_of, mention_problems, parse_time, text_problems
from listener.webhook import (
    BodyTooLarge,
    Publish,
    RefusalLog,
    TooDeep,
    json_error,
    loads,
    published_within,
    read_limited,
    signature_ok,
)

log = logging.getLogger("socialcare.listener.discourse")
PATH = "/webhooks/discourse"
POST_EVENTS = ("post_created", "post_edited", "post_destroyed", "post_recovered")
TOPIC_EVENTS = ("topic_destroyed", "topic_recovered")
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


def topic_problems(topic: Any) -> list[str]:
    """What is wrong with a topic event's ``topic``, by field (only what its thread's event uses)."""
    if not isinstance(topic, dict):
        return ["topic: an object"]
    tid = topic.get("id")
    problems = [] if type(tid) is int and 1 <= tid < MAX_ID else ["topic.id: required, a positive integer"]
    if topic.get("deleted_at") not in (None, ""):
        try:
            parse_time(topic["deleted_at"])
        except ValueError as exc:
            problems.append(f"topic.deleted_at: {exc}")
    problems += [f"topic.{key}: a string" for key in ("title", "slug", "archetype")
                 if not isinstance(topic.get(key), (str, type(None)))]
    return problems + text_problems(topic, "topic")


async def shown_again(db: Any, mention: NormalizedMention) -> NormalizedMention:
    """An edit of a regular post (shown on the forum at its ``updated_at``) made after a deletion of
    it reached ingest and was kept there, the post not stored yet (:mod:`listener.unseen`): the post
    shows now, so the edit goes out as a restore, which ingest stores shown (an upsert would be
    stored deleted). The case: a staff whisper, never stored, edited (a deletion, in case it was a
    public post turned into one), then turned into a regular post. An edit older than that
    deletion (a retry of one made before it) stays an upsert. The database not answering (an
    error, not the timeout): published as it is."""
    if mention.event != "upsert" or mention.edited_at is None:
        return mention
    try:
        async with db.session() as session:
            since = await kept_since(session, (mention.platform, mention.external_id))
    except Exception:  # the edit still goes out; only the timeout answers 503
        log.warning("discourse webhook: could not look for a deletion kept for %s; published as an edit",
                    mention.external_id, exc_info=True)
        return mention
    if since is None or utc(mention.edited_at) <= since:
        return mention
    log.info("discourse webhook: %s shows again after a deletion kept for it (%s): published as a restore",
             mention.external_id, since.isoformat())
    return replace(mention, event="restore")


def routes(settings: Any, publish: Publish, db: Any = None) -> list[web.RouteDef]:
    """The webhook route; none unless ``SOCIALCARE_DISCOURSE_WEBHOOK_SECRET`` is set. ``db``: where
    a deletion kept for a post not stored yet is looked up when the post is edited (:func:`shown_again`)."""
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
        if event in TOPIC_EVENTS:
            topic = payload.get("topic") if isinstance(payload, dict) else None
            if problems := topic_problems(topic):
                return json_error(400, "invalid topic", problems=problems[:20])
            mention = topic_to_mention(topic, base_url, event, datetime.now(UTC))  # type: ignore[arg-type]
            if bad := mention_problems(mention):
                return json_error(400, "invalid topic", problems=in_terms_of(bad, "topic", {"url": "slug"})[:20])
        elif event not in POST_EVENTS:
            return web.json_response({"accepted": 0, "ignored": event or "no X-Discourse-Event header"})
        else:
            post = payload.get("post") if isinstance(payload, dict) else None
            if problems := post_problems(post):
                return json_error(400, "invalid post", problems=problems[:20])
            if is_ours(post, ours):  # type: ignore[arg-type]
                return web.json_response({"accepted": 0, "ignored": f"{event} of our own post"})
            if whisper(post) and event != "post_edited":  # type: ignore[arg-type]
                return web.json_response({"accepted": 0, "ignored": f"{event} of a staff whisper"})
            mention = post_to_mention(post, base_url, event)  # type: ignore[arg-type]
            if bad := mention_problems(mention):  # what is left: lengths the columns hold
                return json_error(400, "invalid post", problems=in_terms_of(bad, "post", FIELDS)[:20])
        if instance := request.headers.get("X-Discourse-Instance"):
            mention.raw = {**mention.raw, "instance": instance}
        async def publish_post() -> None:
            nonlocal mention
            if db is not None and event == "post_edited":
                mention = await shown_again(db, mention)
            await publish([mention])

        if (refused := await published_within(settings, publish_post(), log,
                                              f"discourse webhook: {event} {mention.external_id}")) is not None:
            return refused
        return web.json_response({"accepted": 1, "event": event, "external_id": mention.external_id}, status=202)

    return [web.post(PATH, receive)]
