"""The Discourse connector: API actions (replies, private messages, hiding, suspending a user,
deleting our own reply), a catch-up poll, and a re-check of recent posts for edits and deletions.

Webhooks (:mod:`listener.discourse.webhook`) deliver posts as they happen; this connector polls
``/posts.json`` (latest posts, newest first, paged with ``before``) from a cursor, the post id up to
which every post was read, so posts whose webhook was missed (Discourse down, this service down, a
webhook disabled after failures) still arrive. Ingest stores a post once whichever way it came.
Edits and deletions whose webhook was missed are caught by re-reading the posts published in the
last ``recheck_hours`` every ``recheck_seconds`` (:mod:`listener.discourse.recheck`), mostly on the
same pages.

A round reads at most ``max_pages`` pages (of 50). A backlog larger than that (a long outage on a
busy forum) is never skipped: the round publishes the newest posts and saves where its paging
stopped (``catchup``: ``before``, the lowest id read, and ``newest``, the highest), ``after`` left
as it was; the next rounds page on from ``before`` down to ``after``, ``max_pages`` a round, and
only once they reach it does ``after`` move to ``newest`` and the rounds read from the top again
(the posts that came meanwhile wait for that; webhooks deliver them in real time anyway). The
re-check waits for the backlog too.

The cursor is a small JSON object: ``after``, ``recheck``, the window of recent posts, and while a
backlog is read, ``catchup``. A cursor saved before the window existed (the bare post id) loads as
``after``.

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
``error_type`` or an exception's type, never a response body: an error page may quote a post. The
one exception is a moderation request Discourse refuses with a 403 (below): its message is one of
Discourse's own fixed sentences, which the result quotes (one line, at most :data:`MAX_REFUSAL`).

Moderation actions set a state, and performing one again (a re-run, a requeue after a crash) is
done, not failed. Discourse refuses with a 403 what the post's state does not allow: flagging a
post already hidden, or one the API user flagged before; unhiding a post that is not hidden;
deleting a topic's first post (its topic must be deleted). So each action reads the post first
(``GET /posts/by_number``, which also gives its id): ``hide`` of a hidden post and ``unhide`` of a
shown one are done without a request, a deleted post is not deleted again, a topic's first post is
deleted with its topic (``DELETE /t/{id}.json``: taking back our own private message, which starts
a topic, too), and after a refusal the post is read again: if it reached the state meanwhile, done.
``lock`` closes the post's topic to replies (``PUT /t/{id}/status``, ``closed``), as a moderation
rule's ``lock`` (the thread) means; Discourse's post lock (``PUT /posts/{id}/locked``) only stops
edits. A 403 is the key's fault only if Discourse refuses the key itself: a refusal after the post
was read with it is not; otherwise ``GET /session/current.json`` tells (a 403 there: "Discourse
refused the API key"). A refusal not the key's names the status, the path and Discourse's own
sentence. A hide refused because the API user flagged the post before (hide, unhide, hide again)
fails so: Discourse takes one flag a post from a user, and that post can then be hidden only from
its review queue or its own interface.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from typing import Any

import aiohttp

from listener.discourse.normalize import is_ours, post_key, post_to_mention, split_key, whisper
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
CATCHUP = "catchup"  # the cursor's key for a backlog still being read (module docstring)
MAX_REFUSAL = 200  # the most of Discourse's own words a refused action's message quotes
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


class DiscourseHTTPError(ConnectorError):
    """A 4xx other than 401/403/429, with its status (409: the user is already suspended). Its
    message names the status, its reason phrase, the path and Discourse's ``error_type`` when the
    body holds one, never the body itself (an error page may quote a post)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class DiscourseRefused(DiscourseHTTPError):
    """A 403 on a moderation request: the post's state (hidden already, not hidden, a first post),
    the API user's rights or the key; :meth:`DiscourseConnector.perform` tells the key apart, unless
    ``key_works`` (a request of the same action was answered: the key is not why)."""

    key_works = False


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


