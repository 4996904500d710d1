"""Routing: what happens to a triaged mention.

Demand categories (volume × touch): high-volume/low-touch questions get a template or article at
once; low-volume/low-touch ones (a question on a community channel) go to the community, or to
the accepted answer it already gave; high-touch ones go to an agent; security and fraud always go
private (unless the post is one its community vouches for, and its writer does not say it happened
to them: :mod:`community.trust`). Safety comes first — moderation rules, spam, abuse, exposed
personal data — so nothing unsafe is ever answered automatically in public. Praise, and a thank-you that asks and reports
nothing, get no automated answer whatever type triage gave them (:func:`nothing_to_answer`). Whether
an answer is actually *sent* is decided later by the reply bot's gates (:mod:`community.replybot`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from community.reports import INCIDENT_TYPES
from community.retrieval import Candidate
from community.rules import RuleMatch, decisive

ROUTER_VERSION = "router-7"
# general questions with a general answer; billing only reaches here without account details
# (sensitivity "account" goes to an agent first)
LOW_TOUCH = frozenset({"account_access", "outage", "product_question", "order_delivery", "cancellation", "billing"})
# low touch only while the customer is not upset about it (a damaged parcel needs a person)
LOW_TOUCH_UNLESS_NEGATIVE = frozenset({"order_delivery"})
# a person looks at these on every channel: reproducing a bug, weighing a request, money or security
HIGH_TOUCH = frozenset({"bug_report", "feature_request", "fraud", "account_security"})
NOTHING_TO_ANSWER = frozenset({"praise"})
# a rule's hold or removal tells the author with these built-in notices when it names no template
# (community.moderation.BUILTIN_NOTICES holds their words)
RULE_NOTICES = {"hold": "rule_held_notice", "remove": "rule_removed_notice"}
PRIVATE_SENSITIVITY = frozenset({"security", "fraud"})


@dataclass(frozen=True)
class OpenCase:
    """An author's unresolved private case, as routing needs it; ``id`` is None while the escalation
    that opens it is decided but not yet acted on (a follow-up may be routed before that)."""

    id: int | None
    category: str
    same_thread: bool  # the mention is in the conversation the case was opened from


@dataclass
class RouteInput:
    """What the router looks at: the triage row's labels and the mention's situation."""

    sentiment: str
    sensitivity: str
    issue_type: str
    issue_confidence: float
    toxicity: str
    spam: str
    pii_exposed: bool
    is_public: bool
    kind: str
    platform: str = "x"
    community_channel: bool = False  # a low-volume channel where the community answers first
    incident_id: int | None = None  # an open incident this mention belongs to
    rising: dict | None = None  # a report while its type climbs toward a spike on its channel (community.incidents)
    answer: Candidate | None = None  # the template for the issue type (cheap path) or None
    retrieved: list[Candidate] = field(default_factory=list)  # retrieval candidates, best first
    community_answer: Candidate | None = None  # best accepted community answer, or None
    accepted_answer: bool = False  # this post *is* a community answer (solution / distinguished)
    vouched_for: bool = False  # a moderator's or staff post, or an accepted answer (community.trust)
    own_trouble: bool = False  # a vouched post's writer says it happened to them (community.trust.own_trouble)
    author_banned: bool = False
    rules: list[RuleMatch] = field(default_factory=list)  # matching moderation rules, in order
    open_case: OpenCase | None = None  # the author's unresolved private case, if any
    agent_thread: bool = False  # an agent has this customer here (queued to one before, or answered by one)
    brand_replied: bool = False  # the brand (bot or agent) already answered this customer here
    thanks: bool = False  # a thank-you that reports no problem (community.reports.is_thanks)


@dataclass
class Decision:
    outcome: str
    reason: str
    confidence: float
    details: dict[str, Any] = field(default_factory=dict)


def nothing_to_answer(r: RouteInput) -> bool:
    """Praise, or a thank-you (:func:`community.reports.is_thanks`: no question, no request, nothing
    broken) triage filed under a type the bot answers by itself — an incident type ("thanks, offline
    mode saved my commute" read as outage) or any other low-touch type ("thanks, the family plan works
    now" read as product_question or billing). Such a thank-you goes where praise goes: no status
    reply, no template, no retrieved article, no community answer, none of which answers anything it
    said. A thank-you under a high-touch type is still that type's: a person weighs it ("would love a
    dark mode, thanks!" is a wish; "shuffle keeps playing the same 20 songs" a bug, with no word
    is_thanks knows for either), with the type's acknowledgement as the suggestion, never sent by
    itself. "other" keeps its own rules (a reply after our answer goes to a person)."""
    return r.issue_type in NOTHING_TO_ANSWER or (r.thanks and answered_by_the_bot(r))


def answered_by_the_bot(r: RouteInput) -> bool:
    return bot_answers(r.issue_type, r.sentiment, r.community_channel)


def bot_answers(issue_type: str, sentiment: str, community_channel: bool) -> bool:
    """Of a type the bot answers without a person — a status reply, a template, an article, or the
    community's answer on a community channel — when nothing else (safety, a case) decides first.
    (The route stage asks it too, to spare a thank-you the retrieval the router would not use.)"""
    return issue_type in INCIDENT_TYPES or (issue_type != "other" and low_touch_type(issue_type, sentiment,
                                                                                     community_channel))


def low_touch(r: RouteInput) -> bool:
    return low_touch_type(r.issue_type, r.sentiment, r.community_channel)


def low_touch_type(issue_type: str, sentiment: str, community_channel: bool) -> bool:
    if community_channel:  # the community answers any question that is not high-touch
        return issue_type not in HIGH_TOUCH
    if issue_type not in LOW_TOUCH:
        return False
    return not (issue_type in LOW_TOUCH_UNLESS_NEGATIVE and sentiment == "negative")


def combined(issue_confidence: float, c: Candidate) -> float:
    """Confidence in an answer: retrieval's alone, or — when the document is written for the
    issue type triage predicted — both signals agreeing (1 - the chance both are wrong)."""
    if c.issue_match:
        return round(1 - (1 - issue_confidence) * (1 - c.confidence), 3)
    return c.confidence


def official_answer(r: RouteInput) -> tuple[Candidate | None, float]:
    """The best template or article and the confidence in it, cheap path or retrieval."""
    best, conf = r.answer, r.issue_confidence if r.answer is not None else 0.0
    for c in r.retrieved:
        if c.kind not in ("template", "article"):
            continue
        score = combined(r.issue_confidence, c)
        if score > conf:
            best, conf = c, score
    return best, conf


def joins_open_case(r: RouteInput) -> bool:
    """A customer with an open private case is answered there, not in public: a follow-up ("reset it,
    but my playlists are gone") rarely repeats what made the case, and a public bot answer beside a
    secure link would split the conversation (or answer a takeover victim with a reset article).
    Praise and a thank-you the bot would otherwise have answered are left alone (nothing to answer,
    and no second notice: :func:`nothing_to_answer`), and so is a post elsewhere that triage cannot
    place; an accepted community answer is what it is."""
    if r.open_case is None or r.accepted_answer or nothing_to_answer(r):
        return False
    return r.open_case.same_thread or r.issue_type != "other"


def _moderate(action: str, reason: str, rule: str, r: RouteInput, **extra: Any) -> Decision:
    details: dict[str, Any] = {"action": action, "rule": rule, **extra}
    if r.pii_exposed and r.is_public:  # whatever the rule said: hidden now, author told privately
        details.update(action="hide" if action in ("hold", "remove") else action, redact=True,
                       notify="pii_removed_notice")
        details.pop("notice_reason", None)  # the personal-data notice says why; nothing else is sent
    return Decision("moderate", f"{rule}: {reason}", 1.0, details)


def decide(r: RouteInput, *, auto_threshold: float) -> Decision:
    """The routing decision, with its reason. Order matters: safety before helpfulness."""
    labels = [m.label for m in r.rules if m.action == "label" and m.label]
    side = [{"rule": m.rule, "action": m.action, "reason": m.reason, **({"label": m.label} if m.label else {}),
             **({"notify": m.notify} if m.notify else {})}
            for m in r.rules if m.action in ("lock", "notify", "label")]
    extra = {"labels": labels, "rule_actions": side} if side else {}
    if r.sensitivity in PRIVATE_SENSITIVITY and r.vouched_for and not r.own_trouble:
        extra = {**extra, "not_escalated": f"sensitivity {r.sensitivity} in a post its community vouches for "
                                           "(a moderator's or staff's): advice to others, not their own report"}
    elif r.sensitivity in PRIVATE_SENSITIVITY:
        return Decision("escalate_private", f"sensitivity is {r.sensitivity}: handled in a private channel",
                        1.0, {"hide_first": r.pii_exposed and r.is_public, "redact": r.pii_exposed and r.is_public,
                              "category": r.sensitivity, **extra})
    if r.author_banned:
        return _moderate("remove", "author is banned", "banned-author", r, **extra)
    terminal = decisive(r.rules)
    if terminal is not None and terminal.action != "approve":
        if terminal.notify_author:  # the author is told why, in the rule's words (act.py: the notice)
            extra = {**extra, "notify": terminal.message_template or RULE_NOTICES[terminal.action],
                     "notice_reason": terminal.reason}
        return _moderate(terminal.action, terminal.reason, terminal.rule, r, **extra)
    # an approve rule, or the community (its moderators, an accepted answer: community.trust), vouches
    # for what the spam and toxicity classifiers suspect; never for exposed personal data
    approved = terminal is not None or r.vouched_for
    if not approved and r.spam == "spam":
        return _moderate("hold", "classified as spam", "builtin:spam", r, **extra)
    if not approved and r.toxicity == "offensive":
        return _moderate("hold", "offensive language", "builtin:toxicity", r, **extra)
    if r.pii_exposed and r.is_public:
        return _moderate("hide", "personal data exposed in public: hidden, author told privately",
                         "builtin:pii", r, **extra)
    if joins_open_case(r):  # after safety: a takeover's spam is still held, exposed data still hidden
        case = r.open_case
        which = f"case #{case.id}" if case.id is not None else "the customer's case"
        return Decision("escalate_private", f"follow-up while {which} ({case.category}) is open: "
                        "handled in its private channel", 1.0,
                        {"category": case.category, "case_id": case.id, "follow_up": True, **extra})
    if r.agent_thread and not r.accepted_answer and not nothing_to_answer(r):
        return Decision("agent_queue", "the customer follows up in a conversation an agent has", 1.0,
                        {"suggestion": _best(r), "follow_up": True, **extra})
    if r.sensitivity == "account":
        return Decision("agent_queue", "needs the customer's own account details (answer privately)", 1.0,
                        {"suggestion": _best(r), **extra})
    if r.accepted_answer:
        return Decision("ignore", "an answer the community accepted: kept for future questions", 1.0, extra)
    if nothing_to_answer(r):  # before any status reply or answer
        why = "no question or request to answer" if r.issue_type in NOTHING_TO_ANSWER else \
            "thanks or praise, not a report: nothing to answer"
        return Decision("ignore", f"{r.issue_type}: {why}", r.issue_confidence, extra)
    if r.incident_id is not None:
        return Decision("broadcast", "part of an open incident: one-to-many status reply",
                        1.0, {"incident_id": r.incident_id, **extra})
    if r.rising is not None:  # not told "no wider problem" while the reports climb; the incident's status reaches it
        return Decision("agent_queue", rising_reason(r.rising), r.issue_confidence,
                        {"rising": r.rising, "suggestion": None, **extra})
    if r.issue_type == "other" and r.brand_replied:  # "still not working", "that didn't help": a person looks
        return Decision("agent_queue", "the customer came back after our answer", r.issue_confidence,
                        {"suggestion": _best(r), "follow_up": True, **extra})
    if r.issue_type == "other":
        return Decision("ignore", f"{r.issue_type}: no question or request to answer", r.issue_confidence, extra)
    if not low_touch(r) or not r.is_public:
        return Decision("agent_queue", f"high-touch {r.issue_type} (sentiment {r.sentiment}): needs an agent",
                        r.issue_confidence, {"suggestion": _best(r), **extra})
    community = r.community_answer if r.community_answer is not None and \
        r.community_answer.confidence >= auto_threshold else None
    if r.community_channel:  # low volume: the community's own answer, or the community answers first
        if community is not None:
            return Decision("community_answer", f"the community answered this: {community.reason}",
                            community.confidence, {"answer": community.to_dict(), **extra})
        return Decision("community_answer", f"low-volume {r.issue_type} on {r.platform}: left to the community",
                        r.issue_confidence, {"answer": None, "awaiting": "community", "suggestion": _best(r), **extra})
    answer, confidence = official_answer(r)
    if answer is not None and confidence >= auto_threshold:
        return Decision("auto_answer", f"high-volume, low-touch {r.issue_type}: {answer.reason}",
                        confidence, {"answer": {**answer.to_dict(), "confidence": confidence}, **extra})
    if community is not None:
        return Decision("community_answer", f"the community answered this: {community.reason}",
                        community.confidence, {"answer": community.to_dict(), **extra})
    return Decision("agent_queue", f"low-touch {r.issue_type} but no answer is sure enough "
                    f"({confidence:.2f} < {auto_threshold:.2f}): an agent answers", confidence,
                    {"suggestion": _best(r), **extra})


def rising_reason(rising: dict) -> str:
    """Why a report goes to an agent while its type climbs: the count, the usual, the spike's mark."""
    kind = rising["issue_type"].replace("_", " ")
    return (f"{rising['count']} {kind} reports on {rising['channel']} in the last {rising['window_minutes']} minutes "
            f"(usually {rising['expected']:g}; an incident opens at {rising['spike_at']}): maybe a wider problem, "
            "so an agent answers, not the standard checks")


def _best(r: RouteInput) -> dict | None:
    pool = [c for c in (r.answer, r.community_answer, *r.retrieved) if c is not None]
    return max(pool, key=lambda c: c.confidence).to_dict() if pool else None
