"""The triage stage's engine: every score for a batch of texts, fast.

Throughput design: (1) an LRU cache keyed by the text's content key, so retweets and copy-paste
complaints are scored once; (2) a cascade: cheap heads (static token embedding + n-grams) settle
texts whose answer is clear, and only the rest reach the transformer; (3) micro-batching: concurrent
callers' texts are coalesced into one encoder batch, run in a worker thread off the event loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from listener.text import content_key
from triage.encoder import ENCODER_NAME
from triage.explain import strongest_terms
from triage.heads import Head
from triage.language import detect_language
from triage.pieces import LONG_CHARS, pieces
from triage.pii import detect_pii, redact
from triage.priority import priority
from triage.protocol import ESCALATE_LEVELS, PiiSpan, Score, TriageInput, TriageOutput
from triage.rules import disarming_context, sensitivity_rules
from triage.text import normalize_for_model

BUNDLED = Path(__file__).resolve().parent / "heads"
TASKS = ("sentiment", "sensitivity", "issue_type", "toxicity", "spam")
# The cascade settles a safety-relevant task without the encoder only when the cheap head's
# probability of the labels that matter there is clearly on one side of the band: (labels, low,
# high); a text whose probability falls inside goes to the encoder. The cheap heads learn the full
# heads' probabilities (train_default.train_cheap), so the band sits around the full head's own
# decision. Measured on the first 5,000 replayed care tweets (triage/heads/metrics.json,
# `cascade_on_care_tweets`): what each settles, how often a settled label is the transformer's and
# what share of the texts the transformer flags it keeps. Sentiment and issue type take the cheap
# answer at any confidence: the router auto-answers only above its threshold, so a cheap issue
# type costs automation, never safety.
CASCADE_BANDS: dict[str, tuple[tuple[str, ...], float, float]] = {
    "toxicity": (("offensive",), 0.25, 0.75),
    "sensitivity": (("security", "fraud"), 0.03, 0.90),
    "spam": (("spam",), 0.10, 0.90),
}
SENSITIVITY_TO_ISSUE = {"security": "account_security", "fraud": "fraud"}


def cheap_unsure(head: Head, p: np.ndarray) -> np.ndarray:
    """Which texts a cheap head's probabilities ``p`` may not settle (the cascade's rule, also
    what training measures the cheap heads by)."""
    band = CASCADE_BANDS.get(head.task)
    if band is None:
        return np.zeros(len(p), dtype=bool)
    labels, low, high = band
    q = p[:, [head.labels.index(label) for label in labels if label in head.labels]].sum(axis=1)
    return (q >= low) & (q < high)


def reads_static(head: Head) -> bool:
    """A cheap head reads the static token embedding (triage.static) instead of the encoder's."""
    return head.meta.get("embedding") == "static"


@dataclass
class _Scored:
    """The text-dependent part of a triage (cached); per-item parts are added afterwards."""

    scores: dict[str, Score]
    language: str
    used_encoder: bool


def per_text(task: str, head: Head, p: np.ndarray, owner: np.ndarray, n: int) -> np.ndarray:
    """Each text's probabilities from its rows: the text read whole (rows ``0..n-1``), then the pieces
    of long ones (``owner``: the text of every row; triage.pieces). Where a task has labels that
    matter (CASCADE_BANDS: escalation, offence, spam), the reading that says them most speaks for
    the post: a takeover told in the last lines of a long story is still a takeover. Sentiment and
    issue type are the whole post's."""
    out = p[:n].copy()
    matters = CASCADE_BANDS.get(task)
    if matters is None:
        return out
    q = p[:, [head.labels.index(label) for label in matters[0] if label in head.labels]].sum(axis=1)
    best = q[:n].copy()
    for row in range(n, len(p)):
        if q[row] > best[owner[row]]:
            best[owner[row]], out[owner[row]] = q[row], p[row]
    return out


