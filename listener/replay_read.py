"""Reading a replay file into records, line by line: which format it is (by its content, not its
name), its CSV header (as people write it: any case, stray spaces) and each record's real line
number in the file, which is what an operator looks up (``sed -n 'Np' FILE``)."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
# The columns that tell the "Customer Support on Twitter" layout (twcs) from a generic CSV, and the
# ones it needs besides: without ``inbound`` the brand's own tweets would pass as customers', without
# ``created_at`` every SLA clock would start at the replay (a row with either empty is rejected alike).
TWCS_KEYS = ("tweet_id", "author_id", "text")
TWCS_REQUIRED = {"inbound": "True for a customer's tweet, False for the brand's own",
                 "created_at": "when the tweet was posted"}

SURROGATE = re.compile("[\udc80-\udcff]")  # a byte that was not UTF-8, as surrogateescape decodes it
Record = tuple[int, str, "dict[str, Any] | None", "str | None"]


def is_twcs(keys: Any) -> bool:
    return all(k in keys for k in TWCS_KEYS)


def twcs_missing(keys: Any) -> str | None:
    """Why a twcs record cannot be read (a required column missing), or None."""
    missing = [f"{k} ({TWCS_REQUIRED[k]})" for k in TWCS_REQUIRED if k not in keys]
    if not missing:
        return None
    return f"the Customer Support on Twitter layout (tweet_id, author_id, text) needs a column {' and '.join(missing)}"


def is_jsonl(raw: bytes, path: Path) -> bool:
    """JSON lines when the first non-blank character opens an object, whatever the file's name
    (``.txt``, none); a ``.jsonl`` file is JSON lines even when its first line is broken."""
    first = raw.lstrip()[:1]
    return first == b"{" or (path.suffix.lower() in JSONL_SUFFIXES and first != b"")


def read_records(path: Path) -> Iterator[Record]:
    """(line number, raw line, record or None, error or None) for every record of the file. A UTF-8
    byte-order mark (spreadsheets save one) is not part of the first field; a UTF-16 file is named."""
    raw = path.read_bytes()
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in raw[:2]:  # "t\x00w\x00": UTF-16, no mark
        yield 1, "", None, "the file is UTF-16: save it as UTF-8"
        return
    raw = raw.removeprefix(b"\xef\xbb\xbf")
    if not raw.strip():
        yield 1, "", None, "the file is empty"
    elif is_jsonl(raw, path):
        yield from _jsonl(raw)
    else:
        yield from _csv(raw.decode("utf-8", "surrogateescape"))


def _jsonl(raw: bytes) -> Iterator[Record]:
    for number, chunk in enumerate(raw.splitlines(), start=1):  # bytes split on \n and \r only
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


def _csv(text: str) -> Iterator[Record]:
    """Rows as records keyed by the header's names, lower-cased and stripped (``Text`` is ``text``).
    A row's number is the line it starts on: blank lines (skipped) and quoted line breaks count."""
    reader = csv.reader(io.StringIO(text, newline=""))
    header: list[str] = []
    try:
        while not header:
            header = next(reader)
    except (StopIteration, csv.Error):
        header = []
    names = [h.strip().lower() for h in header]
    head = ",".join(header)[:200]
    if "text" not in names:
        yield 1, head, None, "CSV has no 'text' column"
        return
    if len(set(names)) < len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        yield 1, head, None, f"CSV header names a column twice (in any case): {', '.join(twice)}"[:300]
        return
    if is_twcs(names) and (why := twcs_missing(names)):
        yield 1, head, None, why
        return
    while True:
        number = reader.line_num + 1  # before the read: the line the next record starts on
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield number, "", None, f"broken CSV: {exc}"
            continue
        if not row:  # a blank line
            continue
        line = ",".join(row)
        if SURROGATE.search(line):
            yield number, line.encode("utf-8", "surrogateescape").decode("utf-8", "replace"), None, "invalid UTF-8"
            continue
        if len(row) > len(names):
            yield number, line, None, "more fields than the header"
            continue
        yield number, line, dict(zip(names, row + [""] * (len(names) - len(row)), strict=True)), None
