"""Card numbers in text (:mod:`triage.pii` detects them with the rest of the personal data): 13-19
digits with a valid Luhn checksum, written whole or in the groups people type.

A free-standing number is a card when its digit groups look like one card number and stand apart from
their neighbours (:func:`cards`), or when it is written in dotted or slashed groups or after a card
word and "#" (:func:`written_cards`).

A card number is also found where it is not free-standing: glued to a "#", inside a URL, followed by
its expiry ("/0928", "exp0928"), or grouped with mixed separators ("4111 1111-1111 1111"). There it
must be a number a card network issues (a known IIN with its lengths, :func:`plausible_card`) besides
passing Luhn, and not follow the word of a reference ("order #...", ".../status/...", "tracking "):
order numbers, tweet ids and tracking codes ("1Z999AA10123456784") stay what they are.
"""

from __future__ import annotations

import bisect
import re

from triage.protocol import PiiSpan

# Digit groups as people type a card: one to three spaces, a line break, a dash (hyphen, en or em dash,
# underscore) with a space either side or none, or a dot with a space either side ("4111 · 1111 ...",
# its middle dots read as dots); a "/" may follow the number ("/exp 09/28").
_SEPARATOR = r"(?:[ \t\u00a0]{1,3}|\r?\n| ?[-\u2013\u2014_] ?| \. )"
_DIGIT_RUN = re.compile(r"(?<![\w#/.,-])\d+(?:" + _SEPARATOR + r"\d+)*(?![\w\u2013\u2014-]|[.,/]\d)")
# the same groups wherever they are, for the cards :func:`embedded_cards` finds in URLs, after a "#", ...
_ANY_RUN = re.compile(r"\d+(?:" + _SEPARATOR + r"\d+)*")
_GROUP_BEFORE = re.compile(r"(\d+)(" + _SEPARATOR + r")$")  # the digit group before a run that could not start there
_DIGITS = re.compile(r"\d+")
# three more ways people write a card: in dotted groups (fours, or Amex 4.6.5; middle dots read as dots),
# in slashed groups (4/4/4/4 or Amex 4/6/5; a date such as 12/05/2026 never has that shape), and right
# after a card word and "#" ("order #4111..." stays an order number: see :data:`_REFERENCE_BEFORE`).
# The first two open with a digit and look behind it from there, so the regex engine skips ahead to
# the next digit instead of testing the look-behind at every position of every text.
_DOTTED_CARD = re.compile(r"\d(?<![\w.]\d)\d{3}\.(?:\d{4}\.\d{4}\.\d{1,4}(?:\.\d{1,3})?|\d{6}\.\d{5})(?![\w]|\.\d)")
_FOURS_DOTTED = re.compile(r"\d{4}(?:\.\d{4}){3}")
_SLASHED_CARD = re.compile(r"\d(?<![\w./]\d)\d{3}/(?:\d{4}/\d{4}/\d{4}|\d{6}/\d{5})(?![\w/]|[.,]\d)")
_HASH_CARD = re.compile(r"(?i)\b(?:cc|card|credit card|debit card|visa|mastercard|amex)\s*#\s*(\d{13,19})(?!\d)")


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


def cards(text: str) -> list[PiiSpan]:
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


def written_cards(text: str) -> list[PiiSpan]:
    """Luhn-valid cards in the shapes the digit runs of :func:`cards` leave out (dotted, slashed, "card #").
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


def embedded_cards(text: str, taken: list[PiiSpan]) -> list[PiiSpan]:
    """Card numbers :func:`cards` leaves to its stricter neighbour rules: a run of digit groups (or one
    group of 13-19 digits in it) glued to a "#", inside a URL ("/c/4111...", "[4111...](...)"), followed
    by its expiry ("4111.../0928", "4111...exp0928") or glued to a card word ("cc4111..."). Luhn-valid
    and a plausible card (:func:`plausible_card`), and not a reference (:data:`_REFERENCE_BEFORE`), nor
    part of a number ("+4111...": a phone; "0.4111..."), a word ("1Z999AA1012...", "TBA41...") or a
    hexadecimal id ("4111...abcdef"). A card found here may hold one the stricter rules found in part of
    it ("6205 0011 1225 5698 004/0928": its first 16 digits): it replaces that one (see
    :func:`triage.pii._detect`)."""
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
    """Whether what surrounds the digits ``text[a:b]`` leaves them a card number (see :func:`embedded_cards`)."""
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
