"""Priority orders the queue: sensitive, upset, exposed and far-reaching posts first; spam last."""

from triage.priority import priority


def base(**kw):
    args = dict(sentiment="neutral", sensitivity="none", issue_type="product_question", toxic=False, spam=False,
                pii_exposed=False, followers=None)
    args.update(kw)
    return priority(**args)


def test_a_hacked_account_outranks_an_angry_outage_which_outranks_a_question():
    hacked, _ = base(sensitivity="security", issue_type="account_security")
    outage, _ = base(sentiment="negative", issue_type="outage")
    question, _ = base()
    assert hacked > outage > question


def test_every_bump_is_explained():
    score, why = base(sentiment="negative", sensitivity="fraud", issue_type="billing", pii_exposed=True,
                      followers=10_000)
    assert score == 100.0  # capped
    assert any("sensitivity fraud" in w for w in why) and any("negative" in w for w in why)
    assert any("personal data" in w for w in why) and any("reach (10000 followers)" in w for w in why)


def test_reach_grows_with_followers_but_is_bounded():
    small, _ = base(followers=10)
    big, _ = base(followers=100_000)
    huge, _ = base(followers=10**9)
    assert small < big and huge - big <= 20


def test_spam_sinks_to_the_bottom_and_scores_stay_in_range():
    spam, why = base(spam=True, issue_type="other")
    assert spam == 0.0 and "-40 spam" in why
    for kw in ({"toxic": True}, {"issue_type": "praise"}, {"sensitivity": "security", "followers": 10**7}):
        score, _ = base(**kw)
        assert 0.0 <= score <= 100.0


def test_a_negative_follower_count_from_a_bad_import_is_no_reach_not_an_error():
    assert base(followers=-5) == base(followers=0) == base(followers=None)
