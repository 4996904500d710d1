"""Re-reading recent Discourse posts, for the edits and deletions whose webhook never arrived.

The catch-up poll (:mod:`listener.discourse.connector`) only ever asks ``/posts.json`` for posts
newer than its cursor, so an edit or a deletion made while our webhook endpoint was unreachable
(or the webhook disabled after failures) was never seen: a card number added to a post was never
triaged nor redacted, a post its author deleted stayed in the console. So the connector keeps the
posts it published in the window every connector keeps (:mod:`listener.recheck`; first seen
in the last ``recheck_hours``, at most ``recheck_size``, a digest of the text last seen, never the
text itself), in its JSON cursor so a restart keeps it, and every ``recheck_seconds`` reads them back.

Discourse has no batch read of posts by id, and one ``GET /posts/{id}.json`` a post would spend the
forum's admin API limit (60 requests a minute for all keys) on posts that did not change. Instead a
re-check round pages ``/posts.json`` (50 posts a page, newest first) on down to the window's oldest
post, in the very paging the poll does anyway: on a quiet forum the page the poll reads covers the
whole window and a re-check costs nothing more; at most ``recheck_pages`` pages are added, and
window posts below the last page read wait for a round that reaches them (keep ``recheck_size``
well under 50 x ``recheck_pages``: our own replies take places on the pages too). That listing shows
``raw`` (the text is compared, not ``version``: an edit in Discourse's grace period, the first five
minutes, keeps the version), ``updated_at`` and ``user_deleted``. It leaves out posts deleted by
staff (or a day after their author deleted them), hidden by flags, in unlisted topics or turned into
whispers; a window post missing from the pages and not known deleted is read alone with
``GET /posts/{id}.json``, at most ``recheck_lookups`` a round (the newest first; the rest on later
rounds): a 404 (a deleted post, to a non-staff API user), ``deleted_at`` (to staff) or a whisper
(``post_type`` 4: out of the public's sight) is a deletion; a post still there (hidden, unlisted)
is compared as any other, except a topic's first post, whose
title that answer leaves out, and is read alone again next round (hidden posts are few).

A re-check never holds new posts back for trouble of its own. A post read alone whose answer is
an error other than a 404 or a 429 (a 5xx, a 403, a timeout, a body that is not JSON) is unknown this
round: logged (its id and the status), left as it was, read again on a later round; after a timeout
or a 5xx (the lookup raises a ``TransientError``) no other post is read alone that round, so a
forum that hangs costs one request timeout, not ``recheck_lookups`` of them. A page read for the
re-check alone (below the ones the poll needs) that fails ends the paging there, as the page budget
does. A 429 met by the re-check (such a page, or a post read alone) ends the round's re-check
before the window is touched: the connector still returns the round's new posts and moves its
cursor on, leaves the window unchecked and sets its ``not_before`` (saved as ``wait``, the field X's
window keeps for its lookup's 429) to ``Retry-After`` ahead; no round re-checks before it. Discourse
limits the API key, not an endpoint, so a 429 on the pages the poll itself needs is raised (the
runner waits, and the repeated round fetches the new posts again: a 429 never loses one).

What comes out: a changed text, an upsert with ``edited_at`` (the post's ``updated_at``, as the
``post_edited`` webhook sends it; ingest stores the words and triage runs again); an unchanged post,
nothing; a deletion, a ``delete`` event (ingest hides the mention). A deleted post stays in the
window marked removed (:data:`~listener.recheck.REMOVED` before the digest of the text last
seen shown), because Discourse deletions can be undone: its author recovers it within the day or
staff recover it. One that shows on a page again comes out as a ``restore``, as the
``post_recovered`` webhook publishes it (ingest shows it again unless it was erased meanwhile or
our moderation hid it), with its words, which ingest stores if they differ. A removed post still
missing costs no request. Our own replies never enter the window (the poll does not publish them),
nor do private messages (``/posts.json`` lists public posts only; they come by webhook alone).

A deleted topic (``topic_destroyed``: :mod:`listener.threads` hides its posts) takes its posts off
the pages, and read alone each is a 404 to a non-staff API user: the re-check publishes a deletion
of each, which changes nothing (ingest finds it deleted already, with its topic, and keeps it so:
the topic's recovery shows it again). To staff a reply of a deleted topic reads as it was, so
nothing comes out. A recovered topic's posts show on the pages again: each comes out as a
``restore``, which re-hides nothing, and the first post's, in a topic still deleted here (both
webhooks missed), recovers the whole topic. A 404 met after a recovery (a round racing it) hides
that post alone, and the next round's ``restore`` shows it again.

The shared :class:`~listener.recheck.Window` is reused (its digest, bounds, cursor format and
removed marker), keyed by the mention's ``topic/number``, with each post's id beside it in the cursor
(``post_ids``): a page names its posts by id, and a 404 names nothing at all.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from listener.discourse.normalize import deleted, post_key, post_to_mention, split_key
from listener.errors import TransientError
from listener.protocol import NormalizedMention
from listener.recheck import REMOVED, Window, digest

# GET /posts/{id}.json: the post; None when Discourse answers 404 (deleted, to a non-staff API user),
# {} when unknown this round; raises TransientError when no other post should be read alone this round
Lookup = Callable[[int], Awaitable[dict[str, Any] | None]]


def usable(post: Any) -> bool:
    """A post with the ids a mention needs (a page may hold anything)."""
    return (isinstance(post, dict) and type(post.get("id")) is int and type(post.get("topic_id")) is int
            and type(post.get("post_number")) is int)


@dataclass
class PostWindow(Window):
    """The shared window keyed by ``topic/number``, plus each post's Discourse id (``post_ids``).
    Such a key does not sort as the forum's order ("10/1" before "9/5" as text), so posts first seen
    in the same second are ordered by their post id when the window is trimmed (the newest kept) or
    saved. Its ``not_before`` is a 429's ``Retry-After`` met by the re-check."""

    post_ids: dict[str, int] = field(default_factory=dict)

    @classmethod
    def load(cls, data: Any) -> PostWindow:
        """As Reddit's; an entry without its post id is dropped (it could be read back by no means)."""
        window = super().load(data)
        ids = data.get("post_ids") if isinstance(data, dict) else None
        ids = ids if isinstance(ids, dict) else {}
        window.post_ids = {k: v for k, v in ids.items() if k in window.seen and type(v) is int and v > 0}
        window.seen = {k: v for k, v in window.seen.items() if k in window.post_ids}
        return window

    def order(self, key: str) -> tuple[int, str]:
        return self.post_ids.get(key, 0), key

    def dump(self) -> dict[str, Any]:
        return {**super().dump(), "post_ids": {k: self.post_ids[k] for k in self.seen}}

    def add(self, mentions: Iterable[NormalizedMention], now: float) -> None:
        mentions = [m for m in mentions if isinstance(m.raw, dict) and type(m.raw.get("id")) is int]
        super().add(mentions, now)
        for m in mentions:
            if m.external_id in self.seen:
                self.post_ids.setdefault(m.external_id, m.raw["id"])

    def trim(self, now: float, hours: float, size: int) -> None:
        super().trim(now, hours, size)
        self.post_ids = {k: v for k, v in self.post_ids.items() if k in self.seen}

    def lowest(self) -> int | None:
        """The oldest post id of the window: how far back a round pages."""
        return min(self.post_ids.values(), default=None)

    def missing(self, listed: dict[int, dict[str, Any]], low: int) -> list[tuple[str, int]]:
        """The window's shown posts that pages reaching down to id ``low`` leave out, newest first."""
        return sorted(((k, pid) for k, pid in self.post_ids.items() if pid >= low and pid not in listed
                       and not self.seen[k][1].startswith(REMOVED)), key=lambda item: -item[1])


