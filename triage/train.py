"""Training and evaluation of heads (used by `socialcare triage train|eval` and `make heads`)."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np

from triage.heads import Head
from triage.protocol import SENSITIVITY_LABELS, SENTIMENT_LABELS, SPAM_LABELS, TOXICITY_LABELS
from triage.text import normalize_for_model

TASKS = ("sentiment", "sensitivity", "issue_type", "toxicity", "spam")


class DataError(ValueError):
    """A training or evaluation file that cannot be used (clear message for the CLI)."""


def read_csv(path: Path) -> tuple[list[str], list[str]]:
    """Texts and labels of a ``text,label`` CSV (more columns, any order). Spreadsheets save a
    byte-order mark and sometimes ``Text,Label``: both are read as meant. An error names the file
    line a bad row starts on (a quoted text may span lines, so the row's index would not)."""
    line = 1
    try:
        with Path(path).open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            found = next(reader, None)
            fieldnames = [name.strip().lower() for name in found] if found else []
            if not {"text", "label"} <= set(fieldnames):
                raise DataError(f"{path}: needs the columns text,label (found {found or None})")
            texts, labels = [], []
            while True:
                line = reader.line_num + 1  # the first physical line of the next row
                row = next(reader, None)
                if row is None:
                    break
                if not row:  # a blank line, skipped as csv.DictReader does
                    continue
                cells = dict(zip(fieldnames, row))
                text, label = (cells.get("text") or "").strip(), (cells.get("label") or "").strip()
                if not text or not label:
                    raise DataError(f"{path}:{line}: empty text or label")
                texts.append(text)
                labels.append(label)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 ({exc})") from exc
    except csv.Error as exc:  # a field over the csv module's limit (128 KB), a NUL byte, ...
        raise DataError(f"{path}:{line}: not a readable CSV ({exc})") from None
    if not texts:
        raise DataError(f"{path}: no rows")
    return texts, labels


FIXED_LABELS = {"sentiment": SENTIMENT_LABELS, "sensitivity": SENSITIVITY_LABELS, "toxicity": TOXICITY_LABELS,
                "spam": SPAM_LABELS}


def fold_labels(task: str, labels: list[str], known: list[str] | tuple[str, ...] | None = None) -> list[str]:
    """A fixed task's labels in the model's spelling (``Negative`` is ``negative``), as spreadsheets and
    other tools write them. A custom taxonomy (issue_type) is kept as given: its labels are the user's.
    Labels that match none of ``known`` (default: the task's) stay as given, for the error to name them."""
    if task not in FIXED_LABELS:
        return labels
    canonical = {label.strip().casefold(): label for label in (known or FIXED_LABELS[task])}
    return [canonical.get(label.strip().casefold(), label) for label in labels]


def check_trainable(task: str, labels: list[str]) -> list[str]:
    """The sorted label set, or a DataError when it cannot train a head: checked before the (long)
    encoding, not after it."""
    classes = sorted(set(labels))
    if len(classes) < 2:
        raise DataError(f"{task}: training needs at least two labels, found {classes}")
    return classes


def embed(texts: list[str], encoder, *, cache_dir: Path | None = None, progress: bool = True,  # noqa: ANN001
          chunk: int = 512) -> np.ndarray:
    """Encoder features of many texts, in chunks with a progress bar. With ``cache_dir``, features
    are kept per text (content-addressed shards, float16), so that retraining with one more labelled
    row re-encodes that row only."""
    from tqdm import tqdm

    from triage.encoder import FEATURE_DIM

    normalized = [normalize_for_model(t) for t in texts]
    store = _FeatureStore(Path(cache_dir), getattr(encoder, "backend", "torch")) if cache_dir is not None else None
    out = np.zeros((len(texts), FEATURE_DIM), dtype=np.float32)
    missing = list(range(len(texts)))
    if store is not None:
        missing = [i for i, t in enumerate(normalized) if not store.fill(t, out, i)]
    todo = list(dict.fromkeys(normalized[i] for i in missing))
    fresh: dict[str, np.ndarray] = {}
    with tqdm(total=len(todo), desc="encoding", unit=" texts", disable=not progress or not todo) as bar:
        for start in range(0, len(todo), chunk):
            part = todo[start:start + chunk]
            fresh.update(zip(part, encoder.features(part)))
            bar.update(len(part))
    if store is not None:
        # what the cache keeps (float16), on the run that fills it too: a cold and a warm cache
        # then train the same heads
        fresh = {t: v.astype(np.float16).astype(np.float32) for t, v in fresh.items()}
    for i in missing:
        out[i] = fresh[normalized[i]]
    if store is not None and fresh:
        store.add(fresh)
    return out


class _FeatureStore:
    """Per-text encoder features on disk: shards of (sha1 keys, float16 rows) for one feature layout."""

    def __init__(self, root: Path, backend: str = "torch") -> None:
        from triage.encoder import ENCODER_NAME, FEATURE_LAYERS

        self.root = root
        self.prefix = f"features-{ENCODER_NAME}-{'-'.join(map(str, FEATURE_LAYERS))}"
        if backend != "torch":  # int8 features are not fp32 features: their own shards
            self.prefix += f"-{backend}"
        self.index: dict[bytes, tuple[int, int]] = {}
        self.shards: list[np.ndarray] = []
        for number, path in enumerate(sorted(root.glob(f"{self.prefix}-*.npz")) if root.exists() else []):
            with np.load(path) as data:
                self.shards.append(data["x"])
                self.index.update((bytes(k), (number, row)) for row, k in enumerate(data["keys"]))

    @staticmethod
    def key(text: str) -> bytes:
        return hashlib.sha1(text.encode("utf-8", "replace")).digest()

    def fill(self, text: str, out: np.ndarray, i: int) -> bool:
        where = self.index.get(self.key(text))
        if where is None:
            return False
        out[i] = self.shards[where[0]][where[1]]
        return True

    def add(self, rows: dict[str, np.ndarray]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        keys = np.array([np.frombuffer(self.key(t), dtype=np.uint8) for t in rows])
        x = np.stack(list(rows.values())).astype(np.float16)
        digest = hashlib.sha1(keys.tobytes()).hexdigest()[:16]
        np.savez(self.root / f"{self.prefix}-{digest}.npz", keys=keys, x=x)


def fit_head(task: str, texts: list[str], labels: list[str], embeddings: np.ndarray | None, *,
             lexical_dim: int = 0, c: float = 4.0, embedding_scale: float = 1.0,
             class_weight: str | None = "balanced", version: str = "1", sample_weight=None,  # noqa: ANN001
             extra_features: tuple[str, ...] = ()) -> Head:
    """A multinomial logistic regression over the embedding (scaled), the named extra feature
    blocks (``triage.heads.EXTRA_FEATURES``) and hashed n-grams."""
    from sklearn.linear_model import LogisticRegression

    classes = check_trainable(task, labels)
    head = Head(task=task, labels=classes, weights=np.zeros((0, 0)), bias=np.zeros(0),
                uses_embedding=embeddings is not None, lexical_dim=lexical_dim, version=version,
                meta={"embedding_scale": embedding_scale, "trained_on": len(texts),
                      "embedding_dim": int(embeddings.shape[1]) if embeddings is not None else 0}
                | ({"extra_features": list(extra_features)} if extra_features else {}))
    x = head.features(texts, embeddings)
    y = np.array([classes.index(label) for label in labels])
    model = LogisticRegression(C=c, max_iter=2000, class_weight=class_weight)
    model.fit(x, y, sample_weight=sample_weight)
    coef, bias = model.coef_, model.intercept_
    if len(classes) == 2:  # sklearn keeps one row for two classes: p(1) = sigmoid(w·x + b)
        coef = np.vstack([np.zeros_like(coef[0]), coef[0]])
        bias = np.array([0.0, bias[0]])
    head.weights = coef.T.astype(np.float32)
    head.bias = bias.astype(np.float32)
    _stamp(head, version)
    return head


def _stamp(head: Head, version: str) -> None:
    """A retrained (or re-thresholded) head gets a new version: a hash of its weights and labels."""
    digest = hashlib.sha1(head.weights.tobytes() + head.bias.tobytes() + "|".join(head.labels).encode()).hexdigest()
    head.version = f"{version}+{digest[:8]}"


def cv_threshold(task: str, texts: list[str], labels: list[str], embeddings: np.ndarray | None, positive: str, *,
                 folds: int = 5, **fit_args) -> tuple[float, dict[str, float]]:  # noqa: ANN003
    """The cut on p(``positive``) that maximizes mean macro-F1 over ``folds`` out-of-fold splits of
    the training rows (never validation data), and the cross-validated macro-F1 at 0.5 and at that
    cut. Class-balanced training makes a binary head flag its rarer label too readily for macro-F1:
    for toxicity the cut lands near 0.6, not 0.5."""
    from sklearn.model_selection import StratifiedKFold

    p = np.zeros(len(texts))
    splits = list(StratifiedKFold(folds, shuffle=True, random_state=0).split(texts, labels))
    for fit_rows, held in splits:
        head = fit_head(task, [texts[i] for i in fit_rows], [labels[i] for i in fit_rows],
                        None if embeddings is None else embeddings[fit_rows], **fit_args)
        p[held] = head.proba([texts[i] for i in held], None if embeddings is None else embeddings[held])[
            :, head.labels.index(positive)]
    y = np.array(labels)
    other = next(label for label in sorted(set(labels)) if label != positive)

    def score(cut: float) -> float:
        return float(np.mean([evaluate(list(y[h]), list(np.where(p[h] >= cut, positive, other)),
                                       [other, positive])["macro_f1"] for _, h in splits]))

    cut = max(np.round(np.arange(0.30, 0.705, 0.01), 2).tolist(), key=score)
    return cut, {"cv_macro_f1_at_0.5": round(score(0.5), 4), "cv_macro_f1": round(score(cut), 4), "cut": cut}


def set_threshold(head: Head, positive: str, cut: float) -> None:
    """Make a binary head's argmax flag ``positive`` exactly when its old p(positive) >= ``cut``,
    by moving the bias (the probabilities it reports move with it, as one calibrated decision)."""
    if len(head.labels) != 2:
        raise ValueError(f"{head.task}: a decision threshold needs two labels, not {head.labels}")
    head.bias[head.labels.index(positive)] -= np.float32(np.log(cut / (1 - cut)))
    head.meta["decision_threshold"] = cut
    _stamp(head, head.version.split("+")[0])


def evaluate(y_true: list[str], y_pred: list[str], labels: list[str]) -> dict:
    """accuracy, macro F1/recall and per-label precision/recall/F1/support, as scikit-learn defines them
    (``f1_score(y, p, average="macro")``): the macro means run over every label in the file or in the
    predictions, so a label the model predicts but the file lacks counts (recall and F1 0), and a
    label in neither does not. Per label: ``labels`` and any other label seen; 0/0 is 0."""
    counts = {}
    for label in list(labels) + sorted((set(y_true) | set(y_pred)) - set(labels)):
        tp = sum(1 for t, p in zip(y_true, y_pred) if t == label and p == label)
        fp = sum(1 for t, p in zip(y_true, y_pred) if t != label and p == label)
        fn = sum(1 for t, p in zip(y_true, y_pred) if t == label and p != label)
        counts[label] = (tp / (tp + fp) if tp + fp else 0.0, tp / (tp + fn) if tp + fn else 0.0,
                         2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0, tp + fn)
    per = {label: {"precision": round(p, 4), "recall": round(r, 4), "f1": round(f, 4), "support": n}
           for label, (p, r, f, n) in counts.items()}
    seen = sorted(set(y_true) | set(y_pred))
    n = len(y_true)
    return {
        "n": n,
        "accuracy": round(sum(1 for t, p in zip(y_true, y_pred) if t == p) / n, 4) if n else 0.0,
        "macro_f1": round(float(np.mean([counts[label][2] for label in seen])), 4) if seen else 0.0,
        "macro_recall": round(float(np.mean([counts[label][1] for label in seen])), 4) if seen else 0.0,
        "per_label": per,
    }


def escalation_metrics(y_true: list[str], y_pred: list[str]) -> dict:
    esc = {"security", "fraud"}
    tp = sum(1 for t, p in zip(y_true, y_pred) if t in esc and p in esc)
    fp = sum(1 for t, p in zip(y_true, y_pred) if t not in esc and p in esc)
    fn = sum(1 for t, p in zip(y_true, y_pred) if t in esc and p not in esc)
    return {"escalate_precision": round(tp / (tp + fp), 4) if tp + fp else 0.0,
            "escalate_recall": round(tp / (tp + fn), 4) if tp + fn else 0.0}


def fit_distilled(teacher: Head, texts: list[str], probs: np.ndarray, embeddings: np.ndarray, *, lexical_dim: int,
                  c: float, embedding_scale: float = 1.0, sample_weight=None) -> Head:  # noqa: ANN001
    """A cheap head (static embedding + hashed n-grams) fit to ``teacher``'s probabilities ``probs``
    on ``texts``: each text enters once per label, weighted by that label's probability (soft
    targets), so the cheap head learns how sure the full head is, not only its argmax, and the
    cascade can settle a text when the full head's answer is clear. It reads the teacher's extra
    feature blocks too (cheap by design): without the profanity block the toxicity cheap head kept
    20 of the 27 care tweets its teacher flags (triage/README.md)."""
    weight = np.ones(len(texts)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    rows, cols = np.nonzero(probs > 1e-3)
    head = fit_head(teacher.task, [texts[i] for i in rows], [teacher.labels[k] for k in cols], embeddings[rows],
                    lexical_dim=lexical_dim, c=c, embedding_scale=embedding_scale, class_weight=None,
                    sample_weight=probs[rows, cols] * weight[rows], extra_features=tuple(teacher.extra_features))
    if head.labels != teacher.labels:
        raise DataError(f"{teacher.task}: the distilled head lost labels ({sorted(set(teacher.labels) - set(head.labels))})")
    head.meta.update(embedding="static", distilled_from=teacher.version)
    return head
