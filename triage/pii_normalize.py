"""The normalized copy of a text :mod:`triage.pii` looks for personal data in, and where each of its
characters came from.

Values disguised with invisible or look-alike characters ("4111\u200b1111...", "jo＠example.com",
full-width digits) are found too: detection runs on a normalized copy of the text (format and other
invisible characters dropped, compatibility forms NFKC-folded to ASCII) and every span is mapped back
to the original text, so that it covers the whole disguised value. Dashes and middle dots that look
like "-" and "." ("4111\u22121111...", "4111\u00b71111...") are read as those, and HTML character
references ("&#52;111...", "&commat;") as the characters they stand for. Plain text skips all of this.
"""

from __future__ import annotations

import html.entities
import re
import unicodedata

# Invisible characters that are not format characters (category Cf) but render as nothing: combining
# grapheme joiner, Hangul fillers, Khmer inherent vowels, Mongolian variation selectors, variation selectors.
_INVISIBLE = {0x034F, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x3164, 0xFFA0, *range(0x180B, 0x1810),
              *range(0xFE00, 0xFE10), *range(0xE0100, 0xE01F0)}
_ASCII = frozenset(map(chr, range(128)))
_FOLD: dict[str, str | None] = {}  # non-ASCII character -> "" (drop), its ASCII look-alike, or None (keep)


def _fold(ch: str) -> str | None:
    """What a non-ASCII character stands for in the normalized copy; None when it stays as it is."""
    if ch not in _FOLD:
        if ch in _LOOKALIKE:
            _FOLD[ch] = _LOOKALIKE[ch]
        elif unicodedata.category(ch) == "Cf" or ord(ch) in _INVISIBLE:
            _FOLD[ch] = ""  # zero-width spaces and joiners, word joiner, BOM, soft hyphen, bidi controls
        else:
            folded = unicodedata.normalize("NFKC", ch)  # full-width ＠ and ４, NBSP and other spaces
            # only one-for-one ASCII look-alikes: expansions ("…" -> "...") would change what the text says
            _FOLD[ch] = folded if len(folded) == 1 and folded.isascii() and folded.isprintable() else None
    return _FOLD[ch]


# Look-alikes NFKC leaves as they are: dashes and minus signs read as "-", middle dots and bullets as "."
_LOOKALIKE = {**dict.fromkeys("\u2010\u2011\u2012\u2015\u2043\u2212\u2796\u02d7\ufe58", "-"),
              **dict.fromkeys("\u00b7\u0387\u2022\u2027\u2219\u22c5\u2e31\u30fb\uff65", ".")}
# an HTML character reference ("&#52;", "&#x34;", "&commat;"), its "&" itself escaped any number of times
_CHAR_REF = re.compile(r"&(?:amp;)*(?:#0*(?P<dec>\d{1,7});?|#[xX]0*(?P<hex>[0-9A-Fa-f]{1,6});?"
                       r"|(?P<name>[A-Za-z][A-Za-z0-9]{1,31};))")
# what a tweet's text escapes ("&amp;", "&lt;", "&gt;") is never part of personal data: left as it is,
# such a text takes the fast path
_KEPT_REFS = frozenset("&<>")


def _char_ref(m: re.Match[str]) -> str | None:
    """The one character an HTML character reference stands for; None for no (single) character."""
    if m.group("name"):
        value = html.entities.html5.get(m.group("name"))
        return value if value is not None and len(value) == 1 else None
    code = int(m.group("dec"), 10) if m.group("dec") else int(m.group("hex"), 16)
    return chr(code) if 0 < code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF else None


def normalized(text: str) -> tuple[str, list[int], list[int]] | None:
    """The text with HTML character references decoded, without invisible characters and with look-alikes
    folded, and for every character of it where it came from: ``text[starts[i]:ends[i]]`` (a reference
    is one character); None when there is nothing to normalize."""
    refs = [(m.start(), m.end(), ch) for m in _CHAR_REF.finditer(text)
            if (ch := _char_ref(m)) is not None and ch not in _KEPT_REFS] if "&" in text else []
    extra = set(text).union(ch for *_, ch in refs).difference(_ASCII)
    table = {ch: r for ch in extra if (r := _fold(ch)) is not None}
    if not table and not refs:
        return None
    chars: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    last = 0
    for a, b, ref in [*refs, (len(text), len(text), "")]:
        for i in range(last, a):
            r = table.get(text[i], text[i])
            if r:
                chars.append(r)
                starts.append(i)
                ends.append(i + 1)
        r = table.get(ref, ref)
        if r:
            chars.append(r)
            starts.append(a)
            ends.append(b)
        last = b
    return "".join(chars), starts, ends
