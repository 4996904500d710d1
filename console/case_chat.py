"""What the agent's case page says around the chat: where and when each message came from, and the
state of the case's secure links.

A case collects the customer's public posts (on any channel, under any of their handles) beside what
they write in the secure chat; without a channel and a time per message an agent cannot tell a post
from a chat line, nor answer the right place. A link's state tells the agent whether the customer
ever got in: sent, opened, verified, or expired unused. The token and the link itself are never
shown: only their hash is stored, and an agent has no use for them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from console.moderation_view import link as web_address
from console.queries import post_state
from escalation.public_guard import platform_name
from listener.protocol import utc
from models import Author, CaseMessage, Mention
from models.base import utcnow
from models.escalation import CustomerSession, SecureLink


def _utc(at: datetime | None) -> datetime | None:
    return None if at is None else utc(at)  # stored naive on SQLite, always UTC


@dataclass(frozen=True)
class ChatLine:
    """One message of the case as the agent reads it: ``where`` names its channel ("public post on
    Reddit by dana_k", "secure chat"), ``url`` links to a public post, ``at`` is when it was written."""

    message: CaseMessage
    at: datetime
    where: str
    url: str | None = None


def _where(mention: Mention, author: Author | None) -> str:
    kind = "public post" if mention.is_public else "private message"
    by = f" by {author.handle}" if author is not None and author.handle else ""
    state = post_state(mention)
    return f"{kind} on {platform_name(mention.platform)}{by}" + (f" ({state})" if state else "")


async def chat_lines(session: AsyncSession, messages: list[CaseMessage]) -> list[ChatLine]:
    """Each message with its time and channel: a customer's post carries its own (when it was posted,
    where, under which handle, its link), anything else was said in the secure chat or by the service."""
    ids = {m.mention_id for m in messages if m.mention_id is not None}
    posts = {m.id: (m, a) for m, a in (await session.execute(
        select(Mention, Author).outerjoin(Author, Author.id == Mention.author_id).where(Mention.id.in_(ids)))).all()
    } if ids else {}
    lines = []
    for msg in messages:
        post = posts.get(msg.mention_id) if msg.mention_id is not None else None
        if post is not None:
            mention, author = post
            url = web_address(mention.url) if mention.is_public and not mention.deleted else None  # a web address only
            lines.append(ChatLine(msg, _utc(mention.created_at), _where(mention, author), url))
        else:
            where = "the service" if msg.sender == "system" else "secure chat"
            lines.append(ChatLine(msg, _utc(msg.created_at), where))
    return lines


@dataclass(frozen=True)
class LinkState:
    """One secure link of the case, newest first: when it was sent and by whom, and what became of it."""

    link: SecureLink
    sent_at: datetime
    state: str  # "not opened yet" | "opened, not verified" | "verified" | "expired unused" | "replaced" | ...
    at: datetime | None  # when it reached that state (opened, verified, expired, replaced); or when it expires


async def link_states(session: AsyncSession, case_id: int, now: datetime | None = None) -> list[LinkState]:
    now = now or utcnow()
    links = list(await session.scalars(select(SecureLink).where(SecureLink.case_id == case_id)
                                       .order_by(SecureLink.id.desc()).limit(10)))
    sessions = {cs.link_id: cs for cs in await session.scalars(
        select(CustomerSession).where(CustomerSession.link_id.in_([link.id for link in links])))} if links else {}
    out = []
    for link in links:
        sent, used, revoked, expires = (_utc(link.created_at), _utc(link.used_at), _utc(link.revoked_at),
                                        _utc(link.expires_at))
        cs = sessions.get(link.id)
        if used is not None:
            verified = _utc(cs.verified_at) if cs is not None else None
            if verified is not None:
                state, at = "opened and verified", verified
            elif cs is not None and cs.codes_sent:
                state, at = "opened, code sent, not verified", _utc(cs.last_code_at) or used
            else:
                state, at = "opened, not verified", used
        elif revoked is not None:
            state, at = "withdrawn unused (a newer link or the case closed)", revoked
        elif expires <= now:
            state, at = "expired unused", expires
        else:
            state, at = "not opened yet, expires", expires
        out.append(LinkState(link, sent, state, at))
    return out
