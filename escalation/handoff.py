"""Moving a customer from public to private, and back: the secure-link DM, the agent's one-click
escalation, and the closing note that returns the customer to the community.

Every public text here is fixed wording with no variable about the customer or the problem, so
nothing from the case can leak into public; private texts carry the link and the author's name.
The DM's template never sees the link itself (:func:`secure_dm_text`): whoever edits it could
otherwise send a disguised copy to themselves or point the link at another host.
The public notice only says a link was sent by DM where one can be; elsewhere it asks for a DM.
A post that exposed personal data is hidden (a queued platform action the dispatcher performs
before anything public is said in reply), redacted everywhere, and its author told privately.
"""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from community import moderation
from community.templates import TemplateRenderError, render
from escalation.cases import SlaPolicy, open_or_join
from escalation.links import issue_secure_link
from models import Author, Case, Mention, Reply, Template, TriageResult
from service.audit import record

DM_PLATFORMS = frozenset({"x", "reddit", "discourse"})  # where the brand can message a user privately
PUBLIC_SECURE_NOTICE = "We've sent you a secure link by DM — please don't share account details here."
# where no DM can carry the link (the platform or the author allows none, or the DM failed)
PUBLIC_DM_REQUEST_NOTICE = ("Please send us a direct message so we can help you privately — "
                            "don't share account details here.")
DM_REQUEST_TEMPLATE = "secure_dm_request_notice"
PUBLIC_CLOSING_NOTE = ("Thanks for working this through with us in private — we're glad it's sorted. "
                       "The community and our team are here whenever you need us.")
DM_FALLBACK = "Hi {{ author_name }}, this private link connects you to our team. It works once and expires " \
              "in {{ ttl_hours }} hours: {{ secure_link }}"
DM_TEMPLATE = "secure_link_dm"
_OPENERS = tuple("(<\"'«“")  # may stand right before the link, after a space
_CLOSERS = ".,;:!?)>\"'»”"  # may stand right after it, before a space
DM_TEMPLATE_RULE = ("the secure link DM must show {{ secure_link }} exactly once, as a word of its own "
                    "(otherwise the built-in words are sent)")


async def _template_body(session: AsyncSession, name: str) -> str | None:
    variants = await session.scalar(select(Template.variants).where(Template.name == name))  # the bodies alone
    if not variants:
        return None
    return variants.get("friendly") or next(iter(variants.values()))


def _stand_in(url: str) -> str:
    """A fake link as long as ``url`` (the platform's cut budgets for the same length), with a fresh
    random token, so nothing a template does with it can be undone into the real one."""
    base, _, token = url.rpartition("/")
    return f"{base}/{secrets.token_urlsafe(len(token))[:len(token)]}"


def _alone(text: str, start: int, end: int) -> bool:
    """Nothing glued to the link but a bracket or punctuation: ``https://evil.example/?`` before it
    would make one link of both and carry the token away on a click."""
    before = text[:start]
    before = before[:-1] if before.endswith(_OPENERS) else before
    after = text[end:].lstrip(_CLOSERS)
    return (not before or before[-1].isspace()) and (not after or after[0].isspace())


def secure_dm_text(body: str, ctx: dict[str, Any], platform: str, url: str) -> str | None:
    """``body`` rendered with ``url`` where it shows ``{{ secure_link }}``, or None when it shows it other
    than exactly once as a word of its own, shows its token elsewhere too, or does not render.

    The template is rendered with a stand-in, and the real URL put in its place afterwards, outside
    Jinja: a template edited to show ``secure_link|replace('/', ' ')`` (a copy the masking of
    :mod:`escalation.links` would not recognise) or ``https://other.host/?{{ secure_link }}``
    never gets the token to transform."""
    stand_in = _stand_in(url)
    try:
        text = render(body, {**ctx, "secure_link": stand_in}, platform=platform, link=stand_in)
    except TemplateRenderError:
        return None
    if text.count(stand_in) != 1 or text.count(stand_in.rpartition("/")[2]) != 1:  # nor its token elsewhere
        return None
    at = text.index(stand_in)
    if not _alone(text, at, at + len(stand_in)):
        return None
    return text[:at] + url + text[at + len(stand_in):]


