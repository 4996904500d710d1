"""Login and logout pages, and the demo account of the embedded mode.

Signing in costs the same whether the name is a user's or not, is refused for a while after too many
failures, and audits a name only when it is a user's: what someone typed in the name field may well
be their password. Failures are limited as OWASP's device cookies have it: a browser where the user
signed in before shows a signed device cookie and has a limit of its own, so someone who knows a
user name (or shares the proxy's address) cannot lock the user out of their own browser; every
other attempt is limited per user name and per client address. Signing out needs the form's CSRF
token (another site must not sign people out) and ends the user's sessions everywhere.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import logging
import math
import os
import secrets
import time
from collections.abc import Callable, Hashable
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import func, select
from yarl import URL

from console.auth import AUTH, create_user, end_sessions, verify_nobody, verify_password
from console.forms import read_form
from console.keys import DEMO_LOGIN, PRINCIPAL, RUNTIME
from console.navigation import home_for
from console.render import render
from console.secure import ESCALATION
from escalation.ratelimit import RateLimiter, SharedRateLimiter
from models import User
from service.audit import record

DEMO_USER = "demo"
THROTTLE_SECONDS = 15 * 60
NAME_FAILURES = 10  # failed sign-ins per user name and window, then that name is refused until it ends
ADDRESS_FAILURES = 50  # per client address (behind a reverse proxy the proxy's, which everyone shares)
COUNTER_PREFIX = "login:"  # the sign-in counters' keys in rate_counters
DEVICE_FAILURES = 10  # per device cookie, instead of the two above, then only that cookie is refused
DEVICE_MAX_AGE = 90 * 24 * 3600
DEVICE_COOKIE_PREFIX = "sc_device_"
log = logging.getLogger("socialcare.web")
FORWARDING_HEADERS = ("Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Real-IP")


async def ensure_demo_account(db: Any, var_dir: Any) -> tuple[str, str] | None:
    """On a database without users, the demo mode creates an admin ``demo`` with a random password,
    kept in ``var/demo-password`` (owner-only) and shown on the login page to a local browser. On one
    with users (added before the first run) it says so, and how to get an admin."""
    async with db.session() as session:
        if await session.scalar(select(func.count()).select_from(User)):
            path = var_dir / "demo-password"
            if path.exists():
                return DEMO_USER, path.read_text().strip()
            log.warning("demo mode: no admin %r was created, the database has users already; sign in as one of "
                        "them, or add an admin: socialcare users add NAME --role admin", DEMO_USER)
            return None
        password = secrets.token_urlsafe(12)
        await create_user(session, DEMO_USER, password, "admin")
        record(session, "system", "user.created", "user", DEMO_USER, reason="demo mode", role="admin")
        await session.commit()
    var_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(var_dir / "demo-password", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(password)
    return DEMO_USER, password


def _loopback(host: str | None) -> bool:
    try:
        ip = ipaddress.ip_address((host or "").strip("[]"))
    except ValueError:
        return host == "localhost"
    return ip.is_loopback or bool(getattr(ip, "ipv4_mapped", None) and ip.ipv4_mapped.is_loopback)


def local_demo(request: web.Request) -> tuple[str, str] | None:
    """The demo's sign-in, for a browser on this machine only: the peer is loopback, no proxy says it
    forwarded the request (the bind address cannot tell: a reverse proxy on the same host is loopback
    too), and the address typed is this machine's (a page on a rebinding DNS name is not)."""
    demo = request.app.get(DEMO_LOGIN)
    if demo is None or any(h in request.headers for h in FORWARDING_HEADERS):
        return None
    try:
        typed = URL(f"http://{request.host}").host
    except ValueError:
        return None
    return demo if _loopback(request.remote) and _loopback(typed) else None


def _next(request: web.Request, form: Any = None) -> str:
    """Where the person asked to go, or "" for their role's own page. Only a path on this site: judged
    as the Location header will carry it (yarl drops tabs and newlines, so ``/\\t/evil.example`` would
    become ``//evil.example``), and refused outright with a space, control character or backslash."""
    target = str((form or {}).get("next") or request.query.get("next") or "")
    if not target.startswith("/") or "\\" in target or any(c <= " " or c == "\x7f" for c in target):
        return ""
    try:
        sent = urlsplit(str(URL(target)))
    except ValueError:
        return ""
    return target if not sent.scheme and not sent.netloc and sent.path.startswith("/") else ""


class _Attempts(RateLimiter):
    """Sign-in attempts per client address in this process: a key at its ``limit`` is refused until its
    window ends, before any password is checked (a right one included, or the refusal would tell
    when a guess was right)."""

    def wait(self, key: Hashable) -> float:
        """Seconds before ``key`` may try again (0: now)."""
        start, count = self._counts.get(key, (0.0, 0))
        left = self.window - (self.clock() - start)
        return left if count >= self.limit and left > 0 else 0.0

    def refund(self, key: Hashable) -> None:
        start, count = self._counts.get(key, (0.0, 0))
        if count:
            self._counts[key] = (start, count - 1)


