"""A local fake of a Discourse forum: its webhook bodies and headers, and the API endpoints the
connector calls (``Api-Key``/``Api-Username`` auth, ``/posts.json`` pages, ``/posts/{id}.json``,
errors), with edits, deletions (by staff or by the author) and recoveries as Discourse makes them,
of a post or of a whole topic.

Moderation answers as Discourse's guardian does (``lib/guardian/post_guardian.rb``,
``lib/post_action_creator.rb``, ``PostsController``, ``TopicsController``): a flag of a post
already hidden, or of one the API user flagged before (hide, unhide, hide again), is a 403 whose
``errors`` names it and has no ``error_type`` (``render_json_error`` of the creator's result); an
unhide of a post that is not hidden and a ``DELETE /posts/{id}`` of a topic's first post are a 403
``invalid_access`` (``Discourse::InvalidAccess``); a topic is deleted with ``DELETE /t/{id}.json``
(a deleted one: 422) and closed with ``PUT /t/{id}/status`` (closing a closed one changes nothing
and answers 200). A wrong key is also a 403 ``invalid_access``, on every request, which is how the
connector tells it apart (``GET /session/current.json``)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

API_KEY = "d1sc0urs3-key"


def post(pid: int, topic_id: int = 40, number: int = 1, raw: str | None = None, reply_to: int | None = None,
         username: str = "jane_doe", archetype: str = "regular", **extra: Any) -> dict:
    """A post as Discourse serializes it for webhooks and /posts.json (trimmed to the usual fields)."""
    return {"id": pid, "name": "Jane Doe", "username": username, "avatar_template": "/letter_avatar/{size}/1.png",
            "created_at": "2026-11-20T08:01:02.123Z", "cooked": f"<p>{raw or 'cooked body'}</p>",
            "post_number": number, "post_type": 1, "updated_at": "2026-11-20T08:01:02.123Z", "reply_count": 0,
            "reply_to_post_number": reply_to, "quote_count": 0, "incoming_link_count": 0, "reads": 1, "score": 0,
            "topic_id": topic_id, "topic_slug": "cannot-log-in-since-update", "topic_title": "Cannot log in since update",
            "topic_archetype": archetype, "category_id": 5, "category_slug": "support", "user_id": 17,
            "raw": raw if raw is not None else "I cannot log in since the update", "deleted_at": None,
            "user_deleted": False, "hidden": False, "wiki": False, "version": 1, **extra}


def topic(topic_id: int = 40, title: str = "Cannot log in since update", archetype: str = "regular",
          **extra: Any) -> dict:
    """A topic as Discourse's topic webhooks send it (``WebHookTopicViewSerializer``: no post stream,
    so none of its posts is named; ``deleted_at`` and ``deleted_by`` set once it is deleted)."""
    return {"id": topic_id, "title": title, "fancy_title": title, "posts_count": 3, "created_at": "2026-11-20T08:01:02.123Z",
            "views": 7, "reply_count": 2, "like_count": 0, "last_posted_at": "2026-11-20T08:30:00.000Z", "visible": True,
            "closed": False, "archived": False, "archetype": archetype, "slug": "cannot-log-in-since-update",
            "category_id": 5, "word_count": 42, "deleted_at": None, "user_id": 17, "featured_link": None,
            "pinned_globally": False, "pinned_at": None, "pinned_until": None, "unpinned": None, "pinned": False,
            "highest_post_number": 3, "deleted_by": None, "bookmarked": None, "participant_count": 2,
            "created_by": {"id": 17, "username": "jane_doe", "name": "Jane Doe",
                           "avatar_template": "/letter_avatar/{size}/1.png"},
            "last_poster": {"id": 18, "username": "bob", "name": "Bob", "avatar_template": "/letter_avatar/{size}/2.png"},
            "tags": [], "thumbnails": None, **extra}


MODERATOR = {"id": 3, "username": "mod_mia", "name": "Mia", "avatar_template": "/letter_avatar/{size}/3.png"}
BY_AUTHOR = "(post deleted by author)"  # Discourse's words for a reply its author deleted
NOT_FOUND = {"errors": ["The requested URL or resource could not be found."], "error_type": "not_found"}
# Discourse::InvalidAccess, as ApplicationController renders it (I18n "invalid_access")
INVALID_ACCESS = {"errors": ["You are not permitted to view the requested resource."], "error_type": "invalid_access"}
# a refused PostActionCreator result (render_json_error(result): 403 as it is ``forbidden``, no error_type)
ALREADY_FLAGGED = {"errors": ["Oops! You already performed that action. Can you try a different action?"]}
CANNOT_FLAG = {"errors": ["You are not permitted to view the requested resource."]}
DELETE_TOPIC_FAILED = {"errors": ["There was an error deleting that topic. Please contact the site's administrator."]}
WHISPER = 4  # Post.types[:whisper]


def webhook_request(event: str, payload: dict, secret: str) -> tuple[bytes, dict[str, str]]:
    """Body and headers exactly as Discourse sends a webhook."""
    body = json.dumps(payload).encode()
    kind = event.split("_", 1)[0]
    return body, {"Content-Type": "application/json", "X-Discourse-Instance": "https://forum.acme.test",
                  "X-Discourse-Event-Id": "412", "X-Discourse-Event-Type": kind, "X-Discourse-Event": event,
                  "X-Discourse-Event-Signature": "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()}


@dataclass
class FakeDiscourse:
    posts: list[dict] = field(default_factory=list)  # oldest first
    page_size: int = 3
    fail_next: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    malformed_next: int = 0  # answer this many API calls with a cut-off JSON body
    admin_key: bool = True  # suspending needs an admin's API key
    admins: set[int] = field(default_factory=lambda: {1})  # staff Discourse refuses to suspend
    suspended: dict[int, dict] = field(default_factory=dict)  # user id -> the suspend body
    created: list[dict] = field(default_factory=list)
    actions: list[tuple[str, str, Any]] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    staff: bool = False  # the API user is staff: a deleted post is shown with deleted_at, not a 404
    # answers for the next calls of a route ("GET /posts/{id}.json") or of one URL ("/posts.json?before=104"):
    # (status, headers), or (status, headers, body) to send that body as it is (JSON or not)
    fail_on: dict[str, list[tuple]] = field(default_factory=dict)
    slow_on: dict[str, list[float]] = field(default_factory=dict)  # as fail_on: seconds to hang before answering
    withdrawn: dict[int, tuple[str, str]] = field(default_factory=dict)  # raw and cooked before the author deleted
    deleted_topics: set[int] = field(default_factory=set)
    flagged: set[int] = field(default_factory=set)  # posts the API user flagged (one flag a post a user)
    closed: set[int] = field(default_factory=set)  # topics closed to replies

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._auth])
        app.router.add_get("/posts.json", self.latest)
        app.router.add_post("/posts.json", self.create)
        app.router.add_get("/posts/{id}.json", self.show)
        app.router.add_get("/posts/by_number/{topic}/{number}.json", self.by_number)
        app.router.add_post("/post_actions.json", self.post_action)
        app.router.add_delete("/posts/{id}.json", self.delete)
        app.router.add_put("/posts/{id}/unhide", self.unhide)
        app.router.add_put("/posts/{id}/{what}", self.put)
        app.router.add_delete("/t/{id}.json", self.delete_topic)
        app.router.add_put("/t/{id}/status", self.topic_status)
        app.router.add_get("/session/current.json", self.current)
        app.router.add_get("/u/{username}.json", self.user)
        app.router.add_put("/admin/users/{id}/suspend.json", self.suspend)
        return app

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append(str(request.rel_url))
        resource = request.match_info.route.resource
        route = f"{request.method} {resource.canonical if resource else request.path}"
        url = str(request.rel_url)
        if self.slow_on.get(route) or self.slow_on.get(url):
            await asyncio.sleep((self.slow_on.get(route) or self.slow_on[url]).pop(0))  # a forum that hangs
        if self.fail_next or self.fail_on.get(route) or self.fail_on.get(url):
            status, headers, *sent = (self.fail_next or self.fail_on.get(route) or self.fail_on[url]).pop(0)
            if sent:
                return web.Response(text=sent[0], status=status, headers=headers, content_type="application/json")
            body = {"errors": ["You’ve performed this action too many times."], "error_type": "rate_limit",
                    "extras": {"wait_seconds": 3}} if status == 429 else {"errors": ["error"], "error_type": "x"}
            return web.json_response(body, status=status, headers=headers)
        if request.headers.get("Api-Key") != API_KEY or not request.headers.get("Api-Username"):
            return web.json_response({"errors": [("You are not permitted to view the requested resource. The API "
                                                  "username or key is invalid.")], "error_type": "invalid_access"},
                                     status=403)
        if self.malformed_next:
            self.malformed_next -= 1  # a response cut off in transit
            return web.Response(text='{"latest_posts": [{"id": 12', content_type="application/json")
        return await handler(request)

    async def latest(self, request: web.Request) -> web.Response:
        """Regular posts newest first, as ``LatestPostsQuery`` lists them: none deleted by staff (an
        author's deletion stays listed, ``user_deleted``, until Discourse deletes it a day later), none
        hidden, none of another ``post_type`` than regular (a staff whisper is 4), no private message."""
        before = int(request.query.get("before") or 10**12)
        shown = sorted((p for p in self.posts if not p.get("deleted_at") and not p.get("hidden")
                        and p["topic_id"] not in self.deleted_topics and p.get("post_type", 1) == 1
                        and p.get("topic_archetype") != "private_message"),
                       key=lambda p: -p["id"])
        return web.json_response({"latest_posts": [p for p in shown if p["id"] < before][:self.page_size]})

    async def show(self, request: web.Request) -> web.Response:
        """``GET /posts/{id}.json``: the post without its topic's title (``add_title`` is for lists); a
        deleted post, or any post of a deleted topic, is a 404 unless the API user is staff (who sees
        a reply of a deleted topic as it is: nothing in it says its topic is deleted)."""
        pid = int(request.match_info["id"])
        for p in self.posts:
            if p["id"] == pid and (self.staff or not (p.get("deleted_at") or p["topic_id"] in self.deleted_topics)):
                return web.json_response({k: v for k, v in p.items() if k not in ("topic_title", "topic_html_title")})
        return web.json_response(NOT_FOUND, status=404)

    def find(self, topic_id: int, number: int) -> dict:
        return next(p for p in self.posts if (p["topic_id"], p["post_number"]) == (topic_id, number))

    def edit(self, p: dict, raw: str, at: str = "2026-11-20T09:00:00.000Z", grace: bool = False) -> dict:
        """An edit; within the grace period (five minutes after the last one) the version stays."""
        p.update(raw=raw, cooked=f"<p>{raw}</p>", updated_at=at, version=p["version"] + (0 if grace else 1))
        return p

    def destroy(self, p: dict, by_author: bool = False, at: str = "2026-11-20T10:00:00.000Z") -> dict:
        """Staff delete at once (``deleted_at``); an author's deletion replaces the words and sets
        ``user_deleted``, ``deleted_at`` coming a day later unless the author recovers it."""
        if by_author:
            self.withdrawn[p["id"]] = (p["raw"], p["cooked"])
            self.edit(p, BY_AUTHOR, at)
            p["user_deleted"] = True
        else:
            p.update(deleted_at=at, updated_at=at)
        return p

    def recover(self, p: dict, at: str = "2026-11-20T11:00:00.000Z") -> dict:
        if p["id"] in self.withdrawn:
            raw, _ = self.withdrawn.pop(p["id"])
            self.edit(p, raw, at)
        p.update(deleted_at=None, user_deleted=False, updated_at=at)
        return p

    def destroy_topic(self, topic_id: int, at: str = "2026-11-20T10:00:00.000Z") -> dict:
        """A moderator deletes a topic: the topic and its first post get ``deleted_at``, its other posts
        nothing of their own. Returns the ``topic_destroyed`` webhook's topic."""
        self.destroy(self.find(topic_id, 1), at=at)
        self.deleted_topics.add(topic_id)
        return topic(topic_id, deleted_at=at, deleted_by=MODERATOR, **self._counts(topic_id))

    def recover_topic(self, topic_id: int, at: str = "2026-11-20T11:00:00.000Z") -> dict:
        """The topic and its first post back. Returns the ``topic_recovered`` webhook's topic (no
        time in it: ``deleted_at`` is null again)."""
        self.recover(self.find(topic_id, 1), at=at)
        self.deleted_topics.discard(topic_id)
        return topic(topic_id, **self._counts(topic_id))

    def _counts(self, topic_id: int) -> dict:
        numbers = [p["post_number"] for p in self.posts if p["topic_id"] == topic_id]
        return {"posts_count": len(numbers), "reply_count": len(numbers) - 1, "highest_post_number": max(numbers)}

    async def create(self, request: web.Request) -> web.Response:
        """``POST /posts.json``: a reply takes its topic's next number; a private message starts a
        topic of its own (its first post). The post joins the forum, as the API user's (id 2)."""
        body = await request.json()
        self.created.append(body)
        if body.get("archetype") == "private_message":
            topic, number, archetype = 900 + len(self.created), 1, "private_message"
        else:
            topic, archetype = body["topic_id"], "regular"
            number = 1 + max((p["post_number"] for p in self.posts if p["topic_id"] == topic), default=0)
        made = post(5000 + len(self.created), topic_id=topic, number=number, raw=body["raw"], archetype=archetype,
                    reply_to=body.get("reply_to_post_number"), username="acme_support", user_id=2)
        self.posts.append(made)
        return web.json_response(made)

    async def by_number(self, request: web.Request) -> web.Response:
        topic, number = int(request.match_info["topic"]), int(request.match_info["number"])
        for p in self.posts:
            if p["topic_id"] == topic and p["post_number"] == number:
                return web.json_response(p)
        return web.json_response(NOT_FOUND, status=404)

    def by_id(self, pid: Any) -> dict | None:
        return next((p for p in self.posts if str(p["id"]) == str(pid)), None)

    async def post_action(self, request: web.Request) -> web.Response:
        """``POST /post_actions.json``: a flag; ``take_action`` (staff) hides the post at once. Refused
        (403) for a hidden post, or one this user flagged already (``action_already_performed``)."""
        body = await request.json()
        p = self.by_id(body["id"])
        if p is None:
            return web.json_response(NOT_FOUND, status=404)
        if p["id"] in self.flagged:
            return web.json_response(ALREADY_FLAGGED, status=403)
        if p.get("hidden"):
            return web.json_response(CANNOT_FLAG, status=403)  # "Hidden posts can't be flagged"
        self.actions.append(("flag", str(body["id"]), body))
        self.flagged.add(p["id"])
        if body.get("take_action"):
            p["hidden"] = True
        return web.json_response(p)

    async def unhide(self, request: web.Request) -> web.Response:
        """``PUT /posts/{id}/unhide``: ``can_unhide?`` needs the post hidden, else InvalidAccess."""
        p = self.by_id(request.match_info["id"])
        if p is None:
            return web.json_response(NOT_FOUND, status=404)
        if not p.get("hidden"):
            return web.json_response(INVALID_ACCESS, status=403)
        self.actions.append(("unhide", request.match_info["id"], None))
        p["hidden"] = False
        return web.Response()  # render body: nil

    async def delete(self, request: web.Request) -> web.Response:
        """``DELETE /posts/{id}.json``: ``can_delete_post?`` refuses a topic's first post (its topic is
        deleted instead); staff delete at once."""
        p = self.by_id(request.match_info["id"])
        if p is None:
            return web.json_response(NOT_FOUND, status=404)
        if p["post_number"] == 1:
            return web.json_response(INVALID_ACCESS, status=403)
        self.actions.append(("delete", request.match_info["id"], None))
        self.destroy(p)
        return web.Response()

    async def delete_topic(self, request: web.Request) -> web.Response:
        """``DELETE /t/{id}.json``: the topic and its first post deleted; one already deleted (or none)
        fails ``can_delete_topic?``, which ``TopicsController#destroy`` answers with a 422."""
        tid = int(request.match_info["id"])
        if tid in self.deleted_topics or not any(p["topic_id"] == tid for p in self.posts):
            return web.json_response(DELETE_TOPIC_FAILED, status=422)
        self.actions.append(("delete_topic", str(tid), None))
        self.destroy_topic(tid)
        return web.Response()

    async def topic_status(self, request: web.Request) -> web.Response:
        """``PUT /t/{id}/status`` (``status``, ``enabled`` required): a missing or deleted topic is
        InvalidAccess; closing a closed topic changes nothing and answers as any other."""
        tid, form = int(request.match_info["id"]), dict(await request.post())
        for name in ("status", "enabled"):
            if not form.get(name):
                return web.json_response({"errors": [f"param is missing or the value is empty: {name}"],
                                          "error_type": "invalid_parameters"}, status=400)
        if tid in self.deleted_topics or not any(p["topic_id"] == tid for p in self.posts):
            return web.json_response(INVALID_ACCESS, status=403)
        self.actions.append(("status", str(tid), form))
        if form["status"] == "closed":
            (self.closed.add if form["enabled"] == "true" else self.closed.discard)(tid)
        return web.json_response({"success": "OK", "topic_status_update": None})

    async def put(self, request: web.Request) -> web.Response:
        self.actions.append((request.match_info["what"], request.match_info["id"], dict(await request.post())))
        return web.json_response({"success": "OK"})

    async def current(self, request: web.Request) -> web.Response:
        """``GET /session/current.json``: the API user (the key was checked on the way in)."""
        return web.json_response({"current_user": {"id": 2, "username": request.headers["Api-Username"],
                                                   "admin": True, "moderator": True, "staff": True}})

    async def suspend(self, request: web.Request) -> web.Response:
        """``PUT /admin/users/{id}/suspend.json`` as Discourse answers it (403 / 404 / 409 / 200)."""
        uid, body = int(request.match_info["id"]), await request.json()
        invalid = {"errors": ["You are not permitted to view the requested resource."], "error_type": "invalid_access"}
        if not self.admin_key or uid in self.admins:
            return web.json_response(invalid, status=403)
        if uid not in {p["user_id"] for p in self.posts}:
            return web.json_response({"errors": ["The requested URL or resource could not be found."],
                                      "error_type": "not_found"}, status=404)
        if not body.get("suspend_until") or not body.get("reason"):
            return web.json_response({"errors": ["param is missing or the value is empty: reason"],
                                      "error_type": "invalid_parameters"}, status=400)
        if uid in self.suspended:
            return web.json_response({"failed": "FAILED", "message": "User was already suspended by acme_support "
                                      "1 minute ago."}, status=409)
        self.suspended[uid] = body
        return web.json_response({"suspension": {"suspend_reason": body["reason"], "full_suspend_reason":
                                  body["reason"], "suspended_till": body["suspend_until"],
                                  "suspended_at": "2026-11-20T10:00:00.000Z",
                                  "suspended_by": {"id": 2, "username": "acme_support"}}})

    async def user(self, request: web.Request) -> web.Response:
        return web.json_response({"user": {"id": 2, "username": request.match_info["username"], "admin": True,
                                           "moderator": True}})
