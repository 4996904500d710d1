"""Personal data out of the database: what erasing a post, a case, an author or a customer record
means, table by table, for one person's erasure on request (:mod:`service.erasure`) and the
retention purge (:mod:`service.retention`).

An erased post keeps its row, ids, platform, external id, times, thread and triage labels, so ingest
still recognises a redelivered copy and the digests' counts stay right; it loses its text (replaced
by ``ERASED_TEXT``), URL, raw payload and content hash, and is marked ``deleted``: triage skips it,
routing drops it, digests leave it out of notable posts and terms, the agent queue and the
accepted community answers no longer offer it. Where each table stands (every model in models/):

* mentions, triage_results (explanations, PII spans, priority reasons quote the words; the labels,
  scores and probabilities stay), route_decisions (the reason and a candidate's ``reason`` name
  the words the post shares with an answer), replies (may greet the person by name; an unsent one
  is withdrawn as ``deleted`` so nothing goes out), moderation_actions (a moderator's reason, a
  platform's error; a platform action still ``queued`` is ``cancelled``, see
  :mod:`service.privacy_actions`), community_answers (copies of the post), case_messages,
  audit_events' free-text ``reason`` about the person's posts, the moderation actions on them and
  the replies to them, their cases and customer record, webhook_deliveries' payloads: erased.
  Other people's posts in the person's threads, or whose payload names their account: the payload
  keys that name accounts dropped (:func:`drop_other_accounts`; which payloads name an account:
  :mod:`service.privacy_payloads`), their words kept. authors: anonymised (``ERASED_KEY`` keys
  never match a real author). social_identities: deleted.
  customers: erased with ``--customer`` (the plan, not identifying, stays); so is the chat of a
  case a session of theirs verified as them on (:func:`erase_chat`). cases, conversations,
  customer_sessions: their customer link cleared; secure links and sessions revoked.
* Nothing personal, so kept: incident_mentions (ids), incidents and incident_updates (the
  detector's and agents' words about an outage), conversations' thread key (platform ids) and tags
  (the team's labels), sla_breaches, rate_counters, connector_cursors, knowledge_articles,
  templates, users, api_tokens, webhook_subscriptions, digest_schedules (staff and brand data);
  audit_events' ``details`` (ids, kinds, rule names, counts: see every ``service.audit.record``).

The functions work in the caller's transaction and count what they changed, so a second run
changes and reports nothing. A stage that read a post just before it was erased re-applies the
erasure to what it wrote before committing (:func:`respect_erasure`). Dead letters on the bus:
:mod:`service.privacy_bus`.
"""

from __future__ import annotations

import logging
import secrets
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import Any

from sqlalchemy import and_, func, not_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from listener.text import content_key
from models import (
    AuditEvent,
    Author,
    Case,
    CaseMessage,
    CommunityAnswer,
    Customer,
    CustomerSession,
    Mention,
    ModerationAction,
    Reply,
    RouteDecision,
    SecureLink,
    TriageResult,
)
from models.base import utcnow
from models.bulk import IDS, update_rows
from models.console import WebhookDelivery
from models.mentions import ERASED_TEXT
from service.privacy_payloads import OTHER_ACCOUNTS

log = logging.getLogger("socialcare.privacy")
ERASED_KEY = "erased:"  # an anonymised author's key: no connector writes one (ids, "@handle")
ERASED_HASH = content_key(ERASED_TEXT)
CHUNK = 500  # ids per statement and, in the purge, rows per transaction
UNSENT = ("pending", "queued", "suggested")  # replies withdrawn (``deleted``) rather than sent erased
SCORE_KEPT = ("label", "score", "model", "version", "probabilities")
TRIAGE_KEPT = ("pii_exposed", "language", "priority", "escalate")
MODERATION_KEPT = ("notify", "label", "decision", "by", "acknowledged_by", "cancelled")  # staff and rule names
CANCELLED = "cancelled"  # a platform action or reply of an erased post, never performed (with reason ERASED)
ERASED = "erased"

_M = Mention.__table__.c
ERASED_IDS = select(_M.id).where(_M.id.in_(IDS), _M.deleted.is_(True), _M.text == ERASED_TEXT)  # built once


def erased(mention: Any) -> bool:
    """Was this post (a row, an ORM object or a Record with ``deleted`` and ``text``) erased?"""
    return bool(mention.deleted) and mention.text == ERASED_TEXT


def not_erased() -> Any:
    """SQL: a post whose content is still there."""
    return or_(Mention.deleted.is_(False), Mention.text != ERASED_TEXT)


