"""The route stage: one decision per triaged mention (auto answer, escalate, moderate, ...).

Per batch: a handful of queries (decisions already made, mentions with triage and author and whether
we are already talking to the customer in that thread, their open or pending private cases, author
removals when a rule needs them, incidents per issue type and channel) and at most one encoder
call, for the mentions the cheap template-by-issue-type path leaves undecided. Mentions, scores and
authors are read as the columns routing looks at: the triage labels and, from the stored score
document, only the issue-type confidence and praise probability (is it a thank-you:
:mod:`community.reports`), four probability tables and the personal-data spans.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from datetime import timedelta
from pathlib import Path

from sqlalchemy import and_, bindparam, case, delete, exists, or_, select
from sqlalchemy.exc import IntegrityError

from community.answers import AnswerIndex, Candidate
from community.harvest import ACCEPTING_PLATFORMS, harvest, own_subreddits
from community.incidents import Baselines, SpikePolicy, match_batch
from community.moderation import author_removals
from community.reports import INCIDENT_TYPES, is_thanks
from community.routing import HIGH_TOUCH, LOW_TOUCH, ROUTER_VERSION, OpenCase, RouteInput, bot_answers, decide
from community.rules import BUNDLED_RULES, RuleError, Subject, evaluate, load_rules
from community.trust import own_trouble, vouched_for
from escalation.cases import open_cases_by_author
from listener.deletions import respect_erasure_and_removal
from models import Author, CommunityAnswer, Mention, Reply, RouteDecision, TriageResult
from models.base import json_array, utcnow
from models.bulk import IDS, Columns, Record, add_rows, records
from models.mentions import DELETED_TEXT
from service.audit import record
from service.bus import Envelope
from service.privacy import erased
from service.stages.base import Outgoing, StageContext, trace
from triage.pii import detect_pii
from triage.rules import tells_own_trouble

log = logging.getLogger("socialcare.route")
# Below this issue-type confidence triage does not know what the mention is about; retrieval
# would rarely make an answer sure enough, so such mentions go to an agent without an encoder call
# (the console computes suggestions on demand). Keeps the encoder off the hot path.
SEMANTIC_FLOOR = 0.2
RULE_TASKS = ("toxicity", "spam", "sentiment", "sensitivity")  # probabilities moderation rules may test
_M, _T, _A, _D, _R = (m.__table__.c for m in (Mention, TriageResult, Author, RouteDecision, Reply))
# Are we already talking to this customer in this conversation (their earlier post was queued to an
# agent or an agent answered them; the brand answered them)? Read with the mention itself, for
# replies only: no extra round trip on the hot path.
_E, _ED, _ER = (t.alias(n) for t, n in ((Mention.__table__, "earlier"), (RouteDecision.__table__, "earlier_route"),
                                         (Reply.__table__, "earlier_reply")))
_SAME_CUSTOMER_HERE = and_(_E.c.conversation_id == _M.conversation_id, _E.c.author_id == _M.author_id,
                           _E.c.id != _M.id)
_ANSWERED_HERE = (_ER.c.mention_id == _E.c.id, _ER.c.visibility == "public",
                  _ER.c.status.in_(("pending", "sending", "sent", "dry_run", "unknown")), _SAME_CUSTOMER_HERE)
AGENT_THREAD = and_(_M.in_reply_to.is_not(None), or_(
    exists().where(_ED.c.mention_id == _E.c.id, _ED.c.outcome == "agent_queue", _SAME_CUSTOMER_HERE),
    exists().where(*_ANSWERED_HERE, _ER.c.kind == "agent"))).label("agent_thread")
BRAND_REPLIED = and_(_M.in_reply_to.is_not(None), exists().where(*_ANSWERED_HERE)).label("brand_replied")
MENTION = Columns(_M.id, _M.text, _M.platform, _M.channel, _M.is_public, _M.kind, _M.created_at, _M.author_id,
                  _M.conversation_id, _M.external_id, _M.url, _M.in_reply_to, _M.platform_conversation_id,
                  _M.hidden, _M.deleted, AGENT_THREAD, BRAND_REPLIED,
                  case((_M.platform.in_(ACCEPTING_PLATFORMS), _M.raw)).label("raw"))  # for harvest only
TRIAGE = Columns(_T.id, _T.sentiment, _T.sensitivity, _T.issue_type, _T.toxicity, _T.spam, _T.pii_exposed,
                 _T.scores[("issue_type", "score")].as_float().label("issue_confidence"),
                 _T.scores[("issue_type", "probabilities", "praise")].as_float().label("praise"),
                 json_array(*(_T.scores[(task, "probabilities")] for task in RULE_TASKS),
                            _T.scores["pii"]).label("parts"))  # RULE_TASKS' probabilities, PII spans
AUTHOR = Columns(_A.id, _A.banned, _A.followers, _A.account_created_at)
DECIDED = select(_D.mention_id, _D.outcome).where(_D.mention_id.in_(IDS))  # built once (models.bulk)
# Decided posts an edit may have made more sensitive: public and now exposing personal data, or now
# to be escalated (see RouteStage._sharpened).
# a decision whose reason its post's deletion removed, the post back on its platform (listener.deletions)
_RESTORED = and_(_D.reason == DELETED_TEXT, _M.deleted.is_(False))
SHARPENED = (select(_D.id, _D.mention_id, _D.outcome, _D.details, _T.escalate,
                    and_(_T.pii_exposed.is_(True), _M.is_public.is_(True)).label("exposed"), _M.text,
                    _RESTORED.label("restored"))
             .select_from(RouteDecision.__table__.join(TriageResult.__table__, _T.mention_id == _D.mention_id)
                          .join(Mention.__table__, _M.id == _D.mention_id))
             .where(_D.mention_id.in_(IDS), or_(and_(_T.pii_exposed.is_(True), _M.is_public.is_(True)),
                                                 _T.escalate.is_(True), _RESTORED)))
# escalations decided but not yet acted on (their case is not open yet): a follow-up joins them too;
# one left unacted for a day (its act message dead-lettered) no longer holds the author's posts back
PENDING_PRIVATE = (select(_M.author_id, _M.conversation_id, _D.details)
                   .select_from(RouteDecision.__table__.join(Mention.__table__, _M.id == _D.mention_id))
                   .where(_M.author_id.in_(IDS), _D.outcome == "escalate_private", _D.acted_at.is_(None),
                          _D.created_at > bindparam("since")))
PENDING_FOR = timedelta(days=1)
TO_ROUTE = (select(*MENTION, *TRIAGE, *AUTHOR)
            .select_from(Mention.__table__.join(TriageResult.__table__, _T.mention_id == _M.id)
                         .outerjoin(Author.__table__, _A.id == _M.author_id))
            .where(_M.id.in_(IDS)).order_by(_M.created_at))


class RouteStage:
    name = "route"

    def __init__(self, ctx: StageContext, refresh_s: float = 30.0) -> None:
        self.ctx = ctx
        self.answers = AnswerIndex()
        self._refreshed = 0.0
        self._refresh_s = refresh_s
        self.spike = SpikePolicy.from_settings(ctx.settings)
        self.baselines: Baselines = {}  # the detector's baselines by type, channel and few minutes (they move slowly)
        self.own_subreddits = own_subreddits(ctx.settings)  # where a moderator's mark is the brand's community
        self.rules_path = Path(ctx.settings.moderation_rules_path or BUNDLED_RULES)
        self.rules = load_rules(self.rules_path)  # an invalid file stops start-up with line and reason
        self._rules_mtime = self._mtime()
        self.latencies_ms: deque[float] = deque(maxlen=200_000)  # ingest → routed decision

    def _mtime(self) -> float:
        try:
            return self.rules_path.stat().st_mtime
        except OSError:
            return 0.0

    def _reload_rules(self) -> None:
        """Pick up an edited rules file; a broken edit keeps the rules in force and says why."""
        mtime = self._mtime()
        if mtime == self._rules_mtime:
            return
        self._rules_mtime = mtime
        try:
            self.rules = load_rules(self.rules_path)
            log.info("moderation rules reloaded: %d rules", len(self.rules))
        except RuleError as exc:
            log.error("moderation rules not reloaded, keeping the previous ones: %s", exc)

    async def warm_up(self) -> None:
        """Load the answers and embed them before the first mention: a cold index stalled the first
        batch (and everything queued behind it) for over a second."""
        async with self.ctx.db.session() as session:
            await self.answers.refresh(session)
        await asyncio.to_thread(self.answers.prepare)
        self._refreshed = time.monotonic()

    async def handle(self, batch: list[Envelope]) -> list[Outgoing]:
        ids = list(dict.fromkeys(env.payload["mention_id"] for env in batch))
        first = {}
        for env in batch:
            first.setdefault(env.payload["mention_id"], env)
        for attempt in range(3):
            try:
                decided = await self._decide(ids)
                break
            except IntegrityError:  # a concurrent worker opened the same incident or decision
                if attempt == 2:
                    raise
        now = time.time()
        for mid, _ in decided:
            t0 = first[mid].payload.get("t0")
            if t0:
                self.latencies_ms.append((now - t0) * 1000)
                if self.ctx.metrics:
                    self.ctx.metrics.end_to_end.observe(now - t0)
        return [Outgoing("act", f"m:{mid}", {"mention_id": mid, "outcome": outcome, **trace(first[mid].payload)})
                for mid, outcome in decided]

    async def _decide(self, ids: list[int]) -> list[tuple[int, str]]:
        settings = self.ctx.settings
        threshold = settings.auto_answer_threshold
        community = set(settings.community_channels)
        async with self.ctx.db.session() as session:
            if time.monotonic() - self._refreshed > self._refresh_s:
                await self.answers.refresh(session)
                self._reload_rules()
                await asyncio.to_thread(self.answers.prepare)  # a changed index is re-embedded off the loop
                self._refreshed = time.monotonic()
            done = dict((await session.execute(DECIDED, {"ids": ids})).all())
            if done:  # a redelivery, or an edit: the edit may call for more care than the first decision
                for mid in await self._sharpened(session, list(done)):
                    del done[mid]
            rows = [rec for r in await session.execute(TO_ROUTE, {"ids": [i for i in ids if i not in done]})
                    if not erased((rec := records(r, MENTION, TRIAGE, AUTHOR))[0])]  # erased: nothing to route
            out: list[tuple[int, str]] = list(done.items())
            if not rows:
                return out
            removals = {}
            if any("removals_at_least" in r.author for r in self.rules):
                removals = await author_removals(session, {m.author_id for m, _, _ in rows if m.author_id})
            cases = await self._cases(session, {m.author_id for m, _, _ in rows if m.author_id})
            agent_threads: set[tuple] = set()  # decided to an agent in this batch: their later posts follow
            matched = {m.id: evaluate(self.rules, self._subject(m, t, a, removals)) for m, t, a in rows}
            held = {mid for mid, found in matched.items() if any(x.action in ("hold", "remove") for x in found)}

            accepted = await harvest(session, [m for m, _, _ in rows], self.own_subreddits)
            if accepted:
                self._refreshed = 0.0  # new community answers: refresh the index next batch
            incidents = await match_batch(session, [
                (m, t.issue_type) for m, t, a in rows
                if t.sensitivity == "none" and t.spam != "spam" and t.toxicity != "offensive"
                and m.id not in held and not (a is not None and a.banned) and m.id not in accepted
            ], self.spike, self._baselines())

            # the cheap path: the template for the issue type; retrieval only where it is unsure, and
            # never for a post an incident's status reply or a community's accepted answer settles, nor
            # for a thank-you under a type the bot answers (it goes where praise goes:
            # community.routing.nothing_to_answer)
            thanks = {m.id for m, t, _ in rows if is_thanks(m.text, t.sentiment, t.praise)}
            cheap, todo = {}, []
            for m, t, _ in rows:
                conf = _issue_confidence(t)
                cheap[m.id] = self.answers.best(t.issue_type, m.platform, conf)
                answerable = t.issue_type in LOW_TOUCH or (m.platform in community and t.issue_type not in HIGH_TOUCH)
                if not (answerable and t.sensitivity == "none" and m.is_public and m.id not in held
                        and not t.pii_exposed and t.spam != "spam" and t.toxicity != "offensive"
                        and m.id not in incidents and m.id not in incidents.rising and m.id not in accepted
                        and m.author_id not in cases
                        and not (m.id in thanks and bot_answers(t.issue_type, t.sentiment, m.platform in community))):
                    continue
                if m.platform in community:  # low volume by definition: always worth the encoder
                    todo.append((m, t))
                elif conf >= SEMANTIC_FLOOR and (cheap[m.id] is None or conf < threshold):
                    todo.append((m, t))  # inconclusive: semantic retrieval (one encoder call per batch)
                elif self.answers.answers_for(t.issue_type) > 1:  # sure of the type, not of the answer
                    cheap[m.id] = self.answers.pick(m.text, t.issue_type, conf) or cheap[m.id]
            retrieved = {}
            if todo:
                found = await asyncio.to_thread(self.answers.search, [m.text for m, _ in todo],
                                                [t.issue_type for _, t in todo])
                retrieved = {m.id: cands for (m, _), cands in zip(todo, found)}
            for mid in thanks:  # whatever its type, a thank-you is never told an outage's status or checks
                if cheap[mid] is not None and not self._not_status(cheap[mid]):
                    cheap[mid] = None
                if mid in retrieved:
                    retrieved[mid] = [c for c in retrieved[mid] if self._not_status(c)]

            decisions: list[dict] = []
            for mention, tri, author in rows:
                cands = retrieved.get(mention.id, [])
                vouched = vouched_for(mention, self.own_subreddits)
                route_in = RouteInput(
                    sentiment=tri.sentiment, sensitivity=tri.sensitivity, issue_type=tri.issue_type,
                    issue_confidence=_issue_confidence(tri), toxicity=tri.toxicity, spam=tri.spam,
                    pii_exposed=tri.pii_exposed, is_public=mention.is_public, kind=mention.kind,
                    platform=mention.platform, community_channel=mention.platform in community,
                    incident_id=incidents.get(mention.id), rising=incidents.rising.get(mention.id),
                    answer=cheap[mention.id], retrieved=cands,
                    community_answer=next((c for c in cands if c.kind == "community"), None),
                    accepted_answer=mention.id in accepted, vouched_for=vouched,
                    own_trouble=vouched and own_trouble(mention),
                    author_banned=bool(author and author.banned),
                    rules=matched[mention.id], open_case=_open_case(cases, mention),
                    agent_thread=bool(mention.agent_thread)
                    or (mention.conversation_id, mention.author_id) in agent_threads,
                    brand_replied=bool(mention.brand_replied or mention.agent_thread), thanks=mention.id in thanks,
                )
                d = decide(route_in, auto_threshold=threshold)
                if d.outcome == "agent_queue" and mention.conversation_id:  # their later post in the batch follows
                    agent_threads.add((mention.conversation_id, mention.author_id))
                if d.outcome == "escalate_private" and mention.author_id and mention.author_id not in cases:
                    category = d.details.get("category", "security")
                    cases[mention.author_id] = (None, category, mention.conversation_id)
                decisions.append(dict(mention_id=mention.id, outcome=d.outcome, reason=d.reason,
                                      confidence=d.confidence, details=d.details, router_version=ROUTER_VERSION))
                out.append((mention.id, d.outcome))
            await add_rows(session, RouteDecision, decisions)
            # a post erased since it was read: what was written about it (and copies of it) erased again
            # (the questions too: an accepted answer copies its question), or deleted on its platform since
            written = [m.id for m, _, _ in rows] + await _questions(session, accepted)
            gone = await respect_erasure_and_removal(session, written)
            out = [(mid, outcome) for mid, outcome in out if mid not in gone]
            await session.commit()
        if self.ctx.events and out:
            self.ctx.events("routed", [mid for mid, _ in out])
        return out

    @staticmethod
    async def _sharpened(session, ids: list[int]) -> list[int]:  # noqa: ANN001
        """Decided posts whose edit made them more sensitive than their decision allowed for: one that
        now exposes personal data in public was not hidden and redacted, or one now to be escalated
        was not. Their decision is dropped so they are routed again (the old outcome is kept in the
        audit log); the stages after are idempotent, so what was already done is not done twice. An
        edit never makes a decision less careful: the others keep theirs. A post redacted once and
        edited (or restored) with personal data in it again is routed again too, so it is redacted again;
        a mere redelivery finds the stored words already clean. A post back on its platform after a
        deletion that removed its decision's reason is routed again as well (an answer the deletion
        cancelled is not sent again: its reply's key is taken). A vouched post left unescalated
        (community.trust) is routed again only once its words say it happened to its writer."""
        again = []
        for did, mid, outcome, details, escalate, exposed, text, restored in await session.execute(
                SHARPENED, {"ids": ids}):
            redacted = (details or {}).get("redact")
            waived = (details or {}).get("not_escalated") and not tells_own_trouble(text or "")
            why = ("restored on its platform" if restored
                   else "now escalates" if escalate and outcome != "escalate_private" and not waived
                   else "now exposes personal data in public" if exposed and not redacted
                   # redacted once, and a later edit (or a restored post) put the words back
                   else "brought back personal data it was redacted of" if exposed and detect_pii(text or "")
                   else None)
            if why:
                again.append((did, mid, outcome, why))
        for did, mid, outcome, why in again:
            await session.execute(delete(RouteDecision).where(RouteDecision.id == did))
            record(session, "bot", "route.redecided", "mention", mid,
                   reason=why if why.startswith("restored") else f"edited: {why}", was=outcome)
        return [mid for _, mid, _, _ in again]

    def _baselines(self) -> Baselines:
        """The detector's cache across batches (a live stream routes a post or two a batch), bounded:
        a backfill of old history moves through many slots once."""
        if len(self.baselines) > 4096:
            self.baselines.clear()
        return self.baselines

    def _not_status(self, c: Candidate) -> bool:
        """Not written for an incident type (the outage checks, the log-in help): fit for a thank-you."""
        return not self.answers.written_for(c) & set(INCIDENT_TYPES)

    @staticmethod
    async def _cases(session,  # noqa: ANN001
                     author_ids: set[int]) -> dict[int, tuple[int | None, str, int | None]]:
        """The authors' open cases, and their escalations decided but not acted on yet (no case id)."""
        cases: dict[int, tuple[int | None, str, int | None]] = {}
        if author_ids:
            params = {"ids": list(author_ids), "since": utcnow() - PENDING_FOR}
            for author, conversation, details in await session.execute(PENDING_PRIVATE, params):
                cases[author] = (None, (details or {}).get("category") or "security", conversation)
        return {**cases, **await open_cases_by_author(session, author_ids)}

    def _subject(self, m: Record, t: Record, a: Record | None, removals: dict[int, int]) -> Subject:
        *probabilities, pii = t.parts
        age = None
        if a is not None and a.account_created_at is not None:
            age = (m.created_at - a.account_created_at).total_seconds() / 86400
        return Subject(
            text=m.text, platform=m.platform, channel=m.channel, is_public=m.is_public,
            probabilities={task: p or {} for task, p in zip(RULE_TASKS, probabilities)},
            pii_types=frozenset(p.get("type") for p in pii or [] if isinstance(p, dict)),
            account_age_days=age, followers=a.followers if a else None,
            removals=removals.get(m.author_id, 0) if m.author_id else 0,
            vouched_for=vouched_for(m, self.own_subreddits))


async def _questions(session, accepted: set[int]) -> list[int]:  # noqa: ANN001
    """The questions of the community answers harvested in this batch (their copies quote them)."""
    if not accepted:
        return []
    return [q for q in await session.scalars(select(CommunityAnswer.question_mention_id).where(
        CommunityAnswer.answer_mention_id.in_(accepted))) if q]


def _open_case(cases: dict[int, tuple[int | None, str, int | None]], m: Record) -> OpenCase | None:
    found = cases.get(m.author_id) if m.author_id else None
    if found is None:
        return None
    case_id, category, conversation = found
    return OpenCase(case_id, category, same_thread=conversation is not None and conversation == m.conversation_id)


def _issue_confidence(t: Record) -> float:
    return float(t.issue_confidence or 0.0)
