"""The customer's private channel: secure link → identity verification → 1:1 chat.

The customer never signs in to the console. A secure link starts one session of their own: a
random cookie (``sc_secure``, HttpOnly, SameSite=Strict, Secure unless disabled for local http,
path ``/secure``) whose hash names a CustomerSession bound to one case. No page takes a case id,
so a customer can only ever reach the case their link was for. Every form carries a CSRF token
(an HMAC of the session, or of the link before a session exists), checked in constant time. The
chat socket lives only as long as its session: ended, expired, revoked or resolved, it is told
"closed" and hung up (:class:`escalation.chat.ChatHub`).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from aiohttp import WSMsgType, web

from console.auth import AUTH, sign_in_liveness
from console.keys import RUNTIME
from console.render import render
from escalation import chat, sla, verification
from escalation.links import (
    TOKEN_PATTERN,
    live_sessions,
    session_for_cookie,
    session_liveness,
    start_session,
    usable_link,
)
from escalation.ratelimit import RateLimiter, SharedRateLimiter
from escalation.verifiers import Verifier, build_verifier
from models import Case, Customer, CustomerSession
from models.base import utcnow
from service.dispatch import Dispatcher, run_pacer

log = logging.getLogger("socialcare.secure")
COOKIE = "sc_secure"
COOKIE_PATH = "/secure"
PRIVATE_HEADERS = {"Cache-Control": "no-store", "X-Robots-Tag": "noindex, nofollow"}
PACER_INTERVAL_S = 5.0
SESSION_SWEEP_S = 30.0  # how soon an idle chat socket notices its session expired or was ended elsewhere


@dataclass
class EscalationWeb:
    """What the customer pages and the agent case views share in one web process."""

    verifier: Verifier
    per_ip: RateLimiter
    per_case: SharedRateLimiter  # in the database: holds across web processes
    hub: chat.ChatHub = field(default_factory=chat.ChatHub)
    background: set[asyncio.Task] = field(default_factory=set)

    def spawn(self, coro: Any, what: str) -> None:
        """Run ``coro`` after the response; failures are logged without personal data."""
        task = asyncio.create_task(coro)
        self.background.add(task)

        def done(t: asyncio.Task) -> None:
            self.background.discard(t)
            if not t.cancelled() and t.exception() is not None:
                log.warning("%s failed: %s", what, type(t.exception()).__name__)

        task.add_done_callback(done)


ESCALATION = web.AppKey("escalation", EscalationWeb)


async def escalation_context(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: the shared state, and the background loops beside the web app: the SLA checker,
    the pacer that releases incident replies queued beyond a channel's rate, and the sweep that hangs
    up chat sockets whose customer session or agent's sign-in ended elsewhere."""
    rt = app[RUNTIME]
    settings = rt.settings
    state = EscalationWeb(verifier=build_verifier(settings),
                          per_ip=RateLimiter(settings.secure_rate_per_ip_per_minute, 60),
                          per_case=SharedRateLimiter(rt.db, settings.secure_rate_per_case_per_minute, 60),
                          hub=chat.ChatHub(session_liveness(rt.db), sign_in_liveness(rt.db, "agent")))
    app[ESCALATION] = state
    stop = asyncio.Event()
    checker = asyncio.create_task(sla.run_periodically(rt.db, settings.sla_check_interval_seconds, stop),
                                  name="sla-checker")
    dispatcher = Dispatcher.for_settings(rt.db, rt.connectors, settings)
    pacer = asyncio.create_task(run_pacer(dispatcher, PACER_INTERVAL_S, stop), name="broadcast-pacer")
    sweeper = asyncio.create_task(state.hub.sweep_every(SESSION_SWEEP_S, stop), name="chat-socket-sweeper")
    yield
    stop.set()
    for case_id in state.hub.case_ids():
        await state.hub.close_case(case_id)
    await asyncio.gather(checker, pacer, sweeper, *state.background, return_exceptions=True)


def install_verifier(app: web.Application, verifier: Verifier) -> None:
    """Swap the verifier (another channel than e-mail); call after start-up."""
    app[ESCALATION].verifier = verifier


