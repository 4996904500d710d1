"""Replay connector: mentions from a JSONL or CSV file, as fast as possible or at a real-time factor.

Formats (``listener.replay_read``): JSONL of ``NormalizedMention`` fields, told by its first character
``{`` (``text`` required; ``external_id`` derived from the line when absent; ids written as numbers
taken as strings); CSV with a ``text`` column and optional mention fields (headers in any case); and
the column layout of the public "Customer Support on Twitter" corpus, told by ``tweet_id``,
``author_id`` and ``text``, which needs ``inbound`` and ``created_at`` too (``response_tweet_id`` and
``in_response_to_tweet_id`` optional), whose inbound rows are replayed as X mentions.
A bad line (broken JSON, no text, invalid UTF-8, oversized text, a value ingest would refuse, an
``inbound`` neither true nor false) is reported with its line number in the file
and recorded in a rejects file (``socialcare replay``: under ``var/rejects/``); the replay continues
with the next line. The rejects file says where and why, never what: the line number, the reason
(redacted), the line's SHA-256 and length and the names of its fields, not its content. A bad line
is a person's post all the same, and that file lies outside the erasure and the retention purge,
which never reach a post that was not stored; nothing reads it back (a replay reads its input),
so the input file, which the operator holds and fixes, is where the line is (``sed -n 'Np' FILE``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

from listener.protocol import Action, ActionResult, NormalizedMention, utc
from listener.replay_read import is_twcs, read_records, twcs_missing
from listener.validation import mention_problems
from listener.x.normalize import unescape
from triage.pii import redact

MAX_LINE_TEXT = 100_000  # characters; a longer text is rejected (a real post is far shorter)
TRUE, FALSE = {"true", "t", "yes", "y", "1", "1.0"}, {"false", "f", "no", "n", "0", "0.0"}  # as exports write them
IDS = ("external_id", "in_reply_to", "conversation_id", "author_id")
# a twcs row's problems under its own column names (the author's id is its handle too)
TWCS_NAMES = {"external_id": "tweet_id", "author_handle": "author_id", "in_reply_to": "in_response_to_tweet_id",
              "url": "tweet_id or author_id"}
MAX_FIELDS = 50  # field names a rejected line's record keeps (each cut to FIELD_NAME characters)
FIELD_NAME = 40


@dataclass
class Rejected:
    """A line the replay could not take, as the rejects file keeps it: where and why, and what tells
    the line again without holding it (see the module docstring)."""

    line: int
    reason: str  # redacted: it may quote the line
    sha256: str = ""  # of the line as read (UTF-8)
    length: int = 0  # its characters
    fields: list[str] = field(default_factory=list)  # the record's field names, when it had any

    @classmethod
    def of(cls, number: int, reason: str, line: str, rec: dict[str, Any] | None) -> Rejected:
        names = sorted(redact(str(k))[:FIELD_NAME] for k in rec)[:MAX_FIELDS] if isinstance(rec, dict) else []
        return cls(number, redact(reason), hashlib.sha256(line.encode("utf-8", "replace")).hexdigest(), len(line),
                   names)

    def to_json(self) -> str:
        return json.dumps({"line": self.line, "reason": self.reason, "sha256": self.sha256, "length": self.length,
                           "fields": self.fields})


@dataclass
class ReplayStats:
    read: int = 0
    accepted: int = 0
    skipped: int = 0  # rows that are not mentions (the brand's own outbound tweets)
    rejected: list[Rejected] = field(default_factory=list)


class BadLine(ValueError):
    pass


def _parse_time(value: Any) -> datetime:
    if isinstance(value, (int, float)):
        try:
            return datetime.fromtimestamp(float(value), tz=timezone.utc)
        except (OverflowError, ValueError, OSError):  # 1e20, NaN
            raise BadLine("created_at is not a time (seconds since 1970 out of range)") from None
    text = str(value or "").strip()
    if not text:
        raise BadLine("missing created_at")
    try:
        return utc(datetime.fromisoformat(text.replace("Z", "+00:00")))
    except OverflowError:  # 9999-12-31T23:59:59-14:00 is past the last UTC instant Python knows
        raise BadLine("created_at out of range") from None
    except ValueError:
        pass
    try:
        return utc(parsedate_to_datetime(text))  # "Tue Oct 31 22:10:47 +0000 2017" (twcs)
    except (TypeError, ValueError):
        pass
    try:
        return datetime.strptime(text, "%a %b %d %H:%M:%S %z %Y").astimezone(timezone.utc)
    except ValueError as exc:
        raise BadLine(f"unreadable created_at of the form {shape(text)!r}") from exc


def shape(text: str, limit: int = 40) -> str:
    """How a value is written, not what it says (a date's layout shows; a post in the wrong column
    does not): each digit ``9``, each letter ``a``, the rest as written; cut to ``limit``."""
    return "".join("9" if ch.isdigit() else "a" if ch.isalpha() else ch for ch in text[:limit])


def _check_text(text: Any) -> str:
    if not isinstance(text, str) or not text.strip():
        raise BadLine("missing text")
    if len(text) > MAX_LINE_TEXT:
        raise BadLine(f"text of {len(text)} characters exceeds {MAX_LINE_TEXT}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise BadLine("invalid UTF-8") from exc
    return text


def _followers(value: Any) -> int:
    try:
        number = float(value)
        if number < 0 or number != int(number):
            raise ValueError
        return int(number)
    except (TypeError, ValueError, OverflowError):  # "abc", -5, 1.5, "1e400", NaN
        raise BadLine("author_followers must be a whole number, 0 or more") from None


def flag(value: Any, name: str) -> bool:
    """A true/false field as exports spell it (``True``, ``t`` as PostgreSQL's COPY writes, ``yes``,
    ``1``; any case); anything else rejects the line rather than reading as false."""
    if isinstance(value, bool):
        return value
    text = str(value if value is not None else "").strip().lower()
    if text in TRUE or text in FALSE:
        return text in TRUE
    raise BadLine(f"{name} must be true or false, not of the form {shape(text)!r}" if text else f"missing {name}")


def _id(value: Any) -> Any:
    """An id written as a number (JSON ``849``, a spreadsheet's ``849.0``) as the string it is."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return value


def _tweet_id(value: Any) -> str:
    text = str(_id(value) if value is not None else "").strip()
    return m[1] if (m := re.fullmatch(r"(\d+)\.0*", text)) else text  # pandas writes 849.0


def _checked(mention: NormalizedMention, names: dict[str, str]) -> NormalizedMention:
    """The mention, or BadLine with what ingest would refuse (a line rejected here, not its batch)."""
    problems = mention_problems(mention)
    if problems:
        named = [names.get(n, n) + ":" + why for n, _, why in (p.partition(":") for p in problems)]
        raise BadLine("; ".join(dict.fromkeys(named)))
    return mention


def _twcs_mention(rec: dict[str, Any]) -> NormalizedMention | None:
    if why := twcs_missing(rec):
        raise BadLine(why)
    if not flag(rec["inbound"], "inbound"):
        return None  # the brand's own tweet
    tweet_id, author = _tweet_id(rec["tweet_id"]), _tweet_id(rec["author_id"])
    parent = _tweet_id(rec.get("in_response_to_tweet_id")) or None
    return _checked(NormalizedMention(
        platform="x", external_id=tweet_id, text=unescape(_check_text(rec["text"])),  # X's escaping
        created_at=_parse_time(rec["created_at"]), author_id=author, author_handle=author,
        in_reply_to=parent, url=f"https://x.com/{author}/status/{tweet_id}", kind="reply" if parent else "post",
        channel="replay", raw={"source": "twcs"},
    ), TWCS_NAMES)


def mention_from_record(rec: dict[str, Any], line: str, default_platform: str) -> NormalizedMention | None:
    """One record to a mention; None for rows that are not customer mentions. Either way checked as
    ingest checks it, so that a bad line is rejected with its number instead of failing its batch."""
    if is_twcs(rec):
        return _twcs_mention(rec)
    text = _check_text(rec.get("text"))
    values = {k: v for k, v in rec.items() if v not in ("", None)}
    values["text"] = text
    values.setdefault("platform", default_platform)
    values.setdefault("external_id", "sha1:" + hashlib.sha1(line.encode("utf-8", "replace")).hexdigest()[:20])
    values["created_at"] = _parse_time(values.get("created_at") or time.time())
    values.update({key: _id(values[key]) for key in IDS if key in values})
    for key in ("is_public",):
        if key in values:
            values[key] = flag(values[key], key)
    if "author_followers" in values:
        values["author_followers"] = _followers(values["author_followers"])
    try:
        mention = NormalizedMention.from_dict(values)
    except (TypeError, ValueError) as exc:
        raise BadLine(f"not a mention: {exc}") from exc
    return _checked(mention, {})


class ReplayConnector:
    """Replays a file. The cursor is the last line number handed over."""

    def __init__(self, path: str | Path, *, speed: float = 0.0, batch_size: int = 200,
                 platform: str = "replay", rejects_path: str | Path | None = None) -> None:
        self.path = Path(path)
        self.name = f"replay:{self.path.name}"
        self.platform = platform
        self.speed = speed
        self.batch_size = batch_size
        self.rejects_path = Path(rejects_path) if rejects_path else None
        self.stats = ReplayStats()

    def _keep(self, bad: Rejected) -> None:
        """Counts a rejected line and appends it to the rejects file (opened per line: the replay
        command rejects lines the service refused between the reads)."""
        self.stats.rejected.append(bad)
        if self.rejects_path:
            with self.rejects_path.open("a", encoding="utf-8") as fh:
                fh.write(bad.to_json() + "\n")

    def reject(self, number: int, reason: str) -> None:
        """A line the service refused after all (what no check here foresaw): rejected by its number."""
        self._keep(Rejected(number, redact(reason)))

    def _records(self, cursor: str | None) -> Iterator[tuple[int, NormalizedMention]]:
        start = int(cursor or 0)
        for number, line, rec, error in read_records(self.path):
            if number <= start:
                continue
            self.stats.read += 1
            mention = None
            if error is None:
                try:
                    mention = mention_from_record(rec, line, self.platform)
                    if mention is None:
                        self.stats.skipped += 1
                        continue
                except BadLine as exc:
                    error = str(exc)
                except (TypeError, ValueError, OverflowError) as exc:  # a field no check foresaw
                    error = f"not a mention: {type(exc).__name__}"
            if error is not None:  # where and why, never the line: it is someone's post
                self._keep(Rejected.of(number, error, line, rec))
                continue
            self.stats.accepted += 1
            yield number, mention

    async def poll_once(self, cursor: str | None) -> tuple[list[NormalizedMention], str | None]:
        out: list[NormalizedMention] = []
        last = cursor
        for number, mention in self._records(cursor):
            out.append(mention)
            last = str(number)
        return out, last

    async def stream(self, cursor: str | None) -> AsyncIterator[tuple[list[NormalizedMention], str | None]]:
        async for batch in self.numbered(cursor):
            yield [m for _, m in batch], str(batch[-1][0])

    async def numbered(self, cursor: str | None) -> AsyncIterator[list[tuple[int, NormalizedMention]]]:
        """Batches of (line number, mention), paced by ``speed``; the last number is the cursor."""
        batch: list[tuple[int, NormalizedMention]] = []
        first_event, started = None, time.monotonic()
        for number, mention in self._records(cursor):
            if self.speed > 0:
                first_event = first_event or mention.created_at
                due = (mention.created_at - first_event).total_seconds() / self.speed
                wait = due - (time.monotonic() - started)
                if wait > 0:
                    if batch:
                        yield batch
                        batch = []
                    await asyncio.sleep(wait)
            batch.append((number, mention))
            if len(batch) >= self.batch_size:
                yield batch
                batch = []
                await asyncio.sleep(0)
        if batch:
            yield batch

    async def perform(self, action: Action) -> ActionResult:
        return ActionResult(ok=False, error="a replayed file cannot be answered")

    async def check(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.path.is_file(), "listens_to": str(self.path)}

    async def close(self) -> None:
        return None
