"""Personal data in text, found as character spans: cards (Luhn), e-mails, phones, IBANs (mod 97),
national ids (US SSN, UK NI), and passwords or one-time codes written out. Values are never kept.

Precision matters as much as recall: order numbers, dates, prices and tracking codes are not PII,
so phone numbers need a phone-like shape and digit count, and cards need a valid Luhn checksum.

Values disguised with invisible or look-alike characters ("4111\u200b1111...", "jo＠example.com",
full-width digits) or written as HTML character references ("&#52;111...") are found too: detection
runs on a normalized copy of the text and every span is mapped back to the original text, so that it
covers the whole disguised value (:mod:`triage.pii_normalize`). Plain text skips all of this.

A card number is also found where it is not free-standing: glued to a "#", inside a URL, followed by
its expiry or grouped with mixed separators, if it is a number a card network issues and does not
follow the word of a reference (:mod:`triage.pii_cards`, which holds the card rules).
"""

from __future__ import annotations

import re

from triage.pii_cards import cards, embedded_cards, luhn_ok, plausible_card, written_cards
from triage.pii_normalize import normalized as _normalized
from triage.protocol import PiiSpan

__all__ = ["detect_pii", "iban_ok", "luhn_ok", "plausible_card", "redact"]

_DIGITS = re.compile(r"\d+")
_EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})*\.[A-Za-z]{2,24}(?![\w-])")
# An address written out against harvesters: "bob [at] gmail [dot] com", "bob(at)gmail.com", "bob at gmail
# dot com". A bracketed "at" says so alone; a bare " at " only with " dot " spelled out too and a common
# top-level domain ("look at example.com", "meet at noon dot" are prose).
_BRACKET_AT = r"[ \t]*[\[({<][ \t]*at[ \t]*[\])}>][ \t]*"
_WORD_DOT = r"[ \t]*[\[({<][ \t]*dot[ \t]*[\])}>][ \t]*|[ \t]+dot[ \t]+"
_WRITTEN_EMAIL = re.compile(
    rf"(?i)(?<![\w.+-])[a-z0-9._%+-]{{1,64}}(?P<at>{_BRACKET_AT}|[ \t]+at[ \t]+)"
    rf"(?:[a-z0-9-]{{1,63}}(?:{_WORD_DOT}|\.))+(?P<tld>[a-z]{{2,24}})(?![\w-])"
)
_WRITTEN_TLDS = {"com", "net", "org", "edu", "gov", "io", "co", "uk", "us", "ca", "au", "de", "fr", "es", "it",
                 "nl", "ie", "in", "me", "info", "biz", "mail"}
# with a bare " at ", the address must look like one: a mail provider's domain, or a local part no word
# is ("jane.doe", "kim_88"); "we met at acme dot com" names a site, and hiding that post would be wrong
_MAIL_PROVIDERS = {"gmail", "googlemail", "yahoo", "hotmail", "outlook", "live", "msn", "icloud", "me", "mac", "aol",
                   "protonmail", "proton", "gmx", "yandex", "mail", "zoho", "comcast", "verizon", "att", "btinternet",
                   "sky", "virginmedia", "orange", "free", "web", "t-online", "libero", "qq", "163"}
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


def iban_ok(candidate: str) -> bool:
    s = candidate.replace(" ", "")
    if not 15 <= len(s) <= 34:
        return False
    moved = s[4:] + s[:4]
    number = "".join(str(int(ch, 36)) for ch in moved)
    return int(number) % 97 == 1


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


def _written_emails(text: str) -> list[PiiSpan]:
    """Addresses with "at" and "dot" written out (see ``_WRITTEN_EMAIL``)."""
    if "at" not in text.lower():
        return []
    out = []
    for m in _WRITTEN_EMAIL.finditer(text):
        if any(b in m.group("at") for b in "[({<") or _written_out(m):
            out.append(PiiSpan("email", m.start(), m.end()))
    return out


def _written_out(m: re.Match[str]) -> bool:
    """A bare "name at domain dot tld" that reads as an address, not as prose."""
    if not re.search(r"(?i)\bdot\b", m.group()) or m.group("tld").lower() not in _WRITTEN_TLDS:
        return False
    local = m.group()[:m.start("at") - m.start()]
    domain = re.split(r"(?i)[ \t]*[\[({<]?[ \t]*dot\b|\.", m.group()[m.end("at") - m.start():])[0].strip().lower()
    return domain in _MAIL_PROVIDERS or bool(re.search(r"[\d._%+-]", local))


def _overlaps(start: int, end: int, spans: list[PiiSpan]) -> bool:
    return any(start < s.end and s.start < end for s in spans)


def detect_pii(text: str) -> list[PiiSpan]:
    """Every PII span, non-overlapping, in text order, also where the value is disguised with invisible
    or look-alike characters or HTML character references (a span then covers the disguised value in
    the original text)."""
    normalized = None if text.isascii() and "&" not in text else _normalized(text)
    if normalized is None:
        return _detect(text)  # the fast path: nothing to normalize
    norm, starts, ends = normalized
    return [PiiSpan(s.type, starts[s.start], ends[s.end - 1]) for s in _detect(norm)]


def _detect(text: str) -> list[PiiSpan]:
    spans: list[PiiSpan] = []
    spans += [PiiSpan("email", m.start(), m.end()) for m in _EMAIL.finditer(text)]
    spans += [s for s in _written_emails(text) if not _overlaps(s.start, s.end, spans)]
    spans += [s for s in cards(text) if not _overlaps(s.start, s.end, spans)]
    spans += [s for s in written_cards(text) if not _overlaps(s.start, s.end, spans)]
    spans += [PiiSpan("iban", m.start(), m.end()) for m in _IBAN.finditer(text)
              if iban_ok(m.group()) and not _overlaps(m.start(), m.end(), spans)]
    embedded = embedded_cards(text, spans)
    if embedded:  # each replaces the cards found in part of it
        spans = [s for s in spans if not any(e.start <= s.start and s.end <= e.end for e in embedded)] + embedded
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
