"""Replay connector: mentions from a JSONL or CSV file, as fast as possible or at a real-time factor.

Formats: JSONL of ``NormalizedMention`` fields (``text`` required; ``external_id`` derived from the
line when absent); CSV with a ``text`` column and optional mention fields; and the column layout of
the public "Customer Support on Twitter" corpus (``tweet_id, author_id, inbound, created_at, text,
response_tweet_id, in_response_to_tweet_id``), whose inbound rows are replayed as X mentions.
A bad line (broken JSON, no text, invalid UTF-8, oversized text) is reported with its line number
and recorded in a rejects file (``socialcare replay``: under ``var/rejects/``); the replay continues
with the next line. The rejects file says where and why, never what: the line number, the reason
(redacted), the line's SHA-256 and length and the names of its fields, not its content. A bad line
is a person's post all the same, and that file lies outside the erasure and the retention purge,
which never reach a post that was not stored; nothing reads it back (a replay reads its input),
so the input file, which the operator holds and fixes, is where the line is (``sed -n 'Np' FILE``).
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

from listener.protocol import Action, ActionResult, NormalizedMention, utc
from listener.validation import mention_problems
from listener.x.normalize import unescape
from triage.pii import redact

MAX_LINE_TEXT = 100_000  # characters; a longer text is rejected (a real post is far shorter)
TWCS_COLUMNS = {"tweet_id", "author_id", "inbound", "created_at", "text"}
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


def mention_from_record(rec: dict[str, Any], line: str, default_platform: str) -> NormalizedMention | None:
    """One record to a mention; None for rows that are not customer mentions."""
    if TWCS_COLUMNS <= rec.keys():
        if str(rec.get("inbound", "")).strip().lower() not in ("true", "1", "yes"):
            return None
        tweet_id = str(rec["tweet_id"]).strip()
        parent = str(rec.get("in_response_to_tweet_id") or "").strip().split(".")[0] or None
        author = str(rec["author_id"]).strip()
        return NormalizedMention(
            platform="x", external_id=tweet_id, text=unescape(_check_text(rec["text"])),  # X's escaping
            created_at=_parse_time(rec["created_at"]), author_id=author, author_handle=author,
            in_reply_to=parent, url=f"https://x.com/{author}/status/{tweet_id}", kind="reply" if parent else "post",
            channel="replay", raw={"source": "twcs"},
        )
    text = _check_text(rec.get("text"))
    values = {k: v for k, v in rec.items() if v not in ("", None)}
    values["text"] = text
    values.setdefault("platform", default_platform)
    values.setdefault("external_id", "sha1:" + hashlib.sha1(line.encode("utf-8", "replace")).hexdigest()[:20])
    values["created_at"] = _parse_time(values.get("created_at") or time.time())
    for key in ("is_public",):
        if isinstance(values.get(key), str):
            values[key] = values[key].strip().lower() in ("true", "1", "yes")
    if "author_followers" in values:
        values["author_followers"] = _followers(values["author_followers"])
    values["external_id"] = str(values["external_id"])
    try:
        mention = NormalizedMention.from_dict(values)
    except (TypeError, ValueError) as exc:
        raise BadLine(f"not a mention: {exc}") from exc
    problems = mention_problems(mention)  # what ingest would refuse: rejected here, line by line
    if problems:
        raise BadLine("; ".join(problems))
    return mention


def read_records(path: Path) -> Iterator[tuple[int, str, dict[str, Any] | None, str | None]]:
    """(line number, raw line, record or None, error or None) for every line of the file. A UTF-8
    byte-order mark (spreadsheets save one) is not part of the first field; a UTF-16 file is named."""
    raw = path.read_bytes()
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        yield 1, "", None, "the file is UTF-16: save it as UTF-8"
        return
    raw = raw.removeprefix(b"\xef\xbb\xbf")
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        for number, chunk in enumerate(raw.splitlines(), start=1):
            if not chunk.strip():
                continue
            try:
                line = chunk.decode("utf-8")
            except UnicodeDecodeError:
                yield number, chunk.decode("utf-8", "replace"), None, "invalid UTF-8"
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                yield number, line, None, f"broken JSON: {exc.msg} at column {exc.colno}"
                continue
            yield (number, line, rec, None) if isinstance(rec, dict) else (number, line, None, "not a JSON object")
        return
    text = raw.decode("utf-8", "surrogateescape")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if not reader.fieldnames or "text" not in reader.fieldnames:
        yield 1, text[:200], None, "CSV has no 'text' column"
        return
    while True:
        number = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield number, "", None, f"broken CSV: {exc}"
            continue
        line = ",".join(str(v) for v in row.values())
        if any(isinstance(v, str) and _has_surrogate(v) for v in row.values()):
            yield number, line.encode("utf-8", "surrogateescape").decode("utf-8", "replace"), None, "invalid UTF-8"
            continue
        if None in row:
            yield number, line, None, "more fields than the header"
            continue
        yield number, line, row, None


def _has_surrogate(value: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in value)


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

    def _records(self, cursor: str | None) -> Iterator[tuple[int, NormalizedMention]]:
        start = int(cursor or 0)
        rejects = self.rejects_path.open("a", encoding="utf-8") if self.rejects_path else None
        try:
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
                    bad = Rejected.of(number, error, line, rec)
                    self.stats.rejected.append(bad)
                    if rejects:
                        rejects.write(bad.to_json() + "\n")
                    continue
                self.stats.accepted += 1
                yield number, mention
        finally:
            if rejects:
                rejects.close()

    async def poll_once(self, cursor: str | None) -> tuple[list[NormalizedMention], str | None]:
        out: list[NormalizedMention] = []
        last = cursor
        for number, mention in self._records(cursor):
            out.append(mention)
            last = str(number)
        return out, last

    async def stream(self, cursor: str | None) -> AsyncIterator[tuple[list[NormalizedMention], str | None]]:
        batch: list[NormalizedMention] = []
        last, first_event, started = cursor, None, time.monotonic()
        for number, mention in self._records(cursor):
            if self.speed > 0:
                first_event = first_event or mention.created_at
                due = (mention.created_at - first_event).total_seconds() / self.speed
                wait = due - (time.monotonic() - started)
                if wait > 0:
                    if batch:
                        yield batch, last
                        batch = []
                    await asyncio.sleep(wait)
            batch.append(mention)
            last = str(number)
            if len(batch) >= self.batch_size:
                yield batch, last
                batch = []
                await asyncio.sleep(0)
        if batch:
            yield batch, last

    async def perform(self, action: Action) -> ActionResult:
        return ActionResult(ok=False, error="a replayed file cannot be answered")

    async def check(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.path.is_file(), "listens_to": str(self.path)}

    async def close(self) -> None:
        return None
