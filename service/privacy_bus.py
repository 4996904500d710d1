"""Personal data in dead letters: an ingest message that failed every delivery keeps the whole
normalized post (text, handle, display name, raw payload) in the dead-letter stream until someone
acts on it. An erasure removes the person's (:mod:`service.erasure`), the retention purge those that
failed before its cutoff (:mod:`service.retention`), both through
:meth:`service.bus.Bus.delete_dead_letters`: removed, never retried (a retried ingest letter would
store the post again, under an author no erasure knows).

An ingest letter is the person's when its author is one of their accounts (platform with user id,
or handle unless the letter names another user id than theirs: a handle can change hands) or its
post is one of theirs (platform and external id); a later stage's letter carries only the post's
id (``mention_id``) and is theirs when that post is. A letter whose fields could not be decoded
cannot be matched: it goes with the purge. A letter rewritten between the match and
the removal (its post's content removed meanwhile: on Redis, a new id, the author kept) goes too: the
bus follows the id matched to the rewritten letter (:meth:`service.bus.Bus.delete_dead_letters`).

Only a process holding the bus reaches its dead letters: the CLI builds the Redis bus from the
settings. The in-process bus lives inside ``socialcare run``: no command reaches its dead letters
(an admin sees, retries or discards them on the console's /admin/deadletters); they go when that
process stops, or with the purge it runs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from models import Mention
from service.bus import Bus, DeadLetter
from service.deadletters import ALL
from service.privacy import chunks
from service.tombstones import handle_key

log = logging.getLogger("socialcare.privacy")
Account = tuple[str, str, str]  # (platform, "handle" | "id", value)


@dataclass(frozen=True)
class Person:
    """What marks a dead letter as the person's."""

    accounts: frozenset[Account] = frozenset()  # handles as :func:`handle_key`
    posts: frozenset[tuple[str, str]] = frozenset()  # (platform, external id)
    mention_ids: frozenset[int] = frozenset()

    @property
    def platforms_with_ids(self) -> set[str]:
        """Where the person's user ids are known: a letter there by another id is another account's,
        whatever handle it shows (a handle can change hands)."""
        return {p for p, kind, _ in self.accounts if kind == "id"}

    def __bool__(self) -> bool:
        return bool(self.accounts or self.posts or self.mention_ids)

    def holds(self, dead: DeadLetter) -> bool:
        mention = dead.payload.get("mention")
        if isinstance(mention, dict):  # the ingest topic's: the whole post
            platform, handle, uid = mention.get("platform"), mention.get("author_handle"), mention.get("author_id")
            return (isinstance(handle, str) and (platform, "handle", handle_key(handle)) in self.accounts
                    and (not uid or platform not in self.platforms_with_ids)) \
                or (uid is not None and (platform, "id", str(uid)) in self.accounts) \
                or (platform, str(mention.get("external_id"))) in self.posts
        mention_id = dead.payload.get("mention_id")
        return type(mention_id) is int and mention_id in self.mention_ids


async def person(session: AsyncSession, accounts: Iterable[Account], mention_ids: Iterable[int]) -> Person:
    """The person's accounts (read before their authors were anonymised) and posts."""
    ids = frozenset(mention_ids)
    posts: set[tuple[str, str]] = set()
    for chunk in chunks(ids):
        posts |= {(p, e) for p, e in await session.execute(
            select(Mention.platform, Mention.external_id).where(Mention.id.in_(chunk)))}
    return Person(frozenset((p, kind, handle_key(v) if kind == "handle" else str(v)) for p, kind, v in accounts if v),
                  frozenset(posts), ids)


async def of_person(bus: Bus, who: Person) -> list[DeadLetter]:
    """The dead letters that hold the person's data."""
    return [d for d in await bus.dead_letters(None, ALL) if who.holds(d)] if who else []


def names(letters: Iterable[DeadLetter]) -> set[str]:
    """The handles, names and user ids these letters' posts carry (to keep out of the audit log)."""
    posts = [d.payload["mention"] for d in letters if isinstance(d.payload.get("mention"), dict)]
    return {str(v) for m in posts for v in (m.get("author_handle"), m.get("author_name"), m.get("author_id")) if v}


def failed_at(dead: DeadLetter) -> datetime | None:
    try:
        at = datetime.fromisoformat(dead.failed_at)
    except (TypeError, ValueError):
        return None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


async def failed_before(bus: Bus, cutoff: datetime) -> list[str]:
    """The ids of the dead letters that failed before ``cutoff`` (a letter without a readable time
    stays: nothing says it is old)."""
    return [d.id for d in await bus.dead_letters(None, ALL) if (at := failed_at(d)) is not None and at < cutoff]


async def remove(bus: Any, ids: list[str], *, dry_run: bool = False) -> int:
    """Delete the dead letters of these ids (a dry run only counts them); how many went."""
    if dry_run or not ids:
        return len(ids)
    removed = await bus.delete_dead_letters(ids)
    log.info("%d dead letter(s) holding personal data removed", removed)
    return removed
