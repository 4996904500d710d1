"""The X mentions connector (API v2 through tweepy): every mention of the brand account.

tweepy's sync ``Client`` runs in a worker thread so it never blocks the event loop; every request
goes to ``settings.x_api_base`` through :mod:`listener.hosts`. The cursor holds the newest tweet id
seen (``since_id``); pages are followed with ``pagination_token`` to the end, so a restart after
any downtime picks up exactly where the last saved cursor left off. It also holds the window of
recent mentions looked up again for deletions (:mod:`listener.x.recheck`), X having no deletion
events outside its Enterprise compliance streams. That lookup runs after the new mentions are
fetched and never raises: a failure there (a 429 on the lookup's own limit, a 403, a 5xx, a
malformed page) is logged and the re-check waits for its next round, or the reset a 429 announced,
while the mentions keep coming. Errors of the mentions fetch itself are raised (``translate``) with
the saved cursor, window included, left as it was. A mention X withholds where the team reads the
console (``SOCIALCARE_X_WITHHELD_COUNTRIES``, or copyright) comes out as a content-free ``delete``
and is followed until X shows it (:mod:`listener.x.normalize`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from listener.protocol import NormalizedMention
from listener.x.actions import XActions, make_client, split_thread
from listener.x.errors import translate
from listener.x.normalize import EXPANSIONS, TWEET_FIELDS, USER_FIELDS, newest_id, page_to_mentions
from listener.x.recheck import (
    RECHECK_HOURS,
    RECHECK_SECONDS,
    RECHECK_SIZE,
    Rechecks,
    TweetWindow,
    dump_cursor,
    since_id,
)

__all__ = ["XConnector", "split_thread"]


class XConnector(Rechecks, XActions):
    name = "x"
    platform = "x"

    def __init__(self, settings: Any, *, max_pages: int = 10, poll_seconds: float = 30.0,
                 recheck_seconds: float = RECHECK_SECONDS, recheck_hours: float = RECHECK_HOURS,
                 recheck_size: int = RECHECK_SIZE) -> None:
        self.settings = settings
        self.user_id = settings.x_user_id
        self.max_pages = max_pages
        self.poll_seconds = poll_seconds
        self.recheck_seconds, self.recheck_hours, self.recheck_size = recheck_seconds, recheck_hours, recheck_size
        self.client = make_client(settings)
        self.status: Any = None

    @property
    def user_auth(self) -> bool:
        """App-only bearer token when there is one; OAuth 1.0a user context otherwise."""
        return self.client.bearer_token is None

    @property
    def channel(self) -> str | None:
        return f"x:{self.user_id}" if self.user_id else None

    def _mentions_sync(self, since_id: str | None) -> tuple[list[NormalizedMention], str | None]:
        if not self.user_id:
            me = self.client.get_me(user_auth=True)
            self.user_id = str(me["data"]["id"])
        out: list[NormalizedMention] = []
        newest, token = None, None
        for _ in range(self.max_pages):
            page = self.client.get_users_mentions(
                self.user_id, since_id=since_id, pagination_token=token, max_results=100,
                expansions=EXPANSIONS, tweet_fields=TWEET_FIELDS, user_fields=USER_FIELDS, user_auth=self.user_auth,
            )
            meta = page.get("meta") or {} if isinstance(page, dict) else {}
            newest = newest or meta.get("newest_id")
            out = page_to_mentions(page, self.channel, self.withheld_in) + out  # older pages go first
            token = meta.get("next_token")
            if not token:
                break
        return self._theirs(out), newest_id(newest, out, since_id)

    async def poll_once(self, cursor: str | None) -> tuple[list[NormalizedMention], str | None]:
        """One round: the new mentions, then the re-check of the window's (those of earlier rounds)
        when due. An error fetching the mentions leaves the caller's cursor, window included, as it
        was; the re-check raises nothing (:meth:`Rechecks._recheck`), so it never holds them back."""
        window = TweetWindow.from_cursor(cursor)
        try:
            mentions, since = await asyncio.to_thread(self._mentions_sync, since_id(cursor))
        except Exception as exc:
            raise translate(exc) from exc
        changed = await self._recheck(window)
        self._remember(window, mentions)
        return changed + mentions, dump_cursor(since, window)

    async def stream(self, cursor: str | None) -> AsyncIterator[tuple[list[NormalizedMention], str | None]]:
        while True:
            mentions, cursor = await self.poll_once(cursor)
            yield mentions, cursor
            await asyncio.sleep(self.poll_seconds)

    def listens_to(self) -> str:
        return f"mentions of user {self.user_id}" if self.user_id else "mentions of the brand account (id from /2/users/me)"

    async def check(self) -> dict[str, Any]:
        """Both credentials in use: the bearer token reads mentions, and the OAuth 1.0a user keys, when
        set, are what replies, DMs and hiding need, so a wrong API secret shows here, not at the first reply."""
        started = time.monotonic()
        ok, error, who, step = True, None, None, ""
        try:
            if not self.user_auth:
                await asyncio.to_thread(self.client.get_users_mentions, self.user_id, max_results=5)
                who = f"user id {self.user_id}"
            if self.client.consumer_key and self.client.access_token:
                step = "user-context keys (SOCIALCARE_X_API_KEY, _API_SECRET, _ACCESS_TOKEN, _ACCESS_SECRET): "
                me = await asyncio.to_thread(self.client.get_me, user_auth=True)
                who = (me.get("data") or {}).get("username")
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            ok, error, who = False, step + str(translate(exc)), None
        return {"name": self.name, "ok": ok, "error": error, "account": who,
                "listens_to": self.listens_to(), "base_url": self.settings.x_api_base,
                "seconds": round(time.monotonic() - started, 2)}

    async def close(self) -> None:
        self.client.session.close()
