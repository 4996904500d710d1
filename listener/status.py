"""Connector status for the console: read in this process, or shared through Redis.

In the embedded mode (`socialcare run`) the connectors poll inside the web process, so the console
reads their ``status`` directly. In production they poll in `socialcare listen` while the console
is `socialcare web`: the listener writes each connector's status to one Redis hash every few
seconds and the web process reads it. A report older than ``stale_after`` is flagged, because a
listener that died cannot say so itself.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger("socialcare.listener")


def _iso(epoch: float | None) -> str | None:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z") if epoch else None


def listens_to(connector: Any) -> str:
    """What the connector listens to, without a network call."""
    fn = getattr(connector, "listens_to", None)
    try:
        return str(fn() if callable(fn) else fn or "")
    except Exception:  # noqa: BLE001 - a description must never break the page
        return ""


def snapshot(connector: Any, *, polled_here: bool) -> dict[str, Any]:
    """One connector's row: name, platform, state, last error, what it listens to, last poll time."""
    status = getattr(connector, "status", None)
    state = status.state if status is not None else ("starting" if polled_here else "unknown")
    return {
        "name": connector.name, "platform": connector.platform, "state": state,
        "last_error": getattr(status, "last_error", None), "listens_to": listens_to(connector),
        "last_poll_at": _iso(getattr(status, "last_poll_at", None)),
        "retry_at": _iso(getattr(status, "retry_at", None)),
        "mentions_seen": getattr(status, "mentions_seen", 0),
        "stopped_by_error": bool(getattr(status, "stopped_by_error", False)),
        "reported_by": "this process" if polled_here else None, "reported_at": None, "stale": False,
    }


def merge(local: list[dict[str, Any]], shared: dict[str, dict[str, Any]], *, now: float,
          stale_after: float) -> list[dict[str, Any]]:
    """This process's connectors (not polled here) with the listener's reports laid over them."""
    out = []
    for row in local + [r for name, r in shared.items() if name not in {x["name"] for x in local}]:
        report = shared.get(row["name"])
        if report is None:
            out.append({**row, "state": "unknown",
                        "last_error": row["last_error"] or "no report from a `socialcare listen` process"})
            continue
        age = now - float(report.get("reported_epoch") or 0)
        out.append({**row, **{k: v for k, v in report.items() if k != "reported_epoch"},
                    "reported_by": "listener process", "stale": age > stale_after})
    return out


STATES = ("starting", "running", "backing_off", "stopped", "unknown")


class ConnectorGauges:
    """The connectors' rows (:func:`snapshot`, or ``Runtime.connector_report`` for a web process) as
    Prometheus gauges, set at scrape time: an alert on ``socialcare_connector_up == 0`` is how a
    connector stopped by a revoked key or stuck behind a rate limit is noticed at night."""

    def __init__(self, registry: Any) -> None:
        from prometheus_client import Gauge

        labels = ["connector", "platform"]
        self.state = Gauge("socialcare_connector_state", "1 for the connector's current state",
                           [*labels, "state"], registry=registry)
        self.up = Gauge("socialcare_connector_up", "1 while the connector is running", labels, registry=registry)
        self.seen = Gauge("socialcare_connector_mentions_seen", "Mentions published since this process started",
                          labels, registry=registry)
        self.last_poll = Gauge("socialcare_connector_last_poll_timestamp_seconds",
                               "Epoch seconds of the last successful fetch (0: none yet)", labels, registry=registry)

    def update(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            key = (row["name"], row["platform"])
            for state in STATES:
                self.state.labels(*key, state).set(1 if row.get("state") == state else 0)
            self.up.labels(*key).set(1 if row.get("state") == "running" else 0)
            self.seen.labels(*key).set(row.get("mentions_seen") or 0)
            when = row.get("last_poll_at")
            self.last_poll.labels(*key).set(datetime.fromisoformat(when.replace("Z", "+00:00")).timestamp()
                                            if when else 0)


class RedisStatusBoard:
    """The connectors' rows in the Redis hash ``<prefix>:connectors`` (one field per connector)."""

    def __init__(self, url: str, prefix: str, *, stale_after: float = 30.0) -> None:
        self.url, self.key, self.stale_after = url, f"{prefix}:connectors", stale_after
        self.client: Any = None

    def _client(self) -> Any:
        if self.client is None:
            import redis.asyncio as redis

            self.client = redis.Redis.from_url(self.url, socket_connect_timeout=5, decode_responses=True)
        return self.client

    async def write(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        now = time.time()
        fields = {r["name"]: json.dumps({**r, "reported_at": _iso(now), "reported_epoch": now}) for r in rows}
        client = self._client()
        await client.hset(self.key, mapping=fields)
        await client.expire(self.key, int(self.stale_after * 20))  # forgotten a while after the last listener

    async def read(self) -> dict[str, dict[str, Any]]:
        try:
            raw = await self._client().hgetall(self.key)
        except Exception as exc:  # noqa: BLE001 - the page says "unknown" instead of failing
            log.warning("connector status unavailable from Redis: %s", type(exc).__name__)
            return {}
        out = {}
        for name, value in raw.items():
            try:
                out[name] = json.loads(value)
            except ValueError:
                continue
        return out

    async def close(self) -> None:
        if self.client is not None:
            await self.client.aclose()
            self.client = None
