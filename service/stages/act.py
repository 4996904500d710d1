"""The act stage: carries out routing decisions (replies, cases, moderation), exactly once.

Every row it writes has a natural de-duplication key (reply ``dedup_key``, one case per opening
mention, one copy of a customer's post per case, one moderation action per key), so a redelivered
message changes nothing. Replies and moderation actions are committed before they are performed;
:mod:`service.dispatch` sends replies at most once and :func:`community.moderation.execute` performs
platform actions once, neither for a post erased meanwhile (:mod:`service.privacy_actions`).
Automatic answers pass the reply bot's gates (:mod:`community.replybot`) or become suggestions.

A graceful stop with Redis Streams (:meth:`ActStage.halt`) lets the send under way finish and starts
no other: the batch's message is then left unacknowledged (:class:`service.dispatch.SendsStopped`),
and its redelivery sends what is still ``pending`` and performs what is still ``queued``, nothing
twice. With the in-process bus the stage is not halted (the message would die with the process):
the batch goes on until the stop's time is up, and what a cancel leaves is taken up by the pacer's
pass (:mod:`service.stranded`).

Decisions, posts and scores are read as the few columns acting needs (not whole rows, not triage's
score documents); only moderation and escalation, which change the post through shared code, get
the post and its author as ORM objects. The bot's own answers and their audit events, most of what
this stage writes, are inserted together at the end of the batch.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from community import broadcast, moderation
from community.answers import AnswerIndex
from community.replybot import BOT_KINDS, ChannelPolicy, GateInput, Ledger, blocked_by
from community.routing import RULE_NOTICES
from community.templates import TemplateRenderError, choose_tone, render
from escalation.cases import SlaPolicy, open_or_join
from escalation.handoff import can_message_privately, private_handoff, public_notice_template
from models import AuditEvent, Author, Incident, Mention, Reply, RouteDecision, TriageResult
from models.base import utcnow
from models.bulk import IDS, Columns, add_rows, records, update_rows
from service.audit import record
from service.bus import Envelope
from service.dispatch import Dispatcher, pending_replies
from service.privacy import respect_erasure
from service.stages.base import Outgoing, StageContext
from triage.pii import redact

COMMUNITY_TEXT = "Hi {{ author_name }}, the community has answered this one: {{ article_url }}"
ARTICLE_TEXT = "Hi {{ author_name }}, this should help: {{ article_url }}"
_D, _M, _T, _A, _R = (m.__table__.c for m in (RouteDecision, Mention, TriageResult, Author, Reply))
DECISION = Columns(_D.id, _D.mention_id, _D.outcome, _D.reason, _D.confidence, _D.details)
MENTION = Columns(_M.id, _M.platform, _M.author_id, _M.conversation_id, _M.hidden, _M.is_public)
TRIAGE = Columns(_T.id, _T.sensitivity, _T.toxicity, _T.spam, _T.pii_exposed,
                 _T.scores["pii"].label("pii"))  # the spans alone
AUTHOR = Columns(_A.id, _A.display_name, _A.handle, _A.platform_user_id)
ORM_OUTCOMES = frozenset({"moderate", "escalate_private"})  # redact, hide, open cases: shared ORM code
# the batch's statements, built once (models.bulk)
TO_ACT = (select(*DECISION, *MENTION, *TRIAGE, *AUTHOR)
          .select_from(RouteDecision.__table__.join(Mention.__table__, _M.id == _D.mention_id)
                       .outerjoin(TriageResult.__table__, _T.mention_id == _M.id)
                       .outerjoin(Author.__table__, _A.id == _M.author_id))
          .where(_D.mention_id.in_(IDS), _D.acted_at.is_(None)))
POSTS, AUTHORS = select(Mention).where(Mention.id.in_(IDS)), select(Author).where(Author.id.in_(IDS))
REPLY_KEYS = select(_R.dedup_key).where(_R.mention_id.in_(IDS))
INCIDENTS = select(Incident).where(Incident.id.in_(IDS))
DRY_RUN = (update(Reply.__table__).where(_R.mention_id.in_(IDS), _R.status == "pending", _R.sent_by == "bot",
                                         _R.platform.in_(bindparam("platforms", expanding=True)))
           .values(status="dry_run"))
ACTED = update(RouteDecision.__table__).where(_D.id.in_(IDS)).values(acted_at=bindparam("now"))


class ActStage:
    name = "act"

    def __init__(self, ctx: StageContext, dispatcher: Dispatcher | None = None, refresh_s: float = 30.0) -> None:
        self.ctx = ctx
        self.answers = AnswerIndex()
        self._refreshed = 0.0
        self._refresh_s = refresh_s
        self._keys: set[str] = set()  # reply keys known in the batch at hand
        self.ledger = Ledger()
        self.policies: dict[str, ChannelPolicy] = {}
        self.dispatcher = dispatcher or Dispatcher.for_settings(ctx.db, ctx.connectors, ctx.settings)

    def halt(self) -> None:
        """The process is stopping: no new platform call (the batch in hand is redelivered: with Redis
        Streams only, :meth:`service.pipeline.Pipeline.stop`)."""
        self.dispatcher.halt()

    def policy(self, platform: str) -> ChannelPolicy:
        if platform not in self.policies:
            self.policies[platform] = ChannelPolicy.for_channel(self.ctx.settings, platform)
        return self.policies[platform]

    async def warm_up(self) -> None:
        """Templates loaded before the first decision arrives."""
        async with self.ctx.db.session() as session:
            await self.answers.refresh(session)
        self._refreshed = time.monotonic()

    async def handle(self, batch: list[Envelope]) -> list[Outgoing]:
        ids = list(dict.fromkeys(env.payload["mention_id"] for env in batch))
        for attempt in range(3):
            try:
                async with self.ctx.db.session() as session:
                    await self._act(session, ids)
                    to_send = await pending_replies(session, ids)
                    to_perform = await moderation.queued_actions(session, ids)
                break
            except IntegrityError:
                if attempt == 2:
                    raise
        if to_perform:  # first: a post exposing personal data is hidden before anything is said
            await self.dispatcher.perform(to_perform, dry_run=self.ctx.settings.dry_run,
                                          dry_run_channels={p for p in self.ctx.connectors if self.policy(p).dry_run})
        await self.dispatcher.deliver(to_send)
        return []

    async def _act(self, session: AsyncSession, ids: list[int]) -> None:
        if time.monotonic() - self._refreshed > self._refresh_s:
            await self.answers.refresh(session)
            self._refreshed = time.monotonic()
        found = [records(r, DECISION, MENTION, TRIAGE, AUTHOR) for r in await session.execute(TO_ACT, {"ids": ids})]
        if not found:
            return
        rows = [(d, m, t) for d, m, t, _ in found]
        authors: dict[int, Any] = {a.id: a for *_, a in found if a is not None}
        author_ids = set(authors)
        posts: dict[int, Mention] = {}  # the ORM objects moderation and cases change (and their authors)
        if shared := {d.mention_id for d, _, _ in rows if d.outcome in ORM_OUTCOMES}:
            posts = {m.id: m for m in await session.scalars(POSTS, {"ids": list(shared)})}
            authors.update({a.id: a for a in await session.scalars(AUTHORS, {
                "ids": list({m.author_id for m in posts.values() if m.author_id})})})
        self._keys = set(await session.scalars(REPLY_KEYS, {"ids": ids}))
        self._added: dict[Any, list[dict]] = {Reply: [], AuditEvent: []}  # the bot's rows, inserted together
        # the actions this stage records are keyed by their post: read once, not one query each
        self._actions = await moderation.recorded_keys(session, ids) if shared or any(
            d.details.get("rule_actions") for d, _, _ in rows) else set()
        platforms = {m.platform for _, m, _ in rows}
        self.ledger = await Ledger.load(  # only the bot's gates read it; the rest only note replies
            session, conversation_ids={m.conversation_id for _, m, _ in rows if m.conversation_id},
            author_ids=author_ids, platforms=platforms,
            max_cooldown_hours=max(self.policy(p).cooldown_hours for p in platforms),
        ) if any(d.outcome in BOT_KINDS for d, _, _ in rows) else Ledger()
        incident_ids = {d.details.get("incident_id") for d, _, _ in rows if d.outcome == "broadcast"}
        incident_ids.discard(None)
        self._incidents = {i.id: i for i in await session.scalars(
            INCIDENTS, {"ids": list(incident_ids)})} if incident_ids else {}
        self._status = await broadcast.latest_status(session, set(self._incidents))
        for decision, mention, tri in rows:
            mention = posts.get(mention.id, mention)
            author = authors.get(mention.author_id) if mention.author_id else None
            handler = getattr(self, f"_{decision.outcome}", None)
            if handler is not None:
                await handler(session, decision, mention, author, tri)
            await self._rule_side_actions(session, decision, mention)
        for model, added in self._added.items():
            await add_rows(session, model, added)
        dry = sorted({m.platform for _, m, _ in rows if self.policy(m.platform).dry_run})
        if dry:  # what the pipeline queued on a dry-run channel (answers, notices, DMs) is only recorded
            await session.flush()  # the replies added as objects too
            await session.execute(DRY_RUN, {"ids": [m.id for _, m, _ in rows], "platforms": dry})
        await update_rows(session, RouteDecision, ((d.id, d.changes) for d, _, _ in rows))  # the bot's notes
        await session.execute(ACTED, {"ids": [d.id for d, _, _ in rows], "now": utcnow()})
        await session.flush()
        await respect_erasure(session, [m.id for _, m, _ in rows])  # erased since read: nothing goes out
        await session.commit()

    # --- texts -------------------------------------------------------------------------------
    def _author_name(self, author: Author | None) -> str:
        return (author.display_name or author.handle or "there") if author else "there"

    def _text(self, name: str, mention: Mention, author: Author | None, **extra: Any) -> str | None:
        tpl = self.answers.template(name)
        if tpl is None or not tpl.variants:
            return None
        body = choose_tone(tpl.variants, self.policy(mention.platform).tone)
        article = self.answers.articles.get(tpl.article_slug or "")
        link = extra.pop("article_url", None) or (article.url if article else None)
        ctx = {"author_name": self._author_name(author), "article_url": link or "", **extra}
        try:
            return render(body, ctx, platform=mention.platform, link=link)
        except TemplateRenderError:
            return None  # a broken template is never sent; the decision stays for an agent

    def _notice_text(self, name: str, mention: Mention, author: Author | None, *, reason: str | None = None,
                     fallback: str | None = None) -> str | None:
        """A private notice from its template, or built-in words when the template is missing or
        broken (``name``'s own, else ``fallback``'s): a hidden post's author is always told why. The
        rule's ``reason`` is the template's ``{{ reason }}``, personal data redacted."""
        extra = {"reason": redact(reason)} if reason else {}
        text = self._text(name, mention, author, **extra)
        body = moderation.BUILTIN_NOTICES.get(name) or moderation.BUILTIN_NOTICES.get(fallback or "")
        if text is not None or body is None:
            return text
        return render(body, {"author_name": self._author_name(author), "reason": "", **extra},
                      platform=mention.platform).strip()

    def _answer_text(self, answer: dict, mention: Mention, author: Author | None) -> str | None:
        if answer.get("kind") == "template":
            return self._text(answer["ref"], mention, author)
        if not answer.get("url"):
            return None
        body = COMMUNITY_TEXT if answer.get("kind") == "community" else ARTICLE_TEXT
        return render(body, {"author_name": self._author_name(author), "article_url": answer["url"]},
                      platform=mention.platform, link=answer["url"])

    async def _reply(self, session, key: str, mention: Mention, text: str | None, *, kind: str,  # noqa: ANN001
                     visibility: str = "public", template: str | None = None, case_id: int | None = None,
                     status: str = "pending", batched: bool = False) -> Reply | dict | None:
        """A reply once per key: an ORM object, or with ``batched`` a row inserted with the batch's."""
        if text is None or key in self._keys:
            return None
        if not key.startswith(("auto:", "community:", "notice:")) and \
                await session.scalar(select(Reply.id).where(Reply.dedup_key == key)):
            return None  # keys shared across mentions (a case's notice) may exist already
        self._keys.add(key)
        if visibility == "public" and status != "suggested":
            self.ledger.note_public_reply(mention.conversation_id)
        values = dict(dedup_key=key, mention_id=mention.id, conversation_id=mention.conversation_id, case_id=case_id,
                      platform=mention.platform, visibility=visibility, kind=kind, text=text, template=template,
                      status=status)
        if batched:
            self._added[Reply].append(values)
            return values
        reply = Reply(**values)
        session.add(reply)
        return reply

    # --- one method per outcome ------------------------------------------------------------
    async def _bot_reply(self, session, decision, mention, author, tri, kind: str) -> None:  # noqa: ANN001
        """An automatic public answer, sent only if every gate passes; else a suggestion."""
        answer = decision.details.get("answer") or {}
        text = self._answer_text(answer, mention, author) if answer else None
        if text is None:
            return
        policy = self.policy(mention.platform)
        gates = GateInput(
            sensitivity=tri.sensitivity if tri else "unknown", has_pii=bool(tri and (tri.pii or tri.pii_exposed)),
            toxicity=tri.toxicity if tri else "unknown", spam=tri.spam if tri else "unknown",
            confidence=float(decision.confidence), thread_answered=mention.conversation_id in self.ledger.answered_threads,
            author_recently_answered=self.ledger.recently_answered(mention.author_id, policy.cooldown_hours),
            sent_last_hour=self.ledger.sent_last_hour.get(mention.platform, 0))
        blocked = blocked_by(gates, policy)
        status = "suggested" if blocked else ("dry_run" if policy.dry_run else "pending")
        reply = await self._reply(session, f"{'auto' if kind == 'auto_answer' else 'community'}:{mention.id}",
                                  mention, text, kind=kind, template=answer.get("ref") if answer.get("kind") == "template"
                                  else None, status=status, batched=True)
        if reply is None:
            return
        if not blocked:
            self.ledger.note_bot_reply(mention.platform, mention.author_id, mention.conversation_id)
        decision.set(details={**decision.details, "bot": {"sent": not blocked, "blocked_by": blocked,
                                                          "dry_run": policy.dry_run}})
        self._added[AuditEvent].append(dict(  # as service.audit.record writes it
            actor="bot", action="bot.suggested" if blocked else "bot.reply", object_type="mention",
            object_id=str(mention.id), reason=("blocked by " + ", ".join(blocked)) if blocked else decision.reason[:300],
            details=dict(kind=kind, answer=answer.get("ref"), confidence=round(float(decision.confidence), 3),
                         dry_run=policy.dry_run)))

    async def _auto_answer(self, session, decision, mention, author, tri) -> None:  # noqa: ANN001
        await self._bot_reply(session, decision, mention, author, tri, "auto_answer")

    async def _community_answer(self, session, decision, mention, author, tri) -> None:  # noqa: ANN001
        if (decision.details.get("answer") or {}).get("url"):  # else: left for the community to answer
            await self._bot_reply(session, decision, mention, author, tri, "community_answer")

    async def _broadcast(self, session, decision, mention, author, tri) -> None:  # noqa: ANN001
        incident = self._incidents.get(decision.details.get("incident_id"))
        if incident is None:
            return
        reply = await broadcast.reply_to_new_mention(
            session, incident, self._status.get(incident.id), mention, author,
            interval_minutes=self.ctx.settings.incident_status_interval_minutes,
            dry_run=self.policy(mention.platform).dry_run, tone=self.policy(mention.platform).tone)
        if reply is not None:  # no status yet: grouped now, told when an agent posts one
            self._keys.add(reply.dedup_key)
            self.ledger.note_public_reply(mention.conversation_id)
            record(session, "bot", "bot.status_reply", "mention", mention.id, incident_id=incident.id,
                   dry_run=reply.status == "dry_run")

    async def _escalate_private(self, session, decision, mention, author, tri) -> None:  # noqa: ANN001
        if decision.details.get("redact"):  # before the case copies the words
            await moderation.redact_everywhere(session, mention, tri.pii if tri else None)
        category = decision.details.get("category") or ("fraud" if "fraud" in decision.reason else "security")
        case, opened = await open_or_join(session, mention, category, SlaPolicy.from_settings(self.ctx.settings))
        if opened:
            record(session, "bot", "case.opened", "case", case.id, mention_id=mention.id, category=category)
        if decision.details.get("hide_first"):
            await moderation.add_action(session, f"hide:{mention.id}", mention, "hide",
                                        "personal data exposed in public", rule="builtin:pii", recorded=self._actions)
        # no DM to point to: the notice asks for one instead
        template, fixed = public_notice_template(can_message_privately(mention, author))
        await self._reply(session, f"secure_notice:{case.id}:{mention.conversation_id}", mention,
                          self._text(template, mention, author) or fixed, kind="secure_link",
                          template=template, case_id=case.id)
        await private_handoff(session, case, mention, self.ctx.settings)  # the secure link, by DM

    async def _moderate(self, session, decision, mention, author, tri) -> None:  # noqa: ANN001
        details = decision.details
        if details.get("redact"):
            await moderation.redact_everywhere(session, mention, tri.pii if tri else None)
        await moderation.add_action(session, f"mod:{mention.id}", mention, details.get("action", "hold"),
                                    decision.reason, rule=details.get("rule") or decision.reason.split(":")[0],
                                    recorded=self._actions)
        notice = details.get("notify")
        if notice:  # once per post, whichever rule or classifier hid it
            fallback = RULE_NOTICES.get(details.get("action", ""))
            await self._reply(session, f"notice:{mention.id}", mention,
                              self._notice_text(notice, mention, author, reason=details.get("notice_reason"),
                                                fallback=fallback),
                              kind="notice", visibility="private", template=notice)

    async def _rule_side_actions(self, session, decision, mention) -> None:  # noqa: ANN001
        """Rules that label, lock or notify act beside whatever the decision was: a lock goes to the
        platform, a label is recorded with the post, a notify opens an alert for its team (shown on
        the moderation page and sent as the ``moderation.notify`` webhook event)."""
        for side in decision.details.get("rule_actions") or []:
            extra = {k: side[k] for k in ("label", "notify") if side.get(k)}
            await moderation.add_action(session, f"rule:{mention.id}:{side['rule']}", mention, side["action"],
                                        side.get("reason") or f"rule {side['rule']}", rule=side["rule"],
                                        recorded=self._actions, **extra)
