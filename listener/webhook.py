"""A generic signed JSON webhook: any forum, or the product's in-app help widget, posts here.

``POST /webhooks/inbound`` with headers ``X-Socialcare-Timestamp: <unix seconds>`` and
``X-Socialcare-Signature: sha256=<hex>``, the HMAC-SHA256 (key ``SOCIALCARE_WEBHOOK_SECRET``) of
``<timestamp>.<raw body>``. The body is one post or ``{"mentions": [post, ...]}`` (at most 100)::

    {"source": "help-widget", "id": "msg-123", "text": "I was charged twice",
     "created_at": "2026-11-20T08:01:02Z", "author": {"id": "u-9", "handle": "jane", "name": "Jane"},
     "thread_id": "conv-7", "in_reply_to": "msg-122", "url": "https://...", "lang": "en",
     "public": false, "event": "upsert", "edited_at": null,
     "customer": {"id": "cus_42", "plan": "family"}, "context": {"page": "/billing"}}

Order of checks, cheapest and safest first: size (413 before the body is read past the limit),
signature and timestamp (401: nothing is parsed before the signature is verified; a timestamp
older than the tolerance, or a signature seen before, is a replay), JSON (400), fields (400, naming
them; nothing is published unless every post is valid). A publish failure, or a bus or database that
does not answer within ``webhook_publish_timeout_seconds`` (under the senders' own timeouts), answers
503 with ``Retry-After`` so the sender retries; a signature counts as seen only once its request was
accepted (202), so that unchanged redelivery is let in (ingest de-duplicates by post id whatever
part of a timed-out batch was published). A copy arriving while the first is still being handled
(a sender whose own timeout is shorter than ours retried) waits for the first's answer, as long as
the first may take, and gets the same answer (202, or 503 and its retry is let in), not a 401 its
sender would take for a refusal and stop retrying on; a copy after a 202 is a replay. The customer
and context objects travel in ``raw``.

Author ids are namespaced by source (``help-widget:u-9``): two forums may both have a user "u-9".
A ``customer`` with an ``id`` (the brand's customer reference) or ``email`` links the author to that
customer record (:mod:`listener.customer_link`): the signature vouches for it. The answer says how
many were linked (``customers_linked``) when the posts named any customer.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from listener.customer_link import customer_claim, link_signed_customers
from listener.protocol import NormalizedMention
from listener.validation import in_terms_of, mention_problems, parse_time, text_problems
from service.outages import REDIS, log_failure, note_outage

log = logging.getLogger("socialcare.listener.webhook")
Publish = Callable[[list[NormalizedMention]], Awaitable[Any]]
PATH = "/webhooks/inbound"
MAX_POSTS = 100
_SOURCE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,49}$")
MAX_DEPTH = 64  # JSON nesting: no post or API body comes near it
RETRY_AFTER = "30"  # seconds, on a 503: a Redis or database restart is the usual cause


class BodyTooLarge(Exception):
    pass


class TooDeep(ValueError):
    def __init__(self) -> None:
        super().__init__(f"JSON nested more than {MAX_DEPTH} levels deep")


def loads(body: bytes | str) -> Any:
    """JSON as every intake reads it: ValueError when malformed, :class:`TooDeep` when nested past
    ``MAX_DEPTH``. A deeper document overflows the stack (RecursionError, a 500) while parsing,
    or wherever it travels next (the bus, the database, a template)."""
    try:
        value = json.loads(body)
    except RecursionError:
        raise TooDeep from None
    stack = [(value, 1)] if isinstance(value, (dict, list)) else []
    while stack:  # iterative: no stack to overflow
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise TooDeep
        children = node.values() if isinstance(node, dict) else node
        stack += [(c, depth + 1) for c in children if isinstance(c, (dict, list))]
    return value


def json_error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


async def read_limited(request: web.Request, max_bytes: int) -> bytes:
    """The raw body, refusing (before reading it all) anything over ``max_bytes``."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise BodyTooLarge
    chunks, size = [], 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > max_bytes:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def sign(secret: str, body: bytes, timestamp: str | None = None) -> str:
    """``sha256=<hex>`` over ``<timestamp>.<body>`` (or the body alone, as Discourse signs)."""
    message = (timestamp.encode() + b"." + body) if timestamp is not None else body
    return "sha256=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_ok(secret: str, body: bytes, header: str | None, timestamp: str | None = None) -> bool:
    return bool(header) and hmac.compare_digest(sign(secret, body, timestamp), header.strip())


