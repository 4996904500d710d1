"""The connectors the settings enable (a connector is enabled when its credentials are set)."""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("socialcare.listener")


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

            out.append(XStreamConnector(settings))
    if settings.x_enabled:
        from listener.x.connector import XConnector

        out.append(XConnector(settings))
    if settings.reddit_enabled:
        from listener.reddit.connector import RedditConnector

        out.append(RedditConnector(settings))
    if settings.discourse_enabled:
        from listener.discourse.connector import DiscourseConnector

        out.append(DiscourseConnector(settings))
    return out


def connector_by_name(settings: Any, name: str) -> Any:
    """Connectors open their network sessions lazily, so building the unused ones costs nothing."""
    for connector in build_connectors(settings):
        if connector.name == name:
            return connector
    raise LookupError(f"connector {name!r} is not configured (set its credentials; see `socialcare connectors check`)")
