"""Incidents: a spike of one issue type on one channel opens an incident, answered one-to-many.

The detector works on event time (``created_at`` of the mentions), so replayed history behaves like
live traffic. A window of ``window`` ending at a mention is a spike when it holds at least
``min_count`` mentions of the type and ``factor`` times the expected count. The expectation is
the larger of the recent per-window mean (last ``baseline_windows`` windows) and the median of
the same window on each of the previous ``history_days`` days the channel was listened to — so
the evening peak that comes every day is not an outage, and one past outage at the same hour does
not hide the next one.

Only reports count and join: a post triage gives the issue type with at least
``report_confidence`` and that is not a thank-you (:mod:`community.reports`: praise and thanks
that merely mention offline mode or "the app" are not outage reports; "thanks for nothing, app is
down again" is). Who joins an incident, and so who is told "we're on it", is decided on that rule
in full. The window a spike is judged on leaves thank-yous out by their words and sentiment, not
the confidence kept in the scores document; the baselines over days of history read only the plain
sentiment column (:data:`NOT_PRAISE`): parsing the document for every post of a week cost the route
stage a third of its time.

A report joins an open incident of its type on its own channel (an outage seen on X is answered on
X; Reddit and Discourse have their own spikes) when it was written within the incident's time: no
earlier than one window before it opened, and no later than ``quiet_after`` after the incident's
latest report. An incident with no report for ``quiet_after`` goes quiet: it stays open — only an
agent closes it, choosing whether everyone gets the "fixed" follow-up, which an automatic close
could not know — but collects nothing more, so a post days later is answered on its own, and a new
spike opens a new incident.

Before a spike completes, its first reports look like any lone report, and the route stage would
answer them with the outage checks ("we're not seeing a wider problem"). So a report whose window
already holds ``rising_count`` reports and twice the usual count, short of a spike, is marked
*rising* (:attr:`Matched.rising`; outage only, :data:`RISING_TYPES`): the router sends it to an
agent instead, and when the incident opens it joins like the rest and is told the status with them.
"""

from __future__ import annotations

import bisect
import math
import statistics
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from community.reports import INCIDENT_TYPES, is_report, is_thanks
from models import Incident, IncidentMention, IncidentUpdate, Mention, TriageResult
from models.bulk import IDS, add_rows

_M, _T, _IM = Mention.__table__.c, TriageResult.__table__.c, IncidentMention.__table__.c
# the coarse "not a thank-you" for counting windows over history (see the module doc)
NOT_PRAISE = _T.sentiment != "positive"
# the types whose standard answer says there is no wider problem (the outage checks), so a climbing count
# holds it back; log-in help stands (the demo day's log-in trouble reaches three a half-hour on its own)
RISING_TYPES = frozenset({"outage"})
# what the full report rule reads (community.reports.is_report), with Mention and TriageResult joined
REPORT_COLUMNS = (_M.text, _T.sentiment, _T.scores[("issue_type", "score")].as_float(),
                  _T.scores[("issue_type", "probabilities", "praise")].as_float())
# what every routed batch asks, built once (models.bulk)
OPEN = (select(Incident).where(Incident.issue_type.in_(bindparam("types", expanding=True)), Incident.status == "open")
        .order_by(Incident.id.desc()))
ATTACHED = select(_IM.mention_id).where(_IM.incident_id == bindparam("incident_id"), _IM.mention_id.in_(IDS))
REPORTS = (select(_T.mention_id, *REPORT_COLUMNS)
           .select_from(TriageResult.__table__.join(Mention.__table__, _M.id == _T.mention_id))
           .where(_T.mention_id.in_(IDS)))
LATEST_REPORT = (select(_IM.incident_id, func.max(_M.created_at))
                 .select_from(IncidentMention.__table__.join(Mention.__table__, _M.id == _IM.mention_id))
                 .where(_IM.incident_id.in_(IDS)).group_by(_IM.incident_id))
EVENT_TIMES = (select(_T.issue_type, _M.platform, _M.created_at, _M.text, _T.sentiment)
               .select_from(Mention.__table__.join(TriageResult.__table__, _T.mention_id == _M.id))
               .where(tuple_(_T.issue_type, _M.platform).in_(bindparam("groups", expanding=True)),
                      _M.created_at > bindparam("low"), _M.created_at <= bindparam("high"))
               .order_by(_M.created_at))


