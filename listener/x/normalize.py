"""X API v2 payloads (``data``, ``includes``, ``meta``) to normalized mentions.

A response with only the default fields (``id``, ``text``; no ``includes``, no ``author_id``) is
still a mention: unknown fields stay empty and the URL falls back to ``/i/web/status/<id>``. The
same tweet from the mentions timeline, the filtered stream or recent search normalizes alike, so
it is stored once.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from listener.protocol import NormalizedMention, utc

TWEET_FIELDS = ["created_at", "conversation_id", "in_reply_to_user_id", "lang", "public_metrics", "author_id",
                "referenced_tweets"]
USER_FIELDS = ["username", "name", "public_metrics", "created_at"]
EXPANSIONS = ["author_id", "referenced_tweets.id"]


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return utc(datetime.fromisoformat(value))
    except ValueError:
        return None


def tweet_to_mention(tweet: dict[str, Any], users: dict[str, dict[str, Any]],
                     channel: str | None = None) -> NormalizedMention:
    author_id = tweet.get("author_id")
    user = users.get(str(author_id) if author_id else "", {})
    username = user.get("username")
    refs = tweet.get("referenced_tweets") or []
    parent = next((str(r.get("id")) for r in refs if isinstance(r, dict) and r.get("type") == "replied_to"), None)
    tid = str(tweet["id"])
    url = f"https://x.com/{username}/status/{tid}" if username else f"https://x.com/i/web/status/{tid}"
    metrics = user.get("public_metrics") or {}
    edits = tweet.get("edit_history_tweet_ids") or []
    return NormalizedMention(
        platform="x", external_id=tid, text=str(tweet.get("text", "")),
        created_at=_time(tweet.get("created_at")) or datetime.now(UTC),
        author_id=str(author_id) if author_id else None, author_handle=username, author_name=user.get("name"),
        author_followers=metrics.get("followers_count"), author_created_at=_time(user.get("created_at")),
        conversation_id=str(tweet["conversation_id"]) if tweet.get("conversation_id") else None, in_reply_to=parent,
        url=url, lang=tweet.get("lang"), kind="reply" if parent else "post", is_public=True, channel=channel,
        raw={**tweet, **({"edit_of": str(edits[0])} if len(edits) > 1 else {})},
    )


def users_of(includes: Any) -> dict[str, dict[str, Any]]:
    users = (includes or {}).get("users") if isinstance(includes, dict) else None
    return {str(u.get("id")): u for u in users or [] if isinstance(u, dict)}


def page_to_mentions(page: Any, channel: str | None = None) -> list[NormalizedMention]:
    """One response page, oldest first (X returns newest first)."""
    if not isinstance(page, dict):
        raise ValueError("X response is not a JSON object")  # noqa: TRY004 - a payload error: back off
    users = users_of(page.get("includes"))
    tweets = [t for t in page.get("data") or [] if isinstance(t, dict) and t.get("id")]
    return [tweet_to_mention(t, users, channel) for t in reversed(tweets)]


def newest_id(meta_newest: str | None, mentions: list[NormalizedMention], previous: str | None) -> str | None:
    """The next ``since_id``: the newest id seen, never older than the previous cursor."""
    ids = [i for i in [meta_newest, previous, *(m.external_id for m in mentions)] if i and str(i).isdigit()]
    return max(ids, key=int) if ids else previous
