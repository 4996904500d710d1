"""What the moderation page shows: held posts with their times, links, scores and whether the hold
hid them; recent actions and alerts with a redacted snippet of their post. Everything a page shows
of a post goes through :func:`console.queries.public_text` (personal data redacted, a secure link
a customer quoted masked), as on every other console page.

Private matters are the care team's (:func:`console.queries.care_team_only`): for a moderator
(``private=False``) the lists leave out actions on them and bot replies to them, as ``/mentions``
does, but for posts put before the moderators (held, reported, alerted), which they must decide."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from community import moderation
from console.queries import moderated_conversations, moderators_see_clause, public_text
from escalation.links import shown_without_links
from models import Author, Mention, ModerationAction, Reply, RouteDecision, TriageResult

RECENT = 100
ACKNOWLEDGED = 10  # the "acknowledged recently" list
SNIPPET = 80
POST = 280  # the post a bot reply answers: as long as a post on X
# the scores a moderator weighs: (shown name, triage task, label); sensitivity shows its likeliest
# label other than "none"
SCORES = (("spam", "spam", "spam"), ("toxicity", "toxicity", "offensive"))


@dataclass
class Held:
    hold: ModerationAction
    mention: Mention
    author: Author | None
    text: str
    reporter: str | None
    scores: list[tuple[str, float | str]]
    personal_data: bool
    hidden: str  # what the hold did on the platform, in words
    link: str | None  # the original post


def link(url: str | None) -> str | None:
    """A platform's address for the post, when it is a web address (never a ``javascript:`` one)."""
    return url if url and url.startswith(("https://", "http://")) else None


def snippet_text(text: str, size: int = SNIPPET) -> str:
    text = " ".join(text.split())
    return text if len(text) <= size else text[:size - 1].rstrip() + "…"


def snippet(mention: Mention, tri: TriageResult | None, size: int = SNIPPET) -> str:
    return snippet_text(public_text(mention, tri), size)


def scores(tri: TriageResult | None) -> list[tuple[str, float | str]]:
    """The probabilities that matter for a decision, e.g. [("spam", 0.97), ("toxicity", 0.02),
    ("sensitivity: account", 0.12)]; the label alone where triage kept no probabilities."""
    if tri is None:
        return []
    doc = tri.scores or {}
    out: list[tuple[str, float | str]] = []
    for name, task, label in SCORES:
        p = ((doc.get(task) or {}).get("probabilities") or {}).get(label)
        out.append((name, float(p)) if isinstance(p, (int, float)) else (name, getattr(tri, task)))
    probs = {k: v for k, v in ((doc.get("sensitivity") or {}).get("probabilities") or {}).items()
             if k != "none" and isinstance(v, (int, float))}
    if probs:
        top = max(probs, key=probs.get)
        out.append((f"sensitivity: {top}", float(probs[top])))
    else:
        out.append(("sensitivity", tri.sensitivity))
    return out


def reporter(hold: ModerationAction) -> str | None:
    """Who reported the post ("alice", "alice's bot"), or None for a hold a rule made."""
    if hold.rule != moderation.REPORT_RULE:
        return None
    via, _, name = hold.actor.partition(":")
    return f"{name}'s bot" if via == "token" else name or hold.actor


def hidden_state(hold: ModerationAction, mention: Mention, hide: ModerationAction | None) -> str:
    if hold.rule == moderation.REPORT_RULE:
        return "reported: still public"
    if hide is None:
        return "not hidden"
    if hide.status == "done":
        return f"hidden on {mention.platform}"
    if hide.status == "dry_run":
        return "hidden (dry run: recorded only)"
    if hide.status in ("queued", "sending"):
        again = (hide.details or {}).get("interrupted")  # put back by service.stranded's sweep
        return f"being hidden on {mention.platform}" + (" (again, after an interruption)" if again else "")
    if hide.status == "unknown":  # its executor died mid-call, again and again (service.stranded)
        return (f"may still be public: hiding it was interrupted; check it on {mention.platform} "
                "(removing it here settles it)")
    return f"still public: {(hide.details or {}).get('error') or hide.status}"


async def held_posts(session: AsyncSession) -> list[Held]:
    rows = await moderation.queue(session)
    keys = [f"{hold.dedup_key}:filter" for hold, *_ in rows]
    hides = {a.dedup_key: a for a in await session.scalars(
        select(ModerationAction).where(ModerationAction.dedup_key.in_(keys)))} if keys else {}
    return [Held(hold, m, author, public_text(m, tri), reporter(hold), scores(tri),
                 bool(tri and tri.pii_exposed), hidden_state(hold, m, hides.get(f"{hold.dedup_key}:filter")),
                 link(m.url))
            for hold, m, author, tri in rows]


def _with_posts(q: Select, private: bool) -> Select:
    """``q`` joined to its post's triage and route; without ``private``, only posts a moderator reads."""
    q = (q.outerjoin(TriageResult, TriageResult.mention_id == Mention.id)
         .outerjoin(RouteDecision, RouteDecision.mention_id == Mention.id))
    return q if private else q.where(moderators_see_clause())