@dataclass(frozen=True)
class SpikePolicy:
    """The detector's and the report rule's thresholds (``incident_*`` settings; these defaults are
    theirs, for tests and tools that build one by hand)."""

    window: timedelta = timedelta(minutes=30)
    min_count: int = 8
    factor: float = 4.0
    baseline_windows: int = 12
    history_days: int = 7
    quiet_after: timedelta = timedelta(hours=1)  # no report for this long: the incident collects no more
    # the cheap head's issue-type probability a report needs: of the demo day's 66 outage posts 40
    # joined its incident at 0.4, 44 at 0.25 (45 once a report that reads positive counted; the rest
    # read as questions, follow-ups or other issues)
    report_confidence: float = 0.25
    # reports in the window at which a climbing count stops the "no wider problem" checks (with at
    # least ``rising_factor`` times the usual): on the demo's quiet hours a lone outage report at most;
    # its spike reached it in its third minute, the incident in its seventh
    rising_count: int = 3

    @property
    def rising_factor(self) -> float:
        """Twice the usual, by default: halfway to the spike's factor (never below the usual itself)."""
        return max(1.0, self.factor / 2)

    @classmethod
    def from_settings(cls, s: Any) -> SpikePolicy:
        return cls(window=timedelta(minutes=s.incident_window_minutes), min_count=s.incident_min_count,
                   factor=s.incident_factor, baseline_windows=s.incident_baseline_windows,
                   history_days=s.incident_history_days, quiet_after=timedelta(minutes=s.incident_quiet_minutes),
                   report_confidence=s.incident_report_confidence, rising_count=s.incident_rising_count)

    def is_report(self, text: str | None, sentiment: str, confidence: float | None, praise: float | None) -> bool:
        """The full report rule on :data:`REPORT_COLUMNS`."""
        return is_report(text or "", sentiment, confidence, praise, min_confidence=self.report_confidence)


def _of_type(issue_type: str, platform: str):  # noqa: ANN202 - a shared WHERE clause
    return and_(TriageResult.issue_type == issue_type, Mention.platform == platform)


def _counted(issue_type: str, platform: str):  # noqa: ANN202 - a shared WHERE clause
    """Posts of the type on the channel that are not praise, for counting (see :data:`NOT_PRAISE`)."""
    return and_(_of_type(issue_type, platform), NOT_PRAISE)


async def _count(session: AsyncSession, issue_type: str, platform: str, start: datetime, end: datetime) -> int:
    q = (select(func.count()).select_from(TriageResult).join(Mention, Mention.id == TriageResult.mention_id)
         .where(_counted(issue_type, platform), Mention.created_at > start, Mention.created_at <= end))
    return int((await session.execute(q)).scalar_one())


async def expected_count(session: AsyncSession, issue_type: str, platform: str, at: datetime,
                         policy: SpikePolicy) -> tuple[float, dict]:
    """How many mentions of the type a window ending at ``at`` normally holds, and why."""
    w = policy.window
    recent = await _count(session, issue_type, platform, at - w * (policy.baseline_windows + 1), at - w)
    first_seen = await session.scalar(select(func.min(Mention.created_at)).where(Mention.platform == platform))
    same_window: list[int] = []
    for day in range(1, policy.history_days + 1):
        end = at - timedelta(days=day)
        if first_seen is None or end - w < first_seen:
            break  # the channel was not listened to then: no evidence either way
        same_window.append(await _count(session, issue_type, platform, end - w, end))
    seasonal = float(statistics.median(same_window)) if same_window else 0.0
    expected = max(recent / policy.baseline_windows, seasonal, 1.0)
    return expected, {"expected": round(expected, 2), "recent_mean": round(recent / policy.baseline_windows, 2),
                      "same_window_previous_days": same_window}


async def is_spike(session: AsyncSession, issue_type: str, platform: str, at: datetime,
                   policy: SpikePolicy) -> tuple[bool, dict]:
    current = await _count(session, issue_type, platform, at - policy.window, at)
    if current < policy.min_count:
        return False, {"count": current}
    expected, stats = await expected_count(session, issue_type, platform, at, policy)
    return current >= policy.factor * expected, {"count": current, **stats}


