"""The sentiment digest for marketing: what people said about the brand in a day or a week.

Volume per channel, sentiment over time, the share of issue types, emerging terms, incidents and
volume spikes, notable positive and negative posts, each against the previous period of the same
length. Post texts are redacted twice (the triage's PII spans, then a fresh detection) and shown
without their authors: a digest is mailed around and must carry no personal data.
"""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from statistics import median
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from console.queries import care_team_only_clause, public_text
from models import Incident, IncidentMention, Mention, RouteDecision, TriageResult
from service.privacy import erased
from triage import redact
from triage.protocol import SENTIMENT_LABELS

PERIODS = {"day": timedelta(days=1), "week": timedelta(days=7)}
BUCKETS = {"day": timedelta(hours=1), "week": timedelta(hours=6)}
EXCLUDED_OUTCOMES = ("moderate",)  # spam and abuse are not what customers think of the brand
STOPWORDS = frozenset(["a", "about", "above", "after", "again", "against", "all", "am", "an", "and", "any", "are", "as", "at", "be", "because", "been", "before", "being", "below", "between", "both", "but", "by", "can", "could", "did", "do", "does", "doing", "down", "during", "each", "few", "for", "from", "further", "had", "has", "have", "having", "he", "her", "here", "hers", "him", "his", "how", "i", "if", "in", "into", "is", "it", "its", "itself", "just", "me", "more", "most", "my", "no", "nor", "not", "now", "of", "off", "on", "once", "only", "or", "other", "our", "out", "over", "own", "same", "she", "should", "so", "some", "such", "than", "that", "the", "their", "them", "then", "there", "these", "they", "this", "those", "through", "to", "too", "under", "until", "up", "very", "was", "we", "were", "what", "when", "where", "which", "while", "who", "whom", "why", "will", "with", "would", "you", "your", "yours", "im", "ive", "dont", "cant", "wont", "didnt", "doesnt", "isnt", "thats", "its", "youre", "get", "got", "still", "also", "really", "one", "like", "just", "amp", "via", "please", "thanks", "thank", "hi", "hello", "hey", "yes", "yeah", "ok", "okay"])
WORD = re.compile(r"[a-zà-öø-ÿ][a-zà-öø-ÿ'’-]{2,}")


SPIKE_MIN = 10  # a spike is at least this many mentions in one bucket...
SPIKE_FACTOR = 3  # ...and this many times the typical bucket
SPIKE_BASELINE_BUCKETS = 3  # non-empty buckets needed before "typical" means anything


def window(period: str, end: datetime | None = None) -> tuple[datetime, datetime]:
    if period not in PERIODS:
        raise ValueError(f"period must be one of {', '.join(PERIODS)}")
    end = (end or datetime.now(UTC)).astimezone(UTC)
    return end - PERIODS[period], end


def aligned_end(period: str, now: datetime) -> datetime:
    """The end of the last complete period: midnight UTC today (day) or on Monday (week)."""
    midnight = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight if period == "day" else midnight - timedelta(days=midnight.weekday())


def end_of_day(day: date) -> datetime:
    """The end of a digest that runs through ``day`` (UTC): the midnight after it."""
    return datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)


def last_day(d: Digest) -> date:
    """The last day (UTC) a digest covers, what its files and mail are named by: its end is the
    midnight after that day (``end=2026-11-20`` ends 2026-11-21 00:00), or now for one up to now."""
    return utc_day(d.end - timedelta(microseconds=1))


def utc_day(at: datetime) -> date:
    """The day (UTC) of a stored time (SQLite hands times back naive: they are UTC)."""
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(UTC).date()


def find_spikes(current: list[int], previous: list[int]) -> tuple[float | None, list[int]]:
    """(typical bucket, indexes of the current buckets that spike).

    Typical is the median of the *non-empty* buckets of this and the previous period: a week of
    6-hour buckets is mostly empty at night or before the data starts, and a median of zeros made any
    ordinary bucket a "spike" against "typical 0". With fewer than SPIKE_BASELINE_BUCKETS non-empty
    buckets there is no baseline, and no spike is claimed."""
    busy = [n for n in current + previous if n]
    if len(busy) < SPIKE_BASELINE_BUCKETS:
        return None, []
    typical = float(median(busy))
    return typical, [i for i, n in enumerate(current) if n >= max(SPIKE_MIN, SPIKE_FACTOR * typical)]


def terms(text: str) -> list[str]:
    words = [w.strip("'’-") for w in WORD.findall(text.lower())]
    words = [w for w in words if len(w) >= 3 and w not in STOPWORDS and not w.startswith("http")
             and "redacted" not in w]
    return words + [f"{a} {b}" for a, b in pairwise(words)]


def safe_text(m: Mention, tri: TriageResult | None) -> str:
    """Redacted with the triage's spans, then again by detection; handles and links removed."""
    text = redact(public_text(m, tri))
    text = re.sub(r"(?<!\w)@\w{2,}", "@…", text)
    return re.sub(r"https?://\S+", "[link]", text)


@dataclass
class Post:
    platform: str
    created_at: datetime
    sentiment: str
    issue_type: str
    priority: float
    text: str


