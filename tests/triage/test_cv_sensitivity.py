"""Cross-validation that chooses the sensitivity head's regularization: a held row is only ever
predicted by a head that did not train on it, and rows that are not held always train."""

import random

import numpy as np

from triage.cv_sensitivity import cross_validate

KINDS = {
    "security": ["someone {v} my account and changed the email", "a stranger {v} my login from another country"],
    "fraud": ["charges I never {v} on my card", "payments I did not {v} keep leaving my account"],
    "account": ["I forgot my password and {v} the reset", "please {v} my billing address"],
    "none": ["love the new {v} playlist", "the app {v} slowly today"],
}
VERBS = ["got", "used", "made", "took", "saw", "had", "tried", "fixed", "shared", "updated"]


def _rows(n: int = 40, seed: int = 1) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    texts, labels = [], []
    for label, patterns in KINDS.items():
        for i in range(n):
            texts.append(rng.choice(patterns).format(v=rng.choice(VERBS)) + f" #{label[:2]}{i} x{rng.random():.6f}")
            labels.append(label)
    return texts, labels


def test_separable_posts_are_found_by_every_fold():
    texts, labels = _rows()
    held = np.ones(len(texts), dtype=bool)
    got = cross_validate(texts, labels, [1.0] * len(texts), None, held, 4.0, lexical_dim=2**12)
    assert got["held"] == len(texts)
    assert got["escalate_precision"] >= 0.95 and got["escalate_recall"] >= 0.95
    assert 0 < got["f2"] <= 1 and 0 < got["f1"] <= 1


def test_a_held_row_is_never_predicted_by_a_head_that_trained_on_it():
    # labels shuffled over unique texts: a head that had trained on the row would recall its label
    # (each text carries its own n-grams); one that did not can only guess
    texts, labels = _rows()
    random.Random(7).shuffle(labels)
    held = np.ones(len(texts), dtype=bool)
    got = cross_validate(texts, labels, [1.0] * len(texts), None, held, 100.0, lexical_dim=2**14)
    assert got["f1"] < 0.7


def test_rows_not_held_always_train():
    texts, labels = _rows()
    held = np.array([i % 2 == 0 for i in range(len(texts))])  # only half is ever measured
    got = cross_validate(texts, labels, [1.0] * len(texts), None, held, 4.0, lexical_dim=2**12)
    assert got["held"] == int(held.sum())
    assert got["escalate_recall"] >= 0.95  # the other half trains every fold
