"""What ingest can store: a mention's fields checked before it is published (the intakes refuse a
post that would fail every retry and end dead-lettered) and read back from JSON."""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime
from typing import Any, get_args

from listener.protocol import THREAD_EVENTS, MentionEvent, MentionKind, NormalizedMention, utc
from models import Author, Mention

_M, _A = Mention.__table__.c, Author.__table__.c
# what the columns hold (PostgreSQL refuses longer text; SQLite would keep it)
MAX_CHARS = {name: column.type.length for name, column in {
    "platform": _M.platform, "external_id": _M.external_id, "author_id": _A.platform_user_id,
    "author_handle": _A.handle, "author_name": _A.display_name, "conversation_id": _M.platform_conversation_id,
    "in_reply_to": _M.in_reply_to, "url": _M.url, "lang": _M.lang, "channel": _M.channel}.items()}
REQUIRED = ("platform", "external_id", "text", "created_at")
TIMES = ("created_at", "author_created_at", "edited_at")
# a post's time is within these; beyond them converting to UTC or adding to it overflows
EARLIEST, LATEST = datetime(1900, 1, 1, tzinfo=UTC), datetime(9000, 1, 1, tzinfo=UTC)


def unstorable(value: str) -> str | None:
    """Why a database would refuse this text (PostgreSQL takes no NUL, UTF-8 no lone surrogate), or None."""
    if "\x00" in value:
        return "contains a NUL character"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid Unicode (a lone surrogate)"
    return None


def text_problems(value: Any, where: str) -> list[str]:
    """Every string (key or value) in a JSON document that a database would refuse, by its path;
    iterative, so a deep document costs no stack."""
    problems, stack = [], [(value, where)]
    while stack and len(problems) < 20:
        v, path = stack.pop()
        if isinstance(v, str):
            if why := unstorable(v):
                problems.append(f"{path}: {why}")
        elif isinstance(v, dict):
            problems += [f"{path}: a key {why}" for k in v if isinstance(k, str) and (why := unstorable(k))]
            stack += [(item, f"{path}.{k}") for k, item in v.items()]
        elif isinstance(v, list):
            stack += [(item, f"{path}[{i}]") for i, item in enumerate(v)]
    return problems


def parse_time(value: Any) -> datetime:
    """An ISO 8601 time string as a UTC datetime within [EARLIEST, LATEST); ValueError in plain words."""
    if not isinstance(value, str):
        raise ValueError("an ISO 8601 time (a string)")  # noqa: TRY004 (bad input: one error type)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("not an ISO 8601 time") from None
    return in_range(parsed)


def in_range(value: datetime) -> datetime:
    """``value`` in UTC; ValueError when out of range (9999-12-31T23:59-14:00 has no UTC time at all)."""
    try:
        value = utc(value)
    except OverflowError:
        value = None
    if value is None or not EARLIEST <= value < LATEST:
        raise ValueError(f"out of range (years {EARLIEST.year} to {LATEST.year - 1})")
    return value


def mention_problems(m: NormalizedMention) -> list[str]:
    """What ingest could not store, field by field. The intakes (webhooks, the ingest API) refuse
    such a post to its sender: published, it would fail every retry and end dead-lettered."""
    problems = []
    for name, limit in {"text": None, **MAX_CHARS}.items():
        value = getattr(m, name)
        if value is None and name not in REQUIRED:
            continue
        if not isinstance(value, str) or (name != "text" and name in REQUIRED and not value):
            problems.append(f"{name}: {'required, ' if name in REQUIRED else ''}a string")
        elif name != "text" and (why := unstorable(value)):  # the text is cleaned at ingest
            problems.append(f"{name}: {why}")
        elif limit is not None and len(value) > limit:
            problems.append(f"{name}: longer than {limit} characters")
    for name in TIMES:
        value = getattr(m, name)
        if value is None and name != "created_at":
            continue
        if not isinstance(value, datetime):
            problems.append(f"{name}: {'required, ' if name in REQUIRED else ''}an ISO 8601 time")
            continue
        try:
            in_range(value)
        except ValueError as exc:
            problems.append(f"{name}: {exc}")
    followers = m.author_followers
    if followers is not None and (type(followers) is not int or not 0 <= followers < 2**31):
        problems.append("author_followers: a whole number from 0 to 2147483647")
    if m.kind not in get_args(MentionKind):
        problems.append(f"kind: one of {', '.join(get_args(MentionKind))}")
    if m.event not in get_args(MentionEvent):
        problems.append(f"event: one of {', '.join(get_args(MentionEvent))}")
    problems += [f"{name}: true or false" for name in ("is_public", "remove_content")
                 if not isinstance(getattr(m, name), bool)]
    if m.event in THREAD_EVENTS and not m.conversation_id:
        problems.append("conversation_id: required for a thread's event")
    if not isinstance(m.raw, dict):
        problems.append("raw: an object")
    return problems + text_problems(m.raw, "raw")


def in_terms_of(problems: list[str], where: str, names: dict[str, str]) -> list[str]:
    """:func:`mention_problems` in the sender's terms: each field under its name in the payload."""
    return [f"{where}.{names.get(field, field)}:{why}" for field, _, why in (p.partition(":") for p in problems)]


def mention_from_dict(data: Any) -> NormalizedMention:
    """A mention from its JSON fields (as :meth:`NormalizedMention.to_dict` writes them; others are
    ignored); ValueError naming every missing or invalid field in plain words."""
    if not isinstance(data, dict):
        raise ValueError("a mention must be a JSON object")  # noqa: TRY004
    values = {k: v for k, v in data.items() if k in {f.name for f in fields(NormalizedMention)}}
    missing = [f for f in REQUIRED if values.get(f) is None or (values[f] == "" and f != "text")]
    problems = [f"missing {', '.join(missing)}"] if missing else []
    for name in TIMES:
        try:
            values[name] = parse_time(values[name]) if values.get(name) not in (None, "") else None
        except ValueError as exc:
            problems.append(f"{name}: {exc}")
            values[name] = None
    mention = NormalizedMention(**{**dict.fromkeys(REQUIRED), **values})
    reported = set(missing) | {p.split(":")[0] for p in problems}
    problems += [p for p in mention_problems(mention) if p.split(":")[0] not in reported]
    if problems:
        raise ValueError("; ".join(problems[:20]))
    return mention
