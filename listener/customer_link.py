"""Linking the author of a signed webhook post to the customer record the sender names.

The in-product help widget knows who is signed in, so its posts carry ``customer`` (``id``: the
brand's customer reference, or ``email``). That claim is trusted only because the request's HMAC
signature was verified, so only the webhook handler calls this, never ingest (which also sees
replayed files and the ingest API). The link is an ordinary :class:`SocialIdentity` (source
``webhook``) keyed by the author's id, which the webhook namespaces by source, so ingest's usual
identity lookup attaches the mention, its author and its thread to the customer.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from escalation.customers import link_identity
from listener.protocol import NormalizedMention
from models import Customer
from service.tombstones import Tombstones, privacy_key

log = logging.getLogger("socialcare.listener.webhook")


def customer_claim(item: dict[str, Any], where: str, problems: list[str]) -> tuple[str | None, str | None]:
    """``(id, email)`` from a post's ``customer`` object (both None when absent)."""
    claim = item.get("customer")
    if claim is None:
        return None, None
    if not isinstance(claim, dict):
        problems.append(f"{where}.customer: an object")
        return None, None
    ref, email = claim.get("id"), claim.get("email")
    if ref is not None and (not isinstance(ref, (str, int)) or not 0 < len(str(ref)) <= 64):
        problems.append(f"{where}.customer.id: a string of 1 to 64 characters")
    if email is not None and (not isinstance(email, str) or "@" not in email or len(email) > 320):
        problems.append(f"{where}.customer.email: an e-mail address")
    return (str(ref) if ref not in (None, "") else None), (email.strip().lower() if isinstance(email, str) else None)


async def find_customer(session: AsyncSession, ref: str | None, email: str | None) -> Customer | None:
    """By the brand's reference first; else the one customer with this address (none if ambiguous)."""
    if ref:
        found = await session.scalar(select(Customer).where(Customer.external_ref == ref))
        if found is not None:
            return found
    if email:
        rows = list(await session.scalars(select(Customer).where(func.lower(Customer.email) == email).limit(2)))
        if len(rows) == 1:
            return rows[0]
    return None


async def link_signed_customers(db: Any, claims: list[tuple[NormalizedMention, str | None, str | None]],
                                settings: Any) -> int:
    """Link each claimed author to their customer; returns how many were linked. Unknown customers
    are left alone: the CRM import, not a webhook, creates customer records. A post its author's
    erasure tombstoned (published before it, delivered late: the sender's retry) links nobody,
    as ingest then drops it: the link would bring back the identity the erasure deleted. The
    tombstones are looked up as ingest looks them up (:class:`service.tombstones.Tombstones`, with
    ``settings``' key), so an erasure and this link wait for each other."""
    tombstones = Tombstones(privacy_key(settings))
    claims = [(m, ref, email) for m, ref, email in claims if _claimed(m, ref, email)]
    sqlite, dropped = db.is_sqlite, set()
    while True:
        linked = 0
        async with db.session() as session:
            if not sqlite:  # first statement, holding the gate until the commit (see service.tombstones)
                dropped |= await tombstones.erased_posts(session, [m for m, _, _ in claims], lock=True)
            for i, (mention, ref, email) in enumerate(claims):
                if i in dropped:
                    continue
                customer = await find_customer(session, ref, email)
                if customer is None:
                    log.info("webhook post %s names a customer unknown to the customer table", mention.external_id)
                    continue
                await link_identity(session, customer.id, mention.platform, None, mention.author_id, source="webhook")
                linked += 1
            if sqlite and linked:  # after the writes, in their transaction: link again without them
                await session.flush()
                if late := await tombstones.erased_posts(session, [m for m, _, _ in claims], lock=False) - dropped:
                    dropped |= late
                    await session.rollback()
                    continue
            await session.commit()
        if dropped:
            log.info("%d webhook post(s) of an erased account: their author not linked", len(dropped))
        return linked


def _claimed(mention: NormalizedMention, ref: str | None, email: str | None) -> bool:
    if not (ref or email):
        return False
    if not mention.author_id:
        log.info("webhook post %s names a customer but no author id: not linked", mention.external_id)
        return False
    return True
