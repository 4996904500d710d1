"""X's batch compliance job: the stored tweets older than the re-check window, checked once a day.

X's Developer Agreement wants stored X content to reflect its current state, and the re-check
(:mod:`listener.x.recheck`) follows a tweet for ``x_recheck_hours`` only: a tweet deleted on day 3
would keep its words here. So every ``x_compliance_hours`` the ids of the X mentions we still show
that were first seen before that window (``ingested_at``; not deleted, hence not erased) go to X's
batch compliance endpoints: ``POST /2/compliance/jobs`` (tweepy, app-only bearer token), the ids one
a line to the job's pre-signed ``upload_url`` (a plain PUT, no auth header: aiohttp), ``GET
/2/compliance/jobs/{id}`` until ``complete``, then the ``download_url``'s JSON lines, one per id
with a compliance event. Each ``delete`` whose reason is not a geo scrub becomes a content-removing
``delete`` on the ingest topic (as the re-check's :func:`~listener.x.recheck.gone`; ingest removes
the content, :mod:`listener.deletions`, and reports one we no longer hold as a duplicate). Anything
else (``scrub_geo``: we keep no geo) deletes nothing. A tweet removed this way is not followed
afterwards: an account reactivated later does not bring it back here.

Ids are taken by mention id, ``x_compliance_max`` a job (100,000 by default), from where the last
job's upload stopped and wrapping around, so a backlog larger than one job is covered over days.

The job is a small state machine (``idle`` → ``upload`` → ``wait`` → ``download`` → ``idle``)
kept as JSON in the ``connector_cursors`` row :data:`NAME`, so a restart resumes it: one step a
call, each one request. X allows one open job of a type: a refused create (400/409) looks the open
one up (``GET /2/compliance/jobs?type=tweets&status=in_progress``, then ``created``) and carries it
on. A 429 waits for ``x-rate-limit-reset``; 5xx, network errors and malformed answers back off
with jitter; 401/403 log an error and wait for the next run; all keep the state. A ``failed`` or
``expired`` job, or a pre-signed URL that expired or is refused (a 4xx), is dropped: a new job is
created on the next round.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import tweepy
from sqlalchemy import select

from listener.backoff import jittered, rate_limit_wait
from listener.cursors import CursorStore
from listener.errors import AuthError, RateLimited
from listener.protocol import NormalizedMention
from listener.x.actions import make_client
from listener.x.errors import _status, translate
from listener.x.recheck import gone
from models import Mention

log = logging.getLogger("socialcare.listener.x.compliance")
NAME = "x:compliance"  # its connector_cursors row
REMOVALS = frozenset({"delete"})  # actions that take a tweet off X (or out of public view)
KEPT = frozenset({"scrub_geo"})  # reasons that remove something we do not store: nothing to do
LIMIT_WAIT = 900.0  # the longest a 429 holds it back: X's rate-limit windows are 15 minutes
URL_MARGIN = 30.0  # a pre-signed URL this close to its expiry is treated as expired
PUBLISH_CHUNK = 500
PHASES = ("idle", "upload", "wait", "download")
STORAGE_TIMEOUT = aiohttp.ClientTimeout(total=600, sock_connect=10, sock_read=60)


class StorageError(Exception):
    """A pre-signed storage URL answered ``status``: a 4xx means the URL is no longer usable."""

    def __init__(self, status: int) -> None:
        super().__init__(f"storage answered HTTP {status}")
        self.status = status


def enabled(settings: Any) -> bool:
    """Only with the X connector configured with a bearer token (the endpoints are app-only)."""
    return settings.x_enabled and settings.x_bearer_token is not None and settings.x_compliance_hours > 0


def _epoch(value: Any) -> float:
    """X's ISO times (``2021-08-11T19:57:55.000Z``) as epoch seconds; 0 when absent or unreadable."""
    try:
        return datetime.fromisoformat(str(value)).timestamp()
    except ValueError:
        return 0.0


def _expired(at: float, now: float) -> bool:
    """A pre-signed URL past (or within :data:`URL_MARGIN` of) its expiry; one X gave no time for is tried."""
    return bool(at) and now >= at - URL_MARGIN


def results_to_mentions(body: str, now: float) -> tuple[list[NormalizedMention], int, int]:
    """The download's JSON lines as content-removing deletes; also how many lines were ignored
    (an action that removes nothing) and unreadable."""
    out: list[NormalizedMention] = []
    ignored = bad = 0
    for line in body.splitlines():
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            tid, action, reason = str(item["id"]), item.get("action"), str(item.get("reason") or "")
        except (ValueError, KeyError, TypeError):
            bad += 1
            continue
        if action not in REMOVALS or reason in KEPT or not tid.isdigit():
            ignored += 1
            continue
        out.append(gone(tid, tid, f"Batch compliance: {reason}", None, now))  # as the re-check says it
    return out, ignored, bad


