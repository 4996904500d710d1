"""A local fake of Reddit: the OAuth token endpoint (www) and the OAuth API (``Listing`` of ``t3`` /
``t1`` things, ``before`` and ``after`` pagination as deep as ``depth``, ``/api/info``, ``/api/*`` write endpoints), with Reddit's
rate-limit headers and errors. Only for tests: Reddit cannot be reached from here."""

from __future__ import annotations

import base64
import random
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

CLIENT_ID, CLIENT_SECRET, PASSWORD = "fake-client-id", "fake-client-secret", "hunter2"


def b36(n: int) -> str:
    chars = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = chars[r] + out
        if n == 0:
            return out


def submission(n: int, sub: str = "acme", title: str | None = None, selftext: str = "It keeps crashing",
               author: str | None = "jane_doe", **extra: Any) -> dict:
    rid = b36(10_000_000 + n)
    return {"kind": "t3", "data": {
        "id": rid, "name": f"t3_{rid}", "title": title or f"Acme app problem {n}", "selftext": selftext,
        "author": author if author is not None else "[deleted]", "author_fullname": "t2_abc12" if author else None,
        "created_utc": 1795680000.0 + n, "permalink": f"/r/{sub}/comments/{rid}/acme_app_problem_{n}/",
        "subreddit": sub, "subreddit_name_prefixed": f"r/{sub}", "subreddit_id": "t5_2qh1i", "edited": False,
        "url": f"https://www.reddit.com/r/{sub}/comments/{rid}/", "num_comments": 0, "score": 1, "over_18": False,
        "is_self": True, "distinguished": None, "stickied": False, "locked": False, "removed_by_category": None,
        "banned_by": None, "approved_by": None, **extra}}


def comment(n: int, link: str, parent: str | None = None, sub: str = "acme", body: str = "same for me",
            author: str | None = "bob", **extra: Any) -> dict:
    rid = b36(20_000_000 + n)
    return {"kind": "t1", "data": {
        "id": rid, "name": f"t1_{rid}", "body": body if author else "[deleted]",
        "author": author if author is not None else "[deleted]", "author_fullname": "t2_def34" if author else None,
        "created_utc": 1795680000.0 + n, "link_id": link, "parent_id": parent or link, "subreddit": sub,
        "subreddit_id": "t5_2qh1i", "permalink": f"/r/{sub}/comments/{link[3:]}/x/{rid}/", "edited": False,
        "score": 1, "distinguished": None, "stickied": False, "replies": "", "banned_by": None, "approved_by": None,
        **extra}}


def edit(thing: dict, text: str, at: float | bool) -> dict:
    """The author edits the body (``selftext`` of a submission). Reddit stamps ``edited`` with the
    time, except within the first minutes after posting (a "ninja edit": ``at=False``)."""
    thing["data"]["body" if thing["kind"] == "t1" else "selftext"] = text
    thing["data"]["edited"] = float(at) if at is not False else False
    return thing


def delete(thing: dict) -> dict:
    """The author deletes it: Reddit blanks author and text for everyone (``author_fullname`` goes)."""
    data = thing["data"]
    data.pop("author_fullname", None)
    data.update({"author": "[deleted]", ("body" if thing["kind"] == "t1" else "selftext"): "[deleted]"})
    if thing["kind"] == "t3":
        data["removed_by_category"] = "deleted"
    return thing


def remove(thing: dict, by: str | bool = "a_moderator") -> dict:
    """A subreddit moderator removes it (``by=True``: Reddit's spam filter, which may do so before
    anyone lists it). How it then reads depends on who asks (:meth:`FakeReddit.view`)."""
    thing.pop("approved", None)
    thing["removed_by"] = by
    return thing


def approve(thing: dict, by: str = "a_moderator", at: float = 1795690500.0) -> dict:
    """A subreddit moderator approves it (in Reddit's UI or the moderation queue): shown again, to
    everyone, with its text (edited or not meanwhile); a moderator also sees who approved it."""
    thing.pop("removed_by", None)
    thing["approved"] = (by, at)
    return thing


def rate_limited(reset: int = 1) -> tuple[int, dict[str, str]]:
    """Reddit's 429: the window's budget spent (``x-ratelimit-remaining`` 0), ``x-ratelimit-reset``
    seconds until it reopens, no ``Retry-After``."""
    return 429, {"x-ratelimit-remaining": "0.0", "x-ratelimit-used": "1000", "x-ratelimit-reset": str(reset)}


def listing(children: list[dict], after: str | None = None) -> dict:
    return {"kind": "Listing", "data": {"after": after, "dist": len(children),
                                        "modhash": None, "geo_filter": "", "children": children, "before": None}}


