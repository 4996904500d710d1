"""Connector errors the runner tells apart: wait, back off, or stop this connector."""

from __future__ import annotations


class ConnectorError(RuntimeError):
    """Base class."""


class RateLimited(ConnectorError):
    """429: retry after ``reset_at`` (epoch seconds) or ``retry_after`` seconds."""

    def __init__(self, message: str, reset_at: float | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.reset_at = reset_at
        self.retry_after = retry_after


class TransientError(ConnectorError):
    """5xx, network trouble, malformed payloads: back off exponentially and retry."""


class AuthError(ConnectorError):
    """401/403: credentials are wrong or lack access. Stops this connector only."""


class StreamUnavailable(ConnectorError):
    """The platform does not offer streaming to this account (for example X's filtered stream on a
    tier without it): fall back to polling."""
