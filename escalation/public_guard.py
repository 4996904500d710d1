"""What may not be said in public: the check every human or bot reply passes before it is queued.

The service's own public replies are fixed or templated (the secure-link notice, answers, status
replies) and carry no customer detail. Replies written by agents in the console or by bots through
the API are free text, so they are checked here: a card number, IBAN, national ID, password or
one-time code never goes out in public, nor does a secure link (it opens the customer's private
channel to whoever follows it); nor does the customer's own e-mail address or phone number;
an address or number the brand's articles and templates do not give needs an agent's word that it
is the brand's (it may be another customer's: bots cannot give it, nor make one the brand's by
writing it into a template: a template counts only as a person last wrote it); nor does anything at
all, in public, on a matter handled in a private channel (security or fraud, or a customer whose
case is open) — there the public side is only the detail-free notice, and the conversation goes on
in private. A post not triaged yet may be such a matter: the keyword rules read it meanwhile, and
when they find a security or fraud report it is treated as one. Triage can be wrong about the last
one, so an agent may override it (recorded in the audit log); personal data, never. A private message
is never answered in public: a public reply would quote what its author said in private.

Nothing is posted in public under a post that is gone: deleted on its platform (the platform
refuses the reply: X's "reply to a Tweet that is deleted or not visible to you"; a private message
can still reach its author) or erased here on a privacy request (nothing at all goes out: the
dispatcher cancels it). Nobody may override that.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from escalation.links import shown_without_links
from models import (
    AuditEvent,
    Author,
    Case,
    Customer,
    KnowledgeArticle,
    Mention,
    RouteDecision,
    Template,
    TriageResult,
)
from service.privacy import erased
from triage.pii import detect_pii
from triage.rules import sensitivity_rules

NEVER_PUBLIC = {"card_number": "card number", "iban": "IBAN", "national_id": "national ID", "password": "password",
                "one_time_code": "one-time code"}
CONTACT = frozenset({"email", "phone"})
PRIVATE_LEVELS = ("security", "fraud")
PLATFORM_NAMES = {"x": "X", "reddit": "Reddit", "discourse": "Discourse"}  # as the console says them too


@dataclass(frozen=True)
class Refusal:
    reason: str
    overridable: bool  # an agent may judge the matter not private after all; personal data never goes out


def platform_name(platform: str) -> str:
    """The platform as people call it ("deleted on X"); a generic webhook's source is "its platform"."""
    return PLATFORM_NAMES.get(platform, "its platform")


def gone_from_platform(mention: Mention) -> str:
    """Why nothing can be done to a post any more, nor asked of the moderators: it left its platform."""
    return (f"the post was deleted on {platform_name(mention.platform)}: nothing can be done to it there, "
            "and the moderators have nothing to decide")


def gone_refusal(mention: Mention) -> Refusal | None:
    """Why nothing can be posted in public under this post any more: erased, or deleted on its platform."""
    if erased(mention):
        return Refusal("the post was erased on a privacy request: nothing is posted in answer to it",
                       overridable=False)
    if mention.deleted:
        return Refusal(f"the post was deleted on {platform_name(mention.platform)}: a public reply cannot be "
                       "posted to it; reply privately", overridable=False)
    return None


def _contact_key(kind: str, value: str) -> str:
    return re.sub(r"\D", "", value)[-9:] if kind == "phone" else value.strip().casefold()


def _contacts(text: str | None) -> set[str]:
    if not text:
        return set()
    return {_contact_key(s.type, text[s.start:s.end]) for s in detect_pii(text) if s.type in CONTACT}


# the audit actions that write a template's bodies (console.api.templates, console.knowledge)
TEMPLATE_WRITES = ("template.created", "template.updated", "knowledge.template_saved")
BOT_ACTOR = "token:"  # console.auth.Principal.actor of an API token; a person in the console is "session:..."


async def bot_written_templates(session: AsyncSession) -> set[str]:
    """The templates whose bodies a bot (an API token) wrote last, as the audit log tells: their words
    are not the brand's until a person saves them. A template loaded from the knowledge files has no
    such entry: an operator wrote it."""
    last: dict[str, str] = {}
    for name, actor in await session.execute(select(AuditEvent.object_id, AuditEvent.actor).where(
            AuditEvent.object_type == "template", AuditEvent.action.in_(TEMPLATE_WRITES)).order_by(AuditEvent.id)):
        last[name] = actor
    return {name for name, actor in last.items() if actor.startswith(BOT_ACTOR)}


async def brand_contacts(session: AsyncSession) -> set[str]:
    """The e-mail addresses and phone numbers the brand gives in its articles and its templates, as
    people wrote them: never from a template a bot wrote (a bot with ``templates:write`` could otherwise
    make any address "the brand's" by putting it in one, then give it out in public)."""
    by_bots = await bot_written_templates(session)
    bodies = [str(v) for name, variants in await session.execute(select(Template.name, Template.variants))
              if name not in by_bots for v in (variants or {}).values()]
    bodies += list(await session.scalars(select(KnowledgeArticle.body)))
    return set().union(*(_contacts(b) for b in bodies))


