"""Normalization holds for any text: storable, bounded, stable."""

from hypothesis import given, settings
from hypothesis import strategies as st

from listener.protocol import NormalizedMention
from listener.text import MAX_TEXT_CHARS, clean_text, content_key

any_text = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=3000)


@given(any_text)
def test_cleaned_text_is_valid_utf8_without_control_characters(text):
    cleaned, truncated = clean_text(text)
    cleaned.encode("utf-8")  # never raises: lone surrogates are gone
    assert "\x00" not in cleaned
    assert not any(ord(c) < 32 and c not in "\t\n\r" for c in cleaned)
    assert len(cleaned) <= MAX_TEXT_CHARS
    assert truncated == (len(text) > MAX_TEXT_CHARS and len(cleaned) == MAX_TEXT_CHARS) or not truncated


@given(any_text)
def test_cleaning_is_idempotent(text):
    once, _ = clean_text(text)
    assert clean_text(once)[0] == once


@settings(max_examples=30)
@given(st.integers(MAX_TEXT_CHARS + 1, MAX_TEXT_CHARS * 3))
def test_very_long_text_is_cut_to_the_limit(n):
    cleaned, truncated = clean_text("a" * n)
    assert truncated and len(cleaned) == MAX_TEXT_CHARS


@given(st.text(alphabet="abcdefgh .,!?", max_size=200), st.sampled_from(["@AcmeHelp ", "RT @someone_else: ", ""]))
def test_content_key_ignores_handles_retweets_links_case_and_spacing(text, prefix):
    a = content_key(f"{prefix}{text} https://t.co/abc")
    b = content_key(f"  @user  {text.upper()}   https://t.co/xyz ")
    assert a == b


def test_content_key_tells_different_texts_apart():
    assert content_key("my order is late") != content_key("my order is lost")


@given(any_text, st.text(max_size=30))
def test_mentions_round_trip_through_their_dict_form(text, handle):
    from datetime import datetime, timezone

    m = NormalizedMention(platform="x", external_id="1", text=text, author_handle=handle,
                          created_at=datetime(2026, 11, 20, tzinfo=timezone.utc))
    assert NormalizedMention.from_dict(m.to_dict()) == m