def _compare(window: PostWindow, key: str, post: dict[str, Any], base_url: str,
             listed: bool) -> NormalizedMention | None:
    """What became of one window post, as read now; the window is updated to it."""
    first_seen, before = window.seen[key]
    removed, last = before.startswith(REMOVED), before.removeprefix(REMOVED)
    if deleted(post):
        if removed:
            return None  # still deleted (an author's deletion stays on the pages for a day)
        window.seen[key] = (first_seen, REMOVED + before)
        return post_to_mention(post, base_url, "post_destroyed")
    if not listed and post["post_number"] == 1 and not post.get("topic_title"):
        return None  # read alone: no title to compare a topic's first post with
    m = post_to_mention(post, base_url, "post_recovered" if removed else "post_edited")
    now = digest(m.text)
    if now == last and not removed:
        return None
    window.seen[key] = (first_seen, now)
    return m


def _gone(window: PostWindow, key: str, pid: int, now: float) -> NormalizedMention:
    """A 404: deleted (or out of our API user's sight, as good as deleted to us)."""
    first_seen, before = window.seen[key]
    window.seen[key] = (first_seen, REMOVED + before)
    return NormalizedMention(platform="discourse", external_id=key, text="", event="delete",
                             created_at=datetime.fromtimestamp(now, tz=UTC),
                             conversation_id=post_key(split_key(key)[0], 1), raw={"id": pid, "status": 404})


def changes(window: PostWindow, listed: dict[int, dict[str, Any]], low: int,
            looked_up: dict[str, dict[str, Any] | None], base_url: str, now: float) -> list[NormalizedMention]:
    """The window's changes, given the pages read (``listed``, by post id, reaching down to ``low``)
    and the posts read alone (``looked_up``, by key; None: a 404). The window is updated to them."""
    out: list[tuple[int, NormalizedMention]] = []
    for key, pid in list(window.post_ids.items()):
        if pid < low:
            continue  # below the last page read: a later round
        if pid in listed:
            post, on_page = listed[pid], True
        elif key in looked_up:
            post, on_page = looked_up[key], False
        else:
            continue  # removed and still off the pages, or not read this round
        if post is None:
            m: NormalizedMention | None = _gone(window, key, pid, now)
        elif usable(post) and post_key(post["topic_id"], post["post_number"]) == key:
            m = _compare(window, key, post, base_url, on_page)
        else:
            m = None  # unreadable, or moved to another topic (a new key): the old one is left as it was
        if m is not None:
            out.append((pid, m))
    return [m for _, m in sorted(out, key=lambda item: item[0])]


async def recheck(window: PostWindow, listed: dict[int, dict[str, Any]], low: int, lookup: Lookup,
                  base_url: str, now: float, lookups: int) -> list[NormalizedMention]:
    """One re-check round over pages already read: the posts missing from them are read alone
    (``lookup``, at most ``lookups``; ``{}`` for one unknown this round; after one that raised a
    ``TransientError``, a timeout or a 5xx, no more), then compared. Raises what else ``lookup``
    raises (the connector's: a 429) before the window is touched."""
    looked_up: dict[str, dict[str, Any] | None] = {}
    for key, pid in window.missing(listed, low)[:max(lookups, 0)]:
        try:
            looked_up[key] = await lookup(pid)
        except TransientError:
            break  # the forum struggles: the rest are unknown this round (the lookup logged it)
    out = changes(window, listed, low, looked_up, base_url, now)
    window.checked_at = now
    return out