def device_cookie_name(user_id: int) -> str:
    """One device cookie per user in a browser: agents sharing a desk keep theirs side by side."""
    return f"{DEVICE_COOKIE_PREFIX}{user_id}"


def _devices(request: web.Request) -> URLSafeTimedSerializer:
    """Device cookies are signed with the console's secret, under a salt of their own: a session cookie
    is no device cookie, nor the other way round."""
    return URLSafeTimedSerializer(request.app[AUTH].secret, salt="socialcare-device")


def presented_device(request: web.Request, user: User | None) -> str | None:
    """The nonce of the device cookie this browser shows for ``user``, if it is one the console issued
    to that user less than DEVICE_MAX_AGE ago; a forged, tampered, expired or other user's cookie is
    no cookie."""
    value = request.cookies.get(device_cookie_name(user.id)) if user is not None else None
    if not value:
        return None
    try:
        data = _devices(request).loads(value, max_age=DEVICE_MAX_AGE)  # SignatureExpired is a BadSignature
    except BadSignature:
        return None
    nonce = data.get("n") if isinstance(data, dict) and data.get("uid") == user.id else None
    return nonce if isinstance(nonce, str) and nonce else None


def issue_device(request: web.Request, response: web.StreamResponse, user: User) -> None:
    """A fresh device cookie (new nonce, new expiry) after each good sign-in. Sent to ``/login`` only,
    HttpOnly, Lax (the sign-in form is this site's own), Secure as the session cookie is."""
    value = _devices(request).dumps({"uid": user.id, "n": secrets.token_urlsafe(16)})
    response.set_cookie(device_cookie_name(user.id), value, max_age=DEVICE_MAX_AGE, path="/login",
                        httponly=True, secure=request.app[AUTH].cookie_secure, samesite="Lax")


class LoginThrottle:
    """Failed sign-ins. Per user name and per device cookie in the database (``rate_counters``), so the
    limits hold however many web processes share the sign-ins; per client address in this process's
    memory (an address is personal data, and the flood that limit stops arrives at one door). An
    attempt from a browser that shows a valid device cookie for the name counts against that cookie
    only (and is refused only while that cookie is locked out); any other attempt counts per user name
    and per client address. Each is counted before its password is checked, atomically, so attempts
    sent all at once cannot slip past a limit together; a good one takes its count back. A key's window
    of ``THROTTLE_SECONDS`` starts at its first failure."""

    def __init__(self, secret: bytes, clock: Callable[[], float] = time.time) -> None:
        self.secret, self.clock = secret, clock
        self.by_address = _Attempts(ADDRESS_FAILURES, THROTTLE_SECONDS, clock)
        self.noted = RateLimiter(1, THROTTLE_SECONDS, clock)  # one audit entry per refused key and window
        self.pruned = -math.inf  # when this process last deleted the ended windows' counters

    def _shared(self, db: Any, limit: int) -> SharedRateLimiter:
        return SharedRateLimiter(db, limit, THROTTLE_SECONDS, self.clock)

    def _key(self, kind: str, value: str) -> str:
        """A counter's key in the database: keyed with the console's secret (every web process has
        it), as a name typed there may be a password pasted into the wrong field, and a device nonce
        is a credential of sorts: a plain hash of either could be reversed from a dictionary."""
        mac = hmac.new(self.secret, f"login:{kind}:{value}".encode(), hashlib.sha256).hexdigest()
        return f"{COUNTER_PREFIX}{kind}:{mac}"

    async def attempt(self, db: Any, name: str, address: str,
                      device: str | None = None) -> tuple[str, float, bool] | None:
        """Count this attempt, or say why it is refused: (which limit, seconds to wait, whether to
        audit the refusal). ``device``: the nonce of a valid device cookie for ``name``. The address
        is counted before the first await, so attempts sent together are all counted there."""
        if device is None:
            if wait := self.by_address.wait(address):
                return "address", wait, self.noted.hit(("address", address))
            self.by_address.hit(address)
        await self._prune(db)
        if device is not None:
            return await self._counted(self._shared(db, DEVICE_FAILURES), "device", device)
        if (refused := await self._counted(self._shared(db, NAME_FAILURES), "user", name)) is not None:
            self.by_address.refund(address)  # refused by the name's limit: not an address's failure
            return refused
        return None

    async def _counted(self, limiter: SharedRateLimiter, kind: str, value: str) -> tuple[str, float, bool] | None:
        key = self._key(kind, value)
        hits, left = await limiter.count(key)
        return None if hits <= limiter.limit else (kind, left, self.noted.hit(key))

    async def succeeded(self, db: Any, name: str, address: str, device: str | None = None) -> None:
        if device is not None:  # only the cookie starts over: the name's failures are someone else's
            await self._shared(db, DEVICE_FAILURES).forget(self._key("device", device))
            return
        await self._shared(db, NAME_FAILURES).forget(self._key("user", name))  # the name starts over;
        self.by_address.refund(address)  # the address only takes back this attempt, so one good
        # account cannot clear the failures of other names

    async def _prune(self, db: Any) -> None:
        """Once a window per process: the ended windows' counters go (names tried once stay no longer)."""
        if self.clock() - self.pruned >= THROTTLE_SECONDS:
            self.pruned = self.clock()
            await self._shared(db, NAME_FAILURES).prune(COUNTER_PREFIX)