def _actions(private: bool) -> Select:
    return _with_posts(select(ModerationAction, Mention, TriageResult)
                       .join(Mention, Mention.id == ModerationAction.mention_id), private)


async def recent_actions(session: AsyncSession, *, private: bool = True,
                         ) -> list[tuple[ModerationAction, Mention, str, str | None]]:
    """Decided and performed actions, newest first, each with a redacted snippet of its post and
    the post's address."""
    rows = (await session.execute(_actions(private).where(ModerationAction.status != "pending")
                                  .order_by(ModerationAction.id.desc()).limit(RECENT))).all()
    return [(a, m, snippet(m, tri), link(m.url)) for a, m, tri in rows]


async def shown_action(session: AsyncSession, action_id: int, *, private: bool = True) -> ModerationAction | None:
    """One action, if the page may show it to this reader (a form on any other is a 404)."""
    row = (await session.execute(_actions(private).where(ModerationAction.id == action_id))).first()
    return row[0] if row else None


async def open_alerts(session: AsyncSession) -> list[dict[str, Any]]:
    return [{**a, "url": link(a["url"])} for a in await moderation.alerts(session)]


async def acknowledged(session: AsyncSession) -> list[dict[str, Any]]:
    """The last alerts someone took in hand, with who and when: an alert does not vanish unseen."""
    rows = await moderation.alerts(session, status="acknowledged", limit=ACKNOWLEDGED)
    return [{**a, "acknowledged_at": datetime.fromisoformat(a["acknowledged_at"]) if a["acknowledged_at"] else None,
             "text": snippet_text(a["text"]), "url": link(a["url"])} for a in rows]


async def unknown_actions(session: AsyncSession, *, private: bool = True,
                          ) -> list[tuple[ModerationAction, Mention, str, str | None]]:
    """Actions nobody knows were performed (their executor interrupted mid-call, service.stranded),
    oldest first and all of them (up to a page), so none drops out of sight as recent ones do."""
    rows = (await session.execute(_actions(private).where(ModerationAction.status == "unknown")
                                  .order_by(ModerationAction.id).limit(moderation.BULK_LIMIT))).all()
    return [(a, m, snippet(m, tri), link(m.url)) for a, m, tri in rows]


# the bot replies a moderator may take back: public ones that went out (or may have); never a private
# message (a secure link's DM), nor one still in the outbox
TAKE_BACK = (Reply.sent_by == "bot", Reply.visibility == "public", Reply.status.in_(("sent", "dry_run", "unknown")))


def reply_text(reply: Reply, size: int | None = None) -> str:
    """A reply as the moderation page quotes it: a secure link it holds masked, shortened to ``size``."""
    text = shown_without_links(reply.text)
    return snippet_text(text, size) if size else text


@dataclass
class BotReply:
    reply: Reply
    text: str  # as shown: secure links masked
    post: str | None  # the post it answers, redacted (None: it answers none we hold)
    link: str | None  # that post's address


def _bot_replies(private: bool) -> Select:
    return _with_posts(select(Reply, Mention, TriageResult).outerjoin(Mention, Mention.id == Reply.mention_id)
                       .where(*TAKE_BACK), private)


async def bot_replies(session: AsyncSession, *, private: bool = True) -> list[BotReply]:
    """Public bot replies, newest first but those nobody knows were posted (``unknown``) before the
    rest, so none drops out of the list; each with the post it answers, so that a moderator judges
    the reply against what it answers."""
    rows = (await session.execute(_bot_replies(private).order_by(Reply.status != "unknown", Reply.id.desc())
                                  .limit(RECENT))).all()
    return [BotReply(r, reply_text(r), snippet(m, tri, POST) if m else None, link(m.url) if m else None)
            for r, m, tri in rows]


async def bot_reply(session: AsyncSession, reply_id: int, *, private: bool = True) -> Reply | None:
    """One reply of the list (:func:`bot_replies`) by id, listed or not; None for any other reply."""
    row = (await session.execute(_bot_replies(private).where(Reply.id == reply_id))).first()
    return row[0] if row else None


async def openable(session: AsyncSession, role: str, conv_ids: set[int]) -> set[int]:
    """The conversations among ``conv_ids`` the page may link to for ``role``: a moderator opens only
    those holding a post with a moderation action (:mod:`console.conversation`)."""
    conv_ids = {c for c in conv_ids if c is not None}
    return conv_ids if role != "moderator" else await moderated_conversations(session, conv_ids)


async def post_snippet(session: AsyncSession, mention_id: int) -> str:
    """A post as a confirmation or a refusal names it: a short redacted snippet."""
    mention = await session.get(Mention, mention_id)
    if mention is None:
        return f"post #{mention_id}"
    tri = await session.scalar(select(TriageResult).where(TriageResult.mention_id == mention_id))
    return snippet(mention, tri, 60)
