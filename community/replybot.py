"""The reply bot's gates: when an automatic public answer may really be sent.

An answer the router chose is sent only when every gate passes: sensitivity ``none``, no personal
data, not toxic, not spam, confidence at or above the channel's threshold, the thread not
answered yet, the author not auto-answered within the channel's cool-down, and the channel's
hourly rate limit not reached. Otherwise it becomes a one-click suggestion for an agent, with
the gates that stopped it. Every bot reply is audited and can be reverted (``delete_reply``).

Bots that reply through the API (kind ``bot_api``: they chose to answer, so the gates about the
post do not apply) obey the channel's switches and limits all the same: ``enabled`` off refuses
them, ``dry_run`` records their replies ``dry_run``, and they count toward the channel's hourly
rate and an author's cool-down (:data:`RATED_KINDS`, :func:`rate_used`; :mod:`console.api.bot_limits`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from listener.protocol import Action, ActionResult
from models import Mention, Reply
from models.base import utcnow
from models.bulk import IDS
from service.audit import record

BOT_KINDS = ("auto_answer", "community_answer")  # replies the bot chooses to send on its own
API_BOT_KINDS = ("bot_api",)  # replies bots post through the API: the same switch, dry run and rate
RATED_KINDS = (*BOT_KINDS, *API_BOT_KINDS)  # count toward a channel's hourly rate and an author's cool-down
LIVE = ("pending", "queued", "sending", "sent", "dry_run", "unknown")  # went, will go (or would have gone) out
GATES = ("enabled", "sensitivity", "pii", "toxicity", "spam", "confidence", "thread_answered",
         "author_cooldown", "rate_limit")
_R, _M = Reply.__table__.c, Mention.__table__.c
# the ledger's three questions, built once (models.bulk): threads answered in public, each author's
# newest bot reply since ``since``, bot replies per platform since ``since``
ANSWERED = select(_R.conversation_id).where(_R.conversation_id.in_(IDS), _R.visibility == "public",
                                            _R.status.in_(LIVE))
LAST_BOT_REPLY = (select(_M.author_id, func.max(_R.created_at))
                  .select_from(Reply.__table__.join(Mention.__table__, _M.id == _R.mention_id))
                  .where(_M.author_id.in_(IDS), _R.kind.in_(RATED_KINDS), _R.status.in_(LIVE),
                         _R.created_at > bindparam("since"))
                  .group_by(_M.author_id))
BOT_REPLIES = (select(_R.platform, func.count())
               .where(_R.platform.in_(bindparam("platforms", expanding=True)), _R.kind.in_(RATED_KINDS),
                      _R.status.in_(LIVE), _R.created_at > bindparam("since"))
               .group_by(_R.platform))


@dataclass(frozen=True)
class ChannelPolicy:
    """One channel's bot settings (``Settings.bot_*`` defaults, ``bot_channels`` overrides)."""

    enabled: bool = True
    threshold: float = 0.55
    rate_per_hour: int = 300
    cooldown_hours: float = 24.0
    dry_run: bool = False
    tone: str = "friendly"  # the template variant the bot uses on this channel

    @classmethod
    def for_channel(cls, settings: Any, platform: str) -> ChannelPolicy:
        base = settings.bot_threshold if settings.bot_threshold is not None else settings.auto_answer_threshold
        values: dict[str, Any] = dict(enabled=settings.bot_enabled, threshold=base,
                                      rate_per_hour=settings.bot_rate_per_hour,
                                      cooldown_hours=settings.bot_cooldown_hours,
                                      dry_run=platform in settings.bot_dry_run_channels, tone="friendly")
        override = dict(settings.bot_channels.get(platform) or {})
        unknown = set(override) - set(values)
        if unknown:
            raise ValueError(f"bot_channels.{platform}: unknown keys {sorted(unknown)}")
        values.update(override)
        return cls(enabled=bool(values["enabled"]), threshold=float(values["threshold"]),
                   rate_per_hour=int(values["rate_per_hour"]), cooldown_hours=float(values["cooldown_hours"]),
                   dry_run=bool(values["dry_run"]), tone=str(values["tone"]))


RATE_WINDOW = timedelta(hours=1)


async def rate_used(session: AsyncSession, platform: str, limit: int, now: datetime | None = None,
                    ) -> tuple[int, datetime | None]:
    """The channel's bot replies (every rated kind, API bots' included) in the hour before ``now``,
    and, when they reach ``limit``, when the next one may go (the oldest of the hour leaves it)."""
    now = now or utcnow()
    since = now - RATE_WINDOW
    live = (Reply.platform == platform, Reply.kind.in_(RATED_KINDS), Reply.status.in_(LIVE),
            Reply.created_at > since)
    used = int(await session.scalar(select(func.count()).select_from(Reply).where(*live)) or 0)
    if used < limit:
        return used, None
    if limit <= 0:  # no bot reply at all on this channel: a slot never frees by waiting
        return used, now + RATE_WINDOW
    oldest = await session.scalar(select(Reply.created_at).where(*live).order_by(Reply.created_at)
                                  .offset(used - limit).limit(1))
    return used, (oldest + RATE_WINDOW) if oldest is not None else now + RATE_WINDOW


