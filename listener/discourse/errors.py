"""Discourse's error answers as the connector raises them, and their messages.

Error messages (which the runner logs and shows) name a status, a path, Discourse's short
``error_type`` or an exception's type, never a response body: an error page may quote a post. The
one exception is a moderation request Discourse refuses with a 403 (:mod:`listener.discourse.actions`):
its message is one of Discourse's own fixed sentences, which the result quotes (one line, at most
:data:`MAX_REFUSAL`).
"""

from __future__ import annotations

import json
import re
from http import HTTPStatus

from listener.errors import ConnectorError, TransientError

MAX_REFUSAL = 200  # the most of Discourse's own words a refused action's message quotes
_ERROR_TYPE = re.compile(r"[a-z_]{1,40}")  # Discourse's error_type ("not_found", "invalid_parameters")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


class DiscourseHTTPError(ConnectorError):
    """A 4xx other than 401/403/429, with its status (409: the user is already suspended). Its
    message names the status, its reason phrase, the path and Discourse's ``error_type`` when the
    body holds one, never the body itself (an error page may quote a post)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class DiscourseRefused(DiscourseHTTPError):
    """A 403 on a moderation request: the post's state (hidden already, not hidden, a first post),
    the API user's rights or the key; :meth:`DiscourseActions.perform` tells the key apart, unless
    ``key_works`` (a request of the same action was answered: the key is not why)."""

    key_works = False


class DiscourseUnavailable(TransientError):
    """A 5xx, a timeout or a connection that failed: Discourse is not answering well. The re-check
    reads no more posts alone that round."""


def reason(status: int, body: bytes) -> str:
    """A short reason for an error answer: the status's phrase, and Discourse's ``error_type`` when
    the body is the JSON Discourse sends and it looks like one (an identifier), nothing else of it."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "error"
    try:
        kind = json.loads(body).get("error_type")
    except (ValueError, AttributeError, UnicodeDecodeError):
        kind = None
    return f"{phrase} ({kind})" if isinstance(kind, str) and _ERROR_TYPE.fullmatch(kind) else phrase


def refusal(body: bytes) -> str:
    """Discourse's own words for a refusal (its ``errors``, fixed sentences such as "You are not
    permitted to view the requested resource."), on one line, at most :data:`MAX_REFUSAL`."""
    try:
        errors = json.loads(body).get("errors")
    except (ValueError, AttributeError, UnicodeDecodeError):
        return ""
    words = " ".join(e for e in errors if isinstance(e, str)) if isinstance(errors, list) else ""
    words = _CONTROL.sub(" ", words).strip()
    return words if len(words) <= MAX_REFUSAL else words[:MAX_REFUSAL - 1] + "…"


def short(exc: ConnectorError) -> str:
    """An error as a re-check log line names it: a 4xx's status alone; the others' messages name
    only a status, a path or an exception's type."""
    return f"HTTP {exc.status}" if isinstance(exc, DiscourseHTTPError) else str(exc)
