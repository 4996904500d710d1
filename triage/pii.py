"""Personal data in text, found as character spans: cards (Luhn), e-mails, phones, IBANs (mod 97),
national ids (US SSN, UK NI), and passwords or one-time codes written out. Values are never kept.

Precision matters as much as recall: order numbers, dates, prices and tracking codes are not PII,
so phone numbers need a phone-like shape and digit count, and cards need a valid Luhn checksum.

Values disguised with invisible or look-alike characters ("4111\u200b1111...", "jo＠example.com",
full-width digits) are found too: detection runs on a normalized copy of the text (format and other
invisible characters dropped, compatibility forms NFKC-folded to ASCII) and every span is mapped back
to the original text, so that it covers the whole disguised value. Plain text skips all of this.
"""

from __future__ import annotations

import re
import unicodedata

from triage.protocol import PiiSpan

# Digit groups as people type a card: one to three spaces, a line break, or a dash (hyphen, en or em
# dash, underscore) with a space either side or none; a "/" may follow the number ("/exp 09/28").
_DIGIT_RUN = re.compile(r"(?<![\w#/.,-])\d+(?:(?:[ \t\u00a0]{1,3}|\r?\n| ?[-\u2013\u2014_] ?)\d+)*"
                        r"(?![\w\u2013\u2014-]|[.,/]\d)")
_DIGITS = re.compile(r"\d+")
_EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})*\.[A-Za-z]{2,24}(?![\w-])")
_PHONE = re.compile(
    r"(?<![\w#/$€£.-])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{2,4}\)[\s.-]?|\d{2,4}[\s.-])\d{3,4}[\s.-]?\d{3,4}(?![\w/.-]*\d)(?!\.\d)"
)
# A UK mobile or other 0-led 5+6 layout ("07700 900123"), which the groups above do not take.
_TRUNK_PHONE = re.compile(r"(?<![\w#/$€£.-])0\d{4}[\s.-]\d{6}(?![\w/.-]*\d)(?!\.\d)")
# A number the writer says is a phone ("call me on 555-0142", "text me 4155550142", "my number is 555
# 0142"): local 7-digit numbers and unseparated ones, which alone read as order or reference numbers.
_PHONE_CUE = re.compile(
    r"(?i)\b(?:call|ring|text|phone|tel|telephone|cell|mobile|whats ?app|sms|"
    r"(?:my|phone|mobile|cell|contact|home|work|office) (?:number|no\.?|#))"
    r"(?:\s+(?:me|us|him|her|back|now))*(?:\s*(?:on|at|is|:|=|-)(?![a-z]))?\s*"
    r"(?P<num>\+?\(?\d[\d\s().-]{5,20}\d)(?![\w/])"
)
_VERSION = re.compile(r"\d+(?:\.\d+)*\.\d(?:\.\d+)*")  # "Windows Mobile 10.0.15252.0": a one-digit dotted part
_MORE_DIGITS_AFTER = re.compile(r"[ -]?\d")
_MORE_DIGITS_BEFORE = re.compile(r"\d[ -]?$")
_TRACKING_GROUPS = re.compile(r"\d{4} \d{4} \d{4}")
# three more ways people write a card: in dotted fours, in slashed groups (4/4/4/4 or Amex 4/6/5; a date
# such as 12/05/2026 never has that shape), and right after a card word and "#" (a bare "#4111..." stays
# an order number). The first two open with a digit and look behind it from there, so the regex engine
# skips ahead to the next digit instead of testing the look-behind at every position of every text.
_DOTTED_CARD = re.compile(r"\d(?<![\w.]\d)\d{3}\.\d{4}\.\d{4}\.\d{4}(?![\w]|\.\d)")
_SLASHED_CARD = re.compile(r"\d(?<![\w./]\d)\d{3}/(?:\d{4}/\d{4}/\d{4}|\d{6}/\d{5})(?![\w/]|[.,]\d)")
_HASH_CARD = re.compile(r"(?i)\b(?:cc|card|credit card|debit card|visa|mastercard|amex)\s*#\s*(\d{13,19})(?!\d)")
_INTL_PHONE = re.compile(r"(?<![\w#/-])\+\d{10,14}(?!\d)")
_IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,3})?(?![A-Za-z0-9])")
_SSN = re.compile(r"(?<![\d-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\d-])")
_UK_NI = re.compile(r"(?<![A-Za-z0-9])(?![DFIQUV])[A-Z](?![DFIQUVO])[A-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D](?![A-Za-z0-9])")
_SECRET = re.compile(
    r"(?i)\b(?P<kind>password|passwd|pwd|pw|passcode|pass word|pin|one[- ]time code|otp|verification code|"
    r"security code|2fa code|login code|code)\b(?P<sep>(?:\s+(?:you|u|i|we|they)\s+(?:sent|got|gave|received))?(?:\s+(?:is|was|=|:)|\s*[:=])|)\s+(?:now\s+)?[\"'“]?(?P<value>[^\s\"'”,;]{4,64})"
)
_ENTITY = re.compile(r"&#?\w+;?")
_CODE_WORDS = {"code", "otp", "verification code", "security code", "2fa code", "login code", "one-time code",
               "one time code", "pin", "passcode"}