@dataclass
class FakeReddit:
    posts: list[dict] = field(default_factory=list)  # t3, oldest first
    comments: list[dict] = field(default_factory=list)  # t1, oldest first
    hits: list[dict] = field(default_factory=list)  # search results across Reddit
    fail_next: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    fail_on: dict[str, list[tuple[int, dict[str, str]]]] = field(default_factory=dict)  # path -> failures
    malformed_next: int = 0  # answer this many API calls with a cut-off JSON body
    moderates: set[str] = field(default_factory=lambda: {"acme", "acmehelp"})  # where we are a moderator
    banned: dict[str, list[str]] = field(default_factory=dict)  # subreddit -> usernames
    writes: list[tuple[str, dict]] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    tokens_issued: int = 0
    busy: int = 0  # a busy community: this many new submissions (comments) in r/acme before each listing's answer
    arrived: int = 0  # how many of those so far
    depth: int = 1000  # how far back a subreddit listing goes (Reddit's: about 1000 things)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._gate])
        app.router.add_post("/api/v1/access_token", self.token)
        app.router.add_get("/r/all/search{s:/?}", self.search)
        app.router.add_get("/r/{subs}/new{s:/?}", lambda r: self._listing(r, self.posts))
        app.router.add_get("/r/{subs}/comments{s:/?}", lambda r: self._listing(r, self.comments))
        app.router.add_get("/api/v1/me{s:/?}", self.me)
        for name in ("comment", "compose", "remove", "approve", "lock", "distinguish"):
            app.router.add_post(f"/api/{name}{{s:/?}}", self.write)
        app.router.add_post("/api/v1/modactions/removal_reasons{s:/?}", self.removal_reason)
        app.router.add_post("/api/del{s:/?}", self.delete)
        app.router.add_post("/r/{sub}/api/friend{s:/?}", self.friend)
        app.router.add_get("/api/info{s:/?}", self.info)
        return app

    async def info(self, request: web.Request) -> web.Response:
        """``GET /api/info?id=t3_a,t1_b``: as Reddit answers it, more than 100 ids is an empty
        listing, unknown ids (and ids not in lower case) are left out, duplicates count once, and the
        order is Reddit's own, not the request's."""
        wanted = set(request.query.get("id", "").split(","))
        if len(wanted) > 100:
            return web.json_response(listing([]))
        found = {t["data"]["name"]: t for t in self.posts + self.comments + self.hits}
        things = [self.view(found[name]) for name in sorted(wanted) if name in found]
        random.Random(len(things)).shuffle(things)
        return web.json_response(listing(things))

    def view(self, thing: dict) -> dict:
        """A thing as our account sees it, in ``/api/info``, the subreddit listings and the search
        alike. A removed one: a moderator of its subreddit keeps the text and sees ``removed`` and
        who did it (``banned_by``; the spam filter: ``spam`` and ``true``); anyone else sees
        ``[removed]`` (a comment's author too). So a post removed before we first list it (the spam
        filter catching a new account's first post) is listed to a moderator with its words and the
        removal fields, as Reddit lists removed items to its moderators; Reddit may leave it out of a
        non-moderator's listing altogether, which here would only mean nothing to follow. An
        approved one reads as any other, but a moderator sees ``approved`` and who approved it, the
        removal fields cleared."""
        mod = thing["data"]["subreddit"].lower() in self.moderates
        if "removed_by" not in thing:
            if "approved" not in thing or not mod:
                return thing
            by, at = thing["approved"]
            return {"kind": thing["kind"], "data": {**thing["data"], "approved": True, "approved_by": by,
                                                    "approved_at_utc": at, "removed": False, "spam": False,
                                                    "banned_by": None, "banned_at_utc": None}}
        data, t3, by = dict(thing["data"]), thing["kind"] == "t3", thing["removed_by"]
        if mod:
            data.update(removed=by is not True, spam=by is True, banned_by=by, approved=False, approved_by=None)
        elif t3:
            data["selftext"] = "[removed]"
        else:
            data.pop("author_fullname", None)
            data.update(author="[deleted]", body="[removed]")
        if t3:
            data["removed_by_category"] = "reddit" if by is True else "moderator"
        return {"kind": thing["kind"], "data": data}

    async def removal_reason(self, request: web.Request) -> web.Response:
        self.writes.append(("removal_reason", dict(await request.post())))
        return web.json_response({})

    @web.middleware
    async def _gate(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append(str(request.rel_url))
        failures = self.fail_on.get(request.path.rstrip("/")) or self.fail_next
        if failures and request.path != "/api/v1/access_token":
            status, headers = failures.pop(0)
            message = {429: "Too Many Requests", 500: "Internal Server Error"}.get(status, "error")
            return web.json_response({"message": message, "error": status}, status=status, headers=headers)
        if self.malformed_next and request.path != "/api/v1/access_token":
            self.malformed_next -= 1  # a response cut off in transit
            return web.Response(text='{"kind": "Listing", "data": {"children": [{"kind": "t3", "da',
                                content_type="application/json")
        if request.path != "/api/v1/access_token" and request.headers.get("Authorization") != "bearer fake-token":
            return web.json_response({"message": "Unauthorized", "error": 401}, status=401,
                                     headers={"www-authenticate": 'Bearer realm="reddit", error="invalid_token"'})
        resp = await handler(request)
        for name, value in {"x-ratelimit-remaining": "995.0", "x-ratelimit-used": "5",
                            "x-ratelimit-reset": str(600 - int(time.time()) % 600)}.items():
            resp.headers.setdefault(name, value)
        return resp

    async def delete(self, request: web.Request) -> web.Response:
        """``/api/del``: Reddit answers ``{}`` whatever the id (deleting twice is not an error)."""
        self.writes.append(("del", dict(await request.post())))
        return web.json_response({})

    async def friend(self, request: web.Request) -> web.Response:
        """``/r/{sub}/api/friend`` with ``type=banned``: ban a user, as Reddit answers it."""
        sub, form = request.match_info["sub"].lower(), dict(await request.post())
        if sub not in self.moderates:
            return web.json_response({"message": "Forbidden", "error": 403}, status=403)
        known = {t["data"]["author"] for t in self.posts + self.comments + self.hits}
        if form.get("name") not in known:
            return web.json_response({"json": {"errors": [["USER_DOESNT_EXIST", "that user doesn't exist",
                                                           "name"]]}})
        self.writes.append(("friend", {**form, "subreddit": sub}))
        self.banned.setdefault(sub, []).append(form["name"])
        return web.json_response({"json": {"errors": []}})

    async def token(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        if auth != "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode():
            return web.json_response({"message": "Unauthorized", "error": 401}, status=401)
        form = await request.post()
        if form.get("grant_type") == "password" and form.get("password") != PASSWORD:
            return web.json_response({"error": "invalid_grant"})
        self.tokens_issued += 1
        return web.json_response({"access_token": "fake-token", "token_type": "bearer", "expires_in": 86400,
                                  "scope": "*"})

    def _listing(self, request: web.Request, things: list[dict]) -> web.Response:
        for _ in range(self.busy):  # posted since the last request: every request finds new ones
            self.arrived += 1
            if things is self.posts:
                things.append(submission(1000 + self.arrived))
            elif self.posts:
                things.append(comment(1000 + self.arrived, link=self.posts[-1]["data"]["name"]))
        subs = set(request.match_info["subs"].lower().split("+"))
        pool = [t for t in things if t["data"]["subreddit"].lower() in subs][-self.depth:]  # older: unlisted
        limit = min(int(request.query.get("limit", "25")), 100)
        before, after = request.query.get("before"), request.query.get("after")
        names = [t["data"]["name"] for t in pool]
        if (before or after) and (before or after) not in names:
            return web.json_response(listing([]))  # Reddit's answer when the anchor is gone
        if before:
            newer = pool[names.index(before) + 1:]
            page = newer[:limit]  # the items right after the anchor
        else:
            older = pool[:names.index(after)] if after else pool
            page = older[-limit:]
        more = page and page[0] is not pool[0] and not before  # older things listed past this page
        return web.json_response(listing([self.view(t) for t in reversed(page)],  # newest first
                                         after=page[0]["data"]["name"] if more else None))

    async def search(self, request: web.Request) -> web.Response:
        words = [w.strip('"').lower() for w in request.query.get("q", "").split(" OR ")]
        found = [t for t in self.hits if any(w in (t["data"]["title"] + t["data"]["selftext"]).lower() for w in words)]
        return web.json_response(listing([self.view(t) for t in
                                          list(reversed(found))[:int(request.query.get("limit", "25"))]]))

    async def me(self, request: web.Request) -> web.Response:
        return web.json_response({"name": "acme_support", "id": "xyz", "created_utc": 1500000000.0,
                                  "is_mod": True, "has_verified_email": True})

    async def write(self, request: web.Request) -> web.Response:
        form = dict(await request.post())
        name = request.path.rstrip("/").rsplit("/", 1)[-1]
        self.writes.append((name, form))
        if name == "comment":
            new = comment(900 + len(self.writes), link="t3_unknown", parent=form["thing_id"], body=form["text"],
                          author="acme_support")
            return web.json_response({"json": {"errors": [], "data": {"things": [new]}}})
        if name in ("compose",):
            return web.json_response({"json": {"errors": []}})
        return web.json_response({})


@asynccontextmanager
async def served(fake: FakeReddit) -> AsyncIterator[FakeReddit]:
    """The fake on a local port (its URL in ``fake.base``); the connectors a test put in
    ``fake.clients`` are closed after it, then the server."""
    server = TestServer(fake.app(), host="127.0.0.1")
    await server.start_server()
    fake.base = str(server.make_url("")).rstrip("/")
    fake.clients = []
    try:
        yield fake
    finally:
        for c in fake.clients:
            await c.close()
        await server.close()
