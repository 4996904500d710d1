"""The stream-field codec: any Python text survives; anything else is a clear CodecError."""

from __future__ import annotations

import random
from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.bus.codec import CodecError, decode, decode_dead_letter, encode, encode_dead_letter

# every code point, lone surrogates and controls included (hypothesis leaves out surrogates by default)
ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=200)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | ANY_TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(ANY_TEXT, inner, max_size=4),
    max_leaves=20,
)
PAYLOADS = st.dictionaries(ANY_TEXT, JSON_VALUES, max_size=6)


def as_redis_returns(fields: dict) -> dict[bytes, bytes]:
    """Redis hands fields back as bytes (the client encodes str as UTF-8)."""
    return {k if isinstance(k, bytes) else k.encode(): v if isinstance(v, bytes) else v.encode()
            for k, v in fields.items()}


@given(key=ANY_TEXT, payload=PAYLOADS, attempts=st.integers(1, 10**6), published=st.floats(0, 4e9))
@settings(max_examples=300, deadline=None)
def test_any_message_round_trips(key, payload, attempts, published):
    fields = encode(key, payload, attempts, published)
    assert all(isinstance(v, bytes) for v in fields.values())  # no client-side text encoding in the way
    for raw in (fields, {k: v.decode("utf-8", "surrogatepass") for k, v in fields.items()}):
        msg = decode(raw)
        assert (msg.key, msg.payload, msg.attempts, msg.published_at, msg.group) == (
            key, payload, attempts, published, None)


@given(group=ANY_TEXT)
def test_a_retry_copy_keeps_its_group(group):
    assert decode(as_redis_returns(encode("k", {}, 2, 1.0, group))).group == group


HI, LO = chr(0xD800), chr(0xDFFF)  # built with chr(): linters conflate lone-surrogate literals


@pytest.mark.parametrize("text", [HI + LO, "\U000103ff", chr(0xDBFF) + chr(0xDC00) + "\U0010fc00", LO + HI,
                                  "🎉" + chr(0xD83C) + chr(0xDF89), "\\ud800\\udfff"])
def test_adjacent_lone_surrogates_stay_distinct_from_the_character_they_would_pair_into(text):
    msg = decode(as_redis_returns(encode(text, {"t": text, text: [text]})))
    assert msg.key == text and msg.payload == {"t": text, text: [text]}
    assert len(msg.key) == len(text)


def test_megabytes_of_hostile_text_round_trip():
    rng = random.Random(7)
    pool = ["\x00", "\x1b", "\ud800", "\udfff", "é", "🎉", "\u2028", "a", "\n", '"', "\\"]
    text = "".join(rng.choice(pool) for _ in range(1_200_000))
    msg = decode(as_redis_returns(encode(text[:1000], {"text": text, "list": [text[:10]] * 3})))
    assert msg.key == text[:1000] and msg.payload["text"] == text and msg.payload["list"] == [text[:10]] * 3


def test_first_publish_time_defaults_to_now():
    import time

    before = time.time()
    assert before <= decode(encode("k", {})).published_at <= time.time()


@pytest.mark.parametrize("payload, match", [({"at": date(2026, 1, 1)}, "date"), ({"s": {1, 2}}, "set"),
                                            (["a"], "must be a dict"), ("text", "must be a dict")])
def test_a_payload_that_is_not_a_json_object_is_refused_clearly(payload, match):
    with pytest.raises(CodecError, match=match):
        encode("k", payload)


@pytest.mark.parametrize("key, attempts", [(b"bytes-key", 1), (None, 1), ("k", 0), ("k", True), ("k", "2")])
def test_bad_keys_and_attempts_are_refused(key, attempts):
    with pytest.raises(CodecError):
        encode(key, {}, attempts)


GOOD = as_redis_returns(encode("key", {"a": 1}, 2, 5.0))


@pytest.mark.parametrize("fields", [
    {},
    {b"k": b'"key"'},                                        # no payload
    {**GOOD, b"p": b'{"a": 1'},                              # truncated JSON
    {**GOOD, b"p": b"[1, 2]"},                               # not an object
    {**GOOD, b"k": b"42"},                                   # key not a string
    {**GOOD, b"k": b"\xff\xfe"},                             # not UTF-8
    {**GOOD, b"a": b"zero"}, {**GOOD, b"a": b"0"},           # bad attempts
    {**GOOD, b"t": b"nan"}, {**GOOD, b"t": b"-1"},           # bad time
    {**GOOD, b"g": b"[]"},                                   # bad group
    {**GOOD, b"p": b"[" * 100_000 + b"]" * 100_000},        # nesting deeper than the parser's stack
    {b"\xff": b"x", **GOOD, b"k": None},                     # wrong types altogether
])
def test_corrupted_entries_raise_codec_error(fields):
    with pytest.raises(CodecError):
        decode(fields)


@given(st.dictionaries(st.binary(max_size=8), st.binary(max_size=40), max_size=6))
def test_random_bytes_never_escape_as_another_exception(fields):
    try:
        decode(fields)
    except CodecError:
        pass


@given(key=ANY_TEXT, payload=PAYLOADS, reason=ANY_TEXT)
@settings(max_examples=100, deadline=None)
def test_dead_letter_fields_round_trip(key, payload, reason):
    msg = decode(encode(key, payload, 3, 9.5))
    fields = encode_dead_letter("triage", "triage", "1-0", reason, msg)
    dead = decode_dead_letter("5-0", as_redis_returns(fields))
    assert (dead.id, dead.topic, dead.key, dead.payload, dead.attempts) == ("5-0", "triage", key, payload, 3)
    assert dead.extra == {"group": "triage", "entry_id": "1-0", "published_at": 9.5}
    assert dead.reason == reason.encode("utf-8", "backslashreplace").decode()[:2000]


def test_an_undecodable_entry_is_kept_byte_for_byte_in_its_dead_letter():
    garbage = {b"k": b"\xff\xfe", b"junk": b"\x00" * 3}
    fields = encode_dead_letter("triage", "triage", "1-0", "undecodable", None, garbage, "field is not UTF-8 text")
    assert fields[b"raw:k"] == b"\xff\xfe" and fields[b"raw:junk"] == b"\x00" * 3
    dead = decode_dead_letter("2-0", as_redis_returns(fields))
    assert dead.reason == "undecodable" and dead.extra["undecodable"] == "field is not UTF-8 text"
    assert dead.extra["raw"] == {"k": "\\xff\\xfe", "junk": "\x00" * 3} and dead.payload == {}