_NOT_SECRET = {"is", "was", "the", "a", "an", "my", "your", "it", "not", "never", "reset", "expired", "wrong",
               "incorrect", "changed", "doesn't", "doesnt", "isn't", "isnt", "and", "but", "to", "for", "from",
               "sent", "again", "still", "didnt", "didn't", "no", "any", "this", "that", "every", "field", "here"}


def luhn_ok(digits: str) -> bool:
    total, parity = 0, len(digits) % 2
    for i, ch in enumerate(digits):
        d = int(ch)
        if i % 2 == parity:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_ok(candidate: str) -> bool:
    s = candidate.replace(" ", "")
    if not 15 <= len(s) <= 34:
        return False
    moved = s[4:] + s[:4]
    number = "".join(str(int(ch, 36)) for ch in moved)
    return int(number) % 97 == 1


def _cards(text: str) -> list[PiiSpan]:
    """Luhn-valid 13-19 digit numbers, written whole or in card-like groups (4-4-4-4[-1..3], 4-6-5).

    A run of digit groups may hold a card beside other numbers ("qty 2 4111 1111 1111 1111", "ssn
    123-45-6789 4111 ..."), so group-aligned windows of the run are tried too, but only where the
    window's edges are natural: the neighbouring group is not a card-style continuation of it. A
    22-digit tracking number written in fours is therefore never cut into a "card".
    """
    out = []
    for run in _DIGIT_RUN.finditer(text):
        raw = run.group()
        groups = [(m.start(), m.end()) for m in _DIGITS.finditer(raw)]
        seps = [""] + [raw[groups[k - 1][1]:groups[k][0]] for k in range(1, len(groups))]
        lengths = [b - a for a, b in groups]
        i = 0
        while i < len(groups):
            best = None
            for j in range(i, len(groups)):
                digits = sum(lengths[i:j + 1])
                if digits > 19:
                    break
                if digits >= 13 and _card_window(lengths, seps, i, j):
                    number = re.sub(r"\D", "", raw[groups[i][0]:groups[j][1]])
                    if len(set(number)) > 1 and luhn_ok(number):
                        best = j
            if best is None:
                i += 1
                continue
            out.append(PiiSpan("card_number", run.start() + groups[i][0], run.start() + groups[best][1]))
            i = best + 1
    return out


def _card_window(lengths: list[int], seps: list[str], i: int, j: int) -> bool:
    """Groups i..j look like one card number and stand apart from their neighbours."""
    inner = set(seps[i + 1:j + 1])
    if len(inner) > 1:
        return False
    if j > i and not (all(n == 4 for n in lengths[i:j]) and lengths[j] <= 4 or lengths[i:j + 1] == [4, 6, 5]):
        return False
    sep = inner.pop() if inner else None
    last = len(lengths) - 1
    if i > 0 and sep is not None and seps[i] == sep and lengths[i - 1] == 4 and (i == 1 or seps[i - 1] == sep):
        return False  # the group before continues the same pattern
    if j < last and sep is not None and seps[j + 1] == sep and lengths[j + 1] <= 4 \
            and (j + 1 == last or seps[j + 2] == sep):
        return False  # the group after continues the same pattern
    return True


