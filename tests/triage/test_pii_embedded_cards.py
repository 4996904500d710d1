"""Card numbers that are not free-standing are found too: grouped with mixed separators or with a
minus sign or middle dots, glued to a "#", inside a URL, followed by their expiry, or written as HTML
character references. Tracking codes, order numbers, tweet ids and hexadecimal ids stay clean."""

from __future__ import annotations

import html

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from triage.pii import detect_pii, luhn_ok, plausible_card, redact

noise = st.text(alphabet=st.sampled_from(list("abcdefghij klmnop,.!?😀ßé\n")), max_size=30)
digits = st.text(alphabet="0123456789", min_size=0, max_size=19)

# issuer prefixes and the lengths their cards have
BRANDS = [("4", (13, 16, 19)), ("51", (16,)), ("55", (16,)), ("2221", (16,)), ("2720", (16,)), ("34", (15,)),
          ("37", (15,)), ("6011", (16, 19)), ("65", (16,)), ("3530", (16, 19)), ("36", (14,)), ("62", (16, 19)),
          ("5018", (13, 19)), ("2201", (16,))]


def luhn_complete(prefix: str) -> str:
    return next(prefix + d for d in "0123456789" if luhn_ok(prefix + d))


@st.composite
def plausible_cards(draw) -> str:
    prefix, lengths = draw(st.sampled_from(BRANDS))
    length = draw(st.sampled_from(lengths))
    body = prefix + draw(st.text(alphabet="0123456789", min_size=length - len(prefix) - 1,
                                 max_size=length - len(prefix) - 1))
    number = luhn_complete(body)
    if len(set(number)) == 1:
        number = luhn_complete(prefix + "1" * (length - len(prefix) - 1))
    return number


def grouped(number: str) -> list[str]:
    if len(number) == 15 and number[:2] in ("34", "37"):
        return [number[:4], number[4:10], number[10:]]
    return [number[i:i + 4] for i in range(0, len(number), 4)]


SEPARATORS = [" ", "-", "\u2212", "\u2010", "\u2011", " - ", "\u00a0", "  ", "\u2009"]


@st.composite
def written_cards(draw) -> str:
    """A plausible card, whole, grouped with one or mixed separators, or in middle dots."""
    number = draw(plausible_cards())
    groups = grouped(number)
    how = draw(st.sampled_from(["whole", "mixed", "dots", "spaced dots"]))
    if how == "whole":
        return number
    if how == "dots":
        return "\u00b7".join(groups)
    if how == "spaced dots":
        return " \u00b7 ".join(groups)
    seps = draw(st.lists(st.sampled_from(SEPARATORS), min_size=len(groups) - 1, max_size=len(groups) - 1))
    return groups[0] + "".join(s + g for s, g in zip(seps, groups[1:]))


def card_spans(text: str) -> list[tuple[int, int]]:
    return [(s.start, s.end) for s in detect_pii(text) if s.type == "card_number"]


def assert_found(text: str, card: str, at: int) -> None:
    assert card_spans(text) == [(at, at + len(card))], (text, card)
    redacted = redact(text)
    assert "[card_number]" in redacted and card not in redacted


@settings(max_examples=300)
@given(written_cards(), noise, noise)
def test_a_card_with_any_separators_is_found_with_its_span(card, before, after):
    text = f"{before} {card} {after}"
    assert_found(text, card, len(before) + 1)


CONTEXTS = [
    "#{}", "my card #{} charged twice", "see https://pay.example.com/c/{}", "pay?c={}&ok=1", "`{}`",
    "card no {}/0928", "{}/09/28 cvv 123", "{}exp0928", "card {}exp 09/28", "cc{} pls", "visa:{}",
    "(https://x.example/{})", "<a href=\"/c/{}\">card</a>",
]


@settings(max_examples=300)
@given(plausible_cards(), st.sampled_from(CONTEXTS), st.sampled_from(["", "-", " ", "mixed"]))
def test_a_card_glued_to_a_hash_a_url_or_its_expiry_is_found(number, context, sep):
    groups = grouped(number)
    if sep == "mixed":
        card = groups[0] + "".join((" " if k % 2 else "-") + g for k, g in enumerate(groups[1:]))
    else:
        card = sep.join(groups)
    text = context.format(card)
    assert_found(text, card, context.index("{}"))


