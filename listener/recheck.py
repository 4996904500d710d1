"""The window of recent posts a connector reads again, for what a platform never pushes.

A listing or a stream shows what is new; an edit, a deletion, a removal or its undoing changes
nothing there. So the Reddit, X and Discourse connectors each keep the posts they published in a
bounded window (first seen in the last ``recheck_hours``, at most ``recheck_size``), with a digest of
the text last seen (never the text) or a version, in their JSON cursor under :data:`KEY` so a restart
keeps it, and every ``recheck_seconds`` read them back, each the platform's way
(:mod:`listener.reddit.recheck`, :mod:`listener.x.recheck`, :mod:`listener.discourse.recheck`).

Some entries are only *spare* (:data:`SPARE` before the digest): posts not shown here that are
followed only in case the platform shows them (again), such as a Reddit post already removed when
first listed, or a tweet X no longer finds. A spam wave or a mass deletion would otherwise push the
posts we show out of the window early, and their later edits and deletions would be missed; so spare
entries take at most :data:`SPARE_SHARE` of ``recheck_size`` and, when the window is full, leave it
first (oldest first within each group, :meth:`Window.trim`).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from listener.backoff import rate_limit_wait
from listener.errors import RateLimited
from listener.protocol import NormalizedMention

KEY = "recheck"  # the window's key in the connector's JSON cursor
REMOVED = "-"  # before a digest: the post is removed, the digest that of the text last seen shown
SPARE = "+"  # first of all: followed only in case it shows (again), never a post we show (Window.trim)
SPARE_SHARE = 0.25  # of recheck_size, rounded down: the most spare entries a window keeps


def id_order(post_id: str) -> tuple[int, str]:
    """Ids in the order the platform gave them (base-36 fullnames and decimal ids alike: the longer
    is the later, then by character), without trusting them to parse."""
    return len(post_id), post_id


def digest(text: str) -> str:
    """A short fingerprint of a text: the cursor holds hundreds of them, never the text itself."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


@dataclass
class Window:
    """The posts to re-read: their id (a Reddit fullname, a tweet id, a forum post's key) -> (epoch
    second first seen, digest of the text last seen, after :data:`REMOVED` while the post is removed,
    and first of all :data:`SPARE` for a spare one), and when they were last read back (epoch
    seconds; 0: never). The cursor holds each as ``[id, first seen, digest]``. Posts first seen in
    the same second are kept and saved in :meth:`order`, the id's by default; a window whose keys
    are not the platform's ids overrides it. ``not_before``: after a 429 the re-check met (where that
    must not stop the connector: X's lookup has its own limit, Discourse's new posts go on), the time
    before which no round re-checks (0: none); the cursor holds it as ``wait`` while it is ahead of
    the last round."""

    seen: dict[str, tuple[int, str]] = field(default_factory=dict)
    checked_at: float = 0.0
    not_before: float = 0.0

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
        at, wait = data.get("at"), data.get("wait")
        return cls(seen, _seconds(at), _seconds(wait))

    @classmethod
    def from_cursor(cls, cursor: str | None) -> Window:
        try:
            data = json.loads(cursor) if cursor else {}
        except ValueError:
            data = {}
        return cls.load(data.get(KEY) if isinstance(data, dict) else None)

    def order(self, key: str) -> Any:
        """The sort key of a post among those first seen in the same second: later is newer."""
        return id_order(key)

    def dump(self) -> dict[str, Any]:
        ids = sorted(self.seen, key=self.order)
        data = {"at": int(self.checked_at), "ids": [[name, *self.seen[name]] for name in ids]}
        if self.not_before > self.checked_at:
            data["wait"] = math.ceil(self.not_before)
        return data

    def wait_for(self, limited: RateLimited, now: float, longest: float) -> float:
        """No re-check before the 429's reset (at most ``longest`` ahead); the seconds to wait."""
        wait = min(rate_limit_wait(limited.reset_at, limited.retry_after, now=now), longest)
        self.not_before = max(self.not_before, now + wait)
        return wait

    def due(self, now: float, seconds: float, longest: float) -> bool:
        """Whether a re-check is due: ``seconds`` after the last one, and not before ``not_before``
        (one further ahead than ``longest``, a clock gone wrong, is brought back to that)."""
        self.not_before = min(self.not_before, now + longest)
        return now >= max(self.checked_at + seconds, self.not_before)

    def add(self, mentions: Iterable[NormalizedMention], now: float) -> None:
        """This round's new posts. The first ones start the clock: they were read just now."""
        self.checked_at = self.checked_at or now
        for m in mentions:
            if m.event == "upsert" and m.external_id not in self.seen:
                self.seen[m.external_id] = (int(now), digest(m.text))

    def trim(self, now: float, hours: float, size: int) -> None:
        """Forget posts first seen more than ``hours`` ago, then keep at most ``size``: the newest
        ordinary entries, then in the room they leave the newest spare ones (:data:`SPARE`), at most
        :func:`spare_limit`: a post we show is never evicted for a spare one."""
        oldest = now - hours * 3600
        kept = sorted(((name, v) for name, v in self.seen.items() if v[0] >= oldest),
                      key=lambda item: (item[1][0], self.order(item[0])))
        spare = [item for item in kept if item[1][1].startswith(SPARE)]
        ordinary = [item for item in kept if not item[1][1].startswith(SPARE)]
        ordinary = ordinary[-size:] if size > 0 else []
        room = min(spare_limit(size), size - len(ordinary))
        spare = spare[-room:] if room > 0 else []
        self.seen = dict(sorted(ordinary + spare, key=lambda item: (item[1][0], self.order(item[0]))))


def spare_limit(size: int) -> int:
    """The most spare entries a window of ``size`` keeps (:data:`SPARE_SHARE` of it, rounded down)."""
    return int(max(size, 0) * SPARE_SHARE)


def _seconds(value: Any) -> float:
    """An epoch time from the cursor, or 0 when it is not one."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
        else 0.0
