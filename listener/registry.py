"""The connectors the settings enable (a connector is enabled when its credentials are set)."""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("socialcare.listener")
NAMES = ("x", "x-stream", "reddit", "discourse")  # every connector's name, as `connectors fetch NAME` takes it


def build_connectors(settings: Any) -> list[Any]:
    """Enabled connectors. Two share platform "x"; the mentions connector comes last so it is the one
    a ``{platform: connector}`` map keeps for actions (both can perform them)."""
    out: list[Any] = []
    if settings.x_enabled and settings.x_stream_rules:
        if settings.x_bearer_token is None:
            log.warning("SOCIALCARE_X_STREAM_RULES is set but the filtered stream and recent search need "
                        "SOCIALCARE_X_BEARER_TOKEN (app-only auth): keyword listening is off")
        else:
            from listener.x.stream import XStreamConnector

            out.append(XStreamConnector(settings, **_recheck(settings, "x")))
    if settings.x_enabled:
        from listener.x.connector import XConnector

        out.append(XConnector(settings, **_recheck(settings, "x")))
    if settings.reddit_enabled:
        from listener.reddit.connector import RedditConnector

        out.append(RedditConnector(settings, **_recheck(settings, "reddit")))
    if settings.discourse_enabled:
        from listener.discourse.connector import DiscourseConnector

        out.append(DiscourseConnector(settings, **_recheck(settings, "discourse")))
    return out


def _recheck(settings: Any, platform: str) -> dict[str, Any]:
    """How a connector re-reads the posts it has already seen (its ``SOCIALCARE_<PLATFORM>_RECHECK_*``)."""
    return {"recheck_seconds": getattr(settings, f"{platform}_recheck_seconds"),
            "recheck_hours": getattr(settings, f"{platform}_recheck_hours"),
            "recheck_size": getattr(settings, f"{platform}_recheck_max")}


def connector_by_name(settings: Any, name: str) -> Any:
    """Connectors open their network sessions lazily, so building the unused ones costs nothing."""
    built = build_connectors(settings)
    for connector in built:
        if connector.name == name:
            return connector
    configured = ", ".join(c.name for c in built) or "none"
    if name not in NAMES:
        raise LookupError(f"no connector is called {name!r}: the names are {', '.join(NAMES)} (configured here: "
                          f"{configured})")
    raise LookupError(f"connector {name!r} is not configured (set its credentials; see `socialcare connectors check`;"
                      f" configured here: {configured})")