async def open_incident_for(session: AsyncSession, issue_type: str, platform: str) -> Incident | None:
    """The newest open incident of this type on this channel (quiet or not)."""
    return _pick(await _open_incidents(session, {issue_type}), issue_type, platform)


async def _open_incidents(session: AsyncSession, issue_types: set[str]) -> list[Incident]:
    """The open incidents of these types, newest first (one query)."""
    return list(await session.scalars(OPEN, {"types": list(issue_types)}))


def _pick(incidents: list[Incident], issue_type: str, platform: str) -> Incident | None:
    """:func:`open_incident_for` among ``incidents`` (newest first)."""
    return next((i for i in incidents if i.issue_type == issue_type and i.channel == platform), None)


async def attach_many(session: AsyncSession, incident_id: int, mention_ids: list[int]) -> None:
    """Group mentions into an incident; mentions already in it are left alone (one query, one insert)."""
    if not mention_ids:
        return
    have = set(await session.scalars(ATTACHED, {"incident_id": incident_id, "ids": mention_ids}))
    await add_rows(session, IncidentMention, [{"incident_id": incident_id, "mention_id": mid}
                                              for mid in dict.fromkeys(mention_ids) if mid not in have])


async def attach(session: AsyncSession, incident_id: int, mention_id: int) -> None:
    await attach_many(session, incident_id, [mention_id])


