"""Reading a console form safely: a body aiohttp cannot decode, or that holds text no database takes,
is the client's mistake, answered 400, never a 500 with a traceback.

``request.post()`` raises UnicodeDecodeError for bytes that are not UTF-8 (a raw ``\\xff``, a
multipart part), LookupError for an unknown ``charset=``, ValueError for a multipart body without
its boundary, a part without a name, a nested or truncated multipart; and it returns, undecoded,
what PostgreSQL refuses later (NUL, from ``%00``) or UTF-8 cannot hold (a lone surrogate, through
``charset=utf-7`` or a part's name). :func:`read_form` reads it once and refuses all of that, along
with non-text parts (files, parts of another content type: no console form takes any), so that every
value a handler gets is storable text.

The console's error middleware calls :func:`check_form` before any handler runs (and before the
sign-in lookup), so the handlers that call ``request.post()`` themselves get the result aiohttp
cached (``request._post``) and never meet a bad body: the sign-in throttle does not count such a
request, and no handler needs its own guard. The API (JSON) and the platforms' webhooks (which sign
their raw bytes) are left alone.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from multidict import MultiDictProxy

from listener.validation import unstorable

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
NOT_FORMS = ("/api/", "/webhooks/")  # JSON bodies; signed raw bytes


def _shown(name: str) -> str:
    """A field's name for the error message, if it is one a person can read."""
    return repr(name) if name.isprintable() and not unstorable(name) and len(name) <= 64 else "with an unreadable name"


async def read_form(request: web.Request) -> MultiDictProxy[Any]:
    """The request's form (``request.post()``, read once and cached by aiohttp), or 400 when it cannot
    be decoded or holds a field that is not storable text."""
    try:
        form = await request.post()
    except (ValueError, LookupError) as exc:  # UnicodeDecodeError is a ValueError
        why = ("its text is not in the character set it names" if isinstance(exc, UnicodeDecodeError)
               else "it names an unknown character set" if isinstance(exc, LookupError)
               else "it is not well-formed")
        raise web.HTTPBadRequest(reason=f"The form could not be read: {why}.") from None
    for name, value in form.items():
        if unstorable(name):
            raise web.HTTPBadRequest(reason="The form has a field whose name is not valid text.")
        if not isinstance(value, str):
            raise web.HTTPBadRequest(reason=f"The form field {_shown(name)} is not text (this form takes no files).")
        if why := unstorable(value):
            raise web.HTTPBadRequest(reason=f"The form field {_shown(name)} {why}.")
    return form


def takes_form(request: web.Request) -> bool:
    """A form sent to a console route (a body aiohttp's ``post()`` would parse)."""
    return (request.method in request.POST_METHODS and request.content_type in FORM_TYPES
            and not request.path.startswith(NOT_FORMS) and request.match_info.http_exception is None)


async def check_form(request: web.Request) -> None:
    """Read and check the form of a request that carries one (see the module's docstring)."""
    if takes_form(request):
        await read_form(request)
