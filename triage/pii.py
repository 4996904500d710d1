"""Personal data in text, found as character spans: cards (Luhn), e-mails, phones, IBANs (mod 97),
national ids (US SSN, UK NI), and passwords or one-time codes written out. Values are never kept.

Precision matters as much as recall: order numbers, dates, prices and tracking codes are not PII,
so phone numbers need a phone-like shape and digit count, and cards need a valid Luhn checksum.

Values disguised with invisible or look-alike characters ("4111\u200b1111...", "jo＠example.com",
full-width digits) are found too: detection runs on a normalized copy of the text (format and other
invisible characters dropped, compatibility forms NFKC-folded to ASCII) and every span is mapped back
to the original text, so that it covers the whole disguised value. Dashes and middle dots that look
like "-" and "." ("4111\u22121111...", "4111\u00b71111...") are read as those, and HTML character
references ("&#52;111...", "&commat;") as the characters they stand for. Plain text skips all of this.

A card number is also found where it is not free-standing: glued to a "#", inside a URL, followed by
its expiry ("/0928", "exp0928"), or grouped with mixed separators ("4111 1111-1111 1111"). There it
must be a number a card network issues (a known IIN with its lengths) besides passing Luhn, and not
follow the word of a reference ("order #...", ".../status/...", "tracking "): order numbers, tweet
ids and tracking codes ("1Z999AA10123456784") stay what they are.
"""

from __future__ import annotations

import bisect
import html.entities
import re
import unicodedata

from triage.protocol import PiiSpan

# Digit groups as people type a card: one to three spaces, a line break, a dash (hyphen, en or em dash,
# underscore) with a space either side or none, or a dot with a space either side ("4111 · 1111 ...",
# its middle dots read as dots); a "/" may follow the number ("/exp 09/28").
_SEPARATOR = r"(?:[ \t\u00a0]{1,3}|\r?\n| ?[-\u2013\u2014_] ?| \. )"
_DIGIT_RUN = re.compile(r"(?<![\w#/.,-])\d+(?:" + _SEPARATOR + r"\d+)*(?![\w\u2013\u2014-]|[.,/]\d)")
# the same groups wherever they are, for the cards :func:`_embedded_cards` finds in URLs, after a "#", ...
_ANY_RUN = re.compile(r"\d+(?:" + _SEPARATOR + r"\d+)*")
_GROUP_BEFORE = re.compile(r"(\d+)(" + _SEPARATOR + r")$")  # the digit group before a run that could not start there
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
# three more ways people write a card: in dotted groups (fours, or Amex 4.6.5; middle dots read as dots),
# in slashed groups (4/4/4/4 or Amex 4/6/5; a date such as 12/05/2026 never has that shape), and right
# after a card word and "#" ("order #4111..." stays an order number: see :data:`_REFERENCE_BEFORE`).
# The first two open with a digit and look behind it from there, so the regex engine skips ahead to
# the next digit instead of testing the look-behind at every position of every text.
_DOTTED_CARD = re.compile(r"\d(?<![\w.]\d)\d{3}\.(?:\d{4}\.\d{4}\.\d{1,4}(?:\.\d{1,3})?|\d{6}\.\d{5})(?![\w]|\.\d)")
_FOURS_DOTTED = re.compile(r"\d{4}(?:\.\d{4}){3}")
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