class RefusalLog:
    """Warns of refused signatures, at most once a minute with the count since: a wrong secret on
    the sender's side is otherwise invisible here (the sender's delivery log alone shows the 401s),
    and a flood of forged requests must not flood the log."""

    def __init__(self, logger: logging.Logger, what: str, every: float = 60.0) -> None:
        self.logger, self.what, self.every = logger, what, every
        self.count, self.last = 0, -math.inf

    def refused(self, request: web.Request, why: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self.count += 1
        if now - self.last >= self.every:
            self.logger.warning("%s: refused %d request(s) (%s; last from %s): check that the sender's secret "
                                "equals ours", self.what, self.count, why, request.remote or "?")
            self.count, self.last = 0, now


class ReplayGuard:
    """Signatures seen within the tolerance window (in memory: per process)."""

    def __init__(self, tolerance: float) -> None:
        self.tolerance = tolerance
        self.seen: dict[str, float] = {}

    def fresh(self, timestamp: str | None, signature: str, now: float | None = None) -> str | None:
        """None when acceptable; otherwise why not."""
        now = time.time() if now is None else now
        try:
            ts = float(timestamp or "")
        except ValueError:
            return "missing or invalid X-Socialcare-Timestamp"
        if not math.isfinite(ts):  # NaN compares false with any window: it would never be stale
            return "missing or invalid X-Socialcare-Timestamp"
        if abs(now - ts) > self.tolerance:
            return "timestamp outside the accepted window (replayed or clock skew)"
        self.seen = {s: t for s, t in self.seen.items() if t > now} if len(self.seen) > 10_000 else self.seen
        if self.seen.get(signature, 0) > now:
            return "this request was already received (replay)"
        self.seen[signature] = now + 2 * self.tolerance
        return None

    def forget(self, signature: str) -> None:
        """The request was not accepted (a 503): its unchanged redelivery must be let in."""
        self.seen.pop(signature, None)


def _time(value: Any, field: str, problems: list[str]) -> datetime | None:
    if value in (None, ""):
        return None
    try:
        return parse_time(value)
    except ValueError as exc:  # not a string, not ISO 8601, or out of range (it would overflow later)
        problems.append(f"{field}: {exc}")
        return None


def _text(obj: dict[str, Any], key: str, where: str, problems: list[str], *, number: bool = False) -> str | None:
    """A string field (ids may be integers); None when absent. Another type is a problem, not its repr."""
    value = obj.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, str) or (number and type(value) is int):
        return str(value)
    problems.append(f"{where}.{key}: {'a string or an integer' if number else 'a string'}")
    return None


# the post's field for each mention field, to name it in problems
FIELDS = {"external_id": "id", "author_id": "author.id", "author_handle": "author.handle",
          "author_name": "author.name", "conversation_id": "thread_id", "channel": "source"}


