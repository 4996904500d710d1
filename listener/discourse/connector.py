"""The Discourse connector: API actions (replies, private messages, hiding, suspending a user,
deleting our own reply), a catch-up poll, and a re-check of recent posts for edits and deletions.

Webhooks (:mod:`listener.discourse.webhook`) deliver posts as they happen; this connector polls
``/posts.json`` (latest posts, newest first, paged with ``before``) from a cursor, the highest post
id seen, so posts whose webhook was missed (Discourse down, this service down, a webhook disabled
after failures) still arrive. Ingest stores a post once whichever way it came. Edits and deletions
whose webhook was missed are caught by re-reading the posts published in the last ``recheck_hours``
every ``recheck_seconds`` (:mod:`listener.discourse.recheck`), mostly on the same pages.

The cursor is a small JSON object: ``after``, the highest post id seen, and ``recheck``, the window
of recent posts. A cursor saved before the window existed (the bare post id) loads as ``after``.

The re-check never holds new posts back for trouble of its own: a post read alone whose answer is
an error (a 5xx, a 4xx other than 404, a timeout, a body that is not JSON) is unknown this round
(logged with its id and the status, left as it was, read again on a later round; after a timeout or
a 5xx no other post is read alone that round, so a hanging forum costs one request timeout, not
``recheck_lookups`` of them), and a page read for the re-check alone (below the poll's own) that
fails ends the paging there, the window's posts below it waiting for a round that reaches them. A
429 met by the re-check part (a page below the poll's own, or a post read alone) ends the re-check
for the round: the round's new posts are returned and the catch-up cursor moves on, the window is
left as it was (not marked checked) and keeps a "not before" time (``wait``, as X's window does:
``Retry-After``, at most :data:`LIMIT_WAIT` ahead), before which no round re-checks. Discourse's
limit is per API key, so the poll's own pages may meet it too: a 429 or another error on them is
raised (the runner waits or backs off, the saved cursor stays as it was and the repeated round
fetches the new posts again, so none is lost).

Error messages (which the runner logs and shows) name a status, a path, Discourse's short
``error_type`` or an exception's type, never a response body: an error page may quote a post.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from typing import Any

import aiohttp

from listener.discourse.normalize import is_ours, post_key, post_to_mention, split_key
from listener.discourse.recheck import PostWindow, recheck, usable
from listener.errors import AuthError, ConnectorError, RateLimited, TransientError
from listener.protocol import Action, ActionResult, NormalizedMention
from listener.recheck import KEY

log = logging.getLogger("socialcare.listener.discourse")

FLAG_INAPPROPRIATE = 4  # post_action_type id; staff "take action" hides the post at once
FOREVER_YEARS = 1000  # what Discourse's own "permanently" suspends for
# the re-check's defaults (SOCIALCARE_DISCOURSE_RECHECK_* set the first three, listener.registry):
# every 5 minutes, posts of the last day, at most 200 of them, 8 more pages of 50 a round at most
# and 10 posts read alone
RECHECK_SECONDS, RECHECK_HOURS, RECHECK_SIZE, RECHECK_PAGES, RECHECK_LOOKUPS = 300.0, 24.0, 200, 8, 10
LIMIT_WAIT = 900.0  # the longest a 429 met by the re-check holds the re-check back
_ERROR_TYPE = re.compile(r"[a-z_]{1,40}")  # Discourse's error_type ("not_found", "invalid_parameters")


class DiscourseHTTPError(ConnectorError):
    """A 4xx other than 401/403/429, with its status (409: the user is already suspended). Its
    message names the status, its reason phrase, the path and Discourse's ``error_type`` when the
    body holds one, never the body itself (an error page may quote a post)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class DiscourseUnavailable(TransientError):
    """A 5xx, a timeout or a connection that failed: Discourse is not answering well. The re-check
    reads no more posts alone that round."""


