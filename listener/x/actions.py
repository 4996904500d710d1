"""Outbound actions on X: threaded replies, direct messages (the secure-link handoff), hidden replies,
deleting our own reply, and blocking an author.

X has no ban: the nearest thing is the brand account blocking the author
(``POST /2/users/:id/blocking``), which X offers on its Enterprise plan only; elsewhere it answers
403 and the action is reported as failed with that reason rather than pretended done.

Writes need user context (OAuth 1.0a: API key and secret plus the brand account's access token);
tweepy's sync ``Client`` runs them in a worker thread so the event loop never blocks.
"""

from __future__ import annotations

import asyncio
from typing import Any

import requests
import tweepy

from listener.hosts import X_HOST, redirect_session
from listener.protocol import Action, ActionResult, NormalizedMention
from listener.x.errors import reason, translate

LIMIT = 280
_MARK = 8  # room for " (99/99)"


def split_thread(text: str, limit: int = LIMIT) -> list[str]:
    """Split a long reply into tweets at word boundaries, numbered "(i/n)" when there is more than one.

    Words longer than a tweet (links, for instance) are cut; no part exceeds ``limit``."""
    text = text.strip()
    if len(text) <= limit:
        return [text]
    room = limit - _MARK
    parts: list[str] = []
    current = ""
    for word in text.split():
        while len(word) > room:
            if current:
                parts.append(current)
                current = ""
            parts.append(word[:room])
            word = word[room:]
        candidate = f"{current} {word}" if current else word
        if len(candidate) > room:
            parts.append(current)
            current = word
        else:
            current = candidate
    if current:
        parts.append(current)
    return [f"{p} ({i}/{len(parts)})" for i, p in enumerate(parts, start=1)]


TIMEOUT = (10.0, 30.0)  # seconds to connect, and between two reads of an answer (requests' timeout)


def unanswered(exc: BaseException) -> bool:
    """The request went out and its answer did not come in time: X may have posted it. (A connect
    timeout never reached X: a plain failure, safe to try again.)"""
    return isinstance(exc, requests.ReadTimeout)


def make_client(settings: Any) -> tweepy.Client:
    """A sync tweepy client whose requests go to ``settings.x_api_base`` and give up after
    :data:`TIMEOUT` (tweepy sets none: a request X never answers would hold its round, and the
    stream's batches, until the connection died)."""
    client = tweepy.Client(
        bearer_token=settings.secret("x_bearer_token"), consumer_key=settings.secret("x_api_key"),
        consumer_secret=settings.secret("x_api_secret"), access_token=settings.secret("x_access_token"),
        access_token_secret=settings.secret("x_access_secret"), return_type=dict, wait_on_rate_limit=False,
    )
    redirect_session(client.session, X_HOST, settings.x_api_base)
    send = client.session.request

    def request(method: str, url: str, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", TIMEOUT)
        return send(method, url, **kwargs)

    client.session.request = request
    return client


class XActions:
    """``perform`` for both X connectors (mentions timeline and filtered stream)."""

    platform = "x"
    client: tweepy.Client
    settings: Any

    def _perform_sync(self, action: Action) -> ActionResult:
        if action.kind == "public_reply":
            if not action.target_external_id or not (action.text or "").strip():
                return ActionResult(False, error="a reply needs a target tweet and a text")
            ids: list[str] = []
            parent = action.target_external_id
            for part in split_thread(action.text or ""):
                try:
                    resp = self.client.create_tweet(text=part, in_reply_to_tweet_id=parent, user_auth=True)
                except Exception as exc:  # noqa: BLE001 - keep the ids already posted, so a retry can continue
                    return ActionResult(False, ids, error=str(translate(exc)), uncertain=unanswered(exc))
                parent = str(resp["data"]["id"])
                ids.append(parent)
            return ActionResult(True, ids)
        if action.kind == "private_message":
            if not action.recipient_id:
                return ActionResult(False, error="no recipient id for a direct message")
            try:
                resp = self.client.create_direct_message(participant_id=action.recipient_id, text=action.text,
                                                         user_auth=True)
            except requests.ReadTimeout as exc:  # other errors: raised as before (perform translates them)
                return ActionResult(False, error=str(translate(exc)), uncertain=True)
            return ActionResult(True, [str((resp.get("data") or {}).get("dm_event_id", ""))])
        if action.kind in ("hide", "unhide"):
            fn = self.client.hide_reply if action.kind == "hide" else self.client.unhide_reply
            fn(action.target_external_id, user_auth=True)
            return ActionResult(True, [action.target_external_id or ""])
        if action.kind == "delete_reply":
            self.client.delete_tweet(action.target_external_id, user_auth=True)
            return ActionResult(True, [action.target_external_id or ""])
        if action.kind in ("block", "ban"):
            return self._block_sync(action)
        return ActionResult(False, error=f"X does not support {action.kind}")

    def _block_sync(self, action: Action) -> ActionResult:
        if not action.recipient_id:
            return ActionResult(False, error="blocking on X needs the author's user id")
        me = getattr(self, "user_id", None) or self.settings.x_user_id
        if not me:
            me = str(self.client.get_me(user_auth=True)["data"]["id"])
        try:
            self.client.request("POST", f"/2/users/{me}/blocking", json={"target_user_id": action.recipient_id},
                                user_auth=True)
        except tweepy.Forbidden as exc:
            return ActionResult(False, error=f"X refused to block (403): blocking through the API needs X's "
                                             f"Enterprise plan ({reason(exc)[:150]})")
        return ActionResult(True, [f"user:{action.recipient_id}"])

    def _theirs(self, mentions: list[NormalizedMention]) -> list[NormalizedMention]:
        """Without the brand account's own tweets: a reply of ours that matches a stream rule or names
        the account comes back, and stored as a customer's post it would be triaged and answered."""
        me = getattr(self, "user_id", None) or self.settings.x_user_id
        return [m for m in mentions if not me or m.author_id != str(me)]

    async def perform(self, action: Action) -> ActionResult:
        """Errors come back as ``ActionResult(ok=False)``; a partial thread keeps the ids it posted."""
        try:
            return await asyncio.to_thread(self._perform_sync, action)
        except Exception as exc:  # noqa: BLE001 - reported to the act stage, which retries or queues
            return ActionResult(False, error=str(translate(exc)))
