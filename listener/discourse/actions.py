"""Moderation and replies on Discourse: replies, private messages, hiding, locking a topic,
suspending a user, deleting a post (our own reply included).

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
sentence (:mod:`listener.discourse.errors`). A hide refused because the API user flagged the post
before (hide, unhide, hide again) fails so: Discourse takes one flag a post from a user, and that
post can then be hidden only from its review queue or its own interface.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from listener.discourse.errors import DiscourseHTTPError, DiscourseRefused
from listener.discourse.normalize import post_key, split_key
from listener.errors import AuthError, ConnectorError, TransientError
from listener.protocol import Action, ActionResult

FLAG_INAPPROPRIATE = 4  # post_action_type id; staff "take action" hides the post at once
FOREVER_YEARS = 1000  # what Discourse's own "permanently" suspends for


class DiscourseActions:
    """``perform`` for the Discourse connector, whose ``_call`` makes one request (``act=True``: a
    moderation request, whose 403 is :class:`DiscourseRefused`)."""

    _call: Callable[..., Awaitable[Any]]

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
