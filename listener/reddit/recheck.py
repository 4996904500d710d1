"""Re-reading recent Reddit posts, because Reddit's listings only ever show what is new.

A customer who edits a comment (adding a card number, or "never mind, fixed") or deletes it, or a
moderator who removes it, changes nothing a listing shows again. So the connector keeps a window of
the posts it published (those first seen in the last ``recheck_hours``, at most ``recheck_size``)
in its cursor, so a restart keeps it, and every ``recheck_seconds`` reads them back with
``GET /api/info`` (100 fullnames a request: at most ``ceil(recheck_size / 100)`` requests a round).
A 429 there is raised like any other (``translate``): the saved cursor, window included, stays put
and the runner waits for Reddit's ``x-ratelimit-reset``. A changed text comes out as an
upsert with ``edited_at`` (ingest updates the mention and triage runs again); a deleted or removed
post as a ``delete`` event, after which it leaves the window. An unchanged post emits nothing.

The text is compared, not Reddit's ``edited`` stamp: an edit in the first minutes after posting (a
"ninja edit") leaves ``edited`` false, and that is when a customer is most likely to add details.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from listener.protocol import NormalizedMention
from listener.reddit.normalize import id_number, thing_to_mention

KEY = "recheck"  # the window's key in the connector's JSON cursor


def digest(text: str) -> str:
    """A short fingerprint of a text: the cursor holds hundreds of them, never the text itself."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


@dataclass
class Window:
    """The posts to re-read: fullname -> (epoch second first seen, digest of the text last seen),
    and when they were last read back (epoch seconds; 0: never)."""

    seen: dict[str, tuple[int, str]] = field(default_factory=dict)
    checked_at: float = 0.0

    @classmethod
    def load(cls, data: Any) -> Window:
        """From the cursor's ``recheck`` value; anything malformed is dropped, never fatal."""
        if not isinstance(data, dict):
            return cls()
        seen = {}
        for entry in data.get("ids") or []:
            if (isinstance(entry, list) and len(entry) == 3 and isinstance(entry[0], str)
                    and isinstance(entry[1], int) and isinstance(entry[2], str)):
                seen[entry[0]] = (entry[1], entry[2])
        at = data.get("at")
        return cls(seen, float(at) if isinstance(at, (int, float)) and math.isfinite(at) else 0.0)

    @classmethod
    def from_cursor(cls, cursor: str | None) -> Window:
        try:
            data = json.loads(cursor) if cursor else {}
        except ValueError:
            data = {}
        return cls.load(data.get(KEY) if isinstance(data, dict) else None)

    def dump(self) -> dict[str, Any]:
        ids = sorted(self.seen, key=id_number)
        return {"at": int(self.checked_at), "ids": [[name, *self.seen[name]] for name in ids]}

    def add(self, mentions: Iterable[NormalizedMention], now: float) -> None:
        """This round's new posts. The first ones start the clock: they were read just now."""
        self.checked_at = self.checked_at or now
        for m in mentions:
            if m.event == "upsert" and m.external_id not in self.seen:
                self.seen[m.external_id] = (int(now), digest(m.text))

    def trim(self, now: float, hours: float, size: int) -> None:
        """Forget posts first seen more than ``hours`` ago, then all but the ``size`` newest."""
        oldest = now - hours * 3600
        kept = sorted(((name, v) for name, v in self.seen.items() if v[0] >= oldest),
                      key=lambda item: (item[1][0], id_number(item[0])))
        self.seen = dict(kept[-size:] if size > 0 else [])


def changes(things: Iterable[Any], window: Window, reddit_url: str, now: float,
            ours: str | None = None) -> list[NormalizedMention]:
    """What became of the window's posts, as mentions; ``window`` is updated to what was read.
    Reddit answers ``/api/info`` in no particular order and leaves out ids it does not know (an
    inaccessible subreddit): those stay in the window until they age out. A post our own account
    removed (a hold) stays in the window: a moderator may approve it, and it can still be edited."""
    out = []
    for thing in things:
        name = str(getattr(thing, "name", ""))
        if name not in window.seen:
            continue
        m = thing_to_mention(thing, reddit_url, ours)
        if m.event == "delete":
            del window.seen[name]
            out.append(m)
            continue
        first_seen, before = window.seen[name]
        now_digest = digest(m.text)
        if now_digest == before:
            continue
        window.seen[name] = (first_seen, now_digest)
        if m.edited_at is None:  # a "ninja edit": Reddit did not stamp it, so it is stamped when noticed
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
