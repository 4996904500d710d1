"""What triage produces, and the protocol every scorer follows.

The pipeline depends only on this module: ``Triager.score_batch`` maps a batch of
:class:`TriageInput` to :class:`TriageOutput`, one each, in order. Label names are a public
contract (the project is evaluated through them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

SENTIMENT_LABELS = ("negative", "neutral", "positive")
SENSITIVITY_LABELS = ("none", "account", "security", "fraud")
ESCALATE_LEVELS = frozenset({"security", "fraud"})
TOXICITY_LABELS = ("offensive", "not_offensive")
SPAM_LABELS = ("spam", "ham")
DEFAULT_ISSUE_TYPES = (
    "account_access", "outage", "billing", "fraud", "account_security", "order_delivery",
    "product_question", "bug_report", "feature_request", "cancellation", "praise", "other",
)


SCORED = ("sentiment", "sensitivity", "issue_type", "toxicity", "spam")  # the Score fields of a TriageOutput


@dataclass
class Score:
    """One score: its label, confidence, every label's probability, the model and why."""

    label: str
    score: float
    model: str
    version: str
    probabilities: dict[str, float] = field(default_factory=dict)
    explanation: list[str] = field(default_factory=list)  # strongest signals, most important first

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "score": self.score, "model": self.model, "version": self.version,
                "probabilities": dict(self.probabilities), "explanation": list(self.explanation)}


PII_TYPES = ("card_number", "email", "phone", "iban", "national_id", "password", "one_time_code")
# What redaction leaves in place of a value ("[email]"). A text holding one was redacted already:
# spans found on the original text no longer point at anything in it.
REDACTED_VALUE = re.compile(r"\[(?:" + "|".join(PII_TYPES) + r")\]")


@dataclass
class PiiSpan:
    """A character span of personal data in the text. The value itself is never kept."""

    type: str  # card_number, email, phone, iban, national_id, password, one_time_code
    start: int
    end: int


@dataclass
class TriageInput:
    text: str
    platform: str = "x"
    is_public: bool = True
    author_followers: int | None = None


@dataclass
class TriageOutput:
    sentiment: Score
    sensitivity: Score
    issue_type: Score
    toxicity: Score
    spam: Score
    pii: list[PiiSpan]
    pii_exposed: bool
    language: str
    priority: float  # 0..100, higher first
    priority_explanation: list[str]
    redacted_text: str

    @property
    def escalate(self) -> bool:
        return self.sensitivity.label in ESCALATE_LEVELS

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (what ``triage score`` prints and the triage stage stores). Written out by
        hand: ``dataclasses.asdict`` deep-copies recursively and was a tenth of the pipeline's time."""
        return {**{task: getattr(self, task).to_dict() for task in SCORED},
                "pii": [{"type": p.type, "start": p.start, "end": p.end} for p in self.pii],
                "pii_exposed": self.pii_exposed, "language": self.language, "priority": self.priority,
                "priority_explanation": list(self.priority_explanation), "redacted_text": self.redacted_text,
                "escalate": self.escalate}


class Scorer(Protocol):
    """Maps a batch of texts to one :class:`Score` each (one task: sentiment, spam, ...)."""

    task: str

    def score(self, texts: Sequence[str]) -> list[Score]: ...


class Triager(Protocol):
    """The whole triage stage: all scores, PII and priority for a batch."""

    model_version: str

    async def score_batch(self, items: Sequence[TriageInput]) -> list[TriageOutput]: ...
