"""Passes of similar length: every text runs exactly once, no pass exceeds the batch size, and the
split is the cheapest under the cost model (checked against every split of small inputs)."""

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from triage.batching import length_groups, pass_cost


def _cost(groups: list[list[int]], lengths: list[int]) -> float:
    return sum(pass_cost(len(g), max(lengths[i] for i in g)) for g in groups)


@settings(max_examples=200, deadline=None)
@given(lengths=st.lists(st.integers(1, 128), max_size=60), max_batch=st.integers(1, 40))
def test_every_text_runs_once_in_passes_no_larger_than_the_batch_shortest_first(lengths, max_batch):
    groups = length_groups(lengths, max_batch)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    assert all(1 <= len(g) <= max_batch for g in groups)
    flat = [lengths[i] for g in groups for i in g]
    assert flat == sorted(flat)  # each pass is a run of the sorted lengths


@settings(max_examples=100, deadline=None)
@given(lengths=st.lists(st.integers(1, 100), min_size=1, max_size=9), max_batch=st.integers(1, 9))
def test_no_other_split_of_the_sorted_lengths_is_cheaper(lengths, max_batch):
    ordered = sorted(range(len(lengths)), key=lengths.__getitem__)
    best = min(
        _cost(parts, lengths)
        for cuts in itertools.product([False, True], repeat=len(ordered) - 1)
        for parts in [_split(ordered, cuts)]
        if all(len(p) <= max_batch for p in parts)
    )
    assert _cost(length_groups(lengths, max_batch), lengths) == pytest.approx(best)


def _split(ordered: list[int], cuts: tuple[bool, ...]) -> list[list[int]]:
    parts, cur = [], [ordered[0]]
    for i, cut in zip(ordered[1:], cuts):
        if cut:
            parts.append(cur)
            cur = []
        cur.append(i)
    return parts + [cur]


def test_short_and_long_tweets_run_apart_and_equal_ones_together():
    lengths = [12] * 16 + [80] * 16
    groups = length_groups(lengths, 32)
    assert [sorted({lengths[i] for i in g}) for g in groups] == [[12], [80]]
    assert length_groups([20] * 32, 32) == [list(range(32))]  # one pass: nothing to save
    assert _cost(groups, lengths) < pass_cost(32, 80)  # the single padded pass costs more


def test_a_batch_size_below_one_is_refused():
    with pytest.raises(ValueError):
        length_groups([3, 4], 0)
