"""Forward passes of similar length: which texts the encoder runs together.

A batch is padded to its longest text, and every padded token costs as much as a real one. Care
tweets run from 5 to 90 tokens (median 22), so 32 of them in one pass spend about half the work on
padding. Splitting sorted lengths into runs of near-equal length removes most of it, at the price
of a fixed cost per pass; the split below is the cheapest under a cost model measured for the int8
encoder on this 2-core machine (per pass about 1.5 ms, per padded token 34 µs, attention 0.36 µs
per token and token of length). On replayed care tweets it took the int8 encoder from 233–241 to
487 texts/s in calls of 32 texts and from 374–378 to 608 in calls of 128 (`bench/triage.py`
measures the stage).
"""

from __future__ import annotations

PASS_MS = 1.5  # fixed cost of one forward pass
TOKEN_MS = 0.034  # per padded token
ATTENTION_MS = 0.00036  # per padded token and token of length (attention grows with length)


def pass_cost(n: int, length: int) -> float:
    """Estimated milliseconds of one pass of ``n`` texts padded to ``length`` tokens."""
    return PASS_MS + n * length * (TOKEN_MS + ATTENTION_MS * length)


def length_groups(lengths: list[int], max_batch: int) -> list[list[int]]:
    """Indices of ``lengths`` split into passes of at most ``max_batch`` texts, shortest first,
    at the least total :func:`pass_cost`: an exact split of the sorted lengths (dynamic programming,
    ``len(lengths) * max_batch`` steps)."""
    if max_batch < 1:
        raise ValueError("max_batch must be at least 1")
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    n = len(order)
    best = [0.0] + [float("inf")] * n  # best[j]: cheapest cost of the first j sorted texts
    start = [0] * (n + 1)
    for j in range(1, n + 1):
        longest = lengths[order[j - 1]]  # the group ending at j is padded to its last (longest) text
        for i in range(max(0, j - max_batch), j):
            cost = best[i] + pass_cost(j - i, longest)
            if cost < best[j]:
                best[j], start[j] = cost, i
    groups: list[list[int]] = []
    j = n
    while j > 0:
        groups.append(order[start[j]:j])
        j = start[j]
    return groups[::-1]