# --- small pure helpers -------------------------------------------------------------------------
def chunks(ids: Iterable[int], size: int = CHUNK) -> Iterable[list[int]]:
    ids = sorted(set(ids))
    for i in range(0, len(ids), size):
        yield ids[i:i + size]


def scrub_scores(scores: dict | None) -> dict:
    """A triage document without what quotes the post: labels, scores, probabilities and the
    priority stay; explanations, PII spans and the priority's reasons go."""
    out: dict[str, Any] = {}
    for key, value in (scores or {}).items():
        if isinstance(value, dict) and "label" in value:
            out[key] = {k: value[k] for k in SCORE_KEPT if k in value} | {"explanation": []}
        elif key in TRIAGE_KEPT:
            out[key] = value
    return out | {"pii": [], "priority_explanation": []}


def reshaped(value: Any, text: Callable[[str], str] | None = None, drop: Collection[str] = ()) -> Any:
    """A JSON-like ``value`` with every string in it (keys included) passed through ``text``, and the
    entries whose key is in ``drop`` left out, at any depth: one walk for a routed decision's details,
    a dead letter shown to an admin (:mod:`service.deadletters`) and a payload exported to its author
    (:mod:`service.privacy_export`)."""
    if isinstance(value, str):
        return text(value) if text else value
    if isinstance(value, dict):
        return {reshaped(k, text) if isinstance(k, str) else k: reshaped(v, text, drop)
                for k, v in value.items() if k not in drop}
    if isinstance(value, (list, tuple)):
        return [reshaped(v, text, drop) for v in value]
    return value


def without_reasons(value: Any) -> Any:
    """A decision's details without any ``reason`` (a candidate's names the shared words)."""
    return reshaped(value, drop=("reason",))



async def rewrite(session: AsyncSession, model: Any, where: Any, columns: Sequence[Any],
                   change: Callable[[Any], dict[str, Any]]) -> int:
    """Read ``columns`` of the rows matching ``where``, UPDATE those ``change`` alters (by id, only
    the columns that differ); returns how many changed."""
    changes = []
    for row in await session.execute(select(model.id, *columns).where(where)):
        new = {k: v for k, v in change(row).items() if getattr(row, k) != v}
        if new:
            changes.append((row.id, new))
    await update_rows(session, model, changes)
    return len(changes)


# --- posts ----------------------------------------------------------------------------------------
def _reply_change(r: Any) -> dict[str, Any]:
    return {"text": ERASED_TEXT, "error": None, **({"status": "deleted"} if r.status in UNSENT else {})}


def _moderation_change(a: Any) -> dict[str, Any]:
    details = {k: v for k, v in (a.details or {}).items() if k in MODERATION_KEPT}
    status = a.status
    if status == "pending":  # a hold: off the moderation queue
        status, details = "reviewed", {**details, "decision": "erased"}
    elif status == "alert":
        status, details = "acknowledged", {**details, "acknowledged_by": "privacy"}
    elif status == "queued":  # a platform action not performed yet: never performed now
        status, details = CANCELLED, {**details, "cancelled": ERASED}
    return {"reason": ERASED_TEXT, "details": details, "status": status}


async def erase_posts(session: AsyncSession, mention_ids: Iterable[int], counts: Counter, *,
                      audit: bool = True) -> None:
    """Erase the content of these posts and of everything that copies or quotes it (see the module
    docstring); ``audit``: also the free-text reasons of audit events about them."""
    def moderation_change(a: Any) -> dict[str, Any]:
        counts["actions_cancelled"] += a.status == "queued"
        return _moderation_change(a)

    for ids in chunks(mention_ids):
        counts["posts"] += (await session.execute(
            update(Mention).where(Mention.id.in_(ids), not_erased()).values(
                text=ERASED_TEXT, url=None, raw={}, content_hash=ERASED_HASH, deleted=True))).rowcount
        counts["triage_results"] += await rewrite(
            session, TriageResult, TriageResult.mention_id.in_(ids), [TriageResult.scores],
            lambda t: {"scores": scrub_scores(t.scores)})
        counts["route_decisions"] += await rewrite(
            session, RouteDecision, RouteDecision.mention_id.in_(ids), [RouteDecision.reason, RouteDecision.details],
            lambda d: {"reason": ERASED_TEXT, "details": without_reasons(d.details or {})})
        counts["replies"] += await rewrite(
            session, Reply, Reply.mention_id.in_(ids), [Reply.text, Reply.error, Reply.status], _reply_change)
        counts["moderation_actions"] += await rewrite(
            session, ModerationAction, ModerationAction.mention_id.in_(ids),
            [ModerationAction.reason, ModerationAction.details, ModerationAction.status], moderation_change)
        counts["community_answers"] += await rewrite(
            session, CommunityAnswer, or_(CommunityAnswer.answer_mention_id.in_(ids),
                                          CommunityAnswer.question_mention_id.in_(ids)),
            [CommunityAnswer.question, CommunityAnswer.answer, CommunityAnswer.url, CommunityAnswer.active],
            lambda c: {"question": ERASED_TEXT, "answer": ERASED_TEXT, "url": None, "active": False})
        counts["case_messages"] += await rewrite(
            session, CaseMessage, CaseMessage.mention_id.in_(ids), [CaseMessage.body], lambda m: {"body": ERASED_TEXT})
        if audit:  # about the posts, the moderation actions on them (a review's reason) and the replies to them
            counts["audit_reasons"] += await _erase_audit_reasons(session, "mention", ids)
            counts["audit_reasons"] += await _erase_audit_reasons(session, "moderation_action", await session.scalars(
                select(ModerationAction.id).where(ModerationAction.mention_id.in_(ids))))
            counts["audit_reasons"] += await _erase_audit_reasons(session, "reply", await session.scalars(
                select(Reply.id).where(Reply.mention_id.in_(ids))))


