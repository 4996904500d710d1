"""The fake X API (:class:`~tests.listener.fakes.x_api.FakeX`) plus X's batch compliance endpoints:
``POST /2/compliance/jobs``, ``GET /2/compliance/jobs/{id}``, ``GET /2/compliance/jobs?type=&status=``
with X's ``data`` job objects and problem-JSON errors, and the job's pre-signed storage URLs served
by the same local server (``/storage/...``: no auth header expected, Google Cloud Storage's XML
errors). Results are one JSON object a line for the uploaded ids with a compliance event, as X
documents them (``{"id", "action": "delete", "created_at", "redacted_at", "reason"}``)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from .x_api import FakeX

# X documents "one concurrent job per job type" but not the refusal's wording: an Invalid Request here
ONE_JOB_AT_A_TIME = {
    "errors": [{"message": "You can have only one concurrent job per job type"}],
    "title": "Invalid Request", "detail": "One or more parameters to your request was invalid.",
    "type": "https://api.twitter.com/2/problems/invalid-request"}
EXPIRED_TOKEN = ("<?xml version='1.0' encoding='UTF-8'?><Error><Code>ExpiredToken</Code><Message>The provided "
                 "token has expired.</Message></Error>")
NO_SUCH_KEY = ("<?xml version='1.0' encoding='UTF-8'?><Error><Code>NoSuchKey</Code><Message>The specified key "
               "does not exist.</Message></Error>")
UPLOAD_TTL, DOWNLOAD_TTL = 900, 7 * 24 * 3600  # X: 15 minutes, one week


def iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(epoch))


@dataclass
class FakeXCompliance(FakeX):
    """``jobs`` by id (the wire object plus ``ids`` uploaded and ``polls``); a job goes ``in_progress``
    on its upload and ``complete`` after ``polls_to_complete`` status requests. What each id's result
    says: ``gone`` -> deleted, ``deactivated`` authors -> deactivated, ``protected`` authors ->
    protected, ``suspended`` authors -> suspended, and ``events`` (id -> (action, reason)) for others."""

    jobs: dict[str, dict] = field(default_factory=dict)
    suspended: set[str] = field(default_factory=set)
    events: dict[str, tuple[str, str]] = field(default_factory=dict)
    polls_to_complete: int = 1
    compliance_fail_next: list[tuple] = field(default_factory=list)  # like fail_next, /2/compliance/* only
    storage_fail_next: list[int] = field(default_factory=list)  # statuses for the next storage requests
    storage_auth: list[str] = field(default_factory=list)  # Authorization headers storage requests carried
    uploads: list[list[str]] = field(default_factory=list)

    def app(self) -> web.Application:
        app = super().app()
        app.router.add_post("/2/compliance/jobs", self.create_job)
        app.router.add_get("/2/compliance/jobs", self.list_jobs)
        app.router.add_get("/2/compliance/jobs/{id}", self.get_job)
        app.router.add_put("/storage/submission/{id}", self.upload)
        app.router.add_get("/storage/delivery/{id}", self.download)
        return app

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.startswith("/storage/"):  # pre-signed: the signature is in the query string
            self.requests.append(str(request.rel_url))
            self.storage_auth.append(request.headers.get("Authorization", ""))
            return await handler(request)
        return await super()._record(request, handler)

    def wire(self, job: dict) -> dict:
        return {k: v for k, v in job.items() if k not in ("ids", "polls")}

    def open_job(self) -> dict | None:
        return next((j for j in self.jobs.values() if j["status"] in ("created", "in_progress")), None)

    async def create_job(self, request: web.Request) -> web.Response:
        if (err := self._error(self.compliance_fail_next)) is not None:
            return err
        body = await request.json()
        if self.open_job() is not None:
            return web.json_response(ONE_JOB_AT_A_TIME, status=400)
        jid = str(1425543269983784962 + len(self.jobs))
        now = time.time()
        sig = f"X-Goog-Algorithm=GOOG4-RSA-SHA256&X-Goog-Date={time.strftime('%Y%m%dT%H%M%SZ')}&X-Goog-Signature=ab12"
        job = {"id": jid, "type": body["type"], "status": "created", "resumable": False, "created_at": iso(now),
               "upload_url": f"{self.base}/storage/submission/{jid}?{sig}&X-Goog-Expires={UPLOAD_TTL}",
               "upload_expires_at": iso(now + UPLOAD_TTL),
               "download_url": f"{self.base}/storage/delivery/{jid}?{sig}&X-Goog-Expires={DOWNLOAD_TTL}",
               "download_expires_at": iso(now + DOWNLOAD_TTL), "ids": None, "polls": 0}
        if body.get("name"):
            job["name"] = body["name"]
        self.jobs[jid] = job
        return web.json_response({"data": self.wire(job)})

    async def list_jobs(self, request: web.Request) -> web.Response:
        if (err := self._error(self.compliance_fail_next)) is not None:
            return err
        status = request.query.get("status")
        found = [self.wire(j) for j in self.jobs.values() if j["type"] == request.query.get("type")
                 and (not status or j["status"] == status)]
        return web.json_response({"data": found} if found else {"meta": {"result_count": 0}})

    async def get_job(self, request: web.Request) -> web.Response:
        if (err := self._error(self.compliance_fail_next)) is not None:
            return err
        job = self.jobs.get(request.match_info["id"])
        if job is None:
            return web.json_response({"errors": [{"message": "Job not found"}], "title": "Not Found Error",
                                      "type": "https://api.twitter.com/2/problems/resource-not-found"}, status=404)
        if job["status"] == "in_progress":
            job["polls"] += 1
            if job["polls"] >= self.polls_to_complete:
                job["status"] = "complete"
        return web.json_response({"data": self.wire(job)})

    def _storage_error(self) -> web.Response | None:
        if self.storage_fail_next:
            status = self.storage_fail_next.pop(0)
            return web.Response(text=EXPIRED_TOKEN if status < 500 else "<Error><Code>InternalError</Code></Error>",
                                status=status, content_type="application/xml")
        return None

    async def upload(self, request: web.Request) -> web.Response:
        job = self.jobs.get(request.match_info["id"])
        if (err := self._storage_error()) is not None:
            if job is not None and err.status < 500:  # the upload window is over: so is the job
                job["status"] = "expired"
            return err
        if job is None or job["status"] != "created" or time.time() > _epoch(job["upload_expires_at"]):
            return web.Response(text=EXPIRED_TOKEN, status=400, content_type="application/xml")
        if request.content_type != "text/plain":
            return web.Response(text="<Error><Code>SignatureDoesNotMatch</Code></Error>", status=403,
                                content_type="application/xml")
        job["ids"] = [line for line in (await request.text()).splitlines() if line]
        job["status"] = "in_progress"
        self.uploads.append(job["ids"])
        return web.Response(status=200)

    async def download(self, request: web.Request) -> web.Response:
        if (err := self._storage_error()) is not None:
            return err
        job = self.jobs.get(request.match_info["id"])
        if job is None or job["status"] != "complete":
            return web.Response(text=NO_SUCH_KEY, status=404, content_type="application/xml")
        known = {t["id"]: t for t in [*self.tweets, *self.found, *self.streamed]}
        lines = []
        for i in job["ids"]:
            t = known.get(i, {})
            author = t.get("author_id")
            event = self.events.get(i) or (
                ("delete", "deleted") if i in self.gone else ("delete", "deactivated") if author in self.deactivated
                else ("delete", "protected") if author in self.protected
                else ("delete", "suspended") if author in self.suspended else None)
            if event:
                lines.append(json.dumps({"id": i, "action": event[0], "created_at": t.get("created_at"),
                                         "redacted_at": iso(time.time()), "reason": event[1]}))
        return web.Response(text="\n".join(lines), content_type="application/octet-stream")


def _epoch(value: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(value).timestamp()
