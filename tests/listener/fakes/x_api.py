"""A local fake of the X API v2, speaking its wire format: ``data`` / ``includes`` / ``meta`` pages,
problem-JSON errors with rate-limit headers, stream rules, the NDJSON filtered stream with
``\\r\\n`` keep-alives, and the batch lookup ``GET /2/tweets?ids=`` (found tweets in ``data``, the
others as per-id ``errors``). Tweet ids are snowflakes, as X's: ``(id >> 22) + EPOCH_MS`` is when the
tweet was posted, and recent search refuses a ``since_id`` posted more than 7 days ago with X's own
400. Only for tests: X cannot be reached from here."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

NOT_ENROLLED = {  # what X answers a tier without the filtered stream
    "client_id": "28431232", "title": "Client Forbidden", "required_enrollment": "Appropriate Level of API Access",
    "registration_url": "https://developer.twitter.com/en/portal/product", "reason": "client-not-enrolled",
    "detail": "When authenticating requests to the Twitter API v2 endpoints, you must use keys and tokens from a "
              "Twitter developer App that is attached to a Project.",
    "type": "https://api.twitter.com/2/problems/client-forbidden"}
UNAUTHORIZED = {"title": "Unauthorized", "type": "about:blank", "status": 401, "detail": "Unauthorized"}
REPLY_TO_GONE = {"detail": "You attempted to reply to a Tweet that is deleted or not visible to you.",
                 "type": "about:blank", "title": "Forbidden", "status": 403}
TOO_MANY_IDS = {  # what X answers a lookup of more than 100 ids (HTTP 400)
    "errors": [{"parameters": {"ids": []}, "message": "The number of values in the `ids` query parameter list "
                                                     "is not between 1 and 100"}],
    "title": "Invalid Request", "detail": "One or more parameters to your request was invalid.",
    "type": "https://api.twitter.com/2/problems/invalid-request"}


EPOCH_MS = 1288834974657  # X's snowflake epoch: a tweet id is (milliseconds since it << 22) + worker and sequence
REACH_DAYS = 7  # how far back recent search reaches


def too_old(since_id: str, floor_ms: int) -> dict:
    """X's answer (HTTP 400) to a recent search whose ``since_id`` was posted before the 7 days it
    reaches back, ``floor_ms`` (epoch milliseconds): the message names the edge, to the minute, and
    the id a ``since_id`` must be larger than (the edge's, its low 22 bits 0)."""
    edge = time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime(floor_ms / 1000))
    return {"errors": [{"parameters": {"since_id": [since_id]},
                        "message": f"'since_id' must be a tweet id created after {edge}. Please use a 'since_id' "
                                   f"that is larger than {(floor_ms - EPOCH_MS) << 22}"}],
            "title": "Invalid Request", "detail": "One or more parameters to your request was invalid.",
            "type": "https://api.twitter.com/2/problems/invalid-request"}


DROP, CLOSE = "DROP", "CLOSE"  # stream controls: cut the connection / end the response cleanly


def snowflake(epoch_seconds: float) -> int:
    """The smallest tweet id X can give a tweet posted at that moment."""
    return (int(epoch_seconds * 1000) - EPOCH_MS) << 22


def posted_ms(tweet_id: str) -> int:
    """When a tweet was posted (epoch milliseconds), from its id."""
    return (int(tweet_id) >> 22) + EPOCH_MS


BASE_ID = snowflake(time.time() - 3600)  # the fake's tweets were posted an hour ago: recent search reaches them


def tweet(i: int, text: str | None = None, author: str = "2244994945", reply_to: str | None = None,
          at: float | None = None) -> dict:
    """Tweet ``i``, posted an hour ago (or ``at``, epoch seconds): its id says when, as X's do."""
    tid = str((BASE_ID if at is None else snowflake(at)) + i)
    t = {"id": tid, "text": text or f"@acme_help post {i}", "author_id": author,
         "created_at": f"2026-11-20T08:{i % 60:02d}:00.000Z", "conversation_id": tid,
         "lang": "en", "public_metrics": {"retweet_count": 0, "reply_count": 0, "like_count": 1, "quote_count": 0},
         "edit_history_tweet_ids": [tid]}
    if reply_to:
        t["referenced_tweets"] = [{"type": "replied_to", "id": reply_to}]
        t["in_reply_to_user_id"] = "99"
        t["conversation_id"] = reply_to
    return t