async def _open(session: AsyncSession, issue_type: str, platform: str, at: datetime, stats: dict,
                policy: SpikePolicy) -> Incident:
    bucket = int(at.timestamp() // policy.window.total_seconds())
    incident = Incident(
        dedup_key=f"{issue_type}:{platform}:{bucket}", issue_type=issue_type, channel=platform,
        title=f"Spike of {issue_type.replace('_', ' ')} reports on {platform}", opened_at=at,
        details={"detector": stats})
    session.add(incident)
    await session.flush()
    session.add(IncidentUpdate(incident_id=incident.id, kind="opened", actor="detector",
                               message=incident.title, details={"detector": stats}))
    return incident


class Matched(dict[int, int]):
    """Mention id → incident id for the mentions that belong to an incident; ``rising``: mention id →
    the window of a report in none while its type climbs on its channel (count, usual, spike)."""

    def __init__(self) -> None:
        super().__init__()
        self.rising: dict[int, dict] = {}


Baselines = dict[tuple[str, str, int], tuple[float, dict]]


async def match_batch(session: AsyncSession, items: list[tuple[Mention, str]], policy: SpikePolicy,
                      baselines: Baselines | None = None) -> Matched:
    """Group a batch's reports into incidents, opening one where a spike completes.

    One query tells the reports from the rest, one reads the open incidents of the batch's types
    and when each last had a report, one the event times near the batch of every (type, channel)
    an active incident may not cover; there the baseline is computed once per few minutes of event
    time (``baselines``: the caller's cache across batches, else this batch's) and each report is
    checked in time order in memory. Returns mention id → incident id for the mentions that belong
    to an incident, and the rising reports of none (:class:`Matched`)."""
    out = Matched()
    candidates = [(m, t) for m, t in items if t in INCIDENT_TYPES]
    reports = {mid for mid, *row in await session.execute(REPORTS, {"ids": [m.id for m, _ in candidates]})
               if policy.is_report(*row)} if candidates else set()
    groups: dict[tuple[str, str], list[Mention]] = {}
    for mention, issue_type in candidates:
        if mention.id in reports:
            groups.setdefault((issue_type, mention.platform), []).append(mention)
    if not groups:
        return out
    for mentions in groups.values():
        mentions.sort(key=lambda m: (m.created_at, m.id))
    open_now = await _open_incidents(session, {t for t, _ in groups})
    latest = dict((await session.execute(LATEST_REPORT, {"ids": [i.id for i in open_now]})).all()) if open_now else {}
    active = {g: i for g in groups if (i := _pick(open_now, *g)) is not None}
    last = {i.id: latest.get(i.id) or i.opened_at for i in active.values()}
    times = await _event_times(session, {g: m for g, m in groups.items() if g not in active
                                         or m[-1].created_at > last[active[g].id] + policy.quiet_after}, policy)
    joins: dict[int, list[int]] = {}
    baselines = {} if baselines is None else baselines
    for (issue_type, platform), mentions in groups.items():
        incident = active.get((issue_type, platform))
        for mention in mentions:
            at = mention.created_at
            if incident is not None and at > last[incident.id] + policy.quiet_after:
                incident = None  # gone quiet: from here on a report may start a new spike
            if incident is None:
                incident, rising = await _detect(session, issue_type, platform, at, times[(issue_type, platform)],
                                                 baselines, policy)
                if incident is None:
                    if rising is not None:
                        out.rising[mention.id] = rising
                    continue
                last[incident.id] = at
                earlier = {mid for mid, *row in await session.execute(
                    select(_M.id, *REPORT_COLUMNS).join(TriageResult, TriageResult.mention_id == Mention.id)
                    .where(_of_type(issue_type, platform), Mention.created_at > at - policy.window,
                           Mention.created_at <= at)) if policy.is_report(*row)}
                joins[incident.id] = sorted(earlier)
                out.update({m.id: incident.id for m in mentions if m.id in earlier})
            if at <= incident.opened_at - policy.window:
                continue  # written before the spike (a late delivery, a replay): not part of it
            joins.setdefault(incident.id, []).append(mention.id)
            out[mention.id] = incident.id
            last[incident.id] = max(last[incident.id], at)
    for mention_id in set(out.rising) & set(out):  # rose, then the spike completed in this batch
        del out.rising[mention_id]
    for incident_id, mention_ids in joins.items():
        await attach_many(session, incident_id, mention_ids)
    return out


async def _detect(session: AsyncSession, issue_type: str, platform: str, at: datetime,
                  times_of: list[datetime], baselines: Baselines,
                  policy: SpikePolicy) -> tuple[Incident | None, dict | None]:
    """The incident a report at ``at`` opens, if the window ending there is a spike; else the
    window's figures if its count is rising toward one (see the module doc)."""
    count = bisect.bisect_right(times_of, at) - bisect.bisect_right(times_of, at - policy.window)
    watched = issue_type in RISING_TYPES
    if count < (min(policy.min_count, policy.rising_count) if watched else policy.min_count):
        return None, None
    key = (issue_type, platform, int(at.timestamp() // (policy.window.total_seconds() / 6)))  # moves slowly
    if key not in baselines:
        baselines[key] = await expected_count(session, issue_type, platform, at, policy)
    expected, stats = baselines[key]
    if count >= policy.min_count and count >= policy.factor * expected:
        return await _open(session, issue_type, platform, at, {"count": count, **stats}, policy), None
    if watched and count >= policy.rising_count and count >= policy.rising_factor * expected:
        return None, {"issue_type": issue_type, "channel": platform, "count": count, "expected": stats["expected"],
                      "window_minutes": round(policy.window.total_seconds() / 60),
                      "spike_at": max(policy.min_count, math.ceil(policy.factor * expected))}
    return None, None


async def _event_times(session: AsyncSession, groups: dict[tuple[str, str], list[Mention]],
                       policy: SpikePolicy) -> dict[tuple[str, str], list[datetime]]:
    """Per (type, channel), the event times of its mentions from a window before the group's first
    (sorted) mention to its last, in time order: one query for every group. The window a spike is
    judged on leaves thank-yous out by their words and sentiment (plain columns: a window's worth)."""
    if not groups:
        return {}
    ranges = {g: (m[0].created_at - policy.window, m[-1].created_at) for g, m in groups.items()}
    rows = await session.execute(EVENT_TIMES, {"groups": list(groups), "low": min(low for low, _ in ranges.values()),
                                               "high": max(high for _, high in ranges.values())})
    out: dict[tuple[str, str], list[datetime]] = {g: [] for g in groups}
    for issue_type, platform, at, text, sentiment in rows:
        low, high = ranges[(issue_type, platform)]
        if low < at <= high and not is_thanks(text, sentiment):
            out[(issue_type, platform)].append(at)
    return out


async def match_or_open(session: AsyncSession, mention: Mention, issue_type: str,
                        policy: SpikePolicy) -> Incident | None:
    """The incident one mention belongs to (``match_batch`` for a batch of one)."""
    found = await match_batch(session, [(mention, issue_type)], policy)
    return await session.get(Incident, found[mention.id]) if mention.id in found else None
