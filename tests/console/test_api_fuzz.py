"""schemathesis against /api/openapi.json of a running server: the real console app on 127.0.0.1
over PostgreSQL, called with a bot token allowed everything, over every operation in the
description, with valid and invalid inputs. No answer is a 5xx; every 4xx carries the JSON error
body the description promises ({"error": {"status", "message"}})."""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from tests.console.conftest import NoTriage, add_mention, bot_token


@schemathesis.serializer("application/x-ndjson")
def _json_lines(ctx: Any, value: Any) -> bytes:
    """The ingest body: one JSON value per line (the description gives it as an array of lines)."""
    import json

    rows = value if isinstance(value, list) else [value]
    return "\n".join(json.dumps(row) for row in rows).encode()


# per operation and generation mode: 12 keeps the run well under a minute; raise it to explore
MAX_EXAMPLES = int(os.environ.get("SOCIALCARE_FUZZ_EXAMPLES", "12"))
TEMPLATE = "double_charge"


class LiveServer:
    """The app served by aiohttp on its own event loop in a thread (schemathesis calls are blocking)."""

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="live-api", daemon=True)
        self.base = ""
        self.token = ""
        self.ids: dict[str, list[int]] = {}

    def run(self, coro: Any, timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self) -> None:
        self.thread.start()
        self.run(self._start())

    async def _start(self) -> None:
        from aiohttp import web

        from console.app import create_app
        from console.auth import create_user
        from console.webhooks_out import SENDER
        from models.console import WebhookSubscription
        from service.bad_requests import Runner
        from service.runtime import Runtime

        self.rt = await Runtime.open(self.settings, stages=[], with_connectors=False, triager=NoTriage())
        async with self.rt.db.session() as s:
            await create_user(s, "root", "admin password 5", "admin")
            await s.commit()
        self.token = await bot_token(self.rt, "root", ["*"])
        mentions = [await add_mention(self.rt, "charged twice for my plan", handle="zoe"),
                    await add_mention(self.rt, "app crashes on start", outcome="auto_answer", issue_type="bug"),
                    await add_mention(self.rt, "someone hacked my account", sensitivity="security",
                                      outcome="escalate_private")]
        async with self.rt.db.session() as s:
            sub = WebhookSubscription(name="fuzz", url="https://hooks.example.invalid/x", events=["mention.routed"],
                                      secret="s" * 32, created_by="root")
            s.add(sub)
            await s.commit()
            self.ids["webhook"] = [sub.id]
        self.ids["mention"] = [m.id for m in mentions]
        app = create_app(self.rt)
        self.runner = Runner(app, access_log=None)  # as `socialcare run` serves it
        await self.runner.setup()
        await app[SENDER].stop()  # nothing leaves the machine: no outgoing webhook deliveries
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        host, port = self.runner.addresses[0][:2]
        self.base = f"http://{host}:{port}"

    def stop(self) -> None:
        async def _stop() -> None:
            await self.runner.cleanup()
            await self.rt.close()

        try:
            self.run(_stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)


@pytest.fixture
def live(tmp_path, postgres_url):
    from service.settings import load_settings

    settings = load_settings(database_url=postgres_url, bus="inprocess", var_dir=tmp_path / "var", demo=False,
                             dry_run=True, bus_block_ms=50, cookie_secure=False)
    server = LiveServer(settings)
    server.start()
    yield server
    server.stop()


def api_error_problem(response: Any) -> str | None:
    """None when the answer is acceptable: below 500, and a 4xx with the JSON error body."""
    status = response.status_code
    if status >= 500:
        return f"server error {status}: {response.text[:300]}"
    if 400 <= status < 500:
        try:
            err = response.json()["error"]
        except (ValueError, KeyError, TypeError):
            return f"{status} without a JSON error body: {response.headers.get('Content-Type')} {response.text[:200]!r}"
        if not isinstance(err, dict) or err.get("status") != status or not isinstance(err.get("message"), str):
            return f"{status} with a malformed error body: {response.text[:200]!r}"
    return None


def strategy(operation: Any, mode: GenerationMode, live: LiveServer) -> Any:
    """Cases for ``operation``, half of them aimed at rows that exist (otherwise almost every id is a 404)."""
    names = {p.name for p in operation.path_parameters}
    base = operation.as_strategy(generation_mode=mode)
    if names == {"id"}:
        pool = live.ids["webhook"] if operation.path.startswith("/api/v1/webhooks") else live.ids["mention"]
        return st.one_of(base, *(operation.as_strategy(generation_mode=mode, path_parameters={"id": i}) for i in pool))
    if names == {"name"} and operation.method.upper() != "DELETE":
        return st.one_of(base, operation.as_strategy(generation_mode=mode, path_parameters={"name": TEMPLATE}))
    return base


@pytest.mark.timeout(240)
def test_every_operation_answers_without_5xx_and_with_json_errors(live):
    http = requests.Session()
    auth = {"Authorization": f"Bearer {live.token}"}
    created = http.post(f"{live.base}/api/v1/templates", headers=auth, json={
        "name": TEMPLATE, "issue_types": ["billing"], "variants": {"friendly": "Sorry {{ author_name }}!"}})
    assert created.status_code == 201, created.text
    schema = schemathesis.openapi.from_url(f"{live.base}/api/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15  # every documented operation, the undocumented /api/v1 ones included
    problems: dict[str, set[str]] = {}
    seen: dict[str, set[int]] = {}

    def fuzz(operation: Any, mode: GenerationMode) -> None:
        label = f"{operation.method.upper()} {operation.path}"

        @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, derandomize=True,
                  phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
        @given(case=strategy(operation, mode, live))
        def call(case: Any) -> None:
            response = case.call(base_url=live.base, session=http, headers=auth, timeout=15)
            seen.setdefault(label, set()).add(response.status_code)
            problem = api_error_problem(response)
            if problem:
                problems.setdefault(label, set()).add(
                    f"{problem} <- {case.method} {case.formatted_path} query={case.query} body={case.body!r:.200}")

        call()

    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            fuzz(operation, mode)

    assert not problems, "\n".join(f"{op}:\n  " + "\n  ".join(sorted(p)[:5]) for op, p in problems.items())
    assert all(seen.get(f"{o.method.upper()} {o.path}") for o in operations)
    assert any(code < 300 for codes in seen.values() for code in codes)  # the token really is accepted


@pytest.mark.parametrize("path", ["/api/v1/queue?channel=%00", "/api/v1/mentions?platform=a%00b",
                                  "/api/v1/queue?sentiment=x&issue_type=%00"])
def test_a_nul_in_the_query_is_a_json_400_not_a_database_error(live, path):
    """Found by the run above: PostgreSQL refuses NUL in a text parameter, which was a 500."""
    r = requests.get(live.base + path, headers={"Authorization": f"Bearer {live.token}"}, timeout=15)
    assert r.status_code == 400 and api_error_problem(r) is None
    assert "NUL" in r.json()["error"]["message"]


@pytest.mark.parametrize("path", ["/api/v1/mentions?offset=2537813727477438714031898624",
                                  "/api/v1/mentions?offset=1000001&limit=5"])
def test_an_offset_beyond_the_described_maximum_is_a_json_400(live, path):
    """Found by the run above: an offset past int64 reached PostgreSQL and was a 500."""
    r = requests.get(live.base + path, headers={"Authorization": f"Bearer {live.token}"}, timeout=15)
    assert r.status_code == 400 and api_error_problem(r) is None
    assert "offset" in r.json()["error"]["message"]