@dataclass
class Digest:
    period: str
    start: datetime
    end: datetime
    prev_start: datetime
    total: int = 0
    prev_total: int = 0
    volume: dict[str, tuple[int, int]] = field(default_factory=dict)  # channel -> (current, previous)
    sentiment: dict[str, tuple[int, int]] = field(default_factory=dict)
    series: list[tuple[datetime, dict[str, int]]] = field(default_factory=list)
    issues: list[tuple[str, int, float, float]] = field(default_factory=list)  # type, n, share, previous share
    prev_issue_counts: dict[str, int] = field(default_factory=dict)
    emerging: list[tuple[str, int, int]] = field(default_factory=list)  # term, current, previous
    top_terms: list[tuple[str, int]] = field(default_factory=list)
    incidents: list[dict[str, Any]] = field(default_factory=list)
    spikes: list[tuple[datetime, int, float]] = field(default_factory=list)  # bucket, count, typical
    positive: list[Post] = field(default_factory=list)
    negative: list[Post] = field(default_factory=list)

    def share(self, label: str, previous: bool = False) -> float | None:
        n, d = (self.sentiment.get(label, (0, 0))[1], self.prev_total) if previous else \
            (self.sentiment.get(label, (0, 0))[0], self.total)
        return round(n / d, 4) if d else None

    @property
    def has_previous(self) -> bool:
        """Whether the previous period holds anything to compare with (emerging terms need it)."""
        return self.prev_total > 0

    @property
    def net_sentiment(self) -> float | None:
        pos, neg = self.share("positive"), self.share("negative")
        return None if pos is None else round(pos - neg, 4)

    @property
    def prev_net_sentiment(self) -> float | None:
        pos, neg = self.share("positive", True), self.share("negative", True)
        return None if pos is None else round(pos - neg, 4)


def _counted(query: Any) -> Any:
    """What a digest counts: triaged posts, neither spam nor routed to moderation."""
    return (query.join(TriageResult, TriageResult.mention_id == Mention.id)
            .outerjoin(RouteDecision, RouteDecision.mention_id == Mention.id)
            .where(TriageResult.spam != "spam",
                   (RouteDecision.outcome.is_(None)) | (RouteDecision.outcome.not_in(EXCLUDED_OUTCOMES))))


async def _rows(session: AsyncSession, start: datetime, end: datetime,
                limit: int) -> tuple[list[tuple[Mention, TriageResult]], set[int]]:
    """The first ``limit`` posts counted, and the ids of those that are private matters
    (:func:`console.queries.care_team_only`: counted, never quoted)."""
    rows = (await session.execute(_counted(select(Mention, TriageResult, care_team_only_clause())).where(
        Mention.created_at >= start, Mention.created_at < end).order_by(Mention.created_at))).all()[:limit]
    return [(m, t) for m, t, _ in rows], {m.id for m, _, private in rows if private}


async def latest_day_before(session: AsyncSession, start: datetime) -> date | None:
    """The day (UTC) of the last post a digest would count before ``start``: an empty period (a
    quiet channel, a data set of past days such as the demo's) can point the reader at where the
    posts are instead of showing blank charts."""
    at = await session.scalar(_counted(select(func.max(Mention.created_at))).where(Mention.created_at < start))
    return utc_day(at) if at is not None else None


