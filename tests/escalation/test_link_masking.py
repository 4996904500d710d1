"""A secure link opens a customer's private channel: wherever a text may quote one (an outbox shown
to agents and bots, a dead letter shown to an admin, a privacy export), it is masked, however it was
pasted: with or without its scheme, or URL-encoded as link shorteners, trackers and "share" buttons
write it (``%2F``, ``%2f``, double-encoded ``%252F``). Nothing else in the text changes."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from escalation.links import shown_without_links

TOKEN = "Q7-fW2_kP9xZ4mB1vN8cR5tY3hJ6gL0sD-aE_uK2oIw"  # token_urlsafe(32)'s shape, fixed: stable test ids
TOKEN_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
MASK = "[secure link]"


@pytest.mark.parametrize("quoted", [
    f"https://care.example.com/secure/{TOKEN}",
    f"http://care.example.com:8080/care/secure/{TOKEN}",
    f"care.example.com/secure/{TOKEN}",  # the scheme left off when pasted back
    f"/secure/{TOKEN}",
    f"https%3A%2F%2Fcare.example.com%2Fsecure%2F{TOKEN}",  # a share button's encodeURIComponent
    f"https%253A%252F%252Fcare.example.com%252Fsecure%252F{TOKEN}",  # encoded twice (a tracker's redirect)
    f"https%3a%2f%2fcare.example.com%2fsecure%2f{TOKEN}",  # lower-case escapes
    f"https://care.example.com%2Fsecure/{TOKEN}",  # some separators encoded, others not
    f"care.example.com%2Fsecure%2F{TOKEN}",
    f"%2Fsecure%2F{TOKEN}",
])
def test_a_quoted_secure_link_is_masked_and_the_words_around_it_kept(quoted):
    shown = shown_without_links(f"this link fails ({quoted}), help")
    assert TOKEN not in shown and shown == f"this link fails ({MASK}), help"


def test_a_link_inside_a_trackers_url_is_masked_with_the_url_that_leads_to_it():
    """The tracker's URL redirects to the secure page, so it is a secure link too; its parameters
    after the token open nothing and stay, as do the escapes after it."""
    text = f"see https://t.example/r?u=https%3A%2F%2Fcare.example.com%2Fsecure%2F{TOKEN}&utm_source=x%20thanks"
    assert shown_without_links(text) == f"see {MASK}&utm_source=x%20thanks"


def test_text_without_a_secure_link_is_left_as_it_is():
    text = "see https://status.example.com/incidents/42 and /secure/ with no token"
    assert shown_without_links(text) == text


@pytest.mark.parametrize("text", [
    "100% sure: https://status.example.com/search?q=secure%2Flogin%20help&page=2",
    "https%3A%2F%2Fshop.example.com%2Fsecure%2Fcheckout%3Fitem%3D42",  # a short path segment is no token
    f"https%3A%2F%2Fshop.example.com%2Finsecure%2F{'a' * 43}",  # "insecure" is not the secure pages' path
    "50%2F50 odds, %E2%9C%93 done, a lone % and %zz",
])
def test_unrelated_encoded_urls_and_percent_signs_are_left_as_they_are(text):
    assert shown_without_links(text) == text


# --- properties ---------------------------------------------------------------------------------

tokens = st.text(TOKEN_CHARS, min_size=40, max_size=64)  # TOKEN_PATTERN: token_urlsafe(32) is 43


@st.composite
def separator(draw, char: str) -> str:
    """``char`` as written, or percent-escaped in either case, its "%" escaped again 0 to 3 times."""
    if draw(st.booleans()):
        return char
    digits = f"{ord(char):02X}"
    digits = digits.lower() if draw(st.booleans()) else digits
    return "%" + "25" * draw(st.integers(0, 3)) + digits


@st.composite
def quoted_links(draw, token: str) -> str:
    """A secure link with ``token`` as someone may quote it: a URL, without its scheme, the path
    alone, or inside a tracker's redirect, each ``:`` and ``/`` written or encoded independently."""
    def slash() -> str:
        return draw(separator("/"))

    path = f"{slash()}secure{slash()}{token}"
    host = draw(st.sampled_from(["care.example.com", "care.example.com:8443", "help.brand.example/care"]))
    host = host.replace("/", slash()).replace(":", draw(separator(":")))
    url = f"https{draw(separator(':'))}{slash()}{slash()}{host}{path}"
    return draw(st.sampled_from([url, f"{host}{path}", path, f"https://t.example/r?u={url}"]))


noise = st.text(max_size=40)  # any characters, "%" and escapes included


@given(token=tokens, data=st.data(), before=noise, after=noise)
def test_any_token_however_its_separators_are_encoded_is_masked_and_the_noise_kept(token, data, before, after):
    link = data.draw(quoted_links(token))
    shown = shown_without_links(f"{before} {link} {after}")
    assert shown == f"{before} {MASK} {after}"  # the link, and nothing but the link, masked


@given(token=tokens, data=st.data(), noise=noise)
def test_masking_twice_changes_nothing_more(token, data, noise):
    once = shown_without_links(f"{noise} {data.draw(quoted_links(token))}{noise}")
    assert shown_without_links(once) == once


segments = st.text(TOKEN_CHARS + ".~", max_size=39)  # too short to be a token, even after "secure"
unrelated = st.builds(
    lambda host, path, query: f"https://{host}.example/{'/'.join(path)}?q={query}",
    st.from_regex(r"[a-z]{1,12}", fullmatch=True),
    st.lists(st.one_of(segments, st.sampled_from(["secure", "insecure", "security", "secured"])), max_size=6),
    st.text(max_size=30))


@given(url=unrelated, times=st.integers(0, 3), before=noise, after=noise)
def test_unrelated_urls_encoded_any_number_of_times_are_left_as_they_are(url, times, before, after):
    for _ in range(times):
        url = quote(url, safe="")
    text = f"{before} {url} {after}"
    assert shown_without_links(text) == text


@pytest.mark.parametrize("hostile", [
    "a" * 1_000_000 + " /secure/",  # a long run before the marker: every start was tried
    "a/" * 500_000 + "/secure/",  # a long path of segments
    "%41" * 333_333 + "/secure/",  # the same once decoded
])
def test_a_megabyte_of_hostile_text_is_read_once_not_once_per_character(hostile):
    """Masking runs on every text a page or export shows; a pattern that could start anywhere made it
    quadratic (a 40 KB post took 40 s, a megabyte hours). It must finish, here within a minute on any
    machine (a hang guard, not a speed measure), and change nothing without a token."""
    import threading

    out: list[str] = []
    worker = threading.Thread(target=lambda: out.append(shown_without_links(hostile)), daemon=True)
    worker.start()
    worker.join(timeout=60)  # a daemon: a regression fails here instead of holding the suite for hours
    assert out == [hostile]