async def _erase_audit_reasons(session: AsyncSession, object_type: str, ids: Iterable[Any]) -> int:
    """The free-text reasons of audit events about these objects (the events themselves stay; an
    erasure's own reason has the subject's values replaced already)."""
    n = 0
    for part in chunks(str(i) for i in ids):
        where = and_(AuditEvent.object_type == object_type, AuditEvent.object_id.in_(part),
                     AuditEvent.reason.is_not(None), AuditEvent.action.not_like("privacy.%"))
        n += await rewrite(session, AuditEvent, where, [AuditEvent.reason], lambda e: {"reason": ERASED_TEXT})
    return n


async def respect_erasure(session: AsyncSession, mention_ids: Iterable[int]) -> set[int]:
    """For a stage about to commit what it wrote about ``mention_ids``: the posts among them erased
    since it read them, with the erasure applied again to what it wrote. Called after the stage's
    writes: on SQLite its transaction then holds the write lock, on PostgreSQL the erasure's
    ``FOR UPDATE`` and the stage's foreign-key checks order the two, so one sees the other."""
    ids = list(set(mention_ids))
    if not ids:
        return set()
    found = set(await session.scalars(ERASED_IDS, {"ids": ids}))
    await erase_again(session, found)
    return found


async def erase_again(session: AsyncSession, found: set[int]) -> None:
    """:func:`respect_erasure` for posts already found erased."""
    if found:
        await erase_posts(session, found, Counter(), audit=False)
        log.info("%d post(s) erased while in flight: what this stage wrote about them is erased too", len(found))


async def drop_other_accounts(session: AsyncSession, where: Any, counts: Counter) -> None:
    """Other people's posts matching ``where`` (in an erased person's threads, or naming their
    account) lose the payload keys that name accounts (:data:`OTHER_ACCOUNTS`: the account replied
    to, @-mentioned, expanded), so the person's handle, name and id do not outlive them there. Once
    a post is stored nothing reads those keys (ingest reads the connectors' payloads before storing;
    stored payloads are read for ids, flags and withholding only: community.harvest and trust,
    listener.deletions.KEPT_RAW), so dropping them all costs nothing; the words stay, as they are
    someone else's."""
    counts["others_payloads"] += await rewrite(session, Mention, and_(where, _M.raw.is_not(None)), [Mention.raw],
                                               lambda m: {"raw": reshaped(m.raw, drop=OTHER_ACCOUNTS)})


# --- cases, authors, customer ------------------------------------------------------------------
async def erase_cases(session: AsyncSession, case_ids: Iterable[int], counts: Counter, *,
                      audit: bool = True) -> None:
    """Every message and reply of these cases, their customer links; unused links and sessions revoked."""
    now = utcnow()
    for ids in chunks(case_ids):
        counts["case_messages"] += await rewrite(
            session, CaseMessage, CaseMessage.case_id.in_(ids), [CaseMessage.body], lambda m: {"body": ERASED_TEXT})
        counts["replies"] += await rewrite(
            session, Reply, Reply.case_id.in_(ids), [Reply.text, Reply.error, Reply.status], _reply_change)
        counts["secure_links_revoked"] += (await session.execute(update(SecureLink).where(
            SecureLink.case_id.in_(ids), SecureLink.used_at.is_(None), SecureLink.revoked_at.is_(None))
            .values(revoked_at=now))).rowcount
        counts["sessions_revoked"] += (await session.execute(update(CustomerSession).where(
            CustomerSession.case_id.in_(ids), or_(CustomerSession.revoked_at.is_(None),
                                                  CustomerSession.customer_id.is_not(None)))
            .values(revoked_at=func.coalesce(CustomerSession.revoked_at, now), customer_id=None))).rowcount
        counts["case_links"] += (await session.execute(update(Case).where(
            Case.id.in_(ids), Case.customer_id.is_not(None)).values(customer_id=None))).rowcount
        if audit:
            counts["audit_reasons"] += await _erase_audit_reasons(session, "case", ids)
            counts["audit_reasons"] += await _erase_audit_reasons(session, "reply", await session.scalars(
                select(Reply.id).where(Reply.case_id.in_(ids))))


