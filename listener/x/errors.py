"""tweepy, requests and aiohttp errors mapped to the runner's three kinds: wait, back off, stop."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import requests
import tweepy

from listener.errors import AuthError, RateLimited, TransientError


def _reset(exc: tweepy.TooManyRequests) -> float | None:
    reset = getattr(exc, "reset_time", None)
    if reset is None and exc.response is not None:
        reset = exc.response.headers.get("x-rate-limit-reset")
    try:
        return float(reset) if reset is not None else None
    except ValueError:
        return None


def translate(exc: BaseException) -> BaseException:
    """The runner's error for a client error (other exceptions pass through unchanged)."""
    if isinstance(exc, tweepy.TooManyRequests):
        return RateLimited("X rate limit (429)", reset_at=_reset(exc))
    if isinstance(exc, tweepy.Unauthorized):
        return AuthError(f"X refused the credentials (401): {reason(exc)}")
    if isinstance(exc, tweepy.Forbidden):  # also a reply to a deleted tweet: not always the credentials
        return AuthError(f"X refused the request (403): {reason(exc)}")
    if isinstance(exc, tweepy.HTTPException):
        return TransientError(f"X error {_status(exc)}: {reason(exc)}")
    if isinstance(exc, (requests.RequestException, aiohttp.ClientError, asyncio.TimeoutError, json.JSONDecodeError,
                        ValueError)):
        return TransientError(f"X unavailable: {type(exc).__name__}: {str(exc)[:200]}")
    return exc


def _status(exc: tweepy.HTTPException) -> str:
    """requests responses say ``status_code``, aiohttp ones ``status``."""
    resp = exc.response
    return str(getattr(resp, "status_code", None) or getattr(resp, "status", None) or "?")


def reason(exc: tweepy.HTTPException) -> str:
    """X's own words (``detail`` or ``errors[].message``), which say why: "403 Forbidden" alone sends an
    operator to rotate keys when the tweet replied to was deleted or the app is not in a Project."""
    said = "; ".join(str(m) for m in exc.api_messages if m)
    return said[:300] or (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