class ComplianceJob:
    """One step at a time (:meth:`step`); ``publish`` puts the deletes on the ingest topic."""

    def __init__(self, settings: Any, db: Any, publish: Any, *, cursors: Any = None) -> None:
        self.settings, self.db, self.publish = settings, db, publish
        self.cursors = cursors or CursorStore(db)
        self.interval = float(settings.x_compliance_hours) * 3600
        self.poll = float(settings.x_compliance_poll_seconds)
        self.cap = int(settings.x_compliance_max)
        self.window = timedelta(hours=float(settings.x_recheck_hours))
        self.client = make_client(settings)

    async def close(self) -> None:
        self.client.session.close()

    # --- state ------------------------------------------------------------------------------
    async def load(self) -> dict[str, Any]:
        raw = await self.cursors.get(NAME)
        try:
            state = json.loads(raw) if raw else {}
        except ValueError:
            state = {}
        state = {"phase": "idle", "next_at": 0.0, "after": 0, "failures": 0, **(state if isinstance(state, dict) else {})}
        if state["phase"] not in PHASES or (state["phase"] != "idle" and not isinstance(state.get("job"), dict)):
            state.update(phase="idle", job=None)  # not a state this release writes: start afresh
        return state

    async def save(self, state: dict[str, Any]) -> None:
        await self.cursors.set(NAME, json.dumps(state, sort_keys=True))

    # --- which ids --------------------------------------------------------------------------
    async def ids(self, after: int, now: float, cap: int | None = None) -> tuple[list[str], int]:
        """Up to ``cap`` tweet ids by mention id after ``after``, wrapping around; and the new ``after``."""
        cap = cap or self.cap
        cutoff = datetime.fromtimestamp(now, UTC) - self.window
        due = (Mention.platform == "x", Mention.deleted.is_(False), Mention.ingested_at < cutoff)
        query = select(Mention.id, Mention.external_id).where(*due).order_by(Mention.id)
        async with self.db.session() as session:
            rows = list((await session.execute(query.where(Mention.id > after).limit(cap))).all())
            if len(rows) < cap and after:
                rows += (await session.execute(query.where(Mention.id <= after).limit(cap - len(rows)))).all()
        return [r.external_id for r in rows], (rows[-1].id if rows else 0)

    # --- the steps --------------------------------------------------------------------------
    async def step(self, now: float | None = None) -> float:
        """Do the next step if it is due; the seconds until the one after. Raises nothing but
        cancellation: an error is logged and retried as the module docstring says."""
        now = time.time() if now is None else now
        state = await self.load()
        if now < state["next_at"]:
            return state["next_at"] - now
        phase = state["phase"]
        try:
            await getattr(self, f"_{phase}")(state, now)
        except asyncio.CancelledError:
            raise
        except StorageError as exc:
            if 400 <= exc.status < 500 and exc.status != 429:
                self._drop(state, now, f"its {phase} URL was refused ({exc})")
            else:
                self._back_off(state, now, phase, str(exc))
        except Exception as exc:  # noqa: BLE001 - one round's trouble, the state kept
            self._failed(state, now, phase, exc)
        await self.save(state)
        return max(0.0, state["next_at"] - now)

    async def _idle(self, state: dict[str, Any], now: float) -> None:
        if not (await self.ids(state["after"], now, cap=1))[0]:
            log.info("X batch compliance: no stored tweet older than the re-check window")
            state["next_at"] = now + self.interval
            return
        try:
            made = await asyncio.to_thread(self.client.create_compliance_job, type="tweets",
                                           name=f"socialcare {datetime.fromtimestamp(now, UTC):%Y-%m-%d %H:%M}")
        except tweepy.HTTPException as exc:
            if _status(exc) not in ("400", "409"):
                raise
            job = await self._open_job(now)
            if job is None:
                raise
            log.info("X batch compliance: X refused a new job (%s); carrying on its open job %s", _status(exc), job["id"])
        else:
            job = self._job(made)
        state.update(job=job, started_at=now, failures=0, next_at=now,
                     phase="wait" if job.get("status") == "in_progress" else "upload")

    async def _open_job(self, now: float) -> dict[str, Any] | None:
        """The job X has open (one in progress; else one created whose upload URL still works)."""
        for status in ("in_progress", "created"):
            found = await asyncio.to_thread(self.client.get_compliance_jobs, "tweets", status=status)
            jobs = found.get("data") if isinstance(found, dict) else None
            for data in jobs if isinstance(jobs, list) else []:
                job = self._job({"data": data}) if isinstance(data, dict) and data.get("id") else None
                if job and (status == "in_progress" or not _expired(job["upload_expires_at"], now)):
                    return {**job, "status": status}
        return None

    @staticmethod
    def _job(answer: Any) -> dict[str, Any]:
        data = answer.get("data") if isinstance(answer, dict) else None
        if not isinstance(data, dict) or not data.get("id"):
            raise ValueError("X compliance job answer without data.id")
        return {"id": str(data["id"]), "status": data.get("status"), "upload_url": data.get("upload_url"),
                "download_url": data.get("download_url"), "upload_expires_at": _epoch(data.get("upload_expires_at")),
                "download_expires_at": _epoch(data.get("download_expires_at"))}

    async def _upload(self, state: dict[str, Any], now: float) -> None:
        job = state["job"]
        if not job.get("upload_url") or _expired(job["upload_expires_at"], now):
            self._drop(state, now, "its upload URL expired before the upload")
            return
        ids, after = await self.ids(state["after"], now)
        if not ids:
            self._drop(state, now, "no tweet left to send")
            return
        body = "".join(f"{i}\n" for i in ids).encode()
        async with aiohttp.ClientSession(timeout=STORAGE_TIMEOUT) as http, \
                http.put(job["upload_url"], data=body, headers={"Content-Type": "text/plain"}) as resp:
            if resp.status >= 300:
                raise StorageError(resp.status)
        log.info("X batch compliance: %d tweet ids uploaded to job %s", len(ids), job["id"])
        state.update(phase="wait", after=after, sent_after=state["after"], sent=len(ids), failures=0,
                     next_at=now + self.poll)

    async def _wait(self, state: dict[str, Any], now: float) -> None:
        job = self._job(await asyncio.to_thread(self.client.get_compliance_job, state["job"]["id"]))
        status = job["status"]
        if status in ("failed", "expired"):
            self._drop(state, now, f"X reports it {status}")
        elif status == "complete":
            state["job"] = {**state["job"], **{k: v for k, v in job.items() if v}}
            state.update(phase="download", failures=0, next_at=now)
        else:  # created, in_progress
            state.update(failures=0, next_at=now + self.poll)

    async def _download(self, state: dict[str, Any], now: float) -> None:
        job = state["job"]
        if not job.get("download_url") or _expired(job["download_expires_at"], now):
            self._drop(state, now, "its download URL expired")
            return
        async with aiohttp.ClientSession(timeout=STORAGE_TIMEOUT) as http, http.get(job["download_url"]) as resp:
            if resp.status >= 300:
                raise StorageError(resp.status)
            body = await resp.text()
        deletes, ignored, bad = results_to_mentions(body, now)
        for i in range(0, len(deletes), PUBLISH_CHUNK):
            await self.publish(deletes[i:i + PUBLISH_CHUNK])
        log.info("X batch compliance job %s: %d of %s tweets removed here (deleted or withdrawn on X), %d results "
                 "with nothing to remove, %d unreadable", job["id"], len(deletes), state.get("sent", "?"), ignored, bad)
        state.pop("sent_after", None)  # checked: the next job goes on after them
        state.update(phase="idle", job=None, failures=0,
                     next_at=max(now + self.poll, state.get("started_at", now) + self.interval))

    # --- failures ---------------------------------------------------------------------------
    def _drop(self, state: dict[str, Any], now: float, why: str) -> None:
        """The job cannot go on: a new one next round (sooner after a first failure, then backing off)."""
        job = (state.get("job") or {}).get("id")
        state["failures"] = state.get("failures", 0) + 1
        if "sent_after" in state:  # its tweets were never checked: the next job sends them again
            state["after"] = state.pop("sent_after")
        state.update(phase="idle", job=None, next_at=now + jittered(state["failures"], self.poll, self.interval))
        log.warning("X batch compliance: job %s dropped, %s; a new job next round", job, why)

    def _back_off(self, state: dict[str, Any], now: float, phase: str, why: str) -> None:
        state["failures"] = state.get("failures", 0) + 1
        delay = jittered(state["failures"], 30.0, max(self.poll, 1800.0))
        state["next_at"] = now + delay
        log.warning("X batch compliance (%s): %s; retry in %.0f s, the job kept", phase, why, delay)

    def _failed(self, state: dict[str, Any], now: float, phase: str, exc: Exception) -> None:
        error = translate(exc)
        if isinstance(error, RateLimited):
            wait = min(rate_limit_wait(error.reset_at, error.retry_after, now=now), LIMIT_WAIT)
            state["next_at"] = now + wait
            log.warning("X batch compliance (%s): rate limited; retry in %.0f s, the job kept", phase, wait)
        elif isinstance(error, AuthError):
            state["next_at"] = now + self.interval
            log.error("X batch compliance (%s) stopped until the next run: %s (the endpoints need an app-only "
                      "bearer token, SOCIALCARE_X_BEARER_TOKEN, of an App in a Project)", phase, error)
        else:
            self._back_off(state, now, phase, f"{type(error).__name__}: {str(error)[:200]}")

    async def run(self, stop: asyncio.Event) -> None:
        """Step until ``stop``: each wait as long as the state says, never blocking the loop."""
        from service.periodic import wait_or_stop

        try:
            while not stop.is_set():
                try:
                    delay = await self.step()
                except asyncio.CancelledError:
                    raise
                except Exception:  # noqa: BLE001 - the state could not be read or saved: try again later
                    log.exception("X batch compliance step failed")
                    delay = self.poll
                if await wait_or_stop(stop, max(1.0, delay)):
                    return
        finally:
            await self.close()


def start(settings: Any, db: Any, publish: Any, stop: asyncio.Event) -> asyncio.Task | None:
    """In a process that polls the connectors: the job's task, or None when :func:`enabled` says no."""
    if not enabled(settings):
        return None
    job = ComplianceJob(settings, db, publish)
    return asyncio.get_running_loop().create_task(job.run(stop), name="x-compliance")