async def erase_chat(session: AsyncSession, case_ids: Iterable[int], counts: Counter) -> None:
    """The chat of cases someone else's account opened, held with a visitor who verified as the
    erased customer (:func:`service.privacy_subject.verified_cases`): its messages and the brand's
    private replies (not the account's posts copied in: theirs), and the reasons of audit events
    about the cases. The cases keep their account, links and other sessions."""
    for ids in chunks(case_ids):
        counts["case_messages"] += await rewrite(
            session, CaseMessage, and_(CaseMessage.case_id.in_(ids), CaseMessage.mention_id.is_(None)),
            [CaseMessage.body], lambda m: {"body": ERASED_TEXT})
        replies = Reply.case_id.in_(ids), Reply.mention_id.is_(None)
        counts["replies"] += await rewrite(session, Reply, and_(*replies), [Reply.text, Reply.error, Reply.status],
                                           _reply_change)
        counts["audit_reasons"] += await _erase_audit_reasons(session, "case", ids)
        counts["audit_reasons"] += await _erase_audit_reasons(session, "reply", await session.scalars(
            select(Reply.id).where(*replies)))


async def anonymise_authors(session: AsyncSession, author_ids: Iterable[int], counts: Counter) -> None:
    """Handle, name, platform id, profile and customer link gone; a random key that no connector
    writes, so no later post is ever matched to the row."""
    for ids in chunks(author_ids):
        rows = (await session.execute(select(Author.id).where(
            Author.id.in_(ids), not_(Author.author_key.startswith(ERASED_KEY))))).scalars().all()
        await update_rows(session, Author, [(a, {
            "author_key": f"{ERASED_KEY}{secrets.token_hex(16)}", "handle": None, "display_name": None,
            "platform_user_id": None, "customer_id": None, "followers": None, "account_created_at": None})
            for a in rows])
        counts["authors"] += len(rows)


async def erase_customer(session: AsyncSession, customer: Customer, counts: Counter) -> None:
    """The CRM record's identifying fields (the row stays: cases and threads point to it)."""
    values = {"name": ERASED_TEXT, "email": None, "phone": None, "notes": None, "attributes": {},
              "external_ref": None}
    if any(getattr(customer, k) != v for k, v in values.items()):
        for k, v in values.items():
            setattr(customer, k, v)
        counts["customers"] += 1
    counts["audit_reasons"] += await _erase_audit_reasons(session, "customer", [customer.id])


def delivered(key: str) -> Any:
    """SQL: the id ``key`` (``mention_id``, ``case_id``) of the object an outgoing event is about."""
    return WebhookDelivery.payload[("data", key)].as_integer()


def stubbed(payload: Any) -> dict[str, Any]:
    """An outgoing event's body about an erased post or case: its event id, type and time and the
    object's ids, marked ``erased``; nothing else (a pending one still tells the receiver, without
    content). Shared by the erasure and a webhook scan that read the post before it was erased
    (:func:`console.webhooks_deleted.respect_removal`)."""
    body = payload if isinstance(payload, dict) else {}
    inner = body.get("data") if isinstance(body.get("data"), dict) else {}
    ids = {k: inner[k] for k in ("mention_id", "case_id") if k in inner}
    return {"id": body.get("id"), "type": body.get("type"), "created_at": body.get("created_at"),
            "data": {**ids, "erased": True}}


async def stub_deliveries(session: AsyncSession, where: Any, counts: Counter) -> None:
    """Outgoing webhook deliveries matching ``where`` :func:`stubbed`, without their last error."""
    counts["webhook_deliveries"] += await rewrite(
        session, WebhookDelivery, where, [WebhookDelivery.payload, WebhookDelivery.last_error],
        lambda d: {"payload": stubbed(d.payload), "last_error": None})
