"""alt-profanity-check's model as a feature block for heads (``Head.extra_features``).

Its linear model learnt from ~200k labelled tweets and Wikipedia comments (Davidson et al. 2017,
Jigsaw; not TweetEval), more than TweetEval's 12k training tweets can teach a head: as four extra
columns it took the toxicity head's 5-fold cross-validated macro-F1 on TweetEval offensive from
0.753 to 0.770 (triage/MEASUREMENTS.md, "Toxicity"). The package ships the model; nothing is downloaded.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np


def profanity_features(texts: list[str]) -> np.ndarray:
    """alt-profanity-check's p(offensive) of the whole text and of its most offensive word, each
    with its logit: (n, 4). Its linear model learnt from ~200k labelled tweets and Wikipedia comments,
    more than TweetEval's 12k training tweets can teach a head; the word view keeps one slur in a
    long tweet from being diluted. Scaled to weigh about as much as an embedding block."""
    model = _profanity_model()
    words = [[model.vocabulary.get(w, -1) for w in model.analyzer(t)] for t in texts]  # -1: not in it
    # TF-IDF rows as (text, word, count) triples: plain numpy, as scipy's per-call cost would dominate
    keys = np.array([i * len(model.idf) + w for i, ids in enumerate(words) for w in ids if w >= 0], dtype=np.int64)
    keys, counts = np.unique(keys, return_counts=True)
    row, word = np.divmod(keys, len(model.idf))
    value = counts * model.idf[word]
    norms = np.sqrt(np.bincount(row, weights=value**2, minlength=len(texts)))
    decision = np.zeros((len(texts), model.coef.shape[1]))
    np.add.at(decision, row, value[:, None] * model.coef[word])
    p_text = model.calibrated(decision / np.maximum(norms, 1e-12)[:, None])
    # an unknown word, and a text without words, score as the empty text does
    p_max = np.array([model.p_word[ids].max() if ids else model.p_word[-1] for ids in words]).reshape(len(texts))
    p = np.clip(np.stack([p_text, p_max], axis=1), 1e-4, 1 - 1e-4)
    return np.hstack([2 * p, 0.4 * np.log(p / (1 - p))]).astype(np.float32).reshape(len(texts), 4)


class _ProfanityModel:
    """alt-profanity-check's model (TF-IDF, then five linear SVMs with sigmoid calibration, averaged)
    as arrays: its sklearn objects spend ~25 ms per call checking their input, more than the encoder
    takes for one text. ``tests/triage/test_heads.py`` checks it against ``predict_prob``."""

    def __init__(self) -> None:
        from profanity_check.profanity_check import model, vectorizer

        folds = model.calibrated_classifiers_
        if model.method != "sigmoid" or list(model.classes_) != [0, 1]:
            raise RuntimeError("alt-profanity-check's model is not the calibrated binary SVM this code reads")
        self.analyzer = vectorizer.build_analyzer()  # its own words: lower case, no stop words
        self.vocabulary: dict[str, int] = vectorizer.vocabulary_
        self.idf = vectorizer.idf_
        self.coef = np.stack([f.estimator.coef_[0] for f in folds], axis=1)  # (vocabulary, folds)
        self.intercept = np.array([f.estimator.intercept_[0] for f in folds])
        self.a = np.array([f.calibrators[0].a_ for f in folds])
        self.b = np.array([f.calibrators[0].b_ for f in folds])
        # a one-word text's TF-IDF row is that word's unit vector; the last entry is the empty text's
        self.p_word = self.calibrated(np.vstack([self.coef, np.zeros(len(folds))]))

    def calibrated(self, decision: np.ndarray) -> np.ndarray:
        """p(offensive) from each fold's SVM decision without its intercept: (n, folds) -> (n,)."""
        return (1 / (1 + np.exp(self.a * (decision + self.intercept) + self.b))).mean(axis=1)


@lru_cache(maxsize=1)
def _profanity_model() -> _ProfanityModel:
    return _ProfanityModel()


