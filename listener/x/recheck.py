"""Looking recent tweets up again, because X reports deletions only in its Enterprise compliance streams.

A customer who deletes a tweet (one with their card number or email, say) expects it gone from the
console too, and X's Developer Agreement requires honouring deletions. So both X connectors keep a
window of the tweets they ingested (the brand account's own are never ingested, so never in it):
those first seen in the last ``recheck_hours``, at most ``recheck_size``. It lives in the cursor,
``{"since_id": ..., "recheck": ...}``, so a restart keeps it (a bare-id cursor saved before it existed
is read as the ``since_id``). Every ``recheck_seconds`` the window is looked up with the batch lookup
``GET /2/tweets?ids=`` (tweepy ``Client.get_tweets``, at most 100 ids a request: at most
``ceil(recheck_size / 100)`` requests a round, 3 every 15 minutes with the defaults, well within the
15-minute rate-limit windows of the paid tiers even with both connectors). Each tweet found counts
against X's monthly post cap, at most ``recheck_size`` a round: a tier with a small cap wants a
smaller window or a slower pace.

The re-check never stops nor delays ingestion. A round runs after the connector fetched what is new
(a failed fetch raises before it, the saved cursor staying as it was), and nothing it meets is raised:
a lookup that fails (an error status, a 403 included, which is about the lookup and never stops the
connector; a timeout, a body that is not JSON) skips the round, with a log line naming the status
alone, until the next is due (``checked_at`` moves on, the window is left as it was). A 429 is the
lookup endpoint's own limit on X, apart from the mentions' and the search's: it skips the round too,
and no round runs before the ``x-rate-limit-reset`` it announced (``not_before``, kept in the cursor's
window; at most :data:`LIMIT_WAIT` ahead). A page of a lookup that is not what X sends (``data`` or
``errors`` not a list, say) is logged and skipped: its tweets are left as they were and asked again
next round, the other pages count.

What X answers for each id (the errors of ``includes`` are not about the ids asked, and are ignored):

* in ``data``: still there, nothing to emit. Edits reach us through the timeline and the stream as
  new ids (:mod:`listener.x.normalize`); the window only follows the newest version known, which
  is the one it asks for next. But one X now withholds where the team reads the console
  (:func:`~listener.x.normalize.withholding`: ``SOCIALCARE_X_WITHHELD_COUNTRIES``, or copyright) is
  hidden like a withdrawn one (below, ``raw["recheck"]`` ``Withheld``), and shown again (a
  ``restore``) when X stops withholding it. A tweet already withheld when first fetched was never
  stored: it joins the window as a spare entry (:data:`~listener.recheck.SPARE`) and, once X stops
  withholding it, its ``restore`` is stored and triaged as a new post.
* ``Not Found Error``: its author deleted it, or deactivated their account: X answers both alike
  (``resource-not-found``; looking the author up says Not Found for a deleted account too), and a
  deactivated account comes back with its tweets if its owner logs in within 30 days. So it comes
  out as a ``delete`` at once (ingest marks the mention deleted and removes its content, as X's
  terms ask: ``remove_content``, :mod:`listener.deletions`), and
  stays in the window as a spare entry, marked: if X finds it again while it is there, it is
  restored like a withdrawn one. A deleted tweet never comes back (ids are never reused), so the
  cost is a spare entry until it ages out, and spare entries cannot crowd out the tweets we show
  (:meth:`~listener.recheck.Window.trim`).
* ``Authorization Error``: the tweet exists but is no longer public, its author's account protected
  or suspended. X's policy treats that like a deletion for as long as it lasts, so it comes out as
  a ``delete`` too, but stays in the window, marked (``REMOVED`` before the version id, as Reddit
  marks a removal). If X shows it again while it is in the window (the account made public or
  reinstated) it comes out as a ``restore`` with the words it shows (its content was removed here
  meanwhile, as for a deletion): ingest stores them and shows it again unless
  our moderation hid it or it was erased meanwhile (:mod:`listener.ingest`). A marked one emits
  nothing more until it comes back or ages out (X no longer finding it only makes it spare). With
  user-context keys alone (no bearer token) the lookup sees what the brand account sees, so an
  author who blocked the brand may answer this error for a tweet still public: hiding that one is
  reversible, and the brand could not reply to it anyway.
* anything else, or an id missing from both: left alone, looked up again next round.

The window's mark for a tweet is the newest version id known, after :data:`~listener.recheck.REMOVED`
while it is hidden here, and first of all :data:`~listener.recheck.SPARE` for a spare entry.
Cursors saved before spare entries existed load as they are.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import tweepy

from listener.errors import RateLimited
from listener.protocol import NormalizedMention
from listener.recheck import KEY, REMOVED, SPARE, Window, id_order
from listener.x.errors import _status, translate
from listener.x.normalize import (
    TWEET_FIELDS,
    USER_FIELDS,
    WITHHELD,
    edit_chain,
    tweet_to_mention,
    users_of,
    version_id,
    withholding,
)

log = logging.getLogger("socialcare.listener.x")
# defaults of a connector built without settings; SOCIALCARE_X_RECHECK_* set them (listener.registry)
RECHECK_SECONDS = 900.0
RECHECK_HOURS = 24.0
RECHECK_SIZE = 300  # 0: no re-check
BATCH = 100  # ids per GET /2/tweets: X's maximum
NOT_FOUND, NOT_AUTHORIZED = "Not Found Error", "Authorization Error"
LIMIT_WAIT = 900.0  # the longest a lookup's 429 holds the re-check back: X's rate-limit windows are 15 minutes


def since_id(cursor: str | None) -> str | None:
    """The ``since_id`` a cursor holds: a bare id (as saved before the window) or the object's."""
    if not cursor or cursor.isdigit():
        return cursor or None
    try:
        data = json.loads(cursor)
    except ValueError:
        return None
    value = data.get("since_id") if isinstance(data, dict) else None
    return value if isinstance(value, str) and value.isdigit() else None