async def compute(session: AsyncSession, period: str, end: datetime | None = None, *, notable: int = 5,
                  max_rows: int = 200_000) -> Digest:
    start, end = window(period, end)
    prev_start = start - PERIODS[period]
    cur, private = await _rows(session, start, end, max_rows)
    prev, private_before = await _rows(session, prev_start, start, max_rows)
    private |= private_before

    def quotable(m: Mention) -> bool:  # counted, but an erased post has no words, and a private matter is not quoted
        return not erased(m) and m.id not in private
    d = Digest(period=period, start=start, end=end, prev_start=prev_start, total=len(cur), prev_total=len(prev))
    vc, vp = Counter(m.platform for m, _ in cur), Counter(m.platform for m, _ in prev)
    d.volume = {ch: (vc[ch], vp[ch]) for ch in sorted(set(vc) | set(vp), key=lambda c: (-vc[c], c))}
    sc, sp = Counter(t.sentiment for _, t in cur), Counter(t.sentiment for _, t in prev)
    d.sentiment = {label: (sc[label], sp[label]) for label in SENTIMENT_LABELS}

    step = BUCKETS[period]
    n_buckets = int(PERIODS[period] / step)
    buckets = [{label: 0 for label in SENTIMENT_LABELS} for _ in range(n_buckets)]
    for m, t in cur:
        i = min(n_buckets - 1, int((m.created_at - start) / step))
        buckets[i][t.sentiment] = buckets[i].get(t.sentiment, 0) + 1
    d.series = [(start + i * step, b) for i, b in enumerate(buckets)]
    prev_counts = [0] * n_buckets
    for m, _ in prev:
        prev_counts[min(n_buckets - 1, int((m.created_at - prev_start) / step))] += 1
    counts = [sum(b.values()) for b in buckets]
    typical, spiking = find_spikes(counts, prev_counts)
    d.spikes = [(d.series[i][0], counts[i], typical) for i in spiking if typical is not None]

    ic, ip = Counter(t.issue_type for _, t in cur), Counter(t.issue_type for _, t in prev)
    d.issues = [(k, n, round(n / d.total, 4), round(ip[k] / d.prev_total, 4) if d.prev_total else 0.0)
                for k, n in ic.most_common()]
    d.prev_issue_counts = dict(ip)

    tc, tp = Counter(), Counter()
    for m, t in cur:
        if quotable(m):
            tc.update(set(terms(safe_text(m, t))))
    for m, t in prev:
        if quotable(m):
            tp.update(set(terms(safe_text(m, t))))
    d.top_terms = tc.most_common(15)
    if d.prev_total:  # with nothing before, every frequent word would "emerge": see has_previous
        scale = d.total / d.prev_total
        emerging = [(term, n, tp[term]) for term, n in tc.items() if n >= 3 and n >= 2 * (tp[term] * scale + 1)]
        emerging.sort(key=lambda x: (-(x[1] / (x[2] * scale + 1)), -x[1], x[0]))
        d.emerging = emerging[:10]

    for inc, n in (await session.execute(
        select(Incident, func.count(IncidentMention.mention_id))
        .outerjoin(IncidentMention, IncidentMention.incident_id == Incident.id)
        .where(Incident.opened_at >= start, Incident.opened_at < end)
        .group_by(Incident.id).order_by(Incident.opened_at))).all():
        d.incidents.append({"id": inc.id, "title": inc.title, "issue_type": inc.issue_type, "channel": inc.channel,
                            "status": inc.status, "opened_at": inc.opened_at, "mentions": n})

    def pick(label: str) -> list[Post]:
        rows = [(m, t) for m, t in cur if t.sentiment == label and t.toxicity != "offensive" and not m.hidden
                and not m.deleted and quotable(m)]
        rows.sort(key=lambda r: (-(r[1].scores or {}).get("sentiment", {}).get("score", 0.0), -r[1].priority))
        return [Post(m.platform, m.created_at, t.sentiment, t.issue_type, t.priority, safe_text(m, t))
                for m, t in rows[:notable]]

    d.positive, d.negative = pick("positive"), pick("negative")
    return d


def to_csv(d: Digest) -> str:
    """The digest's numbers in one long table: section, key, bucket, current, previous."""
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["section", "key", "bucket", "current", "previous"])
    w.writerow(["period", d.period, "", d.start.isoformat(), d.prev_start.isoformat()])
    w.writerow(["volume", "total", "", d.total, d.prev_total])
    for ch, (c, p) in d.volume.items():
        w.writerow(["volume", ch, "", c, p])
    for label, (c, p) in d.sentiment.items():
        w.writerow(["sentiment", label, "", c, p])
    for at, b in d.series:
        for label in SENTIMENT_LABELS:
            w.writerow(["sentiment_over_time", label, at.isoformat(), b.get(label, 0), ""])
    for k, n, s, ps in d.issues:  # the counts behind each share, then the share
        w.writerow(["issue_count", k, "", n, d.prev_issue_counts.get(k, 0)])
        w.writerow(["issue_share", k, "", s, ps])
    for term, c, p in d.emerging:
        w.writerow(["emerging_term", term, "", c, p])
    for at, n, typical in d.spikes:
        w.writerow(["spike", "volume", at.isoformat(), n, typical])
    for inc in d.incidents:
        w.writerow(["incident", inc["issue_type"], inc["opened_at"].isoformat(), inc["mentions"], ""])
    return out.getvalue()


def to_json(d: Digest) -> dict[str, Any]:
    return {
        "period": d.period, "start": d.start.isoformat(), "end": d.end.isoformat(),
        "previous_start": d.prev_start.isoformat(), "total": d.total, "previous_total": d.prev_total,
        "volume": {k: {"current": c, "previous": p} for k, (c, p) in d.volume.items()},
        "sentiment": {k: {"current": c, "previous": p} for k, (c, p) in d.sentiment.items()},
        "net_sentiment": d.net_sentiment, "previous_net_sentiment": d.prev_net_sentiment,
        "sentiment_over_time": [{"at": at.isoformat(), **b} for at, b in d.series],
        "issue_types": [{"issue_type": k, "count": n, "previous_count": d.prev_issue_counts.get(k, 0), "share": s,
                         "previous_share": ps} for k, n, s, ps in d.issues],
        "has_previous": d.has_previous,
        "emerging_terms": [{"term": t, "current": c, "previous": p} for t, c, p in d.emerging],
        "incidents": [{**i, "opened_at": i["opened_at"].isoformat()} for i in d.incidents],
        "spikes": [{"at": at.isoformat(), "count": n, "typical": t} for at, n, t in d.spikes],
        "notable_positive": [{"platform": p.platform, "created_at": p.created_at.isoformat(), "text": p.text,
                              "issue_type": p.issue_type} for p in d.positive],
        "notable_negative": [{"platform": p.platform, "created_at": p.created_at.isoformat(), "text": p.text,
                              "issue_type": p.issue_type} for p in d.negative],
    }
