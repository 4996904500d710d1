"""Training: the escalation cut of a sensitivity head is cross-validated on the social posts it is
judged on, and the engine escalates from that cut."""

import numpy as np
import pytest

from triage.heads import Head
from triage.train import DataError, cv_escalate_threshold, fit_head, set_escalate_threshold

DIM = 2**12
CLEAR = {
    "security": "someone hacked my account and changed the password {}",
    "fraud": "charges on my card that i did not make {}",
    "account": "cannot log in the reset email never comes {}",
    "none": "love the new playlist feature {}",
}
AMBIGUOUS = "there is a strange device in my list {}"


def _rows() -> tuple[list[str], list[str], list[bool]]:
    """Clear rows of every level, plus one ambiguous phrasing: escalating in the judged (social)
    rows, harmless in the rest (chatbot-style rows that only teach the head)."""
    texts, labels, judged = [], [], []
    for label, pattern in CLEAR.items():
        for i in range(20):
            texts.append(pattern.format(i))
            labels.append(label)
            judged.append(i % 2 == 0)
    for i in range(12):
        texts.append(AMBIGUOUS.format(i))
        labels.append("security")
        judged.append(True)
    for i in range(14):
        texts.append(AMBIGUOUS.format(100 + i))
        labels.append("none")
        judged.append(False)
    return texts, labels, judged


def test_the_cut_lowers_until_the_judged_rows_ambiguous_escalations_are_caught():
    texts, labels, judged = _rows()
    cut, figures = cv_escalate_threshold(texts, labels, None, judged, lexical_dim=DIM, c=1.0)
    assert 0.15 <= cut < 0.5
    assert figures["at_cut"]["recall"] > figures["at_0.5"]["recall"]
    assert figures["at_cut"]["f1"] >= figures["at_0.5"]["f1"]
    assert figures["rows"] == sum(judged) and figures["escalate"] == 20 + 12  # half the clear security and fraud rows, every ambiguous one


def test_a_cut_needs_escalations_among_the_judged_rows():
    texts, labels, judged = _rows()
    only_harmless = [j and lab not in ("security", "fraud") for j, lab in zip(judged, labels)]
    with pytest.raises(DataError, match="no security or fraud"):
        cv_escalate_threshold(texts, labels, None, only_harmless, lexical_dim=DIM, c=1.0)


def test_setting_the_cut_restamps_the_head_and_keeps_its_probabilities():
    texts, labels, _ = _rows()
    head = fit_head("sensitivity", texts, labels, None, lexical_dim=DIM, c=1.0)
    before, version = head.proba(texts[:5], None), head.version
    set_escalate_threshold(head, 0.38)
    assert head.meta["escalate_threshold"] == 0.38 and head.version != version
    np.testing.assert_array_equal(head.proba(texts[:5], None), before)


def test_the_engine_escalates_from_the_cut_and_otherwise_takes_the_likeliest_other_level():
    from triage.engine import _picks

    head = Head(task="sensitivity", labels=["account", "fraud", "none", "security"], weights=np.zeros((DIM, 4)),
                bias=np.zeros(4), uses_embedding=False, lexical_dim=DIM, version="t", meta={"escalate_threshold": 0.38})
    p = np.array([[0.10, 0.15, 0.50, 0.25],   # p(escalate) 0.40: escalates, as security (the likelier of the two)
                  [0.20, 0.10, 0.50, 0.20],   # 0.30: below the cut, none
                  [0.60, 0.30, 0.05, 0.05]])  # 0.35: below the cut, account
    assert [head.labels[i] for i in _picks(head, p)] == ["security", "none", "account"]
    head.meta.pop("escalate_threshold")
    assert [head.labels[i] for i in _picks(head, p)] == ["none", "none", "account"]  # plain argmax