def edited(original: dict, i: int, text: str) -> dict:
    """A later version of ``original``, as X serves an edit: a new id, the chain of every version's id
    (original first) in ``edit_history_tweet_ids``, the edit's own ``created_at``."""
    new_id = str(BASE_ID + i)
    return {**original, "id": new_id, "text": text, "created_at": f"2026-11-20T09:{i % 60:02d}:00.000Z",
            "edit_history_tweet_ids": [*original["edit_history_tweet_ids"], new_id]}


def long_post(i: int, whole: str) -> dict:
    """A post over 280 characters as X serves it: ``text`` cut to its first 280 characters, the whole
    text in ``note_tweet`` (sent only when ``tweet.fields`` asks for ``note_tweet``)."""
    return {**tweet(i, whole[:280]), "note_tweet": {"text": whole}}


def withhold(t: dict, *countries: str, copyright: bool = False) -> dict:
    """X withholds the tweet in these countries (a court order, local law) or, for ``copyright``
    (a DMCA notice), everywhere: its ``withheld`` field, sent when ``tweet.fields`` asks for it."""
    t["withheld"] = {"copyright": copyright, "country_codes": list(countries), "scope": "tweet"}
    return t


def as_requested(t: dict, fields: str | None, optional: tuple[str, ...] = ("note_tweet", "withheld")) -> dict:
    """The tweet (or user) with only the optional parts the request's ``tweet.fields`` (or
    ``user.fields``) asked for: X sends ``note_tweet`` and ``withheld`` only when asked."""
    asked = (fields or "").split(",")
    return {k: v for k, v in t.items() if k not in optional or k in asked}


def lookup_error(tweet_id: str, title: str) -> dict:
    """One ``errors`` entry of a lookup, as X words it: "Not Found Error" for a deleted tweet,
    "Authorization Error" for one whose author is protected or suspended."""
    if title == "Not Found Error":
        detail, kind = f"Could not find tweet with ids: [{tweet_id}].", "resource-not-found"
    else:
        detail, kind = f"Sorry, you are not authorized to see the Tweet with ids: [{tweet_id}].", \
            "not-authorized-for-resource"
    return {"value": tweet_id, "detail": detail, "title": title, "resource_type": "tweet", "parameter": "ids",
            "resource_id": tweet_id, "section": "data", "type": f"https://api.twitter.com/2/problems/{kind}"}


def user(author_id: str) -> dict:
    return {"id": author_id, "name": "Jane", "username": f"user{author_id[-4:]}",
            "public_metrics": {"followers_count": 120, "following_count": 5, "tweet_count": 40, "listed_count": 0}}


def _sent() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())


STALL = 5.0  # seconds a stalled answer takes: longer than the timeout the tests give the client