def _picks(head: Head, p: np.ndarray) -> np.ndarray:
    """Each row's label index: the argmax, except that a sensitivity head trained with an escalation
    threshold escalates when p(security) + p(fraud) reaches it (recall matters more there)."""
    threshold = head.meta.get("escalate_threshold")
    if threshold is None or head.task != "sensitivity":
        return p.argmax(axis=1)
    escalate = np.array([i for i, label in enumerate(head.labels) if label in ESCALATE_LEVELS])
    rest = np.array([i for i, label in enumerate(head.labels) if label not in ESCALATE_LEVELS])
    return np.where(p[:, escalate].sum(axis=1) >= threshold, escalate[p[:, escalate].argmax(axis=1)],
                    rest[p[:, rest].argmax(axis=1)])


class TriageEngine:
    def __init__(self, *, mode: str = "cascade", heads_dir: Path = BUNDLED, custom_dir: Path | None = None,
                 cache_size: int = 50_000, batch_size: int = 32, max_wait_ms: int = 20, encoder=None,  # noqa: ANN001
                 encoder_backend: str = "onnx-int8") -> None:
        self.mode = mode
        self.encoder_backend = encoder_backend
        if custom_dir is not None and not any(Path(custom_dir).glob("*.npz")):
            # a typo in a brand's taxonomy path would otherwise score with the bundled heads unnoticed
            raise FileNotFoundError(f"no trained heads in {custom_dir} (SOCIALCARE_TRIAGE_MODEL_DIR): "
                                    "train them with `socialcare triage train --out DIR`")
        self.full: dict[str, Head] = {}
        self.cheap: dict[str, Head] = {}
        for task in TASKS:
            for base in (custom_dir, heads_dir):
                if base is not None and (Path(base) / f"{task}.npz").exists():
                    self.full[task] = Head.load(Path(base) / f"{task}.npz")
                    lexical = Path(base) / f"{task}.lexical.npz"
                    if lexical.exists():
                        self.cheap[task] = Head.load(lexical)
                    break
            if task not in self.full:
                raise FileNotFoundError(f"no trained head for {task} in {custom_dir or ''} {heads_dir}")
        self._encoder = encoder
        self._static = None
        self._encoder_lock = threading.Lock()
        self.cache: OrderedDict[str, _Scored] = OrderedDict()
        self.cache_size = cache_size
        self.batch_size = batch_size
        self.max_wait = max_wait_ms / 1000
        self.stats = {"texts": 0, "cache_hits": 0, "encoded": 0}
        self._head_versions = ",".join(f"{t}:{self.full[t].version}" for t in TASKS)
        self._queue: list[tuple[list[TriageInput], asyncio.Future]] = []
        self._queued = 0
        self._full: asyncio.Event | None = None
        self._flusher: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._cache_lock = threading.Lock()

    @property
    def encoder_name(self) -> str:
        """The encoder that scores (``all-MiniLM-L6-v2`` or ``all-MiniLM-L6-v2+onnx-int8``)."""
        backend = self._encoder.backend if self._encoder is not None else self.encoder_backend
        return ENCODER_NAME if backend == "torch" else f"{ENCODER_NAME}+{backend}"

    @property
    def model_version(self) -> str:
        return f"{self.encoder_name}+heads[{self._head_versions}]/{self.mode}"

    @property
    def encoder(self):  # noqa: ANN201 - loaded on first need: the cascade may never need it
        with self._encoder_lock:
            if self._encoder is None:
                from triage.encoder import shared_encoder

                self._encoder = shared_encoder()
            return self._encoder

    @property
    def static(self):  # noqa: ANN201 - the cheap heads' static embedder, loaded on first need
        with self._encoder_lock:
            if self._static is None:
                from triage.encoder import shared_static_embedder

                self._static = shared_static_embedder()
            return self._static

    def warm_up(self) -> None:
        """Load the encoder and the static embedder and run every head once, so that the first real
        batch does not wait seconds for the models (the cascade would otherwise load the encoder on
        the first unclear text)."""
        text = ["warming up the triage models"]
        emb = self.encoder.features(text, batch_size=1)
        for task in TASKS:
            self.full[task].proba(text, emb)
        self._cheap_probs(text)

    def _cheap_probs(self, texts: list[str]) -> dict[str, np.ndarray]:
        """Every cheap head's probabilities (the static embedding computed once, if any head reads it)."""
        static = self.static.embed(texts) if any(reads_static(h) for h in self.cheap.values()) else None
        return {task: head.proba(texts, static if reads_static(head) else None) for task, head in self.cheap.items()}

    # --- synchronous core ------------------------------------------------------------------
    def score_texts(self, items: Sequence[TriageInput]) -> list[TriageOutput]:
        """Synchronous scoring (blocks: call it from a worker thread, or use :meth:`score_batch`)."""
        keys = [content_key(i.text) for i in items]
        todo: dict[str, str] = {}
        known: dict[str, _Scored] = {}
        with self._cache_lock:
            for key, item in zip(keys, items):
                if key in known or key in todo:
                    continue
                hit = self.cache.get(key)
                if hit is not None:
                    self.cache.move_to_end(key)
                    known[key] = hit
                else:
                    todo[key] = item.text
            self.stats["texts"] += len(items)
            self.stats["cache_hits"] += len(items) - len(todo)
        texts = list(todo.values())
        scored, spans = self._score_new(texts) if todo else ([], [])
        fresh = dict(zip(todo, scored))
        known.update(fresh)
        found = dict(zip(texts, spans))  # personal data of this batch's new texts, found once
        out = [self._finish(item, known[key], found.get(item.text)) for key, item in zip(keys, items)]
        if self.cache_size and fresh:
            with self._cache_lock:
                self.cache.update(fresh)
                while len(self.cache) > self.cache_size:
                    self.cache.popitem(last=False)
        return out

    def _score_new(self, texts: list[str]) -> tuple[list[_Scored], list[list[PiiSpan]]]:
        """The scores of texts not seen before, and their personal data (found once: for the password
        rule, the explanations and the output)."""
        pii = [detect_pii(t) for t in texts]
        rules = [sensitivity_rules(t, spans) for t, spans in zip(texts, pii)]
        probs: dict[str, np.ndarray] = {}
        need = np.ones(len(texts), dtype=bool)
        source = "encoder"
        if self.mode == "cascade" and len(self.cheap) == len(TASKS):
            probs = self._cheap_probs(texts)
            need[:] = False
            for task in TASKS:
                need |= cheap_unsure(self.cheap[task], probs[task])
            need |= np.array([r[0] is not None for r in rules])  # let the encoder confirm what rules see
            need |= np.array([len(t) > LONG_CHARS for t in texts])  # a long post is read piece by piece
            source = "cheap"
        idx = np.flatnonzero(need)
        if len(idx):
            sub = [texts[i] for i in idx]
            read, owner = list(sub), list(range(len(sub)))  # every text whole, then the pieces of long ones
            for j, text in enumerate(sub):
                split = pieces(text)
                read += split
                owner += [j] * len(split)
            emb = self.encoder.features([normalize_for_model(t) for t in read], batch_size=self.batch_size)
            self.stats["encoded"] += len(idx)
            for task in TASKS:
                p_full = self.full[task].proba(read, emb)
                if len(read) > len(sub):
                    p_full = per_text(task, self.full[task], p_full, np.asarray(owner), len(sub))
                if task not in probs:
                    probs[task] = np.zeros((len(texts), p_full.shape[1]), dtype=np.float32)
                probs[task][idx] = p_full
        encoded_mask = need | (source == "encoder")
        chosen: dict[str, dict[int, tuple[int, list[str]]]] = {task: {} for task in TASKS}  # label, why
        shown = [redact(t, spans) for t, spans in zip(texts, pii)]  # explanations never quote personal data
        for task in TASKS:
            for enc in (True, False):
                rows = np.flatnonzero(encoded_mask == enc)
                if len(rows):
                    head = self.full[task] if enc else self.cheap[task]
                    best = _picks(head, probs[task][rows]).tolist()
                    why = strongest_terms(head.weights, head.lexical_dim, [shown[i] for i in rows], best)
                    chosen[task].update(zip(rows.tolist(), zip(best, why)))
        shown_p = {task: np.round(probs[task].astype(np.float64), 4).tolist() for task in TASKS}  # 4 places, at once
        out = []
        for i, text in enumerate(texts):
            encoded = bool(encoded_mask[i])
            scores = {}
            for task in TASKS:
                head = self.full[task] if encoded else self.cheap[task]
                p = shown_p[task][i]
                best, explanation = chosen[task][i]
                scores[task] = Score(label=head.labels[best], score=p[best],
                                     model=f"{self.encoder_name}+{task}-head" if encoded else f"{task}-cheap-head",
                                     version=head.version, probabilities=dict(zip(head.labels, p)),
                                     explanation=[f"'{t}'" for t in explanation]
                                     + [f"scored by {'the transformer' if encoded else 'the cheap cascade'}"])
            self._apply_rules(scores, rules[i], text)
            out.append(_Scored(scores, detect_language(text), encoded))
        return out, pii

    @staticmethod
    def _apply_rules(scores: dict[str, Score], rule: tuple[str | None, list[str]], text: str) -> None:
        """The keyword rules escalate what they find; a head's escalation of a post that says it is
        not the customer's own trouble (news, someone else, a game, their own doing, a rant at the
        brand) is withdrawn."""
        level, reasons = rule
        sens = scores["sensitivity"]
        if level and sens.label not in ESCALATE_LEVELS:
            sens.label, sens.score = level, max(sens.score, 0.9)
            sens.model = "sensitivity-rules"
        elif not level and sens.label in ESCALATE_LEVELS and (why := disarming_context(text)):
            sens.label, sens.score = max(((label, p) for label, p in sens.probabilities.items()
                                          if label not in ESCALATE_LEVELS), key=lambda lp: lp[1])
            sens.explanation = [f"not escalated: {why}"] + sens.explanation
        if reasons:
            sens.explanation = [f"rule: {r}" for r in reasons] + sens.explanation
        issue = scores["issue_type"]
        if sens.label in SENSITIVITY_TO_ISSUE and SENSITIVITY_TO_ISSUE[sens.label] in issue.probabilities \
                and issue.label not in SENSITIVITY_TO_ISSUE.values():
            issue.label = SENSITIVITY_TO_ISSUE[sens.label]
            issue.explanation = [f"follows sensitivity {sens.label}"] + issue.explanation

    def _finish(self, item: TriageInput, scored: _Scored, spans: list[PiiSpan] | None = None) -> TriageOutput:
        s = scored.scores
        spans = detect_pii(item.text) if spans is None else spans  # a cached text's handles may differ
        exposed = bool(spans) and item.is_public
        pr, why = priority(s["sentiment"].label, s["sensitivity"].label, s["issue_type"].label,
                           s["toxicity"].label == "offensive", s["spam"].label == "spam", exposed,
                           item.author_followers)
        return TriageOutput(sentiment=s["sentiment"], sensitivity=s["sensitivity"], issue_type=s["issue_type"],
                            toxicity=s["toxicity"], spam=s["spam"], pii=spans, pii_exposed=exposed,
                            language=scored.language, priority=pr, priority_explanation=why,
                            redacted_text=redact(item.text, spans))

    # --- asynchronous, micro-batched ---------------------------------------------------------
    async def score_batch(self, items: Sequence[TriageInput]) -> list[TriageOutput]:
        """Score ``items`` off the event loop. Concurrent callers' items are coalesced: a batch goes to
        the worker thread when it holds ``batch_size`` texts or ``max_wait_ms`` after its first one."""
        if not items:
            return []
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop, self._queue, self._queued, self._flusher = loop, [], 0, None
            self._full = asyncio.Event()
        fut: asyncio.Future = loop.create_future()
        self._queue.append((list(items), fut))
        self._queued += len(items)
        if self._queued >= self.batch_size:
            self._full.set()
        if self._flusher is None or self._flusher.done():
            self._flusher = loop.create_task(self._flush())
        return await fut

    async def _flush(self) -> None:
        assert self._full is not None
        if self._queued < self.batch_size:
            try:  # let concurrent callers join this batch, unless it is full already
                await asyncio.wait_for(self._full.wait(), self.max_wait)
            except asyncio.TimeoutError:
                pass
        while self._queue:
            batch, self._queue, self._queued = self._queue, [], 0
            self._full.clear()
            items = [i for chunk, _ in batch for i in chunk]
            try:
                results = await asyncio.to_thread(self.score_texts, items)
            except Exception as exc:  # noqa: BLE001 - every caller learns of the failure
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            start = 0
            for chunk, fut in batch:
                if not fut.done():
                    fut.set_result(results[start:start + len(chunk)])
                start += len(chunk)