# --- helpers -------------------------------------------------------------------------------
def _mac(request: web.Request, purpose: str, value: str) -> str:
    return hmac.new(request.app[AUTH].secret, f"{purpose}:{value}".encode(), hashlib.sha256).hexdigest()


def _csrf_ok(request: web.Request, form: Any, purpose: str, value: str) -> bool:
    given = str(form.get("csrf_token", "")) if form is not None else ""
    return bool(given) and hmac.compare_digest(_mac(request, purpose, value), given)


def _page(request: web.Request, name: str, status: int = 200, **ctx: Any) -> web.Response:
    response = render(request, name, status=status, **ctx)
    response.headers.update(PRIVATE_HEADERS)
    return response


def _limited(request: web.Request) -> bool:
    return not request.app[ESCALATION].per_ip.hit(("ip", request.remote))


def same_origin(request: web.Request) -> bool:
    """Websocket handshakes from browsers carry Origin; it must be this site (no cross-site hijack)."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    allowed = {f"{request.scheme}://{request.host}"}
    base = urlsplit(request.app[RUNTIME].settings.public_base_url)
    allowed.add(f"{base.scheme}://{base.netloc}")
    return origin in allowed


async def _current(request: web.Request, session: Any) -> tuple[CustomerSession, Case] | None:
    cs = await session_for_cookie(session, request.cookies.get(COOKIE))
    if cs is None:
        return None
    case = await session.get(Case, cs.case_id)
    if case is None or case.status == "resolved":
        return None
    return cs, case


def _ended(request: web.Request) -> web.Response:
    response = _page(request, "secure_message.html", status=403, title="Your secure session has ended",
                     message="Please use the newest link we sent you, or ask us for a new one in a direct message.")
    response.del_cookie(COOKIE, path=COOKIE_PATH)
    return response


def _too_many(request: web.Request) -> web.Response:
    return _page(request, "secure_message.html", status=429, title="Please slow down",
                 message="Too many requests. Wait a minute and try again.")


# --- the link ------------------------------------------------------------------------------
async def link_page(request: web.Request) -> web.Response:
    """Opening a link only shows a button: link previews and scanners must not use it up."""
    if _limited(request):
        return _too_many(request)
    token = request.match_info["token"]
    async with request.app[RUNTIME].db.session() as session:
        link = await usable_link(session, token)
    if link is None:
        return _invalid_link(request)
    return _page(request, "secure_start.html", token=token, csrf=_mac(request, "secure-start", link.token_hash))


def _invalid_link(request: web.Request) -> web.Response:
    # one answer for unknown, expired, used, revoked and closed: nothing to learn by probing
    return _page(request, "secure_message.html", status=404, title="This link can't be used",
                 message="It has expired or was already used. Ask us for a new one in a direct message.")


async def link_start(request: web.Request) -> web.Response:
    if _limited(request):
        return _too_many(request)
    token = request.match_info["token"]
    form = await request.post()
    rt = request.app[RUNTIME]
    async with rt.db.session() as session:
        link = await usable_link(session, token)
        if link is None:
            return _invalid_link(request)
        if not _csrf_ok(request, form, "secure-start", link.token_hash):
            raise web.HTTPForbidden(reason="missing or wrong CSRF token")
        started = await start_session(session, link, rt.settings)
        if started is None:
            return _invalid_link(request)
        await session.commit()
    _, value = started
    response = web.Response(status=303, headers={"Location": "/secure/verify"})
    response.set_cookie(COOKIE, value, max_age=int(rt.settings.secure_session_hours * 3600), httponly=True,
                        secure=rt.settings.cookie_secure, samesite="Strict", path=COOKIE_PATH)
    response.headers.update(PRIVATE_HEADERS)
    return response


# --- verification --------------------------------------------------------------------------
async def _verify_page(request: web.Request, session: Any, cs: CustomerSession, case: Case, *, status: int = 200,
                       notice: str | None = None, error: str | None = None, hint: str | None = None) -> web.Response:
    verifier = request.app[ESCALATION].verifier
    known = case.customer_id is not None
    if known and hint is None:
        customer = await session.get(Customer, case.customer_id)
        hint = verifier.hint(customer) if customer is not None and verifier.can_verify(customer) else None
    return _page(request, "secure_verify.html", status=status, known=known, hint=hint, code_pending=cs.code_hash is not None,
                 notice=notice, error=error, csrf=_mac(request, "secure", cs.session_hash))


async def verify_page(request: web.Request) -> web.Response:
    if _limited(request):
        return _too_many(request)
    async with request.app[RUNTIME].db.session() as session:
        current = await _current(request, session)
        if current is None:
            return _ended(request)
        cs, case = current
        if cs.verified_at is not None:
            raise web.HTTPSeeOther("/secure/chat")
        return await _verify_page(request, session, cs, case)


CODE_NOTICES = {
    verification.THROTTLED: (429, "You've asked for several codes already. Use the newest one, or ask us for a new link."),
    verification.LOCKED: (429, "Too many wrong codes. Please wait a few minutes before trying again."),
    verification.UNAVAILABLE: (200, "We can't verify you online. An agent will contact you another way."),
    verification.ENDED: (403, ""),
}


async def _code_form(request: web.Request, session: Any) -> tuple[Any, CustomerSession, Case] | web.Response:
    """What both code forms check before anything else, in this order: a live session, its CSRF
    token, the case's own rate (a code is an attempt at the case, from whatever address). The form,
    the session and the case, or the response refusing them."""
    form = await request.post()
    current = await _current(request, session)
    if current is None:
        return _ended(request)
    cs, case = current
    if not _csrf_ok(request, form, "secure", cs.session_hash):
        raise web.HTTPForbidden(reason="missing or wrong CSRF token")
    if not await request.app[ESCALATION].per_case.hit(f"case:{case.id}"):
        return _too_many(request)
    return form, cs, case


async def send_code(request: web.Request) -> web.Response:
    if _limited(request):
        return _too_many(request)
    rt, state = request.app[RUNTIME], request.app[ESCALATION]
    async with rt.db.session() as session:
        if isinstance(checked := await _code_form(request, session), web.Response):
            return checked
        form, cs, case = checked
        result = await verification.request_code(session, cs, case, state.verifier, rt.settings,
                                                 email=str(form.get("email", "")))
        await session.commit()
        if result.outcome == verification.VERIFIED:
            raise web.HTTPSeeOther("/secure/chat")
        if result.outcome == verification.ENDED:
            return _ended(request)
        if result.send is not None:
            state.spawn(result.send(), "sending a verification code")
        if result.outcome == verification.SENT:
            notice = (f"We've sent a code to {result.hint}." if result.hint else
                      "If that address belongs to an account, we've sent a code to it.")
            return await _verify_page(request, session, cs, case, notice=notice, hint=result.hint)
        status, message = CODE_NOTICES[result.outcome]
        return await _verify_page(request, session, cs, case, status=status, error=message)


async def check_code(request: web.Request) -> web.Response:
    if _limited(request):
        return _too_many(request)
    rt, state = request.app[RUNTIME], request.app[ESCALATION]
    async with rt.db.session() as session:
        if isinstance(checked := await _code_form(request, session), web.Response):
            return checked
        form, cs, case = checked
        outcome = await verification.check_code(session, cs, case, str(form.get("code", ""))[:20], rt.settings)
        await session.commit()
        if outcome == verification.VERIFIED:
            await state.hub.publish(case.id, {"type": "verified"})
            raise web.HTTPSeeOther("/secure/chat")
        if outcome == verification.ENDED:
            return _ended(request)
        messages = {verification.WRONG: (400, "That code is not right. Check the e-mail and try again."),
                    verification.EXPIRED: (400, "That code has expired. Ask for a new one."),
                    verification.NO_CODE: (400, "Ask for a code first."),
                    verification.LOCKED: CODE_NOTICES[verification.LOCKED]}
        status, message = messages[outcome]
        return await _verify_page(request, session, cs, case, status=status, error=message)


# --- chat ----------------------------------------------------------------------------------
async def chat_page(request: web.Request) -> web.Response:
    if _limited(request):
        return _too_many(request)
    async with request.app[RUNTIME].db.session() as session:
        current = await _current(request, session)
        if current is None:
            return _ended(request)
        cs, case = current
        if cs.verified_at is None:
            raise web.HTTPSeeOther("/secure/verify")
        messages = await chat.history(session, case.id)
    return _page(request, "secure_chat.html", messages=messages, csrf=_mac(request, "secure", cs.session_hash))


async def chat_socket(request: web.Request) -> web.StreamResponse:
    if _limited(request):
        raise web.HTTPTooManyRequests()
    if not same_origin(request):
        raise web.HTTPForbidden(reason="cross-site websocket")
    rt = request.app[RUNTIME]
    async with rt.db.session() as session:
        current = await _current(request, session)
        if current is None or current[0].verified_at is None:
            raise web.HTTPForbidden(reason="no verified session")
        cs, case = current
        past = [chat.message_json(m) for m in await chat.history(session, case.id)]
    case_id, session_id = case.id, cs.id
    return await serve_chat(request, case_id, past,
                            lambda ws, data: _customer_message(request, ws, case_id, session_id, data),
                            session_id=session_id)


async def serve_chat(request: web.Request, case_id: int, past: list[dict[str, Any]],
                     on_text: Callable[[web.WebSocketResponse, str], Awaitable[None]],
                     session_id: int | None = None,
                     agent: tuple[int, int] | None = None) -> web.WebSocketResponse:
    """Either side of a case's chat on a websocket (the customer's here, with its ``session_id``;
    the agent's in console.cases, with its user id and session epoch): the history first, then each
    text frame to ``on_text``; the case's hub sends both sides what either posts while the socket is
    open, and hangs it up once what signed it in no longer does."""
    hub = request.app[ESCALATION].hub
    ws = web.WebSocketResponse(heartbeat=30, max_msg_size=64 * 1024)
    await ws.prepare(request)
    hub.join(case_id, ws, session_id, agent=agent)
    try:
        await ws.send_json({"type": "history", "messages": past})
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                await on_text(ws, msg.data)
    finally:
        hub.leave(case_id, ws)
    return ws


async def _customer_message(request: web.Request, ws: web.WebSocketResponse, case_id: int, session_id: int,
                            data: str) -> None:
    rt, state = request.app[RUNTIME], request.app[ESCALATION]
    if not await state.per_case.hit(f"case:{case_id}"):
        await ws.send_json({"type": "error", "error": "Too many messages; wait a moment.",
                            "ref": chat.frame_ref(data)})
        return
    body, ref = chat.parse_frame(data), chat.frame_ref(data)
    async with rt.db.session() as session:
        case = await session.get(Case, case_id)
        if case is None or session_id not in await live_sessions(session, {session_id}):
            await ws.send_json({"type": "closed"})
            await ws.close()
            return
        try:
            message = await chat.post(session, case, "customer", body)
        except chat.ChatError as exc:
            await ws.send_json({"type": "error", "error": str(exc), "ref": ref})
            return
        await session.commit()
        event = {"type": "message", "message": chat.message_json(message)}
    await ws.send_json({"type": "sent", "ref": ref, "id": message.id})  # stored: the sender may clear its box
    await state.hub.publish(case_id, event)


async def end_session(request: web.Request) -> web.Response:
    form = await request.post()
    async with request.app[RUNTIME].db.session() as session:
        current = await _current(request, session)
        if current is not None:
            cs, _ = current
            if not _csrf_ok(request, form, "secure", cs.session_hash):
                raise web.HTTPForbidden(reason="missing or wrong CSRF token")
            cs.revoked_at = utcnow()
            await session.commit()
            await request.app[ESCALATION].hub.end_session(cs.id)
    response = _page(request, "secure_message.html", title="Signed out",
                     message="You have left the secure chat. Thank you.")
    response.del_cookie(COOKIE, path=COOKIE_PATH)
    return response


def routes() -> list[web.RouteDef]:
    return [
        web.get("/secure/verify", verify_page),
        web.post("/secure/code", send_code),
        web.post("/secure/verify", check_code),
        web.get("/secure/chat", chat_page),
        web.get("/secure/ws", chat_socket),
        web.post("/secure/end", end_session),
        web.get(f"/secure/{{token:{TOKEN_PATTERN}}}", link_page),
        web.post(f"/secure/{{token:{TOKEN_PATTERN}}}", link_start),
    ]