def _refusal(body: bytes) -> str:
    """Discourse's own words for a refusal (its ``errors``, fixed sentences such as "You are not
    permitted to view the requested resource."), on one line, at most :data:`MAX_REFUSAL`."""
    try:
        errors = json.loads(body).get("errors")
    except (ValueError, AttributeError, UnicodeDecodeError):
        return ""
    words = " ".join(e for e in errors if isinstance(e, str)) if isinstance(errors, list) else ""
    words = _CONTROL.sub(" ", words).strip()
    return words if len(words) <= MAX_REFUSAL else words[:MAX_REFUSAL - 1] + "…"


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


def parse_catchup(cursor: str | None, since: int | None) -> tuple[int, int] | None:
    """The backlog a round left: ``(before, newest)``, the posts between ``since`` and ``before``
    still to read and the highest id read; None when there is none (or it makes no sense)."""
    try:
        data = json.loads(cursor) if cursor else None
    except ValueError:
        return None
    gap = data.get(CATCHUP) if isinstance(data, dict) else None
    if since is None or not isinstance(gap, dict):
        return None
    before, newest = gap.get("before"), gap.get("newest")
    if type(before) is int and type(newest) is int and since + 1 < before <= newest:
        return before, newest
    return None


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

    async def _call(self, method: str, path: str, *, act: bool = False, **kwargs: Any) -> Any:
        """One request. ``act``: a moderation request, whose 403 is :class:`DiscourseRefused` (the
        post's state may be why) rather than :class:`AuthError`."""
        if self.session is None or self.session.closed:
            self.session = aiohttp.ClientSession(headers=self.headers, timeout=self.timeout)
        try:
            async with self.session.request(method, self.base + path, **kwargs) as resp:
                body = await resp.read()
                if resp.status == 403 and act:
                    words = _refusal(body)
                    raise DiscourseRefused(f"Discourse answered 403 {_reason(403, body)} on {path}"
                                           + (f": {words}" if words else ""), 403)
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

    async def _pages(self, floor: int | None, pages: int, needed: int | None = None, start: int | None = None
                     ) -> tuple[dict[int, dict[str, Any]], int, RateLimited | None]:
        """``/posts.json`` pages, newest first (below id ``start``, None: from the newest), until one
        reaches id ``floor`` (None: one page), the listing ends or ``pages`` were read; the posts by
        id, the lowest id the pages cover (0: the listing ended), and the 429 that ended the paging
        (None: none). The poll needs the pages down to id ``needed`` (None: the first one), and their
        errors are raised; an error on a page read for the re-check alone, below those, ends the
        paging there (a 429 is returned: the round's re-check is skipped)."""
        posts: dict[int, dict[str, Any]] = {}
        before: int | None = start
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
        when due, the re-check of the window, whose pages continue the poll's own. A backlog larger
        than the round's pages is read on over the next rounds, none skipped (the module's
        docstring). A raised error (a failure of the poll's own pages, a 429 included) leaves the
        caller's cursor, and so the window, as it was; the re-check's failures are absorbed: after a
        429 the round's new posts are returned, the window left unchecked with a "not before"."""
        since, window = parse_cursor(cursor), PostWindow.from_cursor(cursor)
        now = time.time()
        window.trim(now, self.recheck_hours, self.recheck_size)
        backlog = parse_catchup(cursor, since)
        if since is not None and backlog is not None:  # (parse_catchup needs ``since`` already)
            return await self._catch_up(since, *backlog, window, now)
        due = bool(window.seen) and window.due(now, self.recheck_seconds, LIMIT_WAIT)
        floor = window.lowest() if due else since  # the window's posts are all at most ``since``
        if due and since is not None and floor is not None:
            floor = min(floor, since)
        listed, low, limited = await self._pages(floor, self.max_pages + (self.recheck_pages if due else 0), since)
        fresh = [listed[i] for i in sorted(listed) if since is None or i > since]
        mentions = [post_to_mention(p, self.base) for p in fresh if self._shown(p)]
        newest = max([since or 0, *(p["id"] for p in fresh)])
        left = since is not None and low > since + 1  # the pages stopped above the cursor: a backlog
        if left:
            log.warning("discourse catch-up: more new posts than %d pages; posts %d to %d are read on the next "
                        "rounds", self.max_pages, since + 1, low - 1)
        elif due and limited is None:
            try:
                mentions += await recheck(window, listed, low, self._lookup, self.base, now, self.recheck_lookups)
            except RateLimited as exc:  # raised before the window was touched
                limited = exc
        if limited is not None:
            wait = window.wait_for(limited, now, LIMIT_WAIT)
            log.warning("discourse re-check: rate limited (429); the round's %d new posts go on, the re-check of "
                        "%d posts waits %.0f s", len(mentions), len(window.seen), wait)
        after = since if left else newest
        return mentions, self._cursor(window, mentions, now, after, newest, low if left else None) or cursor

    async def _catch_up(self, since: int, before: int, newest: int, window: PostWindow,
                        now: float) -> tuple[list[NormalizedMention], str | None]:
        """A round of a backlog: pages below ``before`` down to ``since``, ``max_pages`` at most; once
        they reach it the cursor's ``after`` becomes ``newest``. Errors are raised (the cursor stays)."""
        listed, low, _ = await self._pages(since + 1, self.max_pages, since, start=before)
        fresh = [listed[i] for i in sorted(listed) if i > since]
        mentions = [post_to_mention(p, self.base) for p in fresh if self._shown(p)]
        left = low > since + 1
        if left:
            log.info("discourse catch-up: posts %d to %d are still to read", since + 1, low - 1)
        return mentions, self._cursor(window, mentions, now, since if left else newest, newest, low if left else None)

    def _shown(self, post: Any) -> bool:
        return usable(post) and not is_ours(post, self.username) and not whisper(post)

    def _cursor(self, window: PostWindow, mentions: list[NormalizedMention], now: float, after: int | None,
                newest: int, before: int | None) -> str | None:
        """The cursor after a round: ``after``, the window with the round's posts, and the backlog
        still to read (``before`` not None: ``after`` stays, ``newest`` is where it will move)."""
        window.add(mentions, now)
        window.trim(now, self.recheck_hours, self.recheck_size)
        data: dict[str, Any] = {"after": after} if after else {}
        if before is not None:
            data[CATCHUP] = {"before": before, "newest": newest}
        if window.seen or window.checked_at:
            data[KEY] = window.dump()
        return json.dumps(data, sort_keys=True) if data else None

    async def stream(self, cursor: str | None) -> AsyncIterator[tuple[list[NormalizedMention], str | None]]:
        while True:
            mentions, cursor = await self.poll_once(cursor)
            yield mentions, cursor
            await asyncio.sleep(self.poll_seconds)

    async def _post(self, external_id: str) -> dict[str, Any]:
        """The post a moderation action targets, as the API user (staff) sees it: its id, ``hidden``,
        ``deleted_at``."""
        topic, number = split_key(external_id)
        post = await self._call("GET", f"/posts/by_number/{topic}/{number}.json", act=True)
        if not isinstance(post, dict) or type(post.get("id")) is not int:
            raise TransientError(f"Discourse sent no post for {external_id}")
        return post

    async def perform(self, action: Action) -> ActionResult:
        try:
            return await self._perform(action)
        except DiscourseRefused as exc:
            return await self._refused(exc)
        except (ConnectorError, KeyError, ValueError, TypeError) as exc:
            return ActionResult(False, error=str(exc) or type(exc).__name__)

    async def _refused(self, refused: DiscourseRefused) -> ActionResult:
        """A 403 on an action: the key, or the post's state or the API user's rights? A key Discourse
        refuses is refused on every request, so ``GET /session/current.json`` tells: refused there
        too, it is the key; answered, the refusal is reported as Discourse worded it."""
        if refused.key_works:
            return ActionResult(False, error=str(refused))
        try:
            await self._call("GET", "/session/current.json")
        except AuthError as exc:
            return ActionResult(False, error=str(exc))
        except DiscourseHTTPError as exc:
            if exc.status == 404:  # no user behind the key
                return ActionResult(False, error="Discourse knows no user for the API key (404 on "
                                                 "/session/current.json)")
        except ConnectorError:
            pass  # cannot tell: the refusal as it came
        return ActionResult(False, error=str(refused))

    async def _ensure(self, target: str, reached: Callable[[dict[str, Any]], bool],
                      request: Callable[[dict[str, Any]], tuple[str, str, dict[str, Any]]]) -> ActionResult:
        """Bring the post to a state: done at once if it is there already (``reached(post)``); else
        the request (``request(post)``: method, path, keyword arguments), and if Discourse refuses it
        (403, 422), done all the same when the post, read again, reached the state meanwhile."""
        post = await self._post(target)
        if not reached(post):
            method, path, kwargs = request(post)
            try:
                await self._call(method, path, act=True, **kwargs)
            except DiscourseHTTPError as exc:
                if exc.status not in (403, 422) or not reached(await self._post(target)):
                    if isinstance(exc, DiscourseRefused):
                        exc.key_works = True  # the post was read with it just now
                    raise
        return ActionResult(True, [target])

    async def _perform(self, action: Action) -> ActionResult:
        target = action.target_external_id
        if action.kind == "public_reply" and target:
            topic, number = split_key(target)
            post = await self._call("POST", "/posts.json", act=True, json={
                "topic_id": topic, "raw": action.text, "reply_to_post_number": number})
            return ActionResult(True, [post_key(post["topic_id"], post["post_number"])])
        if action.kind == "private_message":
            if not action.recipient_handle:
                return ActionResult(False, error="a Discourse private message needs the recipient's username")
            post = await self._call("POST", "/posts.json", act=True, json={
                "title": (action.reason or "A private follow-up from our support team")[:200], "raw": action.text,
                "target_recipients": action.recipient_handle, "archetype": "private_message"})
            return ActionResult(True, [post_key(post["topic_id"], post["post_number"])])
        if action.kind == "ban" and (target or action.recipient_id):
            return await self._suspend(target, action)
        if action.kind in ("delete_reply", "remove") and target:
            # our own reply, or a post: DELETE /posts/{id}; a topic's first post (our own private
            # message starts a topic) goes with its topic, the only way Discourse deletes it
            return await self._ensure(target, lambda p: bool(p.get("deleted_at")), lambda p: (
                "DELETE", f"/t/{p['topic_id']}.json" if p.get("post_number") == 1 else f"/posts/{p['id']}.json", {}))
        if action.kind == "hide" and target:  # a flag with "take action" (staff) hides the post at once
            return await self._ensure(target, lambda p: bool(p.get("hidden")), lambda p: (
                "POST", "/post_actions.json", {"json": {"id": p["id"], "post_action_type_id": FLAG_INAPPROPRIATE,
                                                        "flag_topic": False, "take_action": True}}))
        if action.kind == "unhide" and target:
            return await self._ensure(target, lambda p: not p.get("hidden"),
                                      lambda p: ("PUT", f"/posts/{p['id']}/unhide", {}))
        if action.kind == "lock" and target:  # close the topic to replies; closing a closed one changes nothing
            topic, _ = split_key(target)
            await self._call("PUT", f"/t/{topic}/status", act=True, data={"status": "closed", "enabled": "true"})
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
            uid = str((await self._post(target)).get("user_id") or "")
        if not uid:
            return ActionResult(False, error="no Discourse user id to suspend")
        now = datetime.now(UTC)
        reason = (action.reason or "Breaking the community rules").strip()[:300]
        try:
            await self._call("PUT", f"/admin/users/{uid}/suspend.json", act=True, json={
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