def secure_dm_problem(body: str) -> str | None:
    """Why ``body`` cannot be the secure link DM (on X, for a sample author), or None: where it is saved."""
    sample = {"author_name": "Sam", "ttl_hours": "24"}
    url = "https://care.example.com/secure/" + "A" * 43
    return None if secure_dm_text(body, sample, "x", url) is not None else DM_TEMPLATE_RULE


def can_message_privately(mention: Mention, author: Author | None) -> bool:
    return mention.platform in DM_PLATFORMS and author is not None and bool(author.platform_user_id or author.handle)


async def private_handoff(session: AsyncSession, case: Case, mention: Mention, settings: Any, *,
                          issued_by: str = "bot", again: bool = False) -> list[Reply]:
    """Queue the DM with a new secure link for ``case`` (pending, for the dispatcher).

    Once per case unless ``again`` (an agent re-issuing the link); nothing where the platform has
    no private messages. Returns the rows added to the session."""
    if case.status == "resolved":
        return []
    author = await session.get(Author, mention.author_id) if mention.author_id else None
    if not can_message_privately(mention, author):
        record(session, issued_by, "case.dm_unavailable", "case", case.id, platform=mention.platform)
        return []
    first_key = f"secure_dm:{case.id}"
    exists = await session.scalar(select(Reply.id).where(Reply.dedup_key == first_key))
    if exists and not again:
        return []
    url = await issue_secure_link(session, case, settings, issued_by=issued_by)
    body = await _template_body(session, DM_TEMPLATE)
    ctx = {"author_name": (author.display_name or author.handle or "there") if author else "there",
           "ttl_hours": f"{settings.secure_link_ttl_hours:g}"}
    text = secure_dm_text(body, ctx, mention.platform, url) if body else None
    if text is None:
        if body:
            record(session, issued_by, "case.dm_template_refused", "case", case.id, template=DM_TEMPLATE)
        # the built-in words fit any platform unless the base URL is huge: then the link alone
        text = secure_dm_text(DM_FALLBACK, ctx, mention.platform, url) or url
    key = first_key if not exists else f"{first_key}:{await _dm_count(session, case.id) + 1}"
    reply = Reply(dedup_key=key, mention_id=mention.id, conversation_id=mention.conversation_id, case_id=case.id,
                  platform=mention.platform, visibility="private", kind="secure_link_dm", text=text,
                  template="secure_link_dm", status="pending", sent_by=issued_by)
    session.add(reply)
    await session.flush()
    return [reply]


async def _dm_count(session: AsyncSession, case_id: int) -> int:
    return len(list(await session.scalars(select(Reply.id).where(Reply.case_id == case_id,
                                                                  Reply.kind == "secure_link_dm"))))


def public_notice_template(dm_possible: bool) -> tuple[str, str]:
    """(template name, its built-in words) of the detail-free public notice: "we've sent you a secure
    link by DM" when a DM can carry it, else a request to message us."""
    return ("secure_link_notice", PUBLIC_SECURE_NOTICE) if dm_possible else (DM_REQUEST_TEMPLATE,
                                                                             PUBLIC_DM_REQUEST_NOTICE)


async def public_notice_text(session: AsyncSession, mention: Mention, dm_possible: bool) -> tuple[str, str]:
    """(text, template) of the public notice (:func:`public_notice_template`), rendered from the
    brand's template when it has one. Fixed words: no customer context is given."""
    name, fixed = public_notice_template(dm_possible)
    body = await _template_body(session, name) or fixed
    try:
        return render(body, {}, platform=mention.platform), name
    except TemplateRenderError:
        return render(fixed, {}, platform=mention.platform), name


