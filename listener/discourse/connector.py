"""The Discourse connector: API actions (replies, private messages, hiding, suspending a user,
deleting our own reply) and a catch-up poll.

Webhooks (:mod:`listener.discourse.webhook`) deliver posts as they happen; this connector polls
``/posts.json`` (latest posts, newest first, paged with ``before``) from a cursor, the highest post
id seen, so posts whose webhook was missed (Discourse down, this service down, a webhook disabled
after failures) still arrive. Ingest stores a post once whichever way it came.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp

from listener.discourse.normalize import is_ours, post_key, post_to_mention, split_key
from listener.errors import AuthError, ConnectorError, RateLimited, TransientError
from listener.protocol import Action, ActionResult, NormalizedMention

FLAG_INAPPROPRIATE = 4  # post_action_type id; staff "take action" hides the post at once
FOREVER_YEARS = 1000  # what Discourse's own "permanently" suspends for


class DiscourseHTTPError(ConnectorError):
    """A 4xx other than 401/403/429, with its status (409: the user is already suspended)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class DiscourseConnector:
    name = "discourse"
    platform = "discourse"

    def __init__(self, settings: Any, *, poll_seconds: float = 60.0, max_pages: int = 10, timeout: float = 30.0) -> None:
        self.base = str(settings.discourse_url).rstrip("/")
        self.username = settings.discourse_api_username
        self.headers = {"Api-Key": settings.secret("discourse_api_key") or "", "Api-Username": self.username or "",
                        "Accept": "application/json"}
        self.poll_seconds, self.max_pages = poll_seconds, max_pages
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
                    raise TransientError(f"Discourse error {resp.status} on {path}")
                if resp.status >= 400:
                    raise DiscourseHTTPError(f"Discourse answered {resp.status} on {path}: {body[:200]!r}",
                                             resp.status)
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise TransientError(f"Discourse unreachable: {type(exc).__name__}") from exc
        if not body.strip():
            return {}
        try:
            return json.loads(body)
        except ValueError as exc:
            raise TransientError(f"Discourse sent malformed JSON on {path}") from exc

    async def poll_once(self, cursor: str | None) -> tuple[list[NormalizedMention], str | None]:
        since = int(cursor) if cursor and cursor.isdigit() else None
        posts: dict[int, dict[str, Any]] = {}
        before: int | None = None
        for _ in range(self.max_pages):
            page = await self._call("GET", "/posts.json", params={"before": before} if before else None)
            latest = [p for p in (page.get("latest_posts") or []) if isinstance(p, dict) and isinstance(p.get("id"), int)]
            posts.update({p["id"]: p for p in latest if since is None or p["id"] > since})
            if not latest or since is None or min(p["id"] for p in latest) <= since:
                break
            before = min(p["id"] for p in latest)
        ordered = [posts[i] for i in sorted(posts)]
        mentions = [post_to_mention(p, self.base) for p in ordered
                    if p.get("topic_id") and p.get("post_number") and not is_ours(p, self.username)]
        newest = max([since or 0, *posts]) if posts or since else None
        return mentions, str(newest) if newest else cursor

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
        return (f"latest posts (/posts.json poll every {self.poll_seconds:.0f} s)"
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
