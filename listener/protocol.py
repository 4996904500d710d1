"""The one protocol every connector speaks, and the one shape every channel's posts take.

A connector streams :class:`NormalizedMention` objects from a persisted resume cursor and performs
outbound :class:`Action` objects (public reply, private message, hide, remove, ...). The pipeline
never sees a platform payload except as ``raw``, kept for audit and re-normalization.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal, Protocol, runtime_checkable

MentionKind = Literal["post", "comment", "reply", "dm", "forum_post"]
MentionEvent = Literal["upsert", "delete", "restore", "thread_delete", "thread_restore"]
# restore: a deleted post is back (Discourse recover). thread_delete / thread_restore: the whole thread
# ``conversation_id`` deleted or recovered on its platform (a Discourse topic), at ``created_at``: its
# webhook names no post, so ingest applies it to the posts it holds (listener.threads)
THREAD_EVENTS = ("thread_delete", "thread_restore")
ActionKind = Literal[
    "public_reply", "private_message", "hide", "unhide", "remove", "approve", "lock", "distinguish",
    "delete_reply", "ban", "block",  # "block": X's nearest thing to a ban
]


def utc(dt: datetime) -> datetime:
    """Naive datetimes are taken as UTC; aware ones are converted to UTC."""
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)


@dataclass
class NormalizedMention:
    """A post, comment or message from any channel, in one shape.

    ``external_id`` is unique per ``platform``; the same post seen by two connectors has the same
    pair and is stored once. ``conversation_id`` is the platform's thread root, ``in_reply_to`` the
    external id of the parent post.
    """

    platform: str
    external_id: str
    text: str
    created_at: datetime
    author_id: str | None = None
    author_handle: str | None = None
    author_name: str | None = None
    author_followers: int | None = None
    author_created_at: datetime | None = None
    conversation_id: str | None = None
    in_reply_to: str | None = None
    url: str | None = None
    lang: str | None = None
    kind: MentionKind = "post"
    is_public: bool = True
    channel: str | None = None  # subreddit, forum category, brand account
    event: MentionEvent = "upsert"
    edited_at: datetime | None = None
    raw: dict[str, Any] = field(default_factory=dict)
    # a ``delete`` whose platform's terms require its content removed here, not only hidden (X: every
    # deletion and withdrawal; Reddit: its author's deletion; listener.deletions). Set by the
    # connector, which knows why; a message without it (published before it existed) decodes as False
    remove_content: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (datetimes as ISO 8601 UTC). Field by field rather than ``asdict``, whose
        recursive deep copy of ``raw`` cost more than the bus's JSON encoding of it."""
        out = {name: getattr(self, name) for name in self.__dataclass_fields__}
        out["raw"] = dict(self.raw) if isinstance(self.raw, dict) else self.raw
        for key in ("created_at", "author_created_at", "edited_at"):
            if out[key] is not None:
                out[key] = utc(out[key]).isoformat()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NormalizedMention:
        values = dict(data)
        for key in ("created_at", "author_created_at", "edited_at"):
            if isinstance(values.get(key), str):
                values[key] = utc(datetime.fromisoformat(values[key].replace("Z", "+00:00")))
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in values.items() if k in known})

    def contract_json(self) -> dict[str, Any]:
        """The fields `socialcare connectors fetch` prints (a public contract)."""
        return {
            "platform": self.platform,
            "external_id": self.external_id,
            "author_handle": self.author_handle,
            "text": self.text,
            "created_at": utc(self.created_at).isoformat().replace("+00:00", "Z"),
            "conversation_id": self.conversation_id,
            "in_reply_to": self.in_reply_to,
            "url": self.url,
        }


@dataclass
class Action:
    """An outbound action on a platform. ``target_external_id`` is the post acted on."""

    kind: ActionKind
    platform: str
    target_external_id: str | None = None
    text: str | None = None
    recipient_id: str | None = None  # platform user id for private messages
    recipient_handle: str | None = None
    reason: str | None = None


@dataclass
class ActionResult:
    ok: bool
    external_ids: list[str] = field(default_factory=list)  # ids the platform gave (tweets of a thread)
    error: str | None = None
    # not ok, but the platform may have done it: the request went out and no answer came back in
    # time. A reply so left is ``unknown`` (an agent checks the platform), never sent again blindly.
    uncertain: bool = False


@runtime_checkable
class Connector(Protocol):
    """A channel: streams mentions from its saved cursor and performs actions.

    ``poll_once`` runs one fetch from the cursor and returns the mentions with the new cursor; the
    caller persists the cursor only after the mentions are safely on the bus, so a restart neither
    loses nor repeats anything. ``stream`` is the long-running form (streaming or repeated polls).
    """

    name: str
    platform: str

    async def poll_once(self, cursor: str | None) -> tuple[list[NormalizedMention], str | None]: ...

    def stream(self, cursor: str | None) -> AsyncIterator[tuple[list[NormalizedMention], str | None]]: ...

    async def perform(self, action: Action) -> ActionResult: ...

    async def check(self) -> dict[str, Any]: ...

    async def close(self) -> None: ...
