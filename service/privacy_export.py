"""One person's data on request (GDPR art. 15, the right of access): everything the service holds
about them as one JSON document, the counterpart of :mod:`service.erasure` (the person is named
the same ways and found by the same :func:`~service.erasure.find_subject`).

The document holds their platform accounts (authors) and the identities linked to a customer
record, the customer record(s), their posts with each post's triage (labels, explanations and PII
spans: their own words) and routing decision, the brand's replies to those posts and the
moderation actions taken on them, their cases with the messages, the brand's private replies, the
secure links issued (metadata only: never a token, nor its hash) and the customer sessions they
started, and the audit entries about any of these (who viewed their record, when and why).

Never other people's data: posts are selected by author, replies by the person's posts and cases
(replies in the same thread to other customers are not theirs), a case message quoting someone
else's post is left out, and a secure link in a reply's text is masked. Not exported: the raw
platform payloads (they may carry other accounts), copies of a post (community answers, outgoing
webhook payloads) and the conversations' other posts.

Large histories are read in batches of ``CHUNK`` ids per ``IN`` query, so a person's thousands of
posts take a handful of statements. A person erased before exports as what remains: the
``[erased]`` marker and the audit entries (``erased`` true), not an error. The export is itself
audited (``privacy.exported``: the actor, the reason without the person's names, ids and counts,
never the content), committed before the document is handed out.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from escalation.links import shown_without_links
from models import (
    AuditEvent,
    Author,
    Case,
    CaseMessage,
    Conversation,
    Customer,
    CustomerSession,
    Mention,
    ModerationAction,
    Reply,
    RouteDecision,
    SecureLink,
    SocialIdentity,
    TriageResult,
)
from models.base import utcnow
from models.mentions import ERASED_TEXT
from service.audit import record
from service.erasure import Found, Subject, find_subject, without
from service.privacy import chunks, erased

SCHEMA_VERSION = 1
ACTION = "privacy.exported"
SUBJECT_ACTIONS = ("privacy.erased", ACTION)  # found by the subject's keyed hashes once nothing else names them

AUTHOR_FIELDS = ("id", "platform", "handle", "display_name", "platform_user_id", "followers",
                 "account_created_at", "customer_id", "banned", "created_at")
IDENTITY_FIELDS = ("id", "platform", "handle", "platform_user_id", "customer_id", "verified_at", "source", "created_at")
CUSTOMER_FIELDS = ("id", "external_ref", "name", "email", "phone", "plan", "notes", "attributes", "created_at")
POST_FIELDS = ("id", "platform", "external_id", "author_id", "conversation_id", "kind", "channel", "is_public",
               "text", "url", "lang", "created_at", "ingested_at", "edited_at", "in_reply_to", "hidden", "deleted")
TRIAGE_FIELDS = ("model_version", "sentiment", "sensitivity", "escalate", "issue_type", "toxicity", "spam",
                 "pii_exposed", "language", "priority", "scores", "created_at")
ROUTE_FIELDS = ("outcome", "reason", "confidence", "details", "router_version", "acted_at", "created_at")
REPLY_FIELDS = ("id", "mention_id", "case_id", "platform", "visibility", "kind", "text", "template", "status",
                "error", "external_ids", "sent_by", "created_at", "sent_at")
ACTION_FIELDS = ("id", "action", "rule", "reason", "actor", "status", "details", "created_at")
CONVERSATION_FIELDS = ("id", "platform", "status", "tags", "created_at", "last_activity_at")
CASE_FIELDS = ("id", "conversation_id", "customer_id", "author_id", "opened_by_mention_id", "category", "status",
               "identity_pending", "assigned_to", "created_at", "first_response_due", "resolution_due",
               "first_response_at", "resolved_at")
MESSAGE_FIELDS = ("id", "sender", "user_id", "mention_id", "body", "created_at")
LINK_FIELDS = ("id", "issued_by", "created_at", "expires_at", "used_at", "revoked_at")  # never token_hash
SESSION_FIELDS = ("id", "link_id", "created_at", "expires_at", "revoked_at", "verified_at", "codes_sent",
                  "failed_attempts", "lockouts", "locked_until")  # never the cookie's or the code's hash
AUDIT_FIELDS = ("id", "at", "actor", "action", "object_type", "object_id", "reason", "details")


def fields(obj: Any, names: Sequence[str]) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in names}


def json_default(value: Any) -> Any:
    """For ``json.dumps``: datetimes as ISO 8601, sets as sorted lists."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


