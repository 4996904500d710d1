"""A refused form's message and draft, carried across one redirect (post/redirect/get).

After a 409 or 422 on a conversation's form, a browser is sent back to the conversation page
instead of being left at the POST address, where a reload re-posts or gives 405. What the page
must show again (the message, the unsent text, the post it answered) travels in a short-lived,
signed cookie scoped to that page and bound to the signed-in user; it is read once. A draft too
long for a cookie is not squeezed in, and one holding personal data (a card number the guard
refused) is not put in a cookie, which is signed, not encrypted: the caller renders in place
instead, draft and all.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from console.auth import AUTH
from console.keys import PRINCIPAL
from triage.pii import detect_pii

FLASH_COOKIE = "sc_flash"
MAX_AGE = 300  # seconds: long enough for the redirect, short enough not to surprise a later visit
MAX_COOKIE = 3800  # browsers keep 4096 bytes a cookie, name and attributes included


def _serializer(request: web.Request) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(request.app[AUTH].secret, salt="socialcare-flash")


def redirect(request: web.Request, location: str, **data: Any) -> web.HTTPSeeOther | None:
    """A 303 to ``location`` carrying ``data``, or None when it does not fit in a cookie."""
    if any(isinstance(v, str) and detect_pii(v) for v in data.values()):
        return None
    principal = request[PRINCIPAL]
    value = _serializer(request).dumps({"u": principal.user_id, "p": location, **data})
    if len(value) > MAX_COOKIE:
        return None
    response = web.HTTPSeeOther(location)
    response.set_cookie(FLASH_COOKIE, value, max_age=MAX_AGE, httponly=True, path=location,
                        secure=request.app[AUTH].cookie_secure, samesite="Strict")
    return response


def take(request: web.Request) -> dict[str, Any]:
    """What the last redirect to this page carried for this user ({} when nothing did)."""
    raw = request.cookies.get(FLASH_COOKIE)
    principal = request.get(PRINCIPAL)
    if not raw or principal is None:
        return {}
    try:
        data = _serializer(request).loads(raw, max_age=MAX_AGE)
    except (BadSignature, SignatureExpired):
        return {}
    if not isinstance(data, dict) or data.get("u") != principal.user_id or data.get("p") != request.path:
        return {}
    return data


def forget(request: web.Request, response: web.StreamResponse) -> None:
    """Read once: the page that showed the flash removes it."""
    if FLASH_COOKIE in request.cookies:
        response.del_cookie(FLASH_COOKIE, path=request.path)
