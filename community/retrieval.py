"""Answer retrieval: ranks articles, templates and accepted community answers for a question.

Semantic similarity (MiniLM sentence embeddings) finds paraphrases; lexical TF-IDF overlap keeps
exact product words ("crossfade", "2FA") decisive. The two are blended and mapped to a
confidence in 0..1 with the reason spelled out (which signal, which shared words), because an
agent deciding on a suggestion needs to see why it was offered.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field, fields
from typing import Any, Callable

import numpy as np

SEMANTIC_WEIGHT = 0.75
ISSUE_BONUS = 0.05  # the document is written for the issue type triage predicted
# blended scores map linearly to confidence: FLOOR and below is 0, CEILING and above is 1
FLOOR, CEILING = 0.15, 0.55

_STOP = frozenset("""a about after again all am an and any are as at be been but by can could did do does doing
for from get got had has have having he her here hi hey hello him his how i if in into is it its just me my no not
of on once only or our out so some still than that the their them then there these they this to too up us very was
we were what when where which while who why will with would you your acmehelp acme pls please thanks""".split())
_WORD = re.compile(r"[a-z0-9]+")


def tokens(text: str) -> list[str]:
    """Lower-cased words without stop words, crudely stemmed (plural, -ing, -ed)."""
    out = []
    for w in _WORD.findall(text.lower()):
        if w in _STOP or len(w) < 2:
            continue
        for suffix in ("ing", "ed", "es", "s"):
            if len(w) > len(suffix) + 3 and w.endswith(suffix):
                w = w[: -len(suffix)]
                break
        out.append(w)
    return out


@dataclass
class Document:
    kind: str  # template | article | community
    ref: str  # template name, article slug, or "<platform>:<external id>"
    title: str
    text: str  # what is matched against the question
    url: str | None = None
    issue_types: list[str] = field(default_factory=list)
    channel: str = "any"


@dataclass
class Candidate:
    kind: str  # template | article | community
    ref: str
    confidence: float
    reason: str
    url: str | None = None
    semantic: float | None = None
    lexical: float | None = None
    issue_match: bool | None = None  # the document is written for the issue type triage predicted

    def to_dict(self) -> dict[str, Any]:
        """The set fields (every one a scalar: no deep copy needed, as ``asdict`` would make)."""
        return {k: v for k in CANDIDATE_FIELDS if (v := getattr(self, k)) is not None}


CANDIDATE_FIELDS = tuple(f.name for f in fields(Candidate))


class Retriever:
    """An in-memory index over documents. ``encode`` maps texts to L2-normalized vectors (the
    shared MiniLM encoder by default); document vectors are computed once, at ``build``."""

    def __init__(self, encode: Callable[[list[str]], np.ndarray] | None = None) -> None:
        if encode is None:
            from community.embeddings import encode as default_encode
            encode = default_encode
        self.encode = encode
        self.docs: list[Document] = []
        self.vectors: np.ndarray | None = None
        self._idf: dict[str, float] = {}
        self._doc_tf: list[dict[str, float]] = []

    def build(self, docs: list[Document]) -> None:
        self.docs = list(docs)
        self.vectors = self.encode([d.text for d in self.docs]) if self.docs else None
        df: Counter[str] = Counter()
        bags = [Counter(tokens(f"{d.title} {d.text}")) for d in self.docs]
        for bag in bags:
            df.update(bag.keys())
        n = max(len(self.docs), 1)
        self._idf = {t: math.log((1 + n) / (1 + c)) + 1.0 for t, c in df.items()}
        self._doc_tf = [self._weights(bag) for bag in bags]

    def _weights(self, bag: Counter[str]) -> dict[str, float]:
        w = {t: (1 + math.log(c)) * self._idf.get(t, 0.0) for t, c in bag.items() if t in self._idf}
        norm = math.sqrt(sum(v * v for v in w.values())) or 1.0
        return {t: v / norm for t, v in w.items()}

    def lexical_pick(self, question: str, issue_type: str, confidence: float) -> Candidate | None:
        """Without the encoder: of the documents written for ``issue_type``, the one sharing the
        most weighted words with the question (None when none shares a word). ``confidence`` stays
        the caller's (triage's) — the words only choose which answer fits."""
        q_w = self._weights(Counter(tokens(question)))
        best, best_score, best_shared = None, 0.0, []
        for di, doc in enumerate(self.docs):
            if issue_type not in doc.issue_types:
                continue
            shared = [t for t in q_w if t in self._doc_tf[di]]
            score = sum(q_w[t] * self._doc_tf[di][t] for t in shared)
            if score > best_score:
                best, best_score, best_shared = doc, score, shared
        if best is None:
            return None
        words = ", ".join(sorted(best_shared, key=lambda t: -q_w[t])[:4])
        return Candidate(best.kind, best.ref, round(confidence, 3),
                         f"{best.kind} '{best.title}' for {issue_type}: shared words: {words}", best.url,
                         lexical=round(best_score, 3), issue_match=True)

    def search(self, questions: list[str], *, issue_types: list[str | None] | None = None,
               platform: str | None = None, kinds: frozenset[str] | None = None, k: int = 3
               ) -> list[list[Candidate]]:
        """The ``k`` best candidates for each question, best first (one encoder call in all)."""
        if not self.docs or not questions:
            return [[] for _ in questions]
        q_vecs = self.encode(questions)
        sem = q_vecs @ self.vectors.T  # cosine: both sides are L2-normalized
        issue_types = issue_types or [None] * len(questions)
        out = []
        for qi, question in enumerate(questions):
            q_w = self._weights(Counter(tokens(question)))
            ranked = []
            for di, doc in enumerate(self.docs):
                if kinds and doc.kind not in kinds:
                    continue
                if platform and doc.channel not in ("any", platform):
                    continue
                shared = [t for t in q_w if t in self._doc_tf[di]]
                lex = sum(q_w[t] * self._doc_tf[di][t] for t in shared)
                s = float(sem[qi, di])
                score = SEMANTIC_WEIGHT * s + (1 - SEMANTIC_WEIGHT) * lex
                on_topic = issue_types[qi] is not None and issue_types[qi] in doc.issue_types
                if on_topic:
                    score += ISSUE_BONUS
                conf = min(max((score - FLOOR) / (CEILING - FLOOR), 0.0), 1.0)
                why = [f"semantic {s:.2f}"]
                if shared:
                    why.append("shared words: " + ", ".join(sorted(shared, key=lambda t: -q_w[t])[:4]))
                if on_topic:
                    why.append(f"written for {issue_types[qi]}")
                ranked.append(Candidate(doc.kind, doc.ref, round(conf, 3),
                                        f"{doc.kind} '{doc.title}': " + "; ".join(why), doc.url,
                                        round(s, 3), round(lex, 3), on_topic))
            ranked.sort(key=lambda c: -c.confidence)
            out.append(ranked[:k])
        return out
