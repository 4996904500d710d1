"""The profanity block: alt-profanity-check's own model, read as arrays (fast), gives its answers."""

import numpy as np

OFFENSIVE = ["@AcmeHelp you are all useless idiots", "@AcmeHelp fix your shit app, you morons"]
BENIGN = ["@AcmeHelp thanks, the new playlist feature is great", "@AcmeHelp how do I change my plan?"]


def test_the_profanity_block_is_alt_profanity_checks_own_answer():
    """The array form of the profanity model gives what its ``predict_prob`` gives, for whole texts
    and for their most offensive word (unknown words and empty texts included)."""
    from profanity_check import predict_prob
    from profanity_check.profanity_check import vectorizer

    from triage.profanity import profanity_features

    texts = OFFENSIVE + BENIGN + ["", "!!!", "the and of", "F*CK this", "zxqv blorp idiot idiot"]
    f = profanity_features(texts)
    np.testing.assert_allclose(f[:, 0] / 2, np.clip(predict_prob(texts), 1e-4, 1 - 1e-4), atol=1e-6)
    words = [vectorizer.build_analyzer()(t) for t in texts]
    p_empty = predict_prob([""])[0]
    worst = [max(predict_prob(ws), default=p_empty) if ws else p_empty for ws in words]
    np.testing.assert_allclose(f[:, 1] / 2, np.clip(worst, 1e-4, 1 - 1e-4), atol=1e-6)
    assert f[0, 0] > 1.5 and f[2, 0] < 0.5  # offensive near 2 * 1, benign near 0