def dump_cursor(since: str | None, window: Window) -> str | None:
    """The cursor to save: the bare ``since_id`` while the window is empty."""
    if not window.seen:
        return since
    return json.dumps({"since_id": since, KEY: window.dump()}, sort_keys=True)


def split(mark: str) -> tuple[bool, bool, str]:
    """A window mark as (spare, hidden here, the newest version id known)."""
    rest = mark.removeprefix(SPARE)
    return mark.startswith(SPARE), rest.startswith(REMOVED), rest.removeprefix(REMOVED)


def marked(spare: bool, hidden: bool, version: str) -> str:
    return (SPARE if spare else "") + (REMOVED if hidden else "") + version


@dataclass
class TweetWindow(Window):
    """The shared window (:class:`listener.recheck.Window`: trimmed, dumped and loaded alike) for
    tweets: original id -> (epoch second first seen, its mark: :func:`marked`). No text digest: X
    edits are new ids. Its ``not_before`` is the ``x-rate-limit-reset`` of a lookup's 429 (at most
    :data:`LIMIT_WAIT` ahead)."""

    def add(self, mentions: Iterable[NormalizedMention], now: float) -> None:
        """This round's new tweets, and those withheld (:func:`~listener.x.normalize.withheld`): one
        in the window is marked hidden, one new to it joins as a spare entry, marked hidden."""
        self.checked_at = self.checked_at or now
        for m in mentions:
            held = m.event == "delete" and isinstance(m.raw, dict) and "withheld" in m.raw
            if m.event != "upsert" and not held:
                continue
            first, mark = self.seen.get(m.external_id, (int(now), SPARE + REMOVED if held else ""))
            spare, hidden, known = split(mark)
            version = version_id(m)
            newest = version if not known or id_order(version) > id_order(known) else known
            self.seen[m.external_id] = (first, marked(spare, hidden or held, newest))

    def asked(self) -> dict[str, str]:
        """The id to look up (the newest version known) -> the original's id (the mention's)."""
        return {split(mark)[2]: original for original, (_, mark) in self.seen.items()}


