"""Replay connector: mentions from a JSONL or CSV file, as fast as possible or at a real-time factor.

Formats: JSONL of ``NormalizedMention`` fields (``text`` required; ``external_id`` derived from the
line when absent); CSV with a ``text`` column and optional mention fields; and the column layout of
the public "Customer Support on Twitter" corpus (``tweet_id, author_id, inbound, created_at, text,
response_tweet_id, in_response_to_tweet_id``), whose inbound rows are replayed as X mentions.
A bad line (broken JSON, no text, invalid UTF-8, oversized text) is reported with its line number
and kept in a rejects file beside the data directory; the replay continues with the next line.
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


@dataclass
class Rejected:
    line: int
    reason: str
    content: str  # the raw line (or row), so nothing is lost

    def to_json(self) -> str:
        return json.dumps({"line": self.line, "reason": self.reason, "content": self.content})


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
        raise BadLine(f"unreadable created_at {redact(text)[:40]!r}") from exc  # redacted before it is cut


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
                if error is not None:  # the reason may quote the line: no personal data in it
                    bad = Rejected(number, redact(error), line)
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