@st.composite
def entity_encoded(draw) -> tuple[str, str]:
    """A card with some of its digits (at least one) written as HTML character references."""
    number = draw(plausible_cards())
    which = draw(st.lists(st.integers(0, len(number) - 1), min_size=1, max_size=len(number), unique=True))
    forms = [lambda c: f"&#{ord(c)};", lambda c: f"&#x{ord(c):x};", lambda c: f"&#X{ord(c):X};",
             lambda c: f"&amp;#{ord(c)};", lambda c: f"&#{ord(c) + 0xFF10 - 0x30};"]  # full-width digit
    out = [draw(st.sampled_from(forms))(c) if i in which else c for i, c in enumerate(number)]
    return number, "".join(out)


@settings(max_examples=200)
@given(entity_encoded(), st.sampled_from(["my card {} was charged", "#{}", "https://pay.example.com/c/{}"]))
def test_a_card_written_with_html_character_references_is_found_and_fully_redacted(encoded, context):
    number, card = encoded
    text = context.format(card)
    assert html.unescape(html.unescape(card)).translate({0xFF10 + i: 0x30 + i for i in range(10)}) == number
    assert_found(text, card, context.index("{}"))


@pytest.mark.parametrize("text,card", [
    ("card 4111 1111-1111 1111 charged twice", "4111 1111-1111 1111"),
    ("@AcmeHelp my card #4111111111111111 charged twice", "4111111111111111"),
    ("#4111111111111111", "4111111111111111"),
    ("see https://pay.example.com/c/4111111111111111", "4111111111111111"),
    ("see https://t.co/4111111111111111 for details", "4111111111111111"),
    ("card 4111\u22121111\u22121111\u22121111", "4111\u22121111\u22121111\u22121111"),
    ("card 4111\u00b71111\u00b71111\u00b71111", "4111\u00b71111\u00b71111\u00b71111"),
    ("card 4111 \u00b7 1111 \u00b7 1111 \u00b7 1111", "4111 \u00b7 1111 \u00b7 1111 \u00b7 1111"),
    ("card &#52;111111111111111", "&#52;111111111111111"),
    ("card no 4111111111111111/0928", "4111111111111111"),
    ("4111111111111111exp0928", "4111111111111111"),
    ("qty 2 4111 1111-1111 1111 please", "4111 1111-1111 1111"),
    ("amex 3782.822463.10005 exp 12/27", "3782.822463.10005"),
])
def test_the_reviewed_ways_of_writing_a_card(text, card):
    assert [text[s.start:s.end] for s in detect_pii(text) if s.type == "card_number"] == [card]


def test_an_email_written_with_character_references_is_found_and_spans_map_to_the_original():
    text = "mail jo&#64;example&period;com or jo&commat;example.org &amp; thanks"
    assert [(s.type, text[s.start:s.end]) for s in detect_pii(text)] == [
        ("email", "jo&#64;example&period;com"), ("email", "jo&commat;example.org")]
    assert redact(text) == "mail [email] or [email] &amp; thanks"


# --- not cards -------------------------------------------------------------------------------------

plausible_digits = plausible_cards()


@st.composite
def ups(draw) -> str:
    shipper = draw(st.text(alphabet="0123456789ABCDEFGHJKLMNPRSTUVWXYZ", min_size=6, max_size=6))
    return "1Z" + shipper + draw(st.text(alphabet="0123456789", min_size=10, max_size=10))