def gone(original: str, version: str, why: str, channel: str | None, now: float) -> NormalizedMention:
    """The ``delete`` event of a tweet deleted or withdrawn (``why``: X's error title, or
    :data:`~listener.x.normalize.WITHHELD`); ingest needs no more. Whatever the reason, X's terms
    want its content gone from the service, not only hidden (``remove_content``)."""
    return NormalizedMention(platform="x", external_id=original, text="", channel=channel, event="delete",
                             created_at=datetime.fromtimestamp(now, UTC), raw={"id": version, "recheck": why},
                             remove_content=True)


def changes(page: Any, window: TweetWindow, asked: dict[str, str], channel: str | None,
            now: float, countries: Collection[str] = ()) -> list[NormalizedMention]:
    """What one lookup response says became of the window's tweets; ``window`` is updated to it.
    ``countries``: where the team reads the console (:func:`~listener.x.normalize.withholding`).
    A page not shaped as X sends it raises ``ValueError`` before anything is changed."""
    if not isinstance(page, dict):
        raise ValueError("the lookup's answer is not a JSON object")  # noqa: TRY004 - a payload error
    for part in ("data", "errors"):
        if not isinstance(page.get(part) or [], list):
            raise ValueError(f"the lookup's {part} is not a list")  # noqa: TRY004 - a payload error
    out = []
    users = users_of(page.get("includes"))
    for tweet in page.get("data") or []:
        original = asked.get(str(tweet.get("id"))) if isinstance(tweet, dict) else None
        if original not in window.seen:
            continue
        first, (spare, hidden, _) = window.seen[original][0], split(window.seen[original][1])
        tid = str(tweet["id"])
        newest = (edit_chain(tweet) or [tid])[-1]
        if withholding(tweet, users, countries) is not None:
            if not hidden:
                out.append(gone(original, tid, WITHHELD, channel, now))
            mark = marked(spare, True, newest)
        elif hidden and newest == tid:
            back = tweet_to_mention(tweet, users, channel)
            back.event = "restore"  # public again: ingest lifts the withdrawal's hide, or stores it anew
            out.append(back)
            mark = newest  # an ordinary entry from now on
        else:  # still there, or back in an older version: the newest one is asked next round
            mark = marked(spare, hidden, newest)
        window.seen[original] = (first, mark)
    for error in page.get("errors") or []:
        if (not isinstance(error, dict) or error.get("resource_type") != "tweet"
                or error.get("parameter", "ids") != "ids" or error.get("section", "data") != "data"):
            continue
        version = str(error.get("resource_id") or error.get("value") or "")
        original = asked.get(version)
        if original not in window.seen:
            continue
        first, (spare, hidden, _) = window.seen[original][0], split(window.seen[original][1])
        if error.get("title") == NOT_FOUND:  # deleted, or its author deactivated: spare, in case it is back
            window.seen[original] = (first, marked(True, True, version))
            if not hidden:
                out.append(gone(original, version, NOT_FOUND, channel, now))
        elif error.get("title") == NOT_AUTHORIZED and not hidden:
            window.seen[original] = (first, marked(spare, True, version))
            out.append(gone(original, version, NOT_AUTHORIZED, channel, now))
        elif error.get("title") not in (NOT_FOUND, NOT_AUTHORIZED):
            log.info("X lookup of tweet %s: %s (left in the re-check window)", version, error.get("title"))
    return out


