"""Console authentication: argon2 passwords, signed session cookies, CSRF tokens, roles, API tokens.

Sessions are itsdangerous-signed cookies (HttpOnly, SameSite=Strict, Secure unless disabled for
local http) that name the user and the user's session epoch, and expire; raising the epoch (sign-out,
disabling, a role change) ends every cookie issued before, so a copied one is not good for its 12
hours. CSRF tokens are HMACs of the session's nonce, checked in constant time on every unsafe
request that a cookie authenticates. Bots authenticate with bearer
API tokens, stored only as SHA-256 hashes, each with scopes and the minute it was last used. A
token opens only routes that name a scope (the API, and the Prometheus scrape): console pages,
whose forms rely on the session's CSRF token, refuse tokens outright, so a read-only bot cannot
claim, reply or resolve through them.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Awaitable, Callable

from aiohttp import web
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from console.forms import FORM_TYPES, read_form
from console.keys import PRINCIPAL
from models import ROLES, ApiToken, User
from service.outages import note_outage, unavailable

SESSION_COOKIE = "sc_session"
SESSION_MAX_AGE = 12 * 3600
_HASHER = PasswordHasher()
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LAST_USED_EVERY = timedelta(minutes=1)  # a token's last use is written at most this often
log = logging.getLogger("socialcare.web")


def hash_password(password: str) -> str:
    if len(password.strip()) < 10:
        raise ValueError("a password needs at least 10 characters (spaces around it do not count)")
    return _HASHER.hash(password)


def verify_password(stored_hash: str, password: str) -> bool:
    try:
        return _HASHER.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False


_DUMMY_HASH: list[str] = []


def verify_nobody(password: str) -> None:
    """Spend what checking a real password costs, for a user name that does not exist (or cannot
    sign in): without it a fast "wrong password" tells which names are users."""
    if not _DUMMY_HASH:
        _DUMMY_HASH.append(_HASHER.hash(secrets.token_urlsafe(16)))
    verify_password(_DUMMY_HASH[0], password)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


async def create_user(session: AsyncSession, username: str, password: str, role: str, email: str | None = None) -> User:
    """A console user. Names are what the audit log and the queue show ("claimed by"): letters,
    digits and . _ -, unique whatever their case (``Alice`` is ``alice``)."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
    if not USERNAME.fullmatch(username):
        raise ValueError("a user name is 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
    if email is not None and not EMAIL.fullmatch(email):
        raise ValueError("that is not an e-mail address")
    if await session.scalar(select(User).where(func.lower(User.username) == username.lower())):
        raise ValueError(f"user {username!r} exists")
    user = User(username=username, password_hash=hash_password(password), role=role, email=email)
    session.add(user)
    await session.flush()
    return user


async def note_token_use(session: AsyncSession, token: ApiToken, now: datetime) -> None:
    """Stamp ``token`` as used at ``now``, at most once per LAST_USED_EVERY: the row was just read to
    authenticate, so a fresh stamp costs nothing, and a stale one is one conditional UPDATE that
    another process stamping the same token first turns into a no-op. A failed stamp is logged, not
    refused: the bot's request does not depend on it."""
    if token.last_used_at is not None and now - token.last_used_at < LAST_USED_EVERY:
        return
    stale = or_(ApiToken.last_used_at.is_(None), ApiToken.last_used_at <= now - LAST_USED_EVERY)
    try:
        await session.execute(update(ApiToken).where(ApiToken.id == token.id, stale).values(last_used_at=now)
                              .execution_options(synchronize_session=False))
        await session.commit()
    except SQLAlchemyError as exc:
        if (away := unavailable(exc)) is not None:  # the request will meet it too: one line per back-off
            note_outage(log, away, exc, f"recording the use of API token {token.id}")
        else:
            log.warning("could not record the use of API token %s", token.id, exc_info=True)
        await session.rollback()


async def create_api_token(session: AsyncSession, user: User, name: str, scopes: list[str]) -> str:
    """A new bot token; the plain value is returned once and never stored."""
    token = "sc_" + secrets.token_urlsafe(32)
    session.add(ApiToken(user_id=user.id, name=name, token_hash=token_hash(token), scopes=scopes))
    await session.flush()
    return token


@dataclass
class Principal:
    """Who is calling: a console user (cookie) or a bot (API token with scopes)."""

    user_id: int
    username: str
    role: str
    via: str  # "session" | "token"
    scopes: tuple[str, ...] = ()
    nonce: str = ""
    epoch: int | None = None  # a session's: what a socket it opened is checked against (live_sign_ins)

    @property
    def actor(self) -> str:
        return f"{self.via}:{self.username}"


class Auth:
    def __init__(self, secret_key: str, *, cookie_secure: bool = True) -> None:
        self.serializer = URLSafeTimedSerializer(secret_key, salt="socialcare-session")
        self.secret = secret_key.encode()
        self.cookie_secure = cookie_secure

    def login(self, response: web.StreamResponse, user: User) -> str:
        nonce = secrets.token_urlsafe(16)
        value = self.serializer.dumps({"uid": user.id, "n": nonce, "e": user.session_epoch})
        response.set_cookie(SESSION_COOKIE, value, max_age=SESSION_MAX_AGE, httponly=True,
                            secure=self.cookie_secure, samesite="Strict", path="/")
        return nonce

    @staticmethod
    def logout(response: web.StreamResponse) -> None:
        """Forget the cookie in this browser; :func:`end_sessions` is what makes copies worthless."""
        response.del_cookie(SESSION_COOKIE, path="/")

    def csrf_token(self, nonce: str) -> str:
        return hmac.new(self.secret, f"csrf:{nonce}".encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, nonce: str, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(self.csrf_token(nonce), given)

    async def principal(self, request: web.Request, session: AsyncSession) -> Principal | None:
        presented = bearer_token(request)
        if presented is not None:
            row = await session.scalar(select(ApiToken).where(ApiToken.token_hash == token_hash(presented)))
            now = datetime.now(timezone.utc)
            if row is None or row.revoked_at or (row.expires_at and row.expires_at < now):
                return None
            user = await session.get(User, row.user_id)
            if user is None or not user.active:
                return None
            principal = Principal(user.id, user.username, user.role, "token", tuple(row.scopes or ()))
            await note_token_use(session, row, now)  # after reading the rows: a failed stamp expires them
            return principal
        cookie = request.cookies.get(SESSION_COOKIE)
        if not cookie:
            return None
        try:
            data = self.serializer.loads(cookie, max_age=SESSION_MAX_AGE)
        except (BadSignature, SignatureExpired):
            return None
        user = await session.get(User, data.get("uid"))
        if user is None or not user.active or data.get("e") != user.session_epoch:
            return None  # a cookie from before a sign-out, a disabling or a role change (or the upgrade)
        return Principal(user.id, user.username, user.role, "session", nonce=data.get("n", ""),
                         epoch=user.session_epoch)


async def end_sessions(session: AsyncSession, user_id: int) -> None:
    """End every session of the user, in every browser (the caller commits): one atomic increment,
    so a concurrent sign-in or role change cannot bring an old epoch back."""
    await session.execute(update(User).where(User.id == user_id)
                          .values(session_epoch=User.session_epoch + 1).execution_options(synchronize_session=False))


SignIn = tuple[int, int]  # (user id, session epoch)


async def live_sign_ins(session: AsyncSession, signed: set[SignIn], roles: tuple[str, ...]) -> set[SignIn]:
    """The (user id, session epoch) pairs that still sign someone in with one of ``roles`` (admin
    always): what a websocket opened by a session is checked against, since it outlives the request
    whose cookie :meth:`Auth.principal` checked."""
    if not signed:
        return set()
    rows = await session.execute(select(User.id, User.session_epoch).where(
        User.id.in_({uid for uid, _ in signed}), User.active.is_(True), User.role.in_((*roles, "admin"))))
    return signed & {(uid, epoch) for uid, epoch in rows.all()}


def sign_in_liveness(db: Any, *roles: str) -> Callable[[set[SignIn]], Awaitable[set[SignIn]]]:
    """:func:`live_sign_ins` in a transaction of its own, for the chat hub."""
    async def live(signed: set[SignIn]) -> set[SignIn]:
        async with db.session() as session:
            return await live_sign_ins(session, signed, roles)

    return live


def bearer_token(request: web.Request) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header; the scheme is case-insensitive
    (RFC 7235 §2.1), so ``bearer`` and ``BEARER`` work as well."""
    scheme, _, value = request.headers.get("Authorization", "").strip().partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


# Which roles can use each token scope (admin can use all): a token's scope opens a route only for
# the roles that route allows, so a scope outside this table's row for the user's role would only
# ever earn 403s. tests/console/test_roles.py checks the table against the routes.
SCOPE_ROLES: dict[str, tuple[str, ...]] = {
    "mentions:read": ("agent", "moderator", "marketing"),
    "replies:write": ("agent",),
    "actions:write": ("agent", "moderator"),
    "templates:read": ("agent", "moderator"),
    "templates:write": ("agent",),
    "digest:read": ("marketing",),
    "cases:read": ("agent",),
    "connectors:read": ("agent", "moderator"),
    "metrics": ("agent", "moderator", "marketing"),  # /api/v1/metrics/summary; the Prometheus /metrics is admin's
    "webhooks": (),
    "ingest": (),
    "deadletters": (),  # /api/v1/deadletters: admin's, as the page is
}


def unusable_scopes(role: str, scopes: list[str] | tuple[str, ...]) -> list[str]:
    """The scopes a user of ``role`` can never use (``*`` means "whatever the role allows")."""
    if role == "admin":
        return []
    return [s for s in scopes if s != "*" and role not in SCOPE_ROLES.get(s, ())]


def roles_for_scope(scope: str) -> tuple[str, ...]:
    return (*SCOPE_ROLES.get(scope, ()), "admin")


class TokenForbidden(web.HTTPForbidden):
    """A 403 to a program that sent a token: a JSON body wherever the route is (the Prometheus
    scrape included), like every other answer a bot reads."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason=reason, content_type="application/json",
                         text=json.dumps({"error": {"status": 403, "message": reason}}))


def _forbidden(request: web.Request, reason: str) -> web.HTTPForbidden:
    return TokenForbidden(reason) if "Authorization" in request.headers else web.HTTPForbidden(reason=reason)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
AUTH = web.AppKey("auth", Auth)


def require(*roles: str, scope: str | None = None) -> Callable[[Handler], Handler]:
    """Allow the listed roles (admin always) and, for bot tokens, the named scope; a route without a
    scope refuses tokens (console pages are for people). Cookie-authenticated unsafe requests must
    carry the CSRF token (form field ``csrf_token`` or ``X-CSRF-Token``)."""

    def wrap(handler: Handler) -> Handler:
        async def guarded(request: web.Request) -> web.StreamResponse:
            p: Principal | None = request.get(PRINCIPAL)
            if p is None:
                if _machine(request, scope):
                    raise web.HTTPUnauthorized(
                        reason="invalid or expired token" if "Authorization" in request.headers
                        else "authentication required", headers={"WWW-Authenticate": 'Bearer realm="socialcare"'})
                raise web.HTTPFound(f"/login?next={request.rel_url.path}")
            if p.role != "admin" and p.role not in roles:
                raise _forbidden(request, f"role {p.role} may not do this")
            if p.via == "token" and scope is None:
                raise _forbidden(request, "API tokens are for the API; sign in to use the console")
            if p.via == "token" and scope not in p.scopes and "*" not in p.scopes:
                raise _forbidden(request, f"token lacks scope {scope}")
            if p.via == "session" and request.method not in SAFE_METHODS:
                given = request.headers.get("X-CSRF-Token")
                if given is None and request.content_type in FORM_TYPES:
                    given = (await read_form(request)).get("csrf_token")  # undecodable: 400, not 500
                if not request.app[AUTH].csrf_ok(p.nonce, given):
                    raise web.HTTPForbidden(reason="missing or wrong CSRF token")
            return await handler(request)

        guarded.roles = roles  # type: ignore[attr-defined]  # for the role table test and the docs
        guarded.scope = scope  # type: ignore[attr-defined]
        guarded.__name__ = handler.__name__
        guarded.__doc__ = handler.__doc__
        return guarded

    return wrap


def _machine(request: web.Request, scope: str | None) -> bool:
    """A client that cannot follow a redirect to a sign-in form: the API, anything that presented a
    token (a forged or expired one must be told so, not sent to a form), and a route that takes tokens
    (the Prometheus scrape) asked for by a client that does not read HTML."""
    return (request.path.startswith("/api/") or "Authorization" in request.headers
            or (scope is not None and "text/html" not in request.headers.get("Accept", "")))


# Paths that serve everyone alike and must answer while the database is away: the probes (/healthz
# never touches the database; /readyz reports it unready) and the static files. No sign-in is looked
# up for them, whatever cookie or token the request carries.
NO_PRINCIPAL = ("/healthz", "/readyz")
NO_PRINCIPAL_PREFIXES = ("/static/",)


def principal_middleware(db: Any) -> Any:
    @web.middleware
    async def attach(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in NO_PRINCIPAL or request.path.startswith(NO_PRINCIPAL_PREFIXES):
            request[PRINCIPAL] = None
            return await handler(request)
        async with db.session() as session:
            request[PRINCIPAL] = await request.app[AUTH].principal(request, session)
        return await handler(request)

    return attach
