"""PII detectors: every Luhn-valid card and every e-mail is found, with exact spans; order numbers,
dates, prices and tracking codes are not PII; redaction removes every value."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from triage.pii import detect_pii, iban_ok, luhn_ok, redact

noise = st.text(alphabet=st.sampled_from(list("abcdefghij klmnop,.!?😀ßé\n")), max_size=40)


def luhn_complete(prefix: str) -> str:
    for d in "0123456789":
        if luhn_ok(prefix + d):
            return prefix + d
    raise AssertionError


@st.composite
def card_numbers(draw) -> str:
    length = draw(st.sampled_from([13, 15, 16, 19]))
    first = draw(st.sampled_from(["4", "51", "55", "37", "6011"]))
    body = first + "".join(draw(st.sampled_from("0123456789")) for _ in range(length - len(first) - 1))
    number = luhn_complete(body)
    sep = draw(st.sampled_from(["", " ", "-"]))
    return sep.join(number[i:i + 4] for i in range(0, len(number), 4)) if sep else number


@given(card_numbers(), noise, noise)
def test_every_luhn_valid_card_is_found_with_its_span(card, before, after):
    text = f"{before} {card} {after}"
    spans = [s for s in detect_pii(text) if s.type == "card_number"]
    assert [(s.start, s.end) for s in spans] == [(len(before) + 1, len(before) + 1 + len(card))]
    assert card not in redact(text)


@given(card_numbers())
def test_a_card_number_failing_luhn_is_not_a_card(card):
    digits = [c for c in card]
    i = max(i for i, c in enumerate(digits) if c.isdigit())
    digits[i] = str((int(digits[i]) + 1) % 10)
    wrong = "".join(digits)
    assert not any(s.type == "card_number" for s in detect_pii(f"ref {wrong} ok"))


local = st.text(alphabet=st.sampled_from(list("abcdefghijklmnopqrstuvwxyz0123456789._+-")), min_size=1, max_size=20) \
    .filter(lambda s: s[0].isalnum() and s[-1].isalnum() and ".." not in s)
domain = st.lists(st.text(alphabet=st.sampled_from(list("abcdefghijklmnopqrstuvwxyz0123456789")), min_size=1,
                          max_size=10), min_size=1, max_size=3).map(".".join)


@given(local, domain, st.sampled_from(["com", "org", "net", "co", "museum", "de"]), noise, noise)
def test_every_email_is_found_inside_noisy_text(user, host, tld, before, after):
    email = f"{user}@{host}.{tld}"
    text = f"{before} {email} {after}"
    spans = [s for s in detect_pii(text) if s.type == "email"]
    assert [text[s.start:s.end] for s in spans] == [email]
    assert email not in redact(text)


@given(local, domain, st.sampled_from(["com", "org", "net", "co.uk"]), noise, noise,
       st.sampled_from([" [at] ", "[at]", " (at) ", " {AT} ", "<at>"]),
       st.sampled_from([" [dot] ", "(dot)", " dot ", " DOT "]))
def test_every_email_written_out_against_harvesters_is_found_whole(user, host, tld, before, after, at, dot):
    domain_part = dot.join(f"{host}.{tld}".split("."))
    email = f"{user}{at}{domain_part}"
    text = f"{before} {email} {after}"
    spans = [s for s in detect_pii(text) if s.type == "email"]
    assert [text[s.start:s.end] for s in spans] == [email]
    assert redact(text) == f"{before} [email] {after}"


@pytest.mark.parametrize("text,email", [
    ("mail me: hkosev at gmail dot com", "hkosev at gmail dot com"),  # a real one, from the shared tweets
    ("it's jane.doe at acme dot co dot uk", "jane.doe at acme dot co dot uk"),
    ("kim_88 AT outlook DOT com thx", "kim_88 AT outlook DOT com"),
])
def test_an_address_with_a_bare_at_is_found_where_it_reads_as_one(text, email):
    assert [text[s.start:s.end] for s in detect_pii(text) if s.type == "email"] == [email]


@pytest.mark.parametrize("text", [
    "look at example.com for the terms",  # "at" and a domain: prose
    "we met at acme dot com last week",  # a site named, not an address: hiding the post would be wrong
    "arrive at 5 dot com",
    "meet at noon dot",
    "playlist at spotify dot something broke",  # not a common top-level domain
    "logged in at spotify.com and nothing loads",
    "it's at 50% dot dot dot",
])
def test_prose_with_at_and_dot_is_not_an_email(text):
    assert [s for s in detect_pii(text) if s.type == "email"] == []


@pytest.mark.parametrize("text", [
    "where is my order #A12-938471? placed 2026-11-20",
    "order 123456789012 hasn't arrived",
    "charged $12.99 then $1,299.00 on 11/20/2026",
    "tracking 1Z999AA10123456784 not updating",
    "version 8.4.22.515 on iOS 11.1.2",
    "call me maybe 🎶 at 3:45pm",
    "the verification code never arrives",
    "my password reset email takes forever",
    "USPS 9400 1000 0000 0000 0000 00 still says in transit",
    "fedex tracking 7489 1234 5678 hasn't moved",
    "royal mail AB123456789GB and amazon TBA123456789000",
    "order no. 4111-1111-1111-1112 (that one fails Luhn)",
    "order 112-3456789-1234567 arrived damaged",
    "paid 1 299,00 € on 20.11.2026 at 10:30",
    "invoice P039C2031A dated 10/2",
    "Sent a DM dudes. Changed my password now.",
    "It was after a password change. Got a pop up when I started the app",
    "all I have is the reference number, password &amp; the debit card I used",
    "PW: Season two drops friday",
    "order #4111111111111111 never arrived",  # Luhn-valid, but an order number after a bare '#'
    "My password isn\u2019t working and I have tried both emails",
    "order number 4155550142 never came",  # a bare run of digits is a phone only where the writer says so
    "app version number is 5.2.4.0 and Windows Mobile 10.0.15252.0",
    "called 3 times about order 1234567",
])
def test_no_false_positives_on_everyday_numbers(text):
    assert detect_pii(text) == []


@pytest.mark.parametrize("text,kind", [
    ("call +1 555 010 0147 asap", "phone"),
    ("my number is (555) 010-0166", "phone"),
    ("ring 555-010-0188 please", "phone"),
    ("whatsapp +44 7700 900123", "phone"),
    ("IBAN GB82 WEST 1234 5698 7654 32", "iban"),
    ("iban DE89370400440532013000", "iban"),
    ("ssn 123-45-6789", "national_id"),
    ("NI AB 12 34 56 C", "national_id"),
    ("my password is Summer2024!", "password"),
    ("password: hunter22", "password"),
    ("the code you sent is 482913", "one_time_code"),
    ("OTP 8841", "one_time_code"),
    ("my password is hunter2", "password"),
    ("code 483920", "one_time_code"),
    ("phone: 020 7946 0958.", "phone"),
    ("nobody answers. ring me on 07700 900123 today", "phone"),  # UK mobile, 5 + 6 digits
    ("the number to try is 07700 900123", "phone"),
    ("call me on 555-0142", "phone"),  # a local number, said to be a phone
    ("text me 4155550142 pls", "phone"),
    ("my number is 555 0142", "phone"),
    ("Sam · call 206-555-0177", "phone"),
    ("__email__ PW: edeire20021967", "password"),
    ("my card 4111.1111.1111.1111 got charged", "card_number"),
    ("cc#5555555555554444 was used in Lagos", "card_number"),
    ("Card # 4012888888881881, can you block it", "card_number"),
    ("I paid with 4111-1111-1111-1111/exp 09/28", "card_number"),  # the expiry straight after a slash
    ("card 5555  5555  5555  4444", "card_number"),  # double spaces
    ("card 4111 - 1111 - 1111 - 1111", "card_number"),
    ("card 4111\u20131111\u20131111\u20131111", "card_number"),  # en dashes
    ("card 4111\n1111\n1111\n1111", "card_number"),  # one group per line
    ("card 4111_1111_1111_1111", "card_number"),
])
def test_each_detector(text, kind):
    assert kind in {s.type for s in detect_pii(text)}
    assert "[" + kind + "]" in redact(text)


def test_iban_checksum():
    assert iban_ok("GB82WEST12345698765432")
    assert not iban_ok("GB83WEST12345698765432")


@settings(max_examples=200)
@given(st.text(max_size=500))
def test_detection_never_fails_and_spans_are_in_bounds(text):
    spans = detect_pii(text)
    assert all(0 <= s.start < s.end <= len(text) for s in spans)
    assert all(a.end <= b.start for a, b in zip(spans, spans[1:]))  # no overlaps
    redact(text)


def test_long_hostile_text_is_fast_enough():
    rng = random.Random(1)
    text = " ".join(rng.choice(["4111", "1111", "+1", "555", "@", "a.b", "x" * 30]) for _ in range(20_000))
    detect_pii(text)  # completes (no catastrophic backtracking); the timeout guards the test


@given(noise, noise)
def test_redaction_keeps_the_text_around_the_spans(before, after):
    text = f"{before} mail sam.o@example.org or call +1 555 010 0147 {after}"
    assert redact(text) == f"{before} mail [email] or call [phone] {after}"


@given(st.lists(st.sampled_from(["4111 1111 1111 1111", "jo@example.com", "ssn 123-45-6789", "order #12345",
                                 "$19.99", "2026-11-20", "hi", "thanks!"]), max_size=8))
def test_redaction_removes_every_value_it_found(parts):
    text = ", ".join(parts)
    spans = detect_pii(text)
    redacted = redact(text, spans)
    for s in spans:
        assert text[s.start:s.end] not in redacted
    assert "order #12345" in redacted or "order #12345" not in text  # not PII, kept


@pytest.mark.parametrize("text,card", [
    ("qty 2 4111 1111 1111 1111 please", "4111 1111 1111 1111"),
    ("ssn 123-45-6789 4111 1111 1111 1111", "4111 1111 1111 1111"),
    ("amex 3782 822463 10005 exp 12/27", "3782 822463 10005"),
])
def test_a_card_beside_other_numbers_is_found(text, card):
    assert [text[s.start:s.end] for s in detect_pii(text) if s.type == "card_number"] == [card]


# Disguised values: invisible (format) characters, full-width / compatibility forms and slashes hide
# nothing. Spans point at the original text and cover the whole disguised value, so that redaction
# leaves none of it behind.

INVISIBLE = ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad"]  # ZWSP, ZWNJ, ZWJ, WJ, BOM, SHY


@pytest.mark.parametrize("zw", INVISIBLE)
def test_a_card_with_invisible_characters_between_its_groups_is_found_and_fully_redacted(zw):
    card = zw.join(["4111", "1111", "1111", "1111"])
    text = f"my card {card} was charged"
    assert [(s.type, s.start, s.end) for s in detect_pii(text)] == [("card_number", 8, 8 + len(card))]
    redacted = redact(text)
    assert redacted == "my card [card_number] was charged"
    assert not any(ch.isdigit() for ch in redacted) and zw not in redacted


def test_invisible_characters_inside_a_digit_group_still_make_a_card():
    text = "charged to 41\u200b11 1111 \u20601111 11\ufeff11!"
    assert [text[s.start:s.end] for s in detect_pii(text)] == ["41\u200b11 1111 \u20601111 11\ufeff11"]


@pytest.mark.parametrize("zw", INVISIBLE)
def test_an_email_with_an_invisible_character_before_the_at_sign_is_found_and_fully_redacted(zw):
    email = f"lucia.martinez{zw}@example.com"
    text = f"please write to {email} today"
    assert [(s.type, text[s.start:s.end]) for s in detect_pii(text)] == [("email", email)]
    redacted = redact(text)
    assert redacted == "please write to [email] today"
    assert "@" not in redacted and "lucia" not in redacted


@pytest.mark.parametrize("email", [
    "lucia.martinez\uff20example.com",  # FULLWIDTH COMMERCIAL AT
    "lucia.martinez\ufe6bexample.com",  # SMALL COMMERCIAL AT
    "lucia.martinez\uff20example\uff0ecom",  # and a FULLWIDTH FULL STOP
    "ｌｕｃｉａ＠ｅｘａｍｐｌｅ．ｃｏｍ",  # all of it full-width
])
def test_an_email_written_with_full_width_characters_is_found_and_fully_redacted(email):
    text = f"my login is {email} (old account)"
    assert [(s.type, text[s.start:s.end]) for s in detect_pii(text)] == [("email", email)]
    redacted = redact(text)
    assert redacted == "my login is [email] (old account)"
    assert not {"@", "\uff20", "\ufe6b"} & set(redacted)


@pytest.mark.parametrize("card", [
    "４１１１ １１１１ １１１１ １１１１",  # full-width digits (U+FF10..U+FF19)
    "４１１１\u3000１１１１\u3000１１１１\u3000１１１１",  # ... with ideographic spaces
    "４１１１１１１１１１１１１１１１",
    "4111\u00a01111\u00a01111\u00a01111",  # no-break spaces between the groups
])
def test_a_card_written_with_full_width_digits_or_odd_spaces_is_found_and_fully_redacted(card):
    text = f"card {card} charged twice"
    assert [(s.type, text[s.start:s.end]) for s in detect_pii(text)] == [("card_number", card)]
    redacted = redact(text)
    assert redacted == "card [card_number] charged twice"
    assert not any(ch.isdigit() for ch in redacted)


@pytest.mark.parametrize("card", ["4111/1111/1111/1111", "5555/5555/5555/4444", "3782/822463/10005"])
def test_a_card_in_slashed_groups_is_found_and_fully_redacted(card):
    text = f"they billed {card} again"
    assert [(s.type, text[s.start:s.end]) for s in detect_pii(text)] == [("card_number", card)]
    assert not any(ch.isdigit() for ch in redact(text))


@pytest.mark.parametrize("text", [
    "they billed 4111/1111/1111/1112 again",  # slashed, but fails Luhn
    "renews on 12/05/2026, billed 05/12/2026",
    "statement 2026/12/05 and 2026/11/20",
    "see https://x.com/samm17/status/2123570757134041181 and https://t.co/4bXk9Lq2Zp for details",
    "order \uff03\uff11\uff12\uff13\uff14\uff15 ships \uff11\uff12/\uff10\uff15/\uff12\uff10\uff12\uff16",  # full-width
    "paid \uff04\uff11\uff12\uff0e\uff19\uff19 for order 123\u200b456\u200b789",
    "i\ufe0f love it \U0001f468\u200d\U0001f469\u200d\U0001f467 version 8.4.22\u200b.515",
    "my password\u200b isn\u2019t working",
])
def test_disguise_characters_create_no_false_positives(text):
    assert detect_pii(text) == []


def test_spans_after_emoji_joiners_and_variation_selectors_still_point_into_the_original():
    text = "i\ufe0f \U0001f468\u200d\U0001f469 mail lucia\u200b@example.com or card 4111\u200b1111\u200b1111\u200b1111"
    spans = detect_pii(text)
    assert [(s.type, text[s.start:s.end]) for s in spans] == [
        ("email", "lucia\u200b@example.com"), ("card_number", "4111\u200b1111\u200b1111\u200b1111")]
    assert redact(text, spans) == "i\ufe0f \U0001f468\u200d\U0001f469 mail [email] or card [card_number]"


zw_noise = st.text(alphabet=st.sampled_from(list("abcdefghij klmnop,.!?😀ßé\n") + INVISIBLE), max_size=40)


@st.composite
def disguised(draw, values) -> str:
    """A value with invisible characters inserted at random positions strictly inside it."""
    value = draw(values)
    for p in sorted(draw(st.lists(st.integers(1, len(value) - 1), min_size=1, max_size=6)), reverse=True):
        value = value[:p] + draw(st.sampled_from(INVISIBLE)) + value[p:]
    return value


@given(disguised(card_numbers()), zw_noise, zw_noise)
def test_a_card_with_invisible_characters_anywhere_inside_is_found_with_its_original_span(card, before, after):
    text = f"{before} {card} {after}"
    spans = [s for s in detect_pii(text) if s.type == "card_number"]
    assert [(s.start, s.end) for s in spans] == [(len(before) + 1, len(before) + 1 + len(card))]
    assert not any(ch.isdigit() for ch in redact(text))  # the noise has no digits: none of the card is left


@given(disguised(st.builds(lambda u, h, t: f"{u}@{h}.{t}", local, domain, st.sampled_from(["com", "org", "de"]))),
       zw_noise, zw_noise)
def test_an_email_with_invisible_characters_anywhere_inside_is_found_with_its_original_span(email, before, after):
    text = f"{before} {email} {after}"
    spans = [s for s in detect_pii(text) if s.type == "email"]
    assert [text[s.start:s.end] for s in spans] == [email]
    assert "@" not in redact(text)