async def _in(session: AsyncSession, model: Any, column: Any, ids: Iterable[Any], *order: Any) -> list[Any]:
    """The rows of ``model`` whose ``column`` is among ``ids``: one IN query per ``CHUNK`` ids."""
    rows: list[Any] = []
    for part in chunks(ids):
        rows += (await session.scalars(select(model).where(column.in_(part)).order_by(*order))).all()
    return rows


def _grouped(rows: Iterable[Any], key: str) -> dict[Any, list[Any]]:
    out: dict[Any, list[Any]] = {}
    for row in rows:
        out.setdefault(getattr(row, key), []).append(row)
    return out


def _reply(r: Reply) -> dict[str, Any]:
    return fields(r, REPLY_FIELDS) | {"text": shown_without_links(r.text or "")}


async def _customers(session: AsyncSession, found: Found, authors: list[Author],
                     identities: list[SocialIdentity]) -> list[Customer]:
    """The record named (``--customer``), or the records the named account is linked to."""
    if found.customer is not None:
        return [found.customer]
    ids = found.customer_ids | {a.customer_id for a in authors if a.customer_id} | \
        {i.customer_id for i in identities if i.customer_id}
    return await _in(session, Customer, Customer.id, ids, Customer.id) if ids else []


async def _posts(session: AsyncSession, author_ids: set[int], counts: Counter) -> tuple[list[dict], set[int]]:
    """Their posts, each with its triage, routing, the brand's replies and the moderation actions."""
    mention_ids: list[int] = []
    for part in chunks(author_ids):
        mention_ids += (await session.scalars(select(Mention.id).where(Mention.author_id.in_(part)))).all()
    posts: list[dict] = []
    for part in chunks(mention_ids):
        triage = {t.mention_id: t for t in await _in(session, TriageResult, TriageResult.mention_id, part)}
        routes = {d.mention_id: d for d in await _in(session, RouteDecision, RouteDecision.mention_id, part)}
        replies = _grouped(await _in(session, Reply, Reply.mention_id, part, Reply.created_at, Reply.id), "mention_id")
        actions = _grouped(await _in(session, ModerationAction, ModerationAction.mention_id, part,
                                     ModerationAction.created_at, ModerationAction.id), "mention_id")
        for m in await _in(session, Mention, Mention.id, part):
            t, d = triage.get(m.id), routes.get(m.id)
            posts.append(fields(m, POST_FIELDS) | {
                "erased": erased(m),
                "triage": fields(t, TRIAGE_FIELDS) if t else None,
                "routing": fields(d, ROUTE_FIELDS) if d else None,
                "replies": [_reply(r) for r in replies.get(m.id, [])],
                "moderation_actions": [fields(a, ACTION_FIELDS) for a in actions.get(m.id, [])]})
            counts["replies"] += len(replies.get(m.id, []))
            counts["moderation_actions"] += len(actions.get(m.id, []))
    posts.sort(key=lambda p: (p["created_at"], p["id"]))
    counts["posts"] = len(posts)
    return posts, set(mention_ids)


async def _cases(session: AsyncSession, found: Found, mine: set[int], counts: Counter) -> list[dict]:
    """Their cases: messages (not another person's quoted post), the brand's replies not already
    under a post, secure links (metadata) and the sessions the links started."""
    where = [Case.author_id.in_(found.author_ids)] if found.author_ids else []
    if found.customer is not None:
        where.append(Case.customer_id == found.customer.id)
    if not where:
        return []
    cases = (await session.scalars(select(Case).where(or_(*where)).order_by(Case.created_at, Case.id))).all()
    ids = [c.id for c in cases]
    messages = _grouped([m for m in await _in(session, CaseMessage, CaseMessage.case_id, ids,
                                              CaseMessage.created_at, CaseMessage.id)
                         if m.mention_id is None or m.mention_id in mine], "case_id")
    replies = _grouped([r for r in await _in(session, Reply, Reply.case_id, ids, Reply.created_at, Reply.id)
                        if r.mention_id is None], "case_id")  # a reply to one of their posts is under the post
    links = _grouped(await _in(session, SecureLink, SecureLink.case_id, ids, SecureLink.created_at, SecureLink.id),
                     "case_id")
    sessions = _grouped(await _in(session, CustomerSession, CustomerSession.case_id, ids, CustomerSession.created_at,
                                  CustomerSession.id), "case_id")
    out = []
    for c in cases:
        out.append(fields(c, CASE_FIELDS) | {
            "messages": [fields(m, MESSAGE_FIELDS) | {"body": shown_without_links(m.body or "")}
                         for m in messages.get(c.id, [])],
            "replies": [_reply(r) for r in replies.get(c.id, [])],
            "secure_links": [fields(link, LINK_FIELDS) for link in links.get(c.id, [])],
            "sessions": [fields(s, SESSION_FIELDS) for s in sessions.get(c.id, [])]})
        counts["case_messages"] += len(messages.get(c.id, []))
        counts["replies"] += len(replies.get(c.id, []))
        counts["secure_links"] += len(links.get(c.id, []))
    counts["cases"] = len(out)
    return out