async def login_page(request: web.Request) -> web.Response:
    return render(request, "login.html", next=_next(request), error=None, local_demo=local_demo(request))


async def login_submit(request: web.Request, throttle: LoginThrottle) -> web.Response:
    """Sign in. The audit entries (``login.*``, like ``logout``) name the account, never the client's
    address: an IP address is personal data, and the audit log is kept for good and reached by no
    erasure (``service.audit``: details carry none). The throttle keeps addresses in this process's
    memory for its window only. A good sign-in also gives the browser a new device cookie, which
    exempts its next attempts for that user from the name's and the address's limits. A form that
    cannot be read is refused (400) before anything is counted."""
    form = await read_form(request)
    username, password = str(form.get("username", "")), str(form.get("password", ""))
    name, address = username.strip().lower()[:100], request.remote or "unknown"
    rt = request.app[RUNTIME]
    async with rt.db.session() as session:
        user = await session.scalar(select(User).where(User.username == username))
    actor = f"session:{user.username}" if user else "session:unknown"  # never what was typed
    device = presented_device(request, user)
    refused = await throttle.attempt(rt.db, name, address, device)  # counted before the password is checked
    if refused is not None:
        kind, wait, audit = refused
        if audit:
            async with rt.db.session() as session:
                record(session, actor, "login.throttled", "user", user.id if user else None, limit=kind)
                await session.commit()
        minutes = math.ceil(wait / 60)
        response = render(request, "login.html", next=_next(request, form), local_demo=local_demo(request),
                          status=429, error=f"Too many failed sign-ins. Try again in {minutes} minute"
                          f"{'s' if minutes > 1 else ''}.")
        response.headers["Retry-After"] = str(math.ceil(wait))
        return response
    if user is not None:  # argon2 in a thread: a wave of sign-ins must not stall every other page
        ok = await asyncio.to_thread(verify_password, user.password_hash, password) and user.active
    else:
        await asyncio.to_thread(verify_nobody, password)
        ok = False
    async with rt.db.session() as session:
        record(session, actor, "login.success" if ok else "login.failure", "user", user.id if user else None)
        await session.commit()
    if not ok:
        return render(request, "login.html", next=_next(request, form), error="Wrong user name or password.",
                      local_demo=local_demo(request), status=401)
    await throttle.succeeded(rt.db, name, address, device)
    response = web.HTTPFound(_next(request, form) or home_for(user.role))
    request.app[AUTH].login(response, user)
    issue_device(request, response, user)
    return response


async def logout(request: web.Request) -> web.Response:
    """POST with the page's CSRF token: this user's sessions end in every browser. Without it (a GET,
    another site's form, a page whose token went stale after signing in again elsewhere) the person
    stays signed in and gets a page with a working sign-out button."""
    auth, p = request.app[AUTH], request.get(PRINCIPAL)
    if p is None or p.via != "session":  # no session to end; the cookie, if any, is no use
        response = web.HTTPFound("/login")
        auth.logout(response)
        return response
    if request.method == "POST":
        given = request.headers.get("X-CSRF-Token") or (await request.post()).get("csrf_token")
        if isinstance(given, str) and auth.csrf_ok(p.nonce, given):
            async with request.app[RUNTIME].db.session() as session:
                await end_sessions(session, p.user_id)
                record(session, p.actor, "logout", "user", p.user_id)  # no address: see login_submit
                await session.commit()
            await request.app[ESCALATION].hub.end_user(p.user_id)  # its case chats too, not at the next sweep
            response = web.HTTPFound("/login")
            auth.logout(response)
            return response
    return render(request, "login.html", signing_out=True, stale=request.method == "POST",
                  status=403 if request.method == "POST" else 200)


def routes(secret: bytes, throttle: LoginThrottle | None = None) -> list[web.RouteDef]:
    """The routes, with one throttle for the app they are added to (its counters keyed with ``secret``,
    the console's)."""
    throttle = throttle or LoginThrottle(secret)

    async def submit(request: web.Request) -> web.Response:
        return await login_submit(request, throttle)

    return [web.get("/login", login_page), web.post("/login", submit),
            web.get("/logout", logout), web.post("/logout", logout)]