@dataclass
class GateInput:
    sensitivity: str
    has_pii: bool
    toxicity: str
    spam: str
    confidence: float
    thread_answered: bool
    author_recently_answered: bool
    sent_last_hour: int


def blocked_by(g: GateInput, policy: ChannelPolicy) -> list[str]:
    """The gates that stop this reply (empty: it may be sent). All are checked, for the record."""
    out = []
    if not policy.enabled:
        out.append("enabled")
    if g.sensitivity != "none":
        out.append("sensitivity")
    if g.has_pii:
        out.append("pii")
    if g.toxicity == "offensive":
        out.append("toxicity")
    if g.spam == "spam":
        out.append("spam")
    if g.confidence < policy.threshold:
        out.append("confidence")
    if g.thread_answered:
        out.append("thread_answered")
    if g.author_recently_answered:
        out.append("author_cooldown")
    if g.sent_last_hour >= policy.rate_per_hour:
        out.append("rate_limit")
    return out


@dataclass
class Ledger:
    """What the gates need to know about earlier replies, loaded once per batch (three queries)
    and kept current as the batch adds replies."""

    answered_threads: set[int] = field(default_factory=set)
    last_auto_answer: dict[int, datetime] = field(default_factory=dict)  # author id -> newest bot reply
    sent_last_hour: dict[str, int] = field(default_factory=dict)  # platform -> bot replies in the hour
    now: datetime = field(default_factory=utcnow)

    @classmethod
    async def load(cls, session: AsyncSession, *, conversation_ids: set[int], author_ids: set[int],
                   platforms: set[str], max_cooldown_hours: float, now: datetime | None = None) -> Ledger:
        now = now or utcnow()
        led = cls(now=now)
        if conversation_ids:
            led.answered_threads = set(await session.scalars(ANSWERED, {"ids": list(conversation_ids)}))
        if author_ids and max_cooldown_hours > 0:
            rows = await session.execute(LAST_BOT_REPLY, {"ids": list(author_ids),
                                                          "since": now - timedelta(hours=max_cooldown_hours)})
            led.last_auto_answer = {a: t for a, t in rows.all()}
        if platforms:
            rows = await session.execute(BOT_REPLIES, {"platforms": list(platforms), "since": now - timedelta(hours=1)})
            led.sent_last_hour = {p: int(n) for p, n in rows.all()}
        return led

    def recently_answered(self, author_id: int | None, hours: float) -> bool:
        last = self.last_auto_answer.get(author_id) if author_id is not None else None
        return last is not None and hours > 0 and last > self.now - timedelta(hours=hours)

    def note_public_reply(self, conversation_id: int | None) -> None:
        if conversation_id is not None:
            self.answered_threads.add(conversation_id)

    def note_bot_reply(self, platform: str, author_id: int | None, conversation_id: int | None) -> None:
        self.note_public_reply(conversation_id)
        self.sent_last_hour[platform] = self.sent_last_hour.get(platform, 0) + 1
        if author_id is not None:
            self.last_auto_answer[author_id] = self.now


async def revert_reply(session: AsyncSession, reply: Reply, connectors: dict[str, Any], actor: str,
                       reason: str) -> ActionResult:
    """Take a bot reply back: delete it on the platform (``delete_reply``) if it was posted, and
    mark it ``deleted``. A reply never posted (dry run, suggestion, pending) is just withdrawn."""
    if reply.status == "deleted":
        return ActionResult(ok=True)
    result = ActionResult(ok=True)
    if reply.status in ("sent", "unknown") and reply.external_ids:
        connector = connectors.get(reply.platform)
        if connector is None:
            return ActionResult(ok=False, error=f"no connector for {reply.platform}")
        ids: list[str] = []
        for external_id in reply.external_ids:  # a thread of tweets is deleted tweet by tweet
            try:
                result = await connector.perform(Action(kind="delete_reply", platform=reply.platform,
                                                         target_external_id=str(external_id), reason=reason))
            except Exception as exc:  # noqa: BLE001 - reported to the caller, reply left as it is
                result = ActionResult(ok=False, error=f"{type(exc).__name__}: {exc}")
            if not result.ok:
                record(session, actor, "bot.reply_delete_failed", "reply", reply.id, reason=reason,
                       error=(result.error or "")[:200])
                return result
            ids.append(str(external_id))
    before = reply.status
    reply.status = "deleted"
    reply.error = None
    record(session, actor, "bot.reply_deleted", "reply", reply.id, reason=reason, previous_status=before,
           platform=reply.platform)
    return result
