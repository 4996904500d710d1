"""Reddit submissions (``t3``) and comments (``t1``) to normalized mentions.

Identity is the fullname (``t3_abc``, ``t1_def``), which is also how Reddit names parents
(``parent_id``) and threads (``link_id``), so replies thread without lookups. Reddit ids are
base-36 counters, so "newer than the cursor" is a number comparison.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from listener.protocol import NormalizedMention

GONE = ("[deleted]", "[removed]")
# AutoModerator's filter holds a post for review (a moderator may approve it): not a removal yet
HELD = "automod_filtered"
RAW_FIELDS = ("id", "name", "subreddit_name_prefixed", "permalink", "score", "num_comments", "link_id", "parent_id",
              "over_18", "is_self", "url", "removed_by_category", "distinguished", "stickied", "locked")


def id_number(fullname: str | None) -> int:
    """The base-36 counter of a fullname (``t3_abc`` or ``abc``); -1 when unknown."""
    if not fullname:
        return -1
    try:
        return int(fullname.split("_", 1)[-1], 36)
    except ValueError:
        return -1


def newer(fullname: str, cursor: str | None) -> bool:
    return id_number(fullname) > id_number(cursor)


def _when(value: Any) -> datetime | None:
    try:
        return datetime.fromtimestamp(float(value), tz=UTC) if value not in (None, False, True) else None
    except (TypeError, ValueError):
        return None


def gone(thing: Any, ours: str | None = None) -> bool:
    """Deleted by its author or removed by a moderator or Reddit. Each view says it differently: the
    public sees ``[deleted]``/``[removed]`` text (a deleted author is ``None`` in asyncpraw), a
    moderator keeps the text and sees ``removed``/``spam`` and who did it (``banned_by``), and
    ``removed_by_category`` (submissions) names who removed it. A body alone is not trusted (a customer
    may type "[removed]"), and a removal by our own account ``ours`` is not a deletion: it is a hold
    or removal of the moderation queue, which a moderator may still approve."""
    if getattr(thing, "author", None) is None and (getattr(thing, "body", None) in GONE
                                                   or getattr(thing, "selftext", None) in GONE):
        return True
    if ours and str(getattr(thing, "banned_by", None) or "").lower() == ours.lower():
        return False
    category = getattr(thing, "removed_by_category", None)
    if category:
        return category != HELD
    return getattr(thing, "removed", None) is True or getattr(thing, "spam", None) is True


def deleted_by_author(thing: Any) -> bool:
    """Deleted by its author, which is final: Reddit blanks the author (``None`` in asyncpraw) and the
    text (``[deleted]``; a removed post reads ``[removed]``), and a submission's
    ``removed_by_category`` says ``deleted``. Reddit's Data API terms then require its content removed
    here too (``remove_content``); a moderator's or the spam filter's removal only hides it."""
    if getattr(thing, "removed_by_category", None) == "deleted":
        return True
    return getattr(thing, "author", None) is None and "[deleted]" in (getattr(thing, "body", None),
                                                                       getattr(thing, "selftext", None))


def thing_to_mention(thing: Any, reddit_url: str, ours: str | None = None) -> NormalizedMention:
    """A praw/asyncpraw Submission or Comment (anything with their attributes); ``ours``: our
    account's name (see :func:`gone`)."""
    fullname = str(thing.name)
    is_comment = fullname.startswith("t1_")
    author = getattr(thing, "author", None)
    handle = getattr(author, "name", None) if author is not None else None
    if is_comment:
        text = str(getattr(thing, "body", "") or "")
    else:
        body = str(getattr(thing, "selftext", "") or "")
        text = f"{thing.title}\n\n{body}" if body else str(thing.title)
    subreddit = getattr(thing, "subreddit", None)
    sub_name = str(getattr(subreddit, "display_name", subreddit) or "") or None
    permalink = getattr(thing, "permalink", None)
    return NormalizedMention(
        platform="reddit", external_id=fullname, text=text,
        created_at=_when(getattr(thing, "created_utc", None)) or datetime.now(UTC),
        author_id=getattr(thing, "author_fullname", None), author_handle=handle,
        conversation_id=str(thing.link_id) if is_comment else fullname,
        in_reply_to=str(thing.parent_id) if is_comment else None,
        url=f"{reddit_url.rstrip('/')}{permalink}" if permalink else None,
        kind="comment" if is_comment else "post", is_public=True,
        channel=f"r/{sub_name}" if sub_name else None, event="delete" if gone(thing, ours) else "upsert",
        remove_content=deleted_by_author(thing),
        edited_at=_when(getattr(thing, "edited", None)),
        raw={k: getattr(thing, k) for k in RAW_FIELDS if isinstance(getattr(thing, k, None), (str, int, float, bool))},
    )