def _phones(text: str, taken: list[PiiSpan]) -> list[PiiSpan]:
    out = _cued_phones(text, taken)
    for rx in (_INTL_PHONE, _PHONE, _TRUNK_PHONE):
        for m in rx.finditer(text):
            digits = re.sub(r"\D", "", m.group())
            if not 10 <= len(digits) <= 15 or _overlaps(m.start(), m.end(), taken + out):
                continue
            raw = m.group()
            if re.fullmatch(r"\d{4}-\d{2}-\d{2}.*", raw) or re.fullmatch(r"\d+", raw) and not raw.startswith("+"):
                continue  # a date or a bare number (order ids are long digit runs)
            if _MORE_DIGITS_AFTER.match(text, m.end()) or _MORE_DIGITS_BEFORE.search(text, 0, m.start()):
                continue  # part of a longer run of digit groups: a tracking or reference number
            if _TRACKING_GROUPS.fullmatch(raw):
                continue  # 4-4-4 digit groups: a parcel tracking number (FedEx), not a phone layout
            out.append(PiiSpan("phone", m.start(), m.end()))
    return out


def _cued_phones(text: str, taken: list[PiiSpan]) -> list[PiiSpan]:
    """Numbers right after a word that says they are a phone number, 7 to 15 digits in any layout."""
    out = []
    if not _DIGITS.search(text):  # most texts have no digit: skip the cue scan
        return out
    for m in _PHONE_CUE.finditer(text):
        start = m.start("num")
        raw = m.group("num").rstrip(" .-(")
        end = start + len(raw)
        if 7 <= sum(ch.isdigit() for ch in raw) <= 15 and not _overlaps(start, end, taken + out) \
                and not re.fullmatch(r"\d{4}-\d{2}-\d{2}.*", raw) and not _VERSION.fullmatch(raw):
            out.append(PiiSpan("phone", start, end))
    return out


def _secrets(text: str) -> list[PiiSpan]:
    out = []
    for m in _SECRET.finditer(text):
        kind, value = m.group("kind").lower(), m.group("value")
        bare = value.rstrip(".!?")  # "changed my password now." ends a sentence, it is no secret
        if bare.lower().replace("\u2019", "'") in _NOT_SECRET or _ENTITY.fullmatch(bare):  # phones type "isn’t"
            continue  # "password &amp; card": the tweet's escaped ampersand, not a secret
        if not m.group("sep") and bare.isalpha():
            continue  # "password with the code": prose, not a written-out secret
        if kind == "pw" and bare.isalpha():
            continue  # "PW: Season 2" is an abbreviation; "PW: edeire2002" is a password
        is_code = kind in _CODE_WORDS
        if is_code and not re.fullmatch(r"[A-Za-z0-9-]{4,12}[.!?]?", value):
            continue
        if is_code and not any(ch.isdigit() for ch in value):
            continue  # "code word" prose, not a code
        end = m.end("value") - (1 if value[-1] in ".!?" else 0)
        out.append(PiiSpan("one_time_code" if is_code else "password", m.start("value"), end))
    return out


def _overlaps(start: int, end: int, spans: list[PiiSpan]) -> bool:
    return any(start < s.end and s.start < end for s in spans)


def _written_cards(text: str) -> list[PiiSpan]:
    """Luhn-valid cards in the shapes the digit runs of :func:`_cards` leave out (dotted, slashed, "card #")."""
    found = [(m.start(), m.end(), m.group()) for m in _DOTTED_CARD.finditer(text)]
    if "/" in text:  # most texts have none: skip the scan
        found += [(m.start(), m.end(), m.group()) for m in _SLASHED_CARD.finditer(text)]
    found += [(m.start(1), m.end(1), m.group(1)) for m in _HASH_CARD.finditer(text)]
    return [PiiSpan("card_number", a, b) for a, b, value in found
            if luhn_ok(number := re.sub(r"\D", "", value)) and len(set(number)) > 1]