async def _audit(session: AsyncSession, found: Found, objects: dict[str, set[Any]]) -> list[dict]:
    """The audit entries about the person's record, accounts, posts, cases, replies and moderation
    actions, and their earlier erasures and exports (matched by keyed hash once nothing else names them)."""
    events: dict[int, AuditEvent] = {}
    for object_type, ids in objects.items():
        for part in chunks(str(i) for i in ids):
            for e in await session.scalars(select(AuditEvent).where(
                    and_(AuditEvent.object_type == object_type, AuditEvent.object_id.in_(part)))):
                events[e.id] = e
    if found.keys:
        for e in await session.scalars(select(AuditEvent).where(AuditEvent.action.in_(SUBJECT_ACTIONS))):
            if found.keys & set((e.details or {}).get("subject_keys") or []):
                events[e.id] = e
    return [fields(e, AUDIT_FIELDS) for e in sorted(events.values(), key=lambda e: (e.at, e.id))]


def _described(subject: Subject) -> dict[str, Any]:
    mode = "customer" if subject.customer_id is not None else "handle" if subject.handle else "user_id"
    return {"mode": mode, "platform": subject.platform, "handle": subject.handle, "user_id": subject.user_id,
            "customer_id": subject.customer_id}


async def collect(session: AsyncSession, subject: Subject, secret: str | None = None) -> tuple[dict, Found]:
    """The document about ``subject`` (:class:`~service.erasure.UnknownSubject` when nothing is on
    record) and what :func:`find_subject` found."""
    found = await find_subject(session, subject, secret)
    counts: Counter = Counter()
    authors = await _in(session, Author, Author.id, found.author_ids, Author.id)
    identities = await _in(session, SocialIdentity, SocialIdentity.id, found.identity_ids, SocialIdentity.id)
    customers = await _customers(session, found, authors, identities)
    posts, mine = await _posts(session, found.author_ids, counts)
    conversations = await _in(session, Conversation, Conversation.id,
                              {p["conversation_id"] for p in posts if p["conversation_id"]}, Conversation.id)
    cases = await _cases(session, found, mine, counts)
    objects = {"customer": {c.id for c in customers}, "author": found.author_ids, "mention": mine,
               "case": {c["id"] for c in cases},
               "reply": {r["id"] for p in posts for r in p["replies"]} | {r["id"] for c in cases for r in c["replies"]},
               "moderation_action": {a["id"] for p in posts for a in p["moderation_actions"]}}
    audit = await _audit(session, found, objects)
    counts.update(identities=len(identities), authors=len(authors), customers=len(customers),
                  conversations=len(conversations), audit_events=len(audit))
    doc = {
        "schema_version": SCHEMA_VERSION,
        "generated_at": utcnow(),
        "subject": _described(subject),
        "erased": found.erased_before or any(c.name == ERASED_TEXT for c in customers),
        "counts": dict(sorted(counts.items())),
        "customers": [fields(c, CUSTOMER_FIELDS) for c in customers],
        "identities": [fields(i, IDENTITY_FIELDS) for i in identities],
        "authors": [fields(a, AUTHOR_FIELDS) for a in authors],
        "posts": posts,
        "conversations": [fields(c, CONVERSATION_FIELDS) for c in conversations],
        "cases": cases,
        "audit_events": audit,
    }
    return doc, found


async def export(db: Any, subject: Subject, *, actor: str, reason: str, secret: str | None = None) -> dict:
    """Everything about one person (see the module docstring), with the export audited and committed
    before the document is returned. :class:`~service.erasure.UnknownSubject` when nothing is on record."""
    async with db.session() as session:
        doc, found = await collect(session, subject, secret)
        record(session, actor, ACTION, "customer" if found.customer else "author",
               found.customer.id if found.customer else min(found.author_ids, default=None),
               reason=without(reason, found.values), mode=doc["subject"]["mode"], platform=subject.platform,
               author_ids=sorted(found.author_ids), case_ids=sorted(c["id"] for c in doc["cases"]),
               counts=doc["counts"], erased=doc["erased"], subject_keys=sorted(found.keys),
               schema_version=SCHEMA_VERSION)
        await session.commit()
    return doc