async def private_matter(session: AsyncSession, mention: Mention) -> bool:
    """Is this post handled in a private channel: a private message, scored security or fraud (or, not
    triaged yet, found so by the keyword rules), routed private, or its author (or the customer behind
    them, on any platform) has an unresolved case?"""
    return await _why_private(session, mention) is not None


async def _why_private(session: AsyncSession, mention: Mention) -> str | None:
    """:func:`private_matter`'s answer, saying why: "message", "untriaged" (the keyword rules found a
    security or fraud report in a post triage has not read yet), "private" (triaged or routed so, or
    an open case), or None."""
    if not mention.is_public:
        return "message"
    triage = (await session.execute(select(TriageResult.sensitivity)
                                    .where(TriageResult.mention_id == mention.id))).first()
    if triage is None:  # not triaged yet (a backlog, or triage failed on it): the keyword rules read it
        if untriaged_sensitivity(mention) in PRIVATE_LEVELS:
            return "untriaged"
    elif triage.sensitivity in PRIVATE_LEVELS:
        return "private"
    outcome = await session.scalar(select(RouteDecision.outcome).where(RouteDecision.mention_id == mention.id))
    if outcome == "escalate_private":
        return "private"
    if mention.author_id is None:
        return None
    author = await session.get(Author, mention.author_id)
    whose = [Case.author_id == mention.author_id]
    if author is not None and author.customer_id is not None:  # her case from another platform
        whose.append(Case.customer_id == author.customer_id)
    open_case = await session.scalar(select(Case.id).where(or_(*whose), Case.status != "resolved").limit(1))
    return "private" if open_case is not None else None


def untriaged_sensitivity(mention: Mention) -> str | None:
    """What the keyword rules (triage's safety net, which needs no model) make of a post not triaged
    yet: "security", "fraud" or None."""
    sensitivity, _ = sensitivity_rules(mention.text or "")
    return sensitivity


def private_message_refusal(mention: Mention) -> Refusal | None:
    """A private message is answered privately: a public reply would make public what was said in private."""
    if mention.is_public:
        return None
    return Refusal("this is a private message: it is answered privately, never in public", overridable=False)


def secure_link_refusal(text: str) -> Refusal | None:
    """A secure link opens its one recipient's private channel: in public, it hands the case to anyone.
    Found as :func:`escalation.links.shown_without_links` finds it, escaped or not."""
    if shown_without_links(text) == text:
        return None
    return Refusal("a public reply may not contain a secure link: it opens the customer's private channel to "
                   "whoever follows it; send it privately", overridable=False)


async def public_reply_refusal(session: AsyncSession, mention: Mention, text: str) -> Refusal | None:
    """Why ``text`` may not be posted in public in answer to ``mention``; None when it may."""
    gone = gone_refusal(mention) or private_message_refusal(mention)
    if gone is not None:  # first: no wording would make it postable
        return gone
    spans = detect_pii(text)
    secret = sorted({NEVER_PUBLIC[s.type] for s in spans if s.type in NEVER_PUBLIC})
    if secret:
        return Refusal(f"a public reply may not contain personal data ({', '.join(secret)}): send it privately",
                       overridable=False)
    link = secure_link_refusal(text)
    if link is not None:
        return link
    # what an agent may overrule, all said at once: overruling one must not pass over another unseen
    reasons = []
    said = {_contact_key(s.type, text[s.start:s.end]) for s in spans if s.type in CONTACT}
    if said:
        theirs = _contacts(mention.text)
        author = await session.get(Author, mention.author_id) if mention.author_id else None
        if author is not None:  # some people put their number or address in their display name
            theirs |= _contacts(author.display_name) | _contacts(author.handle)
        customer = await session.get(Customer, author.customer_id) if author and author.customer_id else None
        if customer is not None:
            on_file = (("email", customer.email), ("phone", customer.phone))
            theirs |= {_contact_key(kind, value) for kind, value in on_file if value}
        if said & theirs:
            return Refusal("a public reply may not repeat the customer's e-mail address or phone number: "
                           "send it privately", overridable=False)
        if said - await brand_contacts(session):  # someone's: another customer's, or one redacted from the post
            reasons.append("a public reply may give only the e-mail addresses and phone numbers the brand's "
                           "templates and articles give: confirm this one is the brand's own")
    why = await _why_private(session, mention)
    if why == "untriaged":
        reasons.append("this post is not triaged yet and reads like a security or fraud report: reply privately, "
                       "or try again shortly, once it is triaged")
    elif why is not None:
        reasons.append("this is handled in a private channel (security or fraud, or the customer's open case): "
                       "reply privately; the detail-free notice is the only public reply there")
    return Refusal("; and ".join(reasons), overridable=True) if reasons else None