def to_mention(item: Any, index: int, problems: list[str],
               claims: list[tuple[NormalizedMention, str | None, str | None]] | None = None
               ) -> NormalizedMention | None:
    """One post to a mention (``None`` and ``problems`` when invalid); a customer claim goes to ``claims``.
    Every string is checked here, as the database will take it: a post accepted with a 202 and then
    refused by ingest would be retried, dead-lettered and lost to its sender."""
    where = f"mentions[{index}]"
    if not isinstance(item, dict):
        problems.append(f"{where}: not an object")
        return None
    source, pid, text = item.get("source"), item.get("id"), item.get("text")
    before = len(problems)
    if not isinstance(source, str) or not _SOURCE.match(source):
        problems.append(f"{where}.source: required, lower-case letters, digits, '._-' (at most 50)")
    if not (isinstance(pid, str) or type(pid) is int) or str(pid) == "":
        problems.append(f"{where}.id: required")
    event = item.get("event", "upsert")
    if event not in ("upsert", "delete"):
        problems.append(f"{where}.event: 'upsert' or 'delete'")
    if (event == "upsert" or text is not None) and not isinstance(text, str):
        problems.append(f"{where}.text: required (a string)")
    if item.get("public") is not None and not isinstance(item["public"], bool):  # "false" is not False
        problems.append(f"{where}.public: true or false")
    author = item.get("author") or {}
    if not isinstance(author, dict):
        problems.append(f"{where}.author: an object")
        author = {}
    author_id, handle, name = (_text(author, k, f"{where}.author", problems, number=k == "id")
                               for k in ("id", "handle", "name"))
    thread, parent = (_text(item, k, where, problems, number=True) for k in ("thread_id", "in_reply_to"))
    url, lang = (_text(item, k, where, problems) for k in ("url", "lang"))
    created = _time(item.get("created_at"), f"{where}.created_at", problems)
    edited = _time(item.get("edited_at"), f"{where}.edited_at", problems)
    customer_ref, customer_email = customer_claim(item, where, problems)
    problems += text_problems(item, where)  # NUL or lone surrogates anywhere, the context included
    if len(problems) > before:
        return None
    ref = (lambda v: f"{source}:{v}" if v is not None else None)
    mention = NormalizedMention(
        platform="webhook", external_id=f"{source}:{pid}", text=text or "",
        created_at=created or datetime.now(UTC), author_id=ref(author_id), author_handle=handle,
        author_name=name, conversation_id=ref(thread) or f"{source}:{pid}", in_reply_to=ref(parent),
        url=url, lang=lang, kind="forum_post" if item.get("public") else "dm", is_public=bool(item.get("public")),
        channel=source, event=event, edited_at=edited, raw=item,
    )
    if bad := mention_problems(mention):  # what is left: lengths the columns hold
        problems += in_terms_of(bad, where, FIELDS)
        return None
    if claims is not None and (customer_ref or customer_email):
        claims.append((mention, customer_ref, customer_email))
    return mention


@dataclass(frozen=True)
class Answer:
    """A request's answer, given again to a copy of it that arrived while it was being handled."""

    status: int
    body: bytes
    content_type: str
    charset: str | None
    retry_after: str | None

    @classmethod
    def of(cls, response: web.Response) -> Answer:
        body = response.body if isinstance(response.body, bytes) else b""
        return cls(response.status, body, response.content_type, response.charset,
                   response.headers.get("Retry-After"))

    def copy(self) -> web.Response:
        response = web.Response(status=self.status, body=self.body, content_type=self.content_type,
                                charset=self.charset)
        if self.retry_after is not None:
            response.headers["Retry-After"] = self.retry_after
        return response


def unavailable() -> web.Response:
    """503 with ``Retry-After``: nothing was accepted, the unchanged redelivery will be."""
    response = json_error(503, "could not queue the posts; retry later")
    response.headers["Retry-After"] = RETRY_AFTER
    return response


async def published_within(settings: Any, work: Awaitable[object], logger: logging.Logger, what: str,
                           answer: Callable[[], web.Response] = lambda: unavailable()) -> web.Response | None:
    """Awaits ``work`` (publishing, and what must precede it) for at most
    ``webhook_publish_timeout_seconds``: None once it is done, else ``answer()`` (a 503 with
    Retry-After), logged. Not the bus's own retries (30 s): a sender's shorter timeout would drop our
    answer and retry blind, and what part was published is de-duplicated by post id on the retry. An
    outage of the database or Redis is one line per back-off (:mod:`service.outages`); anything else
    keeps its traceback, and is a 503 too: nothing was accepted, the unchanged redelivery will be."""
    wait = float(getattr(settings, "webhook_publish_timeout_seconds", 10.0))
    try:
        async with asyncio.timeout(wait):
            await work
        return None
    except TimeoutError as exc:
        note_outage(logger, REDIS, exc, f"{what}: not taken within {wait:g} s; answered 503")
    except Exception as exc:
        log_failure(logger, exc, "%s failed; answered 503", what)
    return answer()


