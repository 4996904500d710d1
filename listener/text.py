"""Text hygiene shared by every channel: what any platform may send, made safe to store."""

from __future__ import annotations

import hashlib
import re
import unicodedata

MAX_TEXT_CHARS = 40_000  # longer posts are truncated at ingest (the raw payload keeps the rest)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_HANDLE = re.compile(r"@\w{1,50}")
_URL = re.compile(r"https?://\S+")
_SPACE = re.compile(r"\s+")
_RETWEET = re.compile(r"^\s*rt\s*:?\s*")


def clean_text(text: str, limit: int = MAX_TEXT_CHARS) -> tuple[str, bool]:
    """Drop control characters and lone surrogates (PostgreSQL refuses NUL; UTF-8 refuses
    surrogates), normalize to NFC and cut at ``limit``. Returns the text and whether it was cut."""
    text = text.encode("utf-8", "replace").decode("utf-8") if _has_surrogates(text) else text
    text = unicodedata.normalize("NFC", _CONTROL.sub("", text))
    if len(text) > limit:
        return text[:limit], True
    return text, False


def _has_surrogates(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def content_key(text: str) -> str:
    """A hash that ignores handles, links, case and spacing: copy-paste complaints and retweets of
    one text share it (used for caching and duplicate detection)."""
    norm = _URL.sub(" ", _HANDLE.sub(" ", text.lower()))
    norm = _SPACE.sub(" ", _RETWEET.sub("", norm)).strip()
    return hashlib.sha256(norm.encode("utf-8", "replace")).hexdigest()
