"""Discourse posts (webhook ``post`` objects and ``/posts.json`` entries) to normalized mentions.

Identity is ``<topic_id>/<post_number>``: a Discourse post payload names its parent only by
``reply_to_post_number``, so this scheme threads replies without an API call (``in_reply_to`` is
the parent, ``conversation_id`` the topic's first post). Post numbers never change within a topic.
The first post carries the topic title, since ``topic_created`` itself has no body. A deleted or
recovered topic (``topic_destroyed``, ``topic_recovered``) is an event of its whole thread, the
conversation ``<topic_id>/1`` (:func:`topic_to_mention`, applied by :mod:`listener.threads`).
"""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime
from typing import Any

from listener.protocol import NormalizedMention, utc

_TAG = re.compile(r"<[^>]+>")


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return utc(datetime.fromisoformat(value))
    except ValueError:
        return None


def post_key(topic_id: Any, post_number: Any) -> str:
    return f"{int(topic_id)}/{int(post_number)}"


def split_key(external_id: str) -> tuple[int, int]:
    topic, _, number = external_id.partition("/")
    return int(topic), int(number)


def is_ours(post: dict[str, Any], api_username: str | None) -> bool:
    """Posted by the account the API acts as (``Api-Username``): our own reply, which the webhook and
    ``/posts.json`` send back like any post; stored as a customer's, it would be triaged and answered."""
    name = post.get("username")
    return bool(api_username) and isinstance(name, str) and name.lower() == str(api_username).lower()


WHISPER = 4  # Post.types[:whisper]: a staff whisper, shown to staff (whisperers) alone
WORDS = ("raw", "cooked", "excerpt", "blurb")  # a post's fields that hold its words


def whisper(post: dict[str, Any]) -> bool:
    """A staff whisper: webhooks send it (their payload is serialized as the system user, who sees
    it) with ``post_type`` 4; the public never sees it, so it is no customer's public post."""
    return post.get("post_type") == WHISPER


def deleted(post: dict[str, Any]) -> bool:
    """Gone from public view: deleted by staff (``deleted_at``) or by its author (``user_deleted``:
    Discourse replaces the words at once and sets ``deleted_at`` a day later, unless the author
    recovers it first), or a staff whisper (a public post a moderator turned into one has left the
    public's sight as a deleted one has; turned back, it shows on ``/posts.json`` again)."""
    return bool(post.get("deleted_at")) or bool(post.get("user_deleted")) or whisper(post)


def post_text(post: dict[str, Any]) -> str:
    raw = post.get("raw")
    if isinstance(raw, str) and raw:
        return raw
    return html.unescape(_TAG.sub(" ", str(post.get("cooked") or ""))).strip()


def post_to_mention(post: dict[str, Any], base_url: str, event: str = "post_created") -> NormalizedMention:
    """``event``: post_created / post_edited upsert (an edit carries ``edited_at``); post_destroyed
    deletes; post_recovered restores (with ``edited_at``: the author's own deletion had replaced the
    words, and recovering puts them back). A post :func:`deleted` is a deletion whatever the event
    but a recovery; a staff whisper's carries no words."""
    topic_id, number = int(post["topic_id"]), int(post["post_number"])
    parent = post.get("reply_to_post_number")
    text = "" if whisper(post) else post_text(post)  # staff's words to staff: never carried on
    if number == 1 and post.get("topic_title") and text:
        text = f"{post['topic_title']}\n\n{text}"
    private = post.get("topic_archetype") == "private_message"
    slug = post.get("topic_slug") or "-"
    created = _time(post.get("created_at")) or datetime.now(UTC)
    gone = event == "post_destroyed" or deleted(post)
    change = "restore" if event == "post_recovered" else "delete" if gone else "upsert"
    return NormalizedMention(
        platform="discourse", external_id=post_key(topic_id, number), text=text, created_at=created,
        author_id=str(post["user_id"]) if post.get("user_id") is not None else None,
        author_handle=post.get("username"), author_name=post.get("name") or None,
        conversation_id=post_key(topic_id, 1),
        in_reply_to=post_key(topic_id, parent) if parent else (post_key(topic_id, 1) if number > 1 else None),
        url=f"{base_url.rstrip('/')}/t/{slug}/{topic_id}/{number}",
        kind="dm" if private else ("forum_post" if number == 1 else "reply"), is_public=not private,
        channel=post.get("category_slug") or (f"category:{post['category_id']}" if post.get("category_id") else None),
        event=change,
        edited_at=(_time(post.get("updated_at")) or created) if event in ("post_edited", "post_recovered") else None,
        raw={k: v for k, v in post.items() if k not in WORDS} if whisper(post) else post,
    )


def topic_to_mention(topic: dict[str, Any], base_url: str, event: str, received: datetime) -> NormalizedMention:
    """``topic_destroyed`` / ``topic_recovered`` as the deletion or recovery of the topic's thread,
    at the event's own time, by which ingest drops a stale one: a deletion's is the topic's
    ``deleted_at``; a recovery's payload holds none (``deleted_at`` is null again, and nothing says
    when), so it is ``received``, when our webhook got it. No author or text: the posts have theirs."""
    tid = int(topic["id"])
    root = post_key(tid, 1)
    at = _time(topic.get("deleted_at")) if event == "topic_destroyed" else None
    private = topic.get("archetype") == "private_message"
    return NormalizedMention(
        platform="discourse", external_id=root, text="", created_at=at or received, conversation_id=root,
        url=f"{base_url.rstrip('/')}/t/{topic.get('slug') or '-'}/{tid}", kind="dm" if private else "forum_post",
        is_public=not private, event="thread_delete" if event == "topic_destroyed" else "thread_restore",
        raw={"topic": {key: topic.get(key) for key in ("id", "deleted_at", "archetype")}})