# Invisible characters that are not format characters (category Cf) but render as nothing: combining
# grapheme joiner, Hangul fillers, Khmer inherent vowels, Mongolian variation selectors, variation selectors.
_INVISIBLE = {0x034F, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x3164, 0xFFA0, *range(0x180B, 0x1810),
              *range(0xFE00, 0xFE10), *range(0xE0100, 0xE01F0)}
_ASCII = frozenset(map(chr, range(128)))
_FOLD: dict[str, str | None] = {}  # non-ASCII character -> "" (drop), its ASCII look-alike, or None (keep)


def _fold(ch: str) -> str | None:
    """What a non-ASCII character stands for in the normalized copy; None when it stays as it is."""
    if ch not in _FOLD:
        if unicodedata.category(ch) == "Cf" or ord(ch) in _INVISIBLE:
            _FOLD[ch] = ""  # zero-width spaces and joiners, word joiner, BOM, soft hyphen, bidi controls
        else:
            folded = unicodedata.normalize("NFKC", ch)  # full-width ＠ and ４, NBSP and other spaces
            # only one-for-one ASCII look-alikes: expansions ("…" -> "...") would change what the text says
            _FOLD[ch] = folded if len(folded) == 1 and folded.isascii() and folded.isprintable() else None
    return _FOLD[ch]


def _normalized(text: str) -> tuple[str, list[int]] | None:
    """The text without invisible characters and with look-alikes folded, and for every character of
    it the index of the original character it came from; None when there is nothing to normalize."""
    extra = set(text).difference(_ASCII)
    table = {ch: r for ch in extra if (r := _fold(ch)) is not None}
    if not table:
        return None
    chars, index = [], []
    for i, ch in enumerate(text):
        r = table.get(ch, ch)
        if r:
            chars.append(r)
            index.append(i)
    return "".join(chars), index


def detect_pii(text: str) -> list[PiiSpan]:
    """Every PII span, non-overlapping, in text order, also where the value is disguised with invisible
    or look-alike characters (a span then covers the disguised value in the original text)."""
    normalized = None if text.isascii() else _normalized(text)
    if normalized is None:
        return _detect(text)  # the fast path: nothing to normalize
    norm, index = normalized
    return [PiiSpan(s.type, index[s.start], index[s.end - 1] + 1) for s in _detect(norm)]


def _detect(text: str) -> list[PiiSpan]:
    spans: list[PiiSpan] = []
    spans += [PiiSpan("email", m.start(), m.end()) for m in _EMAIL.finditer(text)]
    spans += [s for s in _cards(text) if not _overlaps(s.start, s.end, spans)]
    spans += [s for s in _written_cards(text) if not _overlaps(s.start, s.end, spans)]
    spans += [PiiSpan("iban", m.start(), m.end()) for m in _IBAN.finditer(text)
              if iban_ok(m.group()) and not _overlaps(m.start(), m.end(), spans)]
    spans += [PiiSpan("national_id", m.start(), m.end()) for rx in (_SSN, _UK_NI) for m in rx.finditer(text)
              if not _overlaps(m.start(), m.end(), spans)]
    spans += _phones(text, spans)
    spans += [s for s in _secrets(text) if not _overlaps(s.start, s.end, spans)]
    return sorted(spans, key=lambda s: s.start)


def redact(text: str, spans: list[PiiSpan] | None = None) -> str:
    """The text with every PII span replaced by ``[type]`` (spans detected when not given)."""
    spans = detect_pii(text) if spans is None else spans
    out, last = [], 0
    for s in sorted(spans, key=lambda s: s.start):
        if s.start < last or s.end > len(text):
            continue
        out.append(text[last:s.start])
        out.append(f"[{s.type}]")
        last = s.end
    out.append(text[last:])
    return "".join(out)
