"""X API v2 payloads (``data``, ``includes``, ``meta``) to normalized mentions.

A response with only the default fields (``id``, ``text``; no ``includes``, no ``author_id``) is
still a mention: unknown fields stay empty and the URL falls back to ``/i/web/status/<id>``. The
same tweet from the mentions timeline, the filtered stream or recent search normalizes alike, so
it is stored once.

Edits: X gives every edit a new tweet id and lists the chain, original first, in
``edit_history_tweet_ids``. Every version is normalized under the original's id, and a later
version carries ``edited_at`` (its own ``created_at``, the moment of the edit), so ingest updates the
stored mention instead of storing the post twice. The version's own id stays in ``raw["id"]``
(:func:`version_id`), which is what cursors (``since_id``) and stream de-duplication count with.

Withheld content: X withholds some tweets, or all of an account's, in some countries (a court order,
local law) or everywhere (copyright), and its developer terms forbid showing them there. The tweet
says so in ``withheld`` (``tweet.fields=withheld``), its author in theirs (``user.fields=withheld``).
A tweet withheld in one of the countries the team reads the console from
(``SOCIALCARE_X_WITHHELD_COUNTRIES``), or for copyright, comes out as a ``delete`` carrying none of
its content (:func:`withheld`): ingest stores nothing new and removes the content of one it had
(``remove_content``, :mod:`listener.deletions`), and the re-check window follows it until X stops
withholding it (:mod:`listener.x.recheck`).
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any

from listener.protocol import NormalizedMention, utc

# note_tweet: a long post's whole text (``text`` holds only its first 280 characters, and the part a
# customer writes last, "...and someone changed my password", is often the part triage needs)
TWEET_FIELDS = ["created_at", "conversation_id", "in_reply_to_user_id", "lang", "public_metrics", "author_id",
                "referenced_tweets", "note_tweet", "withheld"]
USER_FIELDS = ["username", "name", "public_metrics", "created_at", "withheld"]
WITHHELD = "Withheld"  # why a tweet is hidden here (``raw["recheck"]``), beside X's own error titles
EVERYWHERE = frozenset({"XX", "XY"})  # v1.1's codes: XX withheld in every country, XY for copyright
EXPANSIONS = ["author_id", "referenced_tweets.id"]


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return utc(datetime.fromisoformat(value))
    except ValueError:
        return None


def edit_chain(tweet: dict[str, Any]) -> list[str]:
    """The ids of every version of the tweet, original first (one id: never edited)."""
    ids = tweet.get("edit_history_tweet_ids")
    return [str(i) for i in ids if i] if isinstance(ids, list) else []


def version_id(m: NormalizedMention) -> str:
    """The id of this very version (``external_id`` is the original's for every version)."""
    own = m.raw.get("id") if isinstance(m.raw, dict) else None
    return str(own) if own else m.external_id


def unescape(text: str) -> str:
    """X sends ``&``, ``<`` and ``>`` of a post's text as ``&amp;``, ``&lt;`` and ``&gt;`` (nothing
    else); the post is stored as its author wrote it ("Q&amp;A" would be redacted, shown and scored
    as five letters more)."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def full_text(tweet: dict[str, Any]) -> str:
    """A long post's whole text (``note_tweet.text``) where X sent it, else ``text``; unescaped."""
    note = tweet.get("note_tweet")
    whole = note.get("text") if isinstance(note, dict) else None
    return unescape(whole if isinstance(whole, str) and whole else str(tweet.get("text", "")))


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
    chain = edit_chain(tweet)
    original = chain[0] if len(chain) > 1 and tid in chain else tid
    created = _time(tweet.get("created_at")) or datetime.now(UTC)
    conversation = str(tweet["conversation_id"]) if tweet.get("conversation_id") else None
    if conversation == tid:  # an edited thread root names itself: the thread is the original's
        conversation = original
    return NormalizedMention(
        platform="x", external_id=original, text=full_text(tweet), created_at=created,
        author_id=str(author_id) if author_id else None, author_handle=username, author_name=user.get("name"),
        author_followers=metrics.get("followers_count"), author_created_at=_time(user.get("created_at")),
        conversation_id=conversation, in_reply_to=parent,
        url=url, lang=tweet.get("lang"), kind="reply" if parent else "post", is_public=True, channel=channel,
        edited_at=created if original != tid else None,
        raw={**tweet, **({"edit_of": original} if original != tid else {})},
    )


def withholding(tweet: dict[str, Any], users: dict[str, dict[str, Any]],
                countries: Collection[str] = ()) -> dict[str, Any] | None:
    """What X withholds where the team reads the console: the tweet's ``withheld``, or its author's,
    when it names one of ``countries`` (upper-case ISO 3166-1 alpha-2 codes) or every country, or is
    for copyright. None when the tweet may be shown there."""
    author = users.get(str(tweet.get("author_id") or ""), {})
    for held in (tweet.get("withheld"), author.get("withheld")):
        if not isinstance(held, dict):
            continue
        codes = held.get("country_codes")
        where = {str(c).upper() for c in codes if isinstance(c, str)} if isinstance(codes, list) else set()
        if held.get("copyright") is True or where & (EVERYWHERE | set(countries)):
            return held
    return None


def withheld(tweet: dict[str, Any], users: dict[str, dict[str, Any]], channel: str | None,
             held: dict[str, Any]) -> NormalizedMention:
    """A withheld tweet as a ``delete`` under its original's id, with none of its words or names
    (they must not reach the console, nor the bus and its dead letters); ``raw`` keeps its own id and
    what X withholds, which :class:`~listener.x.recheck.TweetWindow` follows."""
    m = tweet_to_mention(tweet, users, channel)
    return NormalizedMention(platform="x", external_id=m.external_id, text="", created_at=m.created_at,
                             author_id=m.author_id, channel=channel, event="delete", remove_content=True,
                             raw={"id": str(tweet["id"]), "withheld": held})


def to_mention(tweet: dict[str, Any], users: dict[str, dict[str, Any]], channel: str | None = None,
               countries: Collection[str] = ()) -> NormalizedMention:
    """A newly fetched tweet: the mention, or :func:`withheld` when X withholds it where the team reads."""
    held = withholding(tweet, users, countries)
    return withheld(tweet, users, channel, held) if held is not None else tweet_to_mention(tweet, users, channel)


def users_of(includes: Any) -> dict[str, dict[str, Any]]:
    users = (includes or {}).get("users") if isinstance(includes, dict) else None
    return {str(u.get("id")): u for u in users or [] if isinstance(u, dict)}


def page_to_mentions(page: Any, channel: str | None = None,
                     countries: Collection[str] = ()) -> list[NormalizedMention]:
    """One response page, oldest first (X returns newest first); ``countries``: see :func:`withholding`."""
    if not isinstance(page, dict):
        raise ValueError("X response is not a JSON object")  # noqa: TRY004 - a payload error: back off
    users = users_of(page.get("includes"))
    tweets = [t for t in page.get("data") or [] if isinstance(t, dict) and t.get("id")]
    return [to_mention(t, users, channel, countries) for t in reversed(tweets)]


def newest_id(meta_newest: str | None, mentions: list[NormalizedMention], previous: str | None) -> str | None:
    """The next ``since_id``: the newest id seen, never older than the previous cursor."""
    ids = [i for i in [meta_newest, previous, *(version_id(m) for m in mentions)] if i and str(i).isdigit()]
    return max(ids, key=int) if ids else previous