def routes(settings: Any, publish: Publish, *, tolerance: float = 300.0, db: Any = None) -> list[web.RouteDef]:
    """The inbound webhook route; none when ``SOCIALCARE_WEBHOOK_SECRET`` is unset (no unsigned intake).
    ``db``: where signed customer claims are linked (without it they only travel in ``raw``)."""
    secret = settings.secret("webhook_secret")
    if not secret:
        return []
    guard, limit = ReplayGuard(tolerance), settings.webhook_max_bytes
    in_flight: dict[str, asyncio.Future[Answer | None]] = {}  # signature -> its first copy's answer, to come
    wait = float(getattr(settings, "webhook_publish_timeout_seconds", 10.0))  # a copy's wait for the first
    refusals = RefusalLog(log, f"inbound webhook {PATH}")

    async def inbound(request: web.Request) -> web.Response:
        try:
            body = await read_limited(request, limit)
        except BodyTooLarge:
            return json_error(413, f"body larger than {limit} bytes")
        timestamp = request.headers.get("X-Socialcare-Timestamp")
        signature = request.headers.get("X-Socialcare-Signature", "")
        if not signature_ok(secret, body, signature, timestamp or ""):
            refusals.refused(request, "invalid signature")
            return json_error(401, "invalid signature")
        while (first := in_flight.get(signature)) is not None:  # the sender's retry, the first not answered yet
            try:
                answer = await asyncio.wait_for(asyncio.shield(first), wait)
            except TimeoutError:
                return unavailable()
            if answer is not None:
                return answer.copy()
            # the first ended without an answer (cancelled, or failed): this copy is handled itself
        if (why := guard.fresh(timestamp, signature)) is not None:
            refusals.refused(request, why)
            return json_error(401, why)
        done: asyncio.Future[Answer | None] = asyncio.get_running_loop().create_future()
        in_flight[signature] = done
        answer = None
        try:  # seen while in flight (a copy waits for this answer); forgotten unless accepted
            response = await handle(body)
            answer = Answer.of(response)
            return response
        finally:
            del in_flight[signature]
            if answer is None or answer.status != 202:
                guard.forget(signature)
            done.set_result(answer)

    async def handle(body: bytes) -> web.Response:
        try:
            payload = loads(body)
        except TooDeep as exc:
            return json_error(400, str(exc))
        except ValueError:
            return json_error(400, "malformed JSON")
        items = payload.get("mentions") if isinstance(payload, dict) and "mentions" in payload else [payload]
        if not isinstance(items, list) or not 0 < len(items) <= MAX_POSTS:
            return json_error(400, f"'mentions' must be a list of 1 to {MAX_POSTS} posts")
        problems: list[str] = []
        claims: list[tuple[NormalizedMention, str | None, str | None]] = []
        mentions = [to_mention(item, i, problems, claims) for i, item in enumerate(items)]
        if problems:
            return json_error(400, "invalid posts", problems=problems[:20])
        linked = 0

        async def link_and_publish() -> None:
            nonlocal linked
            if claims and db is not None:
                linked = await link_signed_customers(db, claims, settings)
            await publish([m for m in mentions if m is not None])  # after the link: ingest finds it

        if (refused := await published_within(settings, link_and_publish(), log,
                                              f"inbound webhook: {len(mentions)} mention(s)")) is not None:
            return refused
        answer = {"accepted": len(mentions), **({"customers_linked": linked} if claims else {})}
        return web.json_response(answer, status=202)

    return [web.post(PATH, inbound)]