@dataclass
class FakeX:
    """Serves ``tweets`` (mentions) and ``found`` (recent search), oldest first in the lists, newest
    first on the wire, ``page_size`` per page, honouring ``since_id`` and pagination tokens."""

    tweets: list[dict] = field(default_factory=list)
    found: list[dict] = field(default_factory=list)
    page_size: int = 2
    fail_next: list[tuple] = field(default_factory=list)  # (status, headers[, body: JSON, or str as sent]) for REST
    stream_fail_next: list[tuple[int, dict[str, str], dict]] = field(default_factory=list)  # for stream connects
    malformed_next: int = 0
    requests: list[str] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)
    posted: list[dict] = field(default_factory=list)
    dms: list[dict] = field(default_factory=list)
    hidden: list[str] = field(default_factory=list)
    rules: list[dict] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    gone: set[str] = field(default_factory=set)  # tweets their authors deleted: gone from every listing
    protected: set[str] = field(default_factory=set)  # authors protected or suspended: lookups say not authorized
    # authors who deactivated their account: X answers for their tweets as for deleted ones (Not Found
    # in lookups, gone from every listing) until they log in again within 30 days (discard them here)
    deactivated: set[str] = field(default_factory=set)
    withheld_users: dict[str, list[str]] = field(default_factory=dict)  # author -> countries withholding them
    lookup_fail_next: list[tuple] = field(default_factory=list)  # like fail_next, for GET /2/tweets?ids= only
    stall_next: int = 0  # mention timelines that answer only after STALL seconds (a connection X leaves hanging)
    stall_posts: int = 0  # tweets posted whose answer comes only after STALL seconds (posted all the same)
    streamed: list[dict] = field(default_factory=list)  # every tweet pushed on the stream (lookups know them)
    user_keys_ok: bool = True  # False: OAuth 1.0a user-context keys are refused (the bearer still works)
    blocked: list[str] = field(default_factory=list)
    enterprise: bool = True  # X offers POST /2/users/:id/blocking on the Enterprise plan only
    me_id: str = "99"
    stream_connects: int = 0
    keepalive_seconds: float = 0.05
    clock_ahead: float = 0.0  # seconds X's clock is ahead of this machine's

    def __post_init__(self) -> None:
        self.lines: asyncio.Queue[Any] = asyncio.Queue()

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._record])
        app.router.add_get("/2/users/{id}/mentions", self.mentions)
        app.router.add_get("/2/tweets/search/recent", self.search)
        app.router.add_get("/2/tweets", self.lookup)
        app.router.add_get("/2/tweets/search/stream/rules", self.get_rules)
        app.router.add_post("/2/tweets/search/stream/rules", self.post_rules)
        app.router.add_get("/2/tweets/search/stream", self.stream)
        app.router.add_post("/2/tweets", self.create_tweet)
        app.router.add_post("/2/dm_conversations/with/{pid}/messages", self.dm)
        app.router.add_put("/2/tweets/{id}/hidden", self.hide)
        app.router.add_delete("/2/tweets/{id}", self.delete_tweet)
        app.router.add_post("/2/users/{id}/blocking", self.block)
        app.router.add_get("/2/users/me", self.me)
        return app

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append(str(request.rel_url))
        self.hosts.append(request.headers.get("Host", ""))
        auth = request.headers.get("Authorization") or ""
        if not auth or (auth.startswith("OAuth ") and not self.user_keys_ok):
            return web.json_response(UNAUTHORIZED, status=401)
        return await handler(request)

    def _error(self, queue: list[tuple] | None = None) -> web.Response | None:
        queue = self.fail_next if queue is None else queue
        if queue:
            status, headers, *body = queue.pop(0)
            if body and isinstance(body[0], str):  # a body as it came, JSON or not
                return web.Response(text=body[0], status=status, headers=headers, content_type="application/json")
            default = UNAUTHORIZED if status == 401 else {
                "title": "Too Many Requests" if status == 429 else "Error", "detail": "fake error",
                "type": "about:blank", "status": status}
            return web.json_response(body[0] if body else default, status=status, headers=headers)
        if self.malformed_next:
            self.malformed_next -= 1
            return web.Response(text='{"data": [ {"id": ', content_type="application/json")
        return None

    def _page(self, request: web.Request, source: list[dict]) -> web.Response:
        if (err := self._error()) is not None:
            return err
        since = request.query.get("since_id")
        newest_first = [t for t in reversed(source) if (not since or int(t["id"]) > int(since))
                        and not self._vanished(t)]
        start = int(request.query.get("pagination_token") or request.query.get("next_token") or "0")
        page = newest_first[start:start + self.page_size]
        if not page:
            return web.json_response({"meta": {"result_count": 0}})
        users = {t["author_id"]: self._user(t["author_id"], request) for t in page if "author_id" in t}
        meta: dict[str, Any] = {"result_count": len(page), "newest_id": page[0]["id"], "oldest_id": page[-1]["id"]}
        if start + self.page_size < len(newest_first):
            meta["next_token"] = str(start + self.page_size)
        body: dict[str, Any] = {"data": [as_requested(x, request.query.get("tweet.fields")) for x in page],
                                "meta": meta}
        if users:
            body["includes"] = {"users": list(users.values())}
        return web.json_response(body, headers={"x-rate-limit-remaining": "179",
                                                "x-rate-limit-reset": str(int(time.time()) + 900)})

    async def mentions(self, request: web.Request) -> web.Response:
        if self.stall_next:
            self.stall_next -= 1
            await asyncio.sleep(STALL)
        return self._page(request, self.tweets)

    async def search(self, request: web.Request) -> web.Response:
        """Recent search: a ``since_id`` of a tweet posted more than 7 days ago (by X's clock,
        ``clock_ahead`` seconds ahead of ours) is refused as X refuses it; ``until_id`` bounds the
        results from above (exclusive), as ``since_id`` does from below."""
        floor_ms = int((time.time() + self.clock_ahead) * 1000) - REACH_DAYS * 86_400_000
        since = request.query.get("since_id")
        if since and posted_ms(since) < floor_ms:
            return web.json_response(too_old(since, floor_ms), status=400)
        until = request.query.get("until_id")
        found = [t for t in self.found if not until or int(t["id"]) < int(until)]
        return self._page(request, found)

    def _vanished(self, t: dict) -> bool:
        """Deleted, or its author's account deactivated: X tells these apart nowhere."""
        return t["id"] in self.gone or t.get("author_id") in self.deactivated

    def _user(self, author_id: str, request: web.Request) -> dict:
        """The author as ``includes.users`` has it, ``withheld`` when they are and ``user.fields`` asks."""
        u = user(author_id)
        if author_id in self.withheld_users:
            u["withheld"] = {"country_codes": self.withheld_users[author_id], "scope": "user"}
        return as_requested(u, request.query.get("user.fields"))

    def lookup_ids(self) -> list[list[str]]:
        """The ids of each ``GET /2/tweets?ids=`` so far, one list per request."""
        from urllib.parse import parse_qs, urlsplit

        return [parse_qs(urlsplit(r).query)["ids"][0].split(",") for r in self.requests if r.startswith("/2/tweets?")]

    async def lookup(self, request: web.Request) -> web.Response:
        """``GET /2/tweets?ids=``: 1 to 100 ids; found tweets in ``data`` (in the order asked, users in
        ``includes`` when ``expansions`` asks for ``author_id``), the others in ``errors``, HTTP 200 even
        when every one is missing (no ``data`` key then)."""
        if (err := self._error(self.lookup_fail_next)) is not None or (err := self._error()) is not None:
            return err
        ids = [i for i in request.query.get("ids", "").split(",") if i]
        if not 1 <= len(ids) <= 100:
            return web.json_response(TOO_MANY_IDS, status=400)
        known = {t["id"]: t for t in [*self.tweets, *self.found, *self.streamed]}
        data, errors = [], []
        for i in ids:
            if i not in known or self._vanished(known[i]):
                errors.append(lookup_error(i, "Not Found Error"))
            elif known[i].get("author_id") in self.protected:
                errors.append(lookup_error(i, "Authorization Error"))
            else:
                data.append(as_requested(known[i], request.query.get("tweet.fields")))
        body: dict[str, Any] = {"data": data} if data else {}
        if data and "author_id" in (request.query.get("expansions") or "").split(","):
            body["includes"] = {"users": [self._user(a, request) for a in dict.fromkeys(t["author_id"] for t in data
                                                                                        if "author_id" in t)]}
        if errors:
            body["errors"] = errors
        return web.json_response(body, headers={"x-rate-limit-remaining": "14",
                                                "x-rate-limit-reset": str(int(time.time()) + 900)})

    async def get_rules(self, request: web.Request) -> web.Response:
        if self.stream_fail_next and self.stream_fail_next[0][0] == 403:
            status, headers, body = self.stream_fail_next[0]  # the tier refuses rules and stream alike
            return web.json_response(body, status=status, headers=headers)
        meta = {"sent": _sent(), "result_count": len(self.rules)}
        return web.json_response({"data": self.rules, "meta": meta} if self.rules else {"meta": meta})

    async def post_rules(self, request: web.Request) -> web.Response:
        body = await request.json()
        if "delete" in body:
            ids = set(body["delete"]["ids"])
            before = len(self.rules)
            self.rules = [r for r in self.rules if r["id"] not in ids]
            return web.json_response({"meta": {"sent": _sent(), "summary": {"deleted": before - len(self.rules),
                                                                           "not_deleted": 0}}})
        added = []
        for rule in body.get("add", []):
            added.append({"value": rule["value"], "tag": rule.get("tag"), "id": str(1590000000000000000 + len(self.rules))})
            self.rules.append(added[-1])
        return web.json_response({"data": added, "meta": {"sent": _sent(), "summary": {
            "created": len(added), "not_created": 0, "valid": len(added), "invalid": 0}}}, status=201)

    async def stream(self, request: web.Request) -> web.StreamResponse:
        self.stream_connects += 1
        if self.stream_fail_next:
            status, headers, body = self.stream_fail_next.pop(0)
            return web.json_response(body, status=status, headers=headers)
        resp = web.StreamResponse(headers={"Content-Type": "application/json; charset=utf-8"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        while True:
            try:
                line = await asyncio.wait_for(self.lines.get(), self.keepalive_seconds)
            except TimeoutError:
                await resp.write(b"\r\n")  # keep-alive
                continue
            if line == DROP:
                request.transport.close()  # connection lost mid-stream
                return resp
            if line == CLOSE:
                await resp.write_eof()
                return resp
            if isinstance(line, dict):  # a tweet pushed: as this connection's fields ask for it
                line = json.dumps({**line, "data": as_requested(line["data"], request.query.get("tweet.fields")),
                                   "includes": {"users": [self._user(line["data"]["author_id"], request)]}})
            await resp.write((line if isinstance(line, bytes) else line.encode()) + b"\r\n")

    def push(self, t: dict, rule_id: str = "1590000000000000000") -> None:
        """Queue one tweet on the stream, as X sends it (data, includes, matching_rules)."""
        self.streamed.append(t)
        self.lines.put_nowait({"data": t, "matching_rules": [{"id": rule_id, "tag": "socialcare"}]})

    async def create_tweet(self, request: web.Request) -> web.Response:
        if (err := self._error()) is not None:
            return err
        body = await request.json()
        if (body.get("reply") or {}).get("in_reply_to_tweet_id") in self.gone:
            return web.json_response(REPLY_TO_GONE, status=403)
        self.posted.append(body)
        new_id = str(1900000000000000000 + len(self.posted))
        if self.stall_posts:
            self.stall_posts -= 1
            await asyncio.sleep(STALL)
        return web.json_response({"data": {"id": new_id, "text": body["text"], "edit_history_tweet_ids": [new_id]}},
                                 status=201)

    async def dm(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.dms.append({"to": request.match_info["pid"], **body})
        return web.json_response({"data": {"dm_conversation_id": "1-2", "dm_event_id": str(len(self.dms))}}, status=201)

    async def hide(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body.get("hidden"):
            self.hidden.append(request.match_info["id"])
        return web.json_response({"data": {"hidden": bool(body.get("hidden"))}})

    async def delete_tweet(self, request: web.Request) -> web.Response:
        if (err := self._error()) is not None:
            return err
        self.deleted.append(request.match_info["id"])
        return web.json_response({"data": {"deleted": True}})

    async def block(self, request: web.Request) -> web.Response:
        if not self.enterprise:
            return web.json_response({**NOT_ENROLLED, "title": "Client Forbidden"}, status=403)
        if request.match_info["id"] != self.me_id:  # only on behalf of the authenticated user
            return web.json_response({"title": "Forbidden", "type": "about:blank", "status": 403,
                                      "detail": "You are not permitted to perform this action."}, status=403)
        body = await request.json()
        self.blocked.append(body["target_user_id"])
        return web.json_response({"data": {"blocking": True}})

    async def me(self, request: web.Request) -> web.Response:
        if (err := self._error()) is not None:
            return err
        return web.json_response({"data": {"id": "99", "name": "Acme Help", "username": "acme_help"}})