async def _protect(session: AsyncSession, mention: Mention, tri: TriageResult, author: Author | None,
                   actor: str) -> list[Reply]:
    """Personal data in a public post: queue the platform hide, redact the post and its copies, and
    tell the author privately (once per post, shared with the act stage's notice)."""
    if not mention.hidden:
        await moderation.add_action(session, f"hide:{mention.id}", mention, "hide", "personal data exposed in public",
                                    rule="builtin:pii", actor=actor)
    await moderation.redact_everywhere(session, mention, (tri.scores or {}).get("pii"))
    key = f"notice:{mention.id}"
    if not can_message_privately(mention, author) or \
            await session.scalar(select(Reply.id).where(Reply.dedup_key == key)):
        return []
    name = moderation.PII_NOTICE
    ctx = {"author_name": (author.display_name or author.handle or "there") if author else "there"}
    try:
        text = render(await _template_body(session, name) or moderation.BUILTIN_NOTICES[name], ctx,
                      platform=mention.platform)
    except TemplateRenderError:
        text = render(moderation.BUILTIN_NOTICES[name], ctx, platform=mention.platform)
    reply = Reply(dedup_key=key, mention_id=mention.id, conversation_id=mention.conversation_id,
                  platform=mention.platform, visibility="private", kind="notice", text=text, template=name,
                  status="pending", sent_by=actor)
    session.add(reply)
    return [reply]


async def escalate_mention(session: AsyncSession, mention: Mention, settings: Any, actor: str,
                           category: str = "agent") -> tuple[Case, list[Reply]]:
    """An agent's one click: open (or join) the case; if the post exposed personal data, hide it
    (queued, performed before any public reply), redact it and tell its author privately; post the
    detail-free public notice and queue the secure-link DM. Idempotent per mention."""
    case, opened = await open_or_join(session, mention, category, SlaPolicy.from_settings(settings))
    if opened:
        record(session, actor, "case.opened", "case", case.id, mention_id=mention.id, category=category)
    author = await session.get(Author, mention.author_id) if mention.author_id else None
    tri = await session.scalar(select(TriageResult).where(TriageResult.mention_id == mention.id))
    added: list[Reply] = []
    if tri is not None and tri.pii_exposed and mention.is_public:
        added += await _protect(session, mention, tri, author, actor)
    key = f"secure_notice:{case.id}:{mention.conversation_id}"
    if not await session.scalar(select(Reply.id).where(Reply.dedup_key == key)):
        text, template = await public_notice_text(session, mention, can_message_privately(mention, author))
        notice = Reply(dedup_key=key, mention_id=mention.id, conversation_id=mention.conversation_id,
                       case_id=case.id, platform=mention.platform, visibility="public", kind="secure_link",
                       text=text, template=template, status="pending", sent_by=actor)
        session.add(notice)
        added.append(notice)
    added += await private_handoff(session, case, mention, settings, issued_by=actor)
    await session.flush()
    return case, added


async def closing_note(session: AsyncSession, case: Case, actor: str) -> Reply | None:
    """The public note that returns the customer to the community: fixed words, no detail."""
    mention = await session.get(Mention, case.opened_by_mention_id) if case.opened_by_mention_id else None
    if mention is None or not mention.is_public:
        return None
    key = f"case_closed:{case.id}"
    if await session.scalar(select(Reply.id).where(Reply.dedup_key == key)):
        return None
    body = await _template_body(session, "case_closed_public") or PUBLIC_CLOSING_NOTE
    try:
        text = render(body, {}, platform=mention.platform)
    except TemplateRenderError:
        text = PUBLIC_CLOSING_NOTE
    reply = Reply(dedup_key=key, mention_id=mention.id, conversation_id=mention.conversation_id, case_id=case.id,
                  platform=mention.platform, visibility="public", kind="case_closed", text=text,
                  template="case_closed_public", status="pending", sent_by=actor)
    session.add(reply)
    await session.flush()
    record(session, actor, "case.returned_to_community", "case", case.id)
    return reply