def plausible_card(digits: str) -> bool:
    """Is this a number a card network issues: an issuer prefix (IIN) in use, with one of its lengths?
    Visa, Mastercard, American Express, Discover, JCB, Diners Club, UnionPay, Maestro and Mir."""
    n, p2, p3, p4 = len(digits), int(digits[:2]), int(digits[:3]), int(digits[:4])
    if digits[0] == "4":
        return n in (13, 16, 19)
    if 51 <= p2 <= 55 or 2221 <= p4 <= 2720:
        return n == 16
    if p2 in (34, 37):
        return n == 15
    if p4 in (5018, 5020, 5038, 5893, 6304, 6759, 6761, 6762, 6763):  # Maestro
        return 13 <= n <= 19
    if p4 == 6011 or 644 <= p3 <= 649 or p2 in (62, 65) or 3528 <= p4 <= 3589 or 2200 <= p4 <= 2204:
        return 16 <= n <= 19  # Discover, UnionPay, JCB, Mir
    if 300 <= p3 <= 305 or p2 in (36, 38, 39):  # Diners Club
        return 14 <= n <= 19
    return False


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
    22-digit tracking number written in fours is therefore never cut into a "card", not even where
    its first group cannot start a run ("#9400 0007 ...": the group before still counts as a neighbour).
    A run glued to the word of a reference ("ref:4111...", "?order_id=4111...") is that reference.
    """
    out = []
    for run in _DIGIT_RUN.finditer(text):
        groups = [(run.start() + m.start(), run.start() + m.end()) for m in _DIGITS.finditer(run.group())]
        lengths = [b - a for a, b in groups]
        if sum(lengths) < 13:
            continue  # most runs: a year, a price, a short number
        if run.start() and not text[run.start() - 1].isspace() \
                and _REFERENCE_BEFORE.search(text, max(0, run.start() - 40), run.start()):
            continue  # glued to a reference's word: "ref:4111...", "?order_id=4111..."
        seps = [""] + [text[groups[k - 1][1]:groups[k][0]] for k in range(1, len(groups))]
        first = 0
        before = _GROUP_BEFORE.search(text, max(0, run.start() - 24), run.start()) \
            if _DIGITS.search(text, max(0, run.start() - 4), run.start()) else None
        if before is not None:  # a neighbour outside the run, never part of a window
            groups.insert(0, (before.start(), before.start() + len(before.group(1))))
            lengths.insert(0, len(before.group(1)))
            seps[0] = before.group(2)
            seps.insert(0, "")
            first = 1
        i = first
        while i < len(groups):
            best = None
            for j in range(i, len(groups)):
                digits = sum(lengths[i:j + 1])
                if digits > 19:
                    break
                if digits >= 13 and (window := _card_window(lengths, seps, i, j)):
                    number = re.sub(r"\D", "", text[groups[i][0]:groups[j][1]])
                    if len(set(number)) > 1 and luhn_ok(number) and (window == "one" or plausible_card(number)):
                        best = j
            if best is None:
                i += 1
                continue
            out.append(PiiSpan("card_number", groups[i][0], groups[best][1]))
            i = best + 1
    return out


def _card_window(lengths: list[int], seps: list[str], i: int, j: int) -> str | None:
    """Whether groups i..j look like one card number and stand apart from their neighbours: "one" when
    one separator parts its groups, "mixed" when several do ("4111 1111-1111 1111": the number must be
    one a card network issues, see :func:`plausible_card`, and neither a group of four digits before
    it nor a short group after it may continue it, whatever separates them); None when they do not."""
    if j > i and not (all(n == 4 for n in lengths[i:j]) and lengths[j] <= 4 or lengths[i:j + 1] == [4, 6, 5]):
        return None
    inner = set(seps[i + 1:j + 1])
    last = len(lengths) - 1
    if len(inner) > 1:
        return "mixed" if (i == 0 or lengths[i - 1] != 4) and (j == last or lengths[j + 1] > 4) else None
    sep = inner.pop() if inner else None
    if i > 0 and sep is not None and seps[i] == sep and lengths[i - 1] == 4 and (i == 1 or seps[i - 1] == sep):
        return None  # the group before continues the same pattern
    if j < last and sep is not None and seps[j + 1] == sep and lengths[j + 1] <= 4 \
            and (j + 1 == last or seps[j + 2] == sep):
        return None  # the group after continues the same pattern
    return "one"


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
    """Luhn-valid cards in the shapes the digit runs of :func:`_cards` leave out (dotted, slashed, "card #").
    A dotted number other than 4.4.4.4 (13, 15 or 19 digits) must also be a plausible card."""
    found = [(m.start(), m.end(), m.group(), not _FOURS_DOTTED.fullmatch(m.group()))
             for m in _DOTTED_CARD.finditer(text)]
    if "/" in text:  # most texts have none: skip the scan
        found += [(m.start(), m.end(), m.group(), False) for m in _SLASHED_CARD.finditer(text)]
    found += [(m.start(1), m.end(1), m.group(1), False) for m in _HASH_CARD.finditer(text)]
    return [PiiSpan("card_number", a, b) for a, b, value, strict in found
            if luhn_ok(number := re.sub(r"\D", "", value)) and len(set(number)) > 1
            and (not strict or plausible_card(number))]


# Where a card number is not free-standing (glued to a "#", in a URL, followed by its expiry), the words
# before it that make it a reference instead: "order #...", "ref: ...", ".../orders/...", ".../status/..."
# (a tweet's id), "?order_id=...", "tracking ..."
_REFERENCE_BEFORE = re.compile(
    r"(?i)(?:\b|_)(?:orders?|ref|refs|reference|invoices?|inv|tickets?|cases?|tracking|track|trk|shipments?|"
    r"parcels?|packages?|pkg|consignments?|awb|confirmation|conf|bookings?|reservations?|receipts?|po|"
    r"transactions?|txn|sku|items?|itm|products?|serial|imei|status|statuses|ids?|users?|customers?|"
    r"members?|accounts?|acct|fbid|pins?|posts?|videos?|threads?|topics?|comments?|messages?|photos?)"
    r"(?:[\s._#:-]*(?:no|nr|num|number|id|ids|code))?[\s:#=/_.-]*$")
# the letters a card number may be glued to ("cc4111...", "visa4111..."): a card's own words only
_CARD_WORD_BEFORE = re.compile(r"(?i)(?<![a-z])(?:card|cc|visa|mastercard|amex|discover|pan)_?$")
_THIRTEEN_DIGITS = re.compile(r"\d{4}(?:" + _SEPARATOR + r"?\d){9}")  # what every candidate starts with
_WORD_AFTER = re.compile(r"[A-Za-z0-9_]*")
_HEX = re.compile(r"[0-9A-Fa-f]*")


def _embedded_cards(text: str, taken: list[PiiSpan]) -> list[PiiSpan]:
    """Card numbers :func:`_cards` leaves to its stricter neighbour rules: a run of digit groups (or one
    group of 13-19 digits in it) glued to a "#", inside a URL ("/c/4111...", "[4111...](...)"), followed
    by its expiry ("4111.../0928", "4111...exp0928") or glued to a card word ("cc4111..."). Luhn-valid
    and a plausible card (:func:`plausible_card`), and not a reference (:data:`_REFERENCE_BEFORE`), nor
    part of a number ("+4111...": a phone; "0.4111..."), a word ("1Z999AA1012...", "TBA41...") or a
    hexadecimal id ("4111...abcdef"). A card found here may hold one the stricter rules found in part of
    it ("6205 0011 1225 5698 004/0928": its first 16 digits): it replaces that one (see :func:`_detect`)."""
    out: list[PiiSpan] = []
    if not _THIRTEEN_DIGITS.search(text):  # most texts: skip the scan
        return out
    ordered = sorted(taken, key=lambda t: t.start)
    starts, ends = [t.start for t in ordered], [t.end for t in ordered]
    for run in _ANY_RUN.finditer(text):
        raw = run.group()
        groups = [(run.start() + m.start(), run.start() + m.end()) for m in _DIGITS.finditer(raw)]
        lengths = [b - a for a, b in groups]
        if sum(lengths) < 13:
            continue
        whole = 13 <= sum(lengths) <= 19 and (len(lengths) == 1 or lengths == [4, 6, 5]
                                                 or all(n == 4 for n in lengths[:-1]) and lengths[-1] <= 4)
        candidates = [(groups[0][0], groups[-1][1])] if whole else [g for g in groups if 13 <= g[1] - g[0] <= 19]
        for a, b in candidates:
            # the spans found already that it overlaps (sorted, they end in order too: none overlap)
            near = ordered[bisect.bisect_right(ends, a):bisect.bisect_left(starts, b)]
            if any(t.type != "card_number" or t.start < a or b < t.end for t in near):
                continue  # a card found here may only hold whole cards found before
            number = re.sub(r"\D", "", text[a:b])
            if len(set(number)) == 1 or not luhn_ok(number) or not plausible_card(number) \
                    or not _stands_as_card(text, a, b):
                continue
            out.append(PiiSpan("card_number", a, b))
    return out


def _stands_as_card(text: str, a: int, b: int) -> bool:
    """Whether what surrounds the digits ``text[a:b]`` leaves them a card number (see :func:`_embedded_cards`)."""
    before = text[a - 1] if a else ""
    if before.isalnum() or before == "_":
        if not _CARD_WORD_BEFORE.search(text, max(0, a - 12), a):
            return False  # inside a word: a tracking code or an id
    elif before == "+" or before in ".," and a >= 2 and text[a - 2].isdigit():
        return False  # a phone number; the decimals of a number
    after = text[b] if b < len(text) else ""
    if after.isalpha() or after == "_":
        word = _WORD_AFTER.match(text, b).group()
        if word and _HEX.fullmatch(word):
            return False  # a hexadecimal id ("4111...abcdef")
    elif after in ".," and text[b + 1:b + 2].isdigit():
        return False  # a number with decimals, a version
    return not _REFERENCE_BEFORE.search(text, max(0, a - 40), a)


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


def _normalized(text: str) -> tuple[str, list[int], list[int]] | None:
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
    spans += [s for s in _cards(text) if not _overlaps(s.start, s.end, spans)]
    spans += [s for s in _written_cards(text) if not _overlaps(s.start, s.end, spans)]
    spans += [PiiSpan("iban", m.start(), m.end()) for m in _IBAN.finditer(text)
              if iban_ok(m.group()) and not _overlaps(m.start(), m.end(), spans)]
    embedded = _embedded_cards(text, spans)
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
