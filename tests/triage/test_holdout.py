"""The unflattering sentiment validation: a validation tweet that is a training tweet once handles,
links, case and punctuation are normalized counts as seen, and only unseen ones are kept."""

from __future__ import annotations

from triage.holdout import near_key, unseen


def test_a_tweet_with_a_real_handle_and_its_masked_copy_are_the_same_tweet():
    assert near_key("@john_doe I may or may not have searched it up on Google!") == \
        near_key("@user I may or may not have searched it up on google")
    assert near_key("look http://t.co/abc  at this") == near_key("Look https://example.com/x at this!!")
    assert near_key("I may have searched it") != near_key("I may not have searched it")


def test_only_validation_rows_missing_from_training_are_kept_with_their_labels():
    train = ["@ann National hot dog day, then national dance day", "Tebow again..."]
    texts = ["@user national hot dog day then national dance day", "a new tweet about Sunday", "TEBOW AGAIN"]
    assert unseen(train, texts, ["positive", "neutral", "negative"]) == (["a new tweet about Sunday"], ["neutral"])
