"""The JSON columns' codec (:mod:`models.json_codec`): whatever orjson would read or write
differently, every value comes back exactly as the standard library's ``json`` gives it."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from models import TriageResult
from models.json_codec import dumps, loads

ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=40)  # lone surrogates too
NUMBERS = st.integers(-(2**80), 2**80) | st.floats()  # beyond 64 bits, NaN and infinities included
VALUES = st.recursive(
    st.none() | st.booleans() | NUMBERS | ANY_TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(ANY_TEXT, inner, max_size=4),
    max_leaves=20,
)


def same(a, b) -> bool:
    """Equal, NaN equal to NaN and 1 not equal to 1.0 (the type read back matters)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a == b


@given(VALUES)
@settings(max_examples=400, deadline=None)
def test_any_value_comes_back_as_the_json_module_gives_it(value):
    assert same(loads(dumps(value)), json.loads(json.dumps(value)))


@given(VALUES)
@settings(max_examples=300, deadline=None)
def test_text_the_json_module_wrote_reads_the_same(value):
    text = json.dumps(value)
    assert same(loads(text), json.loads(text))
    assert same(loads(text.encode("utf-8", "surrogatepass")), json.loads(text))


@pytest.mark.parametrize("value, kind", [
    ({"n": float("nan")}, float), ({"big": 2**70}, int), ({"neg": -(2**64)}, int), ([float("-inf")], float),
    ({"u": 18446744073709551615}, int), ({"t": "\ud800"}, str),
])
def test_what_orjson_alone_would_change_is_written_by_json(value, kind):
    back = loads(dumps(value))
    assert same(back, json.loads(json.dumps(value)))
    assert type(next(iter(back.values())) if isinstance(back, dict) else back[0]) is kind


def test_ordinary_documents_are_compact_and_unescaped():
    assert dumps({"a": [1, 2.5, None], "é": "🎉"}) == '{"a":[1,2.5,null],"é":"🎉"}'


@pytest.mark.parametrize("value", [{"at": datetime(2026, 1, 1, tzinfo=UTC)}, {1: "x"}, {"s": {1}}, {(1, 2): 3}])
def test_values_json_cannot_write_fail_or_convert_as_json_does(value):
    try:
        expected = json.dumps(value)
    except TypeError:
        with pytest.raises(TypeError):
            dumps(value)
    else:
        assert loads(dumps(value)) == json.loads(expected)


@pytest.mark.parametrize("text", ["{", "[1,]", "", "nul", '{"a":1}x'])
def test_invalid_text_is_a_value_error_as_with_json(text):
    with pytest.raises(ValueError):
        loads(text)


async def test_stored_scores_come_back_exactly_through_the_database(tmp_path):
    from models.db import Database
    from tests.models.test_bulk import store_scores

    db = Database(f"sqlite+aiosqlite:///{tmp_path}/codec.db")
    await db.upgrade()
    scores = {"p": 0.1 + 0.2, "tiny": 5e-324, "big": 2**70, "low": -(2**63) - 1, "nan": float("nan"),
              "id": "1234567890123456789012", "text": "é\u2028\x00🎉"}
    try:
        async with db.session() as s:
            await store_scores(s, scores)
            await s.commit()
        async with db.session() as s:
            assert same(await s.scalar(select(TriageResult.scores)), scores)
    finally:
        await db.close()
