"""What may not be said in public: the check every human or bot reply passes before it is queued.

The service's own public replies are fixed or templated (the secure-link notice, answers, status
replies) and carry no customer detail. Replies written by agents in the console or by bots through
the API are free text, so they are checked here: a card number, IBAN, national ID, password or
one-time code never goes out in public; nor does the customer's own e-mail address or phone number;
an address or number the brand's templates and articles do not give needs an agent's word that it
is the brand's (it may be another customer's: bots cannot give it); nor does anything at all, in
public, on a matter handled in a
private channel (security or fraud, or a customer whose case is open) — there the public side is
only the detail-free notice, and the conversation goes on in private. Triage can be wrong about
the last one, so an agent may override it (recorded in the audit log); personal data, never.

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

from models import Author, Case, Customer, KnowledgeArticle, Mention, RouteDecision, Template, TriageResult
from service.privacy import erased
from triage.pii import detect_pii

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


async def brand_contacts(session: AsyncSession) -> set[str]:
    """The e-mail addresses and phone numbers the brand gives in its templates and articles."""
    bodies = [str(v) for variants in await session.scalars(select(Template.variants)) for v in (variants or {}).values()]
    bodies += list(await session.scalars(select(KnowledgeArticle.body)))
    return set().union(*(_contacts(b) for b in bodies))


async def private_matter(session: AsyncSession, mention: Mention) -> bool:
    """Is this post handled in a private channel: scored security or fraud, routed private, or its
    author (or the customer behind them, on any platform) has an unresolved case?"""
    sensitivity = await session.scalar(select(TriageResult.sensitivity)
                                       .where(TriageResult.mention_id == mention.id))
    if sensitivity in PRIVATE_LEVELS:
        return True
    outcome = await session.scalar(select(RouteDecision.outcome).where(RouteDecision.mention_id == mention.id))
    if outcome == "escalate_private":
        return True
    if mention.author_id is None:
        return False
    author = await session.get(Author, mention.author_id)
    whose = [Case.author_id == mention.author_id]
    if author is not None and author.customer_id is not None:  # her case from another platform
        whose.append(Case.customer_id == author.customer_id)
    return await session.scalar(select(Case.id).where(or_(*whose), Case.status != "resolved").limit(1)) is not None


async def public_reply_refusal(session: AsyncSession, mention: Mention, text: str) -> Refusal | None:
    """Why ``text`` may not be posted in public in answer to ``mention``; None when it may."""
    gone = gone_refusal(mention)
    if gone is not None:  # first: no wording would make it postable
        return gone
    spans = detect_pii(text)
    secret = sorted({NEVER_PUBLIC[s.type] for s in spans if s.type in NEVER_PUBLIC})
    if secret:
        return Refusal(f"a public reply may not contain personal data ({', '.join(secret)}): send it privately",
                       overridable=False)
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
            return Refusal("a public reply may give only the e-mail addresses and phone numbers the brand's "
                           "templates and articles give: confirm this one is the brand's own",
                           overridable=True)
    if await private_matter(session, mention):
        return Refusal("this is handled in a private channel (security or fraud, or the customer's open case): "
                       "reply privately; the detail-free notice is the only public reply there", overridable=True)
    return None