tracking_codes = st.one_of(
    ups(),
    st.builds(lambda d: "1Z" + d, st.text(alphabet="0123456789", min_size=16, max_size=16)),  # all-digit UPS
    st.builds(lambda d: "TBA" + d, st.text(alphabet="0123456789", min_size=12, max_size=12)),  # Amazon
    st.builds(lambda d: "C" + d, st.text(alphabet="0123456789", min_size=14, max_size=14)),  # OnTrac
    st.builds(lambda d: "JJD" + d, st.text(alphabet="0123456789", min_size=18, max_size=18)),  # DHL
    st.builds(lambda d: "LK" + d + "CN", st.text(alphabet="0123456789", min_size=9, max_size=9)),  # UPU S10
    st.builds(lambda p, d: p + d, st.sampled_from(["9400", "9205", "9361"]),  # USPS, whole or in fours
              st.text(alphabet="0123456789", min_size=18, max_size=18)),
    st.builds(lambda p, d: " ".join((p + d)[i:i + 4] for i in range(0, 22, 4)), st.sampled_from(["9400", "9205"]),
              st.text(alphabet="0123456789", min_size=18, max_size=18)),
)

REFERENCES = ["order #{}", "ref:{}", "invoice#{}", "ticket #{} still open",
              "https://shop.example.com/orders/{}", "https://shop.example.com/track?order_id={}",
              "https://x.com/samm17/status/{}", "https://www.facebook.com/permalink.php?story_fbid={}",
              "tracking #{}", "https://example.com/track/{}/details", "txn#{} refunded"]


@settings(max_examples=300)
@given(tracking_codes, st.sampled_from(["tracking {} not updating", "#{}", "https://track.example.com/{}",
                                        "parcel {}/2 arrived", "{}", "ups: {}!"]))
def test_tracking_codes_are_not_cards(code, context):
    assert card_spans(context.format(code)) == []


@settings(max_examples=300)
@given(st.one_of(plausible_digits, st.text(alphabet="0123456789", min_size=13, max_size=19)),
       st.sampled_from(REFERENCES))
def test_order_numbers_and_ids_after_their_word_are_not_cards(number, context):
    assert card_spans(context.format(number)) == []


@settings(max_examples=200)
@given(st.text(alphabet="0123456789", min_size=19, max_size=19).map(lambda d: "1" + d[1:]), noise)
def test_a_tweet_link_is_not_a_card(tweet_id, after):
    assert card_spans(f"look https://x.com/someone/status/{tweet_id}{after}") == []


@settings(max_examples=200)
@given(plausible_digits, st.text(alphabet="abcdef0123456789", min_size=1, max_size=24).filter(
    lambda s: s[0].isalpha()))
def test_the_digits_at_the_start_of_a_hexadecimal_id_are_not_a_card(number, rest):
    assert card_spans(f"commit {number}{rest} reverted") == []
    assert card_spans(f"https://cdn.example.com/{number}{rest}.png") == []


@settings(max_examples=200)
@given(plausible_digits, st.sampled_from(["0.{}", "{}.5", "1.{} kg", "v2.{}.1"]))
def test_phones_and_decimals_are_not_cards(number, context):
    assert not plausible_card(number) or card_spans(context.format(number)) == []


@settings(max_examples=200)
@given(st.text(alphabet="0123456789", min_size=13, max_size=19).filter(lambda d: not plausible_card(d)),
       st.sampled_from(["#{}", "https://example.com/a/{}", "{}exp0928", "{}/0928", "id {}x"]))
def test_a_number_no_card_network_issues_is_not_a_card_where_it_is_not_free_standing(number, context):
    assert card_spans(context.format(number)) == []


@pytest.mark.parametrize("text", [
    "order #4111111111111111 never arrived",
    "tracking 1Z999AA10123456784 not updating",
    "royal mail AB123456789GB and amazon TBA123456789000",
    "USPS 9400 1000 0000 0000 0000 00 still says in transit",
    "order 112-3456789-1234567 arrived damaged",
    "order #A12-938471 and #B77-120045 both late",
    "charged $12.99 then $1,299.00 on 11/20/2026",
    "see https://x.com/samm17/status/2123570757134041181",
    "order 4111 1111-1111 1112 fails Luhn",  # mixed separators, Luhn fails
    "serial 1234 5678-9012 3456",  # mixed separators, no card network's number
    "refs 4111-1111 1111 1111 1111 1111",  # mixed, but a longer run of fours
    "paid 1 299,00 \u2212 20 \u00b7 2026",
    "Sam \u00b7 call \u00b7 ok",
    "password &amp; the debit card I used",
])
def test_everyday_numbers_stay_clean(text):
    assert card_spans(text) == []
