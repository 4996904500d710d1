"""Re-reading recent Reddit posts, because Reddit's listings only ever show what is new.

A customer who edits a comment (adding a card number, or "never mind, fixed") or deletes it, or a
moderator who removes it or approves it again, changes nothing a listing shows again. So the
connector keeps a window of the posts it published (those first seen in the last ``recheck_hours``,
at most ``recheck_size``) in its cursor, so a restart keeps it, and every ``recheck_seconds`` reads
them back with ``GET /api/info`` (100 fullnames a request: at most ``ceil(recheck_size / 100)``
requests a round). A 429 there is raised like any other (``translate``): the saved cursor, window
included, stays put and the runner waits for Reddit's ``x-ratelimit-reset``. An unchanged post emits
nothing; a changed text comes out as an upsert with ``edited_at`` (ingest updates the mention and
triage runs again).

A post its author deleted (``[deleted]``, no author) comes out as a ``delete`` event that removes
its content here (``remove_content``: Reddit's Data API terms, :mod:`listener.deletions`) and leaves
the window: that is final. A post a moderator or Reddit's spam filter removed also comes out as a
``delete``, which only hides it (a moderator may approve it, and must still read it), and stays in
the window marked removed (:data:`REMOVED` before the digest of the text
last seen shown), because a moderator may approve it again in Reddit's own UI. When a later round
finds it shown again (no ``removed_by_category``, ``removed``/``spam``/``banned_by`` cleared, its text
back) it comes out as a ``restore`` event, the one Discourse's ``post_recovered`` publishes: ingest
shows it again unless it was erased meanwhile or our moderation hid it (:mod:`listener.ingest`). A
restore whose text differs from the one last seen is an edit too (it carries ``edited_at``, and
ingest stores the new words). One still removed emits nothing until it ages out; one its author
deletes meanwhile leaves with a ``delete`` that removes its content. Only Reddit showing the post
again restores it: one our own account removed as well is still removed. (A post our account alone
removed is not a deletion in the first place, see :func:`listener.reddit.normalize.gone`: it stays
an ordinary window entry.) Cursors saved before the marker existed load as they are: their entries
are all unmarked.

A post already removed when the connector first lists it (Reddit's spam filter or AutoModerator
caught it seconds after posting: a new account's first post to the brand's subreddit, typically) is
not stored (its ``delete`` finds nothing), but it joins the window marked removed all the same
(:func:`join`), with the digest of the words a moderator is shown, or :data:`UNSEEN` when the
listing shows only ``[removed]``. A moderator approving it from the modqueue is then seen like any
other approval: a ``restore`` carrying its text, which ingest stores as a new post (a restore of a
post it never stored is new to it) and sends to triage. Only Reddit's ``edited`` stamp dates one
first seen unseen: its words differ from no words we saw. One never approved emits nothing and ages
out of the window like any other; one its author deleted (before or after) never joins or leaves.
Such posts are only spare entries of the window (:data:`~listener.recheck.SPARE` first): a spam
wave must not push the posts we show out of it early, so they take at most a quarter of
``recheck_size`` (:data:`~listener.recheck.SPARE_SHARE`) and, when the window is full, leave it
before any post we published, oldest first (:meth:`~listener.recheck.Window.trim`). Once approved
such a post is an ordinary entry. Cursors saved before spare entries existed load as they are: their
entries, those first seen removed included, are ordinary ones until they age out.

The text is compared, not Reddit's ``edited`` stamp: an edit in the first minutes after posting (a
"ninja edit") leaves ``edited`` false, and that is when a customer is most likely to add details.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from listener.protocol import NormalizedMention
from listener.recheck import REMOVED, SPARE, Window, digest
from listener.reddit.normalize import GONE, deleted_by_author, gone, id_number, thing_to_mention

UNSEEN = ""  # a window digest: removed when first listed, its words not shown to us ("[removed]")


def shown(thing: Any) -> bool:
    """Reddit shows the post: removed by nobody, our own account included (unlike
    :func:`~listener.reddit.normalize.gone`, for which our removal is a hold), nor filtered for review.
    Approving a post clears all of it: ``removed_by_category``, ``removed``, ``spam``, ``banned_by``
    (a name, or ``true`` for the spam filter) and, for the public, the ``[removed]`` text."""
    if deleted_by_author(thing) or getattr(thing, "removed_by_category", None):
        return False
    if getattr(thing, "removed", None) is True or getattr(thing, "spam", None) is True:
        return False
    if getattr(thing, "banned_by", None) not in (None, False, ""):
        return False
    return not (getattr(thing, "author", None) is None and (getattr(thing, "body", None) in GONE
                                                            or getattr(thing, "selftext", None) in GONE))


def first_seen_removed(thing: Any, ours: str | None = None) -> str | None:
    """The window's digest for a post first listed already removed or filtered: :data:`REMOVED`
    before the digest of its words as a moderator sees them, or before :data:`UNSEEN` when the
    listing blanks them (``[removed]``). None for a post that is not a deletion
    (:func:`~listener.reddit.normalize.gone`: shown, held by our own account, filtered for review)
    and for one its author deleted, which is final."""
    if not gone(thing, ours) or deleted_by_author(thing):
        return None
    if getattr(thing, "body", None) in GONE or getattr(thing, "selftext", None) in GONE:
        return REMOVED + UNSEEN
    return REMOVED + digest(thing_to_mention(thing, "", ours).text)


def join(window: Window, things: Iterable[Any], now: float, ours: str | None = None) -> None:
    """This round's newly listed posts that were already removed join ``window`` marked removed
    (:func:`first_seen_removed`) as spare entries (:data:`~listener.recheck.SPARE`), so a moderator's
    approval is seen while they cannot crowd out the posts we show; a post already in the window
    keeps its entry. The caller trims the window afterwards."""
    for thing in things:
        name = str(getattr(thing, "name", ""))
        if name and name not in window.seen and (entry := first_seen_removed(thing, ours)) is not None:
            window.checked_at = window.checked_at or now
            window.seen[name] = (int(now), SPARE + entry)


def changes(things: Iterable[Any], window: Window, reddit_url: str, now: float,
            ours: str | None = None) -> list[NormalizedMention]:
    """What became of the window's posts, as mentions; ``window`` is updated to what was read.
    Reddit answers ``/api/info`` in no particular order and leaves out ids it does not know (an
    inaccessible subreddit): those stay in the window until they age out. A post our own account
    removed (a hold) stays in the window: a moderator may approve it, and it can still be edited.
    A removed post stays marked removed until Reddit shows it again (a ``restore``), its author
    deletes it (it leaves, nothing more to say) or it ages out. One first seen removed with its
    words unseen (:data:`UNSEEN`) is restored with no ``edited_at`` but Reddit's own."""
    out = []
    for thing in things:
        name = str(getattr(thing, "name", ""))
        if name not in window.seen:
            continue
        first_seen, before = window.seen[name]
        before = before.removeprefix(SPARE)  # only a removed post is spare: shown, it is ordinary again
        removed = before.startswith(REMOVED)
        if removed and deleted_by_author(thing):  # already deleted here: now final, and its content goes
            spare = window.seen.pop(name)[1].startswith(SPARE)  # a spare one was never stored: nothing to say
            if not spare:
                out.append(thing_to_mention(thing, reddit_url, ours))
            continue
        if removed and not shown(thing):
            continue  # still removed (edits while removed are compared when it is back)
        m = thing_to_mention(thing, reddit_url, ours)
        if m.event == "delete":
            if deleted_by_author(thing):
                del window.seen[name]
            else:
                window.seen[name] = (first_seen, REMOVED + before)
            out.append(m)
            continue
        now_digest, last = digest(m.text), before.removeprefix(REMOVED)
        if removed:
            m.event = "restore"  # approved: ingest lifts the deletion's hide (never an erasure)
        elif now_digest == last:
            continue
        window.seen[name] = (first_seen, now_digest)
        if now_digest != last and last != UNSEEN and m.edited_at is None:  # a "ninja edit": stamped now
            m.edited_at = datetime.fromtimestamp(now, tz=UTC)
        out.append(m)
    return sorted(out, key=lambda m: id_number(m.external_id))


async def recheck(reddit: Any, window: Window, reddit_url: str, now: float,
                  ours: str | None = None) -> list[NormalizedMention]:
    """Read the window back through asyncpraw (``reddit.info``, 100 fullnames a request). Raises
    what asyncpraw raises (a 429 included) with ``window`` untouched, so the caller's saved cursor
    keeps the window and the next round reads it again."""
    if not window.seen:
        window.checked_at = now
        return []
    things = [t async for t in reddit.info(fullnames=sorted(window.seen, key=id_number))]
    out = changes(things, window, reddit_url, now, ours)
    window.checked_at = now
    return out