async def recheck(lookup: Callable[[list[str]], Awaitable[Any]], window: TweetWindow, channel: str | None,
                  now: float, countries: Collection[str] = ()) -> list[NormalizedMention]:
    """Look the window up, ``BATCH`` ids a request. Raises what ``lookup`` raises (a 429 included)
    with ``window`` untouched. A page that cannot be read is logged and leaves its tweets as they
    were (asked again next round); the others count."""
    asked = window.asked()
    ids = sorted(asked, key=id_order)
    pages = [await lookup(ids[i:i + BATCH]) for i in range(0, len(ids), BATCH)]
    out: list[NormalizedMention] = []
    for n, page in enumerate(pages):
        before = dict(window.seen)
        try:
            out += changes(page, window, asked, channel, now, countries)
        except Exception as exc:  # noqa: BLE001 - one page's trouble: its tweets wait for the next round
            window.seen = before
            log.warning("X re-check: lookup page %d of %d not understood (%s); its %d tweets are asked again "
                        "next round", n + 1, len(pages), type(exc).__name__, len(ids[n * BATCH:(n + 1) * BATCH]))
    window.checked_at = now
    return out


def _what(exc: BaseException) -> str:
    """An error as a log may name it: the status or the exception's type, never a body."""
    if isinstance(exc, tweepy.HTTPException):
        return f"HTTP {_status(exc)}"
    return type(exc).__name__


class Rechecks:
    """The re-check for both X connectors: they have ``client`` (tweepy's sync ``Client``), ``user_auth``
    and ``channel``, and set the three ``recheck_*`` values."""

    client: Any
    user_auth: bool
    channel: str | None
    recheck_seconds: float = RECHECK_SECONDS
    recheck_hours: float = RECHECK_HOURS
    recheck_size: int = RECHECK_SIZE

    @property
    def withheld_in(self) -> frozenset[str]:
        """Where the team reads the console (``SOCIALCARE_X_WITHHELD_COUNTRIES``): what X withholds
        there is hidden (:func:`~listener.x.normalize.withholding`)."""
        return frozenset(getattr(getattr(self, "settings", None), "x_withheld_countries", None) or ())

    def _lookup_sync(self, ids: list[str]) -> Any:
        return self.client.get_tweets(ids=ids, expansions=["author_id"], tweet_fields=TWEET_FIELDS,
                                      user_fields=USER_FIELDS, user_auth=self.user_auth)

    async def _lookup(self, ids: list[str]) -> Any:
        return await asyncio.to_thread(self._lookup_sync, ids)

    async def _recheck(self, window: TweetWindow) -> list[NormalizedMention]:
        """The window's deletions, withdrawals and returns when a round is due. Never raises (but
        cancellation): a failed lookup is logged and the round skipped until the next is due, or after
        a 429 until the reset X announced."""
        now = time.time()
        window.trim(now, self.recheck_hours, self.recheck_size)
        if not window.seen or not window.due(now, self.recheck_seconds, LIMIT_WAIT):
            return []
        try:
            return await recheck(self._lookup, window, self.channel, now, self.withheld_in)
        except Exception as exc:  # noqa: BLE001 - the re-check never stops nor delays ingestion
            self._skip(window, exc, now)
            return []

    def _skip(self, window: TweetWindow, exc: Exception, now: float) -> None:
        """A failed round: the window as it was, the next round when due (after a 429, not before its reset)."""
        window.checked_at = now
        limited = translate(exc)
        if isinstance(limited, RateLimited):
            window.wait_for(limited, now, LIMIT_WAIT)
        due = max(now + self.recheck_seconds, window.not_before)
        log.warning("connector %s: re-check of %d tweets skipped (%s); next in %.0f s", getattr(self, "name", "x"),
                    len(window.seen), _what(exc), due - now)

    def _remember(self, window: TweetWindow, fresh: list[NormalizedMention]) -> None:
        """This round's new tweets join the window (the first ones start its clock)."""
        now = time.time()
        window.add(fresh, now)
        window.trim(now, self.recheck_hours, self.recheck_size)
