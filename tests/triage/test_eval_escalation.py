"""The escalation evaluation's view of follow-ups: held-out real tweets read alone, and as routed,
where a customer's later tweets join the case an earlier escalated tweet opened."""

from __future__ import annotations

import pytest

from triage.eval_escalation import boundaries, follow_ups


@pytest.mark.timeout(300)
def test_follow_ups_of_an_escalated_customer_count_as_routed_private(shared_data, cascade_engine):
    shared = shared_data("twcs/spotifycares_inbound.csv").parents[1]
    found = follow_ups(shared, cascade_engine)
    alone, routed = found["alone"], found["with_open_cases"]
    assert found["joined"] >= 1  # some held-out tweets follow an escalated tweet of their author
    assert routed["escalate_recall"] >= alone["escalate_recall"]  # joining a case only adds escalations
    narrower = follow_ups(shared, cascade_engine, days=0.0)  # no case stays open: nothing joins
    assert narrower["joined"] == 0 and narrower["with_open_cases"] == narrower["alone"]


def test_the_boundary_posts_are_measured_boundary_by_boundary():
    from triage.train import read_csv
    from triage.train_default import HERE, WRITTEN_EVAL

    kinds = boundaries("boundaries_written")
    texts, labels = read_csv(HERE / "data" / WRITTEN_EVAL["boundaries_written"])
    assert len(kinds) == len(texts)
    assert set(kinds) == {"devices_sessions", "money_words", "phishing_lost", "follow_ups", "other_languages",
                          "long_posts"}
    for kind in set(kinds):  # each boundary has posts to escalate and posts not to
        mine = {lab for lab, k in zip(labels, kinds) if k == kind}
        assert mine & {"security", "fraud"} and mine & {"none", "account"}, kind
    assert boundaries("unseen_written") is None and boundaries("twcs_real") is None  # no such column / file