def _reason(status: int, body: bytes) -> str:
    """A short reason for an error answer: the status's phrase, and Discourse's ``error_type`` when
    the body is the JSON Discourse sends and it looks like one (an identifier), nothing else of it."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "error"
    try:
        kind = json.loads(body).get("error_type")
    except (ValueError, AttributeError, UnicodeDecodeError):
        kind = None
    return f"{phrase} ({kind})" if isinstance(kind, str) and _ERROR_TYPE.fullmatch(kind) else phrase


def _status(exc: ConnectorError) -> str:
    """An error as a re-check log line names it: a 4xx's status alone; the others' messages name
    only a status, a path or an exception's type."""
    return f"HTTP {exc.status}" if isinstance(exc, DiscourseHTTPError) else str(exc)


def parse_cursor(cursor: str | None) -> int | None:
    """The highest post id seen: ``after`` of the JSON cursor, or a bare id (cursors saved before
    the re-check window)."""
    try:
        data = json.loads(cursor) if cursor else None
    except ValueError:
        return None
    value = data.get("after") if isinstance(data, dict) else data
    return value if type(value) is int and value > 0 else None


class DiscourseConnector:
    name = "discourse"
    platform = "discourse"

    def __init__(self, settings: Any, *, poll_seconds: float = 60.0, max_pages: int = 10, timeout: float = 30.0,
                 recheck_seconds: float = RECHECK_SECONDS, recheck_hours: float = RECHECK_HOURS,
                 recheck_size: int = RECHECK_SIZE, recheck_pages: int = RECHECK_PAGES,
                 recheck_lookups: int = RECHECK_LOOKUPS) -> None:
        self.base = str(settings.discourse_url).rstrip("/")
        self.username = settings.discourse_api_username
        self.headers = {"Api-Key": settings.secret("discourse_api_key") or "", "Api-Username": self.username or "",
                        "Accept": "application/json"}
        self.poll_seconds, self.max_pages = poll_seconds, max_pages
        self.recheck_seconds, self.recheck_hours, self.recheck_size = recheck_seconds, recheck_hours, recheck_size
        self.recheck_pages, self.recheck_lookups = recheck_pages, recheck_lookups
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.webhook = bool(settings.discourse_webhook_secret)
        self.session: aiohttp.ClientSession | None = None
        self.status: Any = None

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        if self.session is None or self.session.closed:
            self.session = aiohttp.ClientSession(headers=self.headers, timeout=self.timeout)
        try:
            async with self.session.request(method, self.base + path, **kwargs) as resp:
                body = await resp.read()
                if resp.status in (401, 403):
                    raise AuthError(f"Discourse refused the API key ({resp.status}) on {path}")
                if resp.status == 429:
                    retry = resp.headers.get("Retry-After")
                    raise RateLimited("Discourse rate limit (429)", retry_after=float(retry) if retry else None)
                if resp.status >= 500:
                    raise DiscourseUnavailable(f"Discourse error {resp.status} on {path}")
                if resp.status >= 400:
                    raise DiscourseHTTPError(f"Discourse answered {resp.status} {_reason(resp.status, body)} on "
                                             f"{path}", resp.status)
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise DiscourseUnavailable(f"Discourse unreachable: {type(exc).__name__}") from exc
        if not body.strip():
            return {}
        try:
            return json.loads(body)
        except ValueError as exc:
            raise TransientError(f"Discourse sent malformed JSON on {path}") from exc

    async def _pages(self, floor: int | None, pages: int, needed: int | None = None
                     ) -> tuple[dict[int, dict[str, Any]], int, RateLimited | None]:
        """``/posts.json`` pages, newest first, until one reaches id ``floor`` (None: one page), the
        listing ends or ``pages`` were read; the posts by id, the lowest id the pages cover, and the
        429 that ended the paging (None: none). The poll needs the pages down to id ``needed`` (None:
        the first one), and their errors are raised; an error on a page read for the re-check alone,
        below those, ends the paging there (a 429 is returned: the round's re-check is skipped)."""
        posts: dict[int, dict[str, Any]] = {}
        before: int | None = None
        for _ in range(pages):
            try:
                page = await self._call("GET", "/posts.json", params={"before": before} if before else None)
                if not isinstance(page, dict):
                    raise TransientError("Discourse sent a /posts.json page that is not a JSON object")
            except ConnectorError as exc:
                if before is None or (needed is not None and before > needed):
                    raise
                if isinstance(exc, RateLimited):
                    return posts, before, exc
                log.warning("discourse re-check: the page below post %d failed (%s); the window's posts below "
                            "it wait for a later round", before, _status(exc))
                break
            latest = [p for p in (page.get("latest_posts") or []) if isinstance(p, dict) and type(p.get("id")) is int]
            if not latest:
                return posts, 0, None  # the listing ended: it covered everything
            posts.update({p["id"]: p for p in latest})
            before = min(p["id"] for p in latest)
            if floor is None or before <= floor:
                break
        return posts, before or 0, None

    async def _lookup(self, pid: int) -> dict[str, Any] | None:
        """``GET /posts/{id}.json``: None for a 404 (deleted, to a non-staff API user). Any other error
        but a 429 (a 403 for a post out of the API user's sight or a key without that scope, a 5xx, a
        timeout, a body that is not JSON) is logged, the post unknown this round: left as it was and
        read again on a later round. A 403 or a body that is not JSON reads as ``{}``; a 5xx or a
        timeout is raised (:class:`DiscourseUnavailable`, a ``TransientError``) so that the re-check
        reads no more posts alone this round. A 429 is raised: the limit is the API key's."""
        try:
            post = await self._call("GET", f"/posts/{pid}.json")
        except RateLimited:
            raise
        except ConnectorError as exc:
            if isinstance(exc, DiscourseHTTPError) and exc.status == 404:
                return None
            down = isinstance(exc, DiscourseUnavailable)
            log.warning("discourse re-check: post %d unknown this round (%s)%s", pid, _status(exc),
                        "; no more posts read alone this round" if down else "")
            if down:
                raise
            return {}
        return post if isinstance(post, dict) else {}

    async def poll_once(self, cursor: str | None) -> tuple[list[NormalizedMention], str | None]:
        """One round: the posts newer than the cursor (the latest page only on a first run), then,
        when due, the re-check of the window, whose pages continue the poll's own. A raised error (a
        failure of the poll's own pages, a 429 included) leaves the caller's cursor, and so the
        window, as it was; the re-check's failures are absorbed: after a 429 the round's new posts
        are returned, the window left unchecked with a "not before" (the module's docstring)."""
        since, window = parse_cursor(cursor), PostWindow.from_cursor(cursor)
        now = time.time()
        window.trim(now, self.recheck_hours, self.recheck_size)
        due = bool(window.seen) and window.due(now, self.recheck_seconds, LIMIT_WAIT)
        floor = window.lowest() if due else since  # the window's posts are all at most ``since``
        listed, low, limited = await self._pages(floor, self.max_pages + (self.recheck_pages if due else 0), since)
        fresh = [listed[i] for i in sorted(listed) if since is None or i > since]
        mentions = [post_to_mention(p, self.base) for p in fresh if usable(p) and not is_ours(p, self.username)]
        if due and limited is None:
            try:
                mentions += await recheck(window, listed, low, self._lookup, self.base, now, self.recheck_lookups)
            except RateLimited as exc:  # raised before the window was touched
                limited = exc
        if limited is not None:
            wait = window.wait_for(limited, now, LIMIT_WAIT)
            log.warning("discourse re-check: rate limited (429); the round's %d new posts go on, the re-check of "
                        "%d posts waits %.0f s", len(mentions), len(window.seen), wait)
        window.add(mentions, now)
        window.trim(now, self.recheck_hours, self.recheck_size)
        newest = max([since or 0, *(p["id"] for p in fresh)])
        data: dict[str, Any] = {"after": newest} if newest else {}
        if window.seen or window.checked_at:
            data[KEY] = window.dump()
        return mentions, json.dumps(data, sort_keys=True) if data else cursor

    async def stream(self, cursor: str | None) -> AsyncIterator[tuple[list[NormalizedMention], str | None]]:
        while True:
            mentions, cursor = await self.poll_once(cursor)
            yield mentions, cursor
            await asyncio.sleep(self.poll_seconds)

    async def _post_id(self, external_id: str) -> int:
        topic, number = split_key(external_id)
        return int((await self._call("GET", f"/posts/by_number/{topic}/{number}.json"))["id"])

    async def perform(self, action: Action) -> ActionResult:
        try:
            return await self._perform(action)
        except (ConnectorError, KeyError, ValueError, TypeError) as exc:
            return ActionResult(False, error=str(exc) or type(exc).__name__)

    async def _perform(self, action: Action) -> ActionResult:
        target = action.target_external_id
        if action.kind == "public_reply" and target:
            topic, number = split_key(target)
            post = await self._call("POST", "/posts.json", json={"topic_id": topic, "raw": action.text,
                                                                 "reply_to_post_number": number})
            return ActionResult(True, [post_key(post["topic_id"], post["post_number"])])
        if action.kind == "private_message":
            if not action.recipient_handle:
                return ActionResult(False, error="a Discourse private message needs the recipient's username")
            post = await self._call("POST", "/posts.json", json={
                "title": (action.reason or "A private follow-up from our support team")[:200], "raw": action.text,
                "target_recipients": action.recipient_handle, "archetype": "private_message"})
            return ActionResult(True, [post_key(post["topic_id"], post["post_number"])])
        if action.kind == "ban" and (target or action.recipient_id):
            return await self._suspend(target, action)
        if action.kind == "delete_reply" and target:  # our own reply: DELETE /posts/{id}
            pid = await self._post_id(target)
            await self._call("DELETE", f"/posts/{pid}.json")
            return ActionResult(True, [target])
        if action.kind in ("hide", "unhide", "remove", "lock") and target:
            pid = await self._post_id(target)
            if action.kind == "hide":
                await self._call("POST", "/post_actions.json", json={
                    "id": pid, "post_action_type_id": FLAG_INAPPROPRIATE, "flag_topic": False, "take_action": True})
            elif action.kind == "unhide":
                await self._call("PUT", f"/posts/{pid}/unhide")
            elif action.kind == "remove":
                await self._call("DELETE", f"/posts/{pid}.json")
            else:
                await self._call("PUT", f"/posts/{pid}/locked", data={"locked": "true"})
            return ActionResult(True, [target])
        return ActionResult(False, error=f"Discourse does not support {action.kind} (or no target)")

    def listens_to(self) -> str:
        return (f"latest posts (/posts.json poll every {self.poll_seconds:.0f} s; edits and deletions of the last "
                f"{self.recheck_hours:g} h re-checked every {self.recheck_seconds:.0f} s)"
                + ("; webhook /webhooks/discourse" if self.webhook else "; no webhook secret: no real-time webhook"))

    async def _suspend(self, target: str | None, action: Action) -> ActionResult:
        """Discourse has no ban: suspend the author "permanently" (``PUT /admin/users/{id}/suspend``,
        an admin API key). Already suspended (409) counts as done: the user cannot post either way."""
        uid = action.recipient_id if (action.recipient_id or "").isdigit() else None
        if uid is None and target:
            topic, number = split_key(target)
            uid = str((await self._call("GET", f"/posts/by_number/{topic}/{number}.json")).get("user_id") or "")
        if not uid:
            return ActionResult(False, error="no Discourse user id to suspend")
        now = datetime.now(UTC)
        reason = (action.reason or "Breaking the community rules").strip()[:300]
        try:
            await self._call("PUT", f"/admin/users/{uid}/suspend.json", json={
                "suspend_until": (now + timedelta(days=365 * FOREVER_YEARS)).isoformat(), "reason": reason,
                "message": reason})
        except DiscourseHTTPError as exc:
            if exc.status != 409:
                raise
        return ActionResult(True, [f"user:{uid}"])

    async def check(self) -> dict[str, Any]:
        started = time.monotonic()
        ok, error, who = True, None, None
        try:
            user = (await self._call("GET", f"/u/{self.username}.json")).get("user") or {}
            who = user.get("username")
            await self._call("GET", "/posts.json")
        except ConnectorError as exc:
            ok, error = False, str(exc)
        return {"name": self.name, "ok": ok, "error": error, "account": who, "base_url": self.base,
                "listens_to": self.listens_to(), "seconds": round(time.monotonic() - started, 2)}

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
