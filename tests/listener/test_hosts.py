"""Base-URL redirection: every request of a client with a hard-coded host reaches the configured base."""

from __future__ import annotations

import asyncio

import pytest
import requests
import tweepy
from aiohttp import web
from aiohttp.test_utils import TestServer
from tweepy.asynchronous import AsyncClient

from listener.hosts import X_HOST, RedirectAdapter, _rewrite, redirect_session, redirected_client_session


@pytest.fixture
async def echo():
    seen: list[dict] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append({"path": request.path, "query": dict(request.query), "host": request.headers.get("Host")})
        return web.json_response({"data": {"id": "99", "name": "Acme", "username": "acme_help"}})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    base = str(server.make_url("")).rstrip("/")
    yield base, seen
    await server.close()


def test_only_urls_under_the_source_are_rewritten():
    assert _rewrite("https://api.twitter.com/2/users/me?x=1", X_HOST, "http://h:1") == "http://h:1/2/users/me?x=1"
    assert _rewrite("https://api.twitter.com", X_HOST, "http://h:1") == "http://h:1"
    assert _rewrite("https://api.twitter.com.attacker.example/2", X_HOST, "http://h:1") is None
    assert _rewrite("https://upload.twitter.com/1.1/media", X_HOST, "http://h:1") is None


def test_the_real_host_mounts_nothing():
    session = requests.Session()
    redirect_session(session, X_HOST, X_HOST + "/")
    redirect_session(session, X_HOST, None)
    assert not any(isinstance(a, RedirectAdapter) for a in session.adapters.values())


async def test_requests_sessions_and_the_sync_tweepy_client_are_redirected(echo):
    base, seen = echo
    session = requests.Session()
    redirect_session(session, X_HOST, base)
    resp = await asyncio.to_thread(session.get, X_HOST + "/2/tweets/search/recent", params={"query": "a b"})
    assert resp.status_code == 200 and seen[-1]["path"] == "/2/tweets/search/recent"
    assert seen[-1]["query"] == {"query": "a b"} and seen[-1]["host"] == base.split("//")[1]
    client = tweepy.Client(bearer_token="t", return_type=dict)
    redirect_session(client.session, X_HOST, base)
    me = await asyncio.to_thread(client.get_users_mentions, "99", max_results=5)
    assert me["data"]["username"] == "acme_help" and seen[-1]["path"] == "/2/users/99/mentions"


async def test_aiohttp_sessions_and_the_async_tweepy_client_are_redirected(echo):
    base, seen = echo
    async with redirected_client_session(X_HOST, base) as session:
        async with session.get(X_HOST + "/2/users/me", params={"user.fields": "username"}) as resp:
            assert resp.status == 200
        assert seen[-1] == {"path": "/2/users/me", "query": {"user.fields": "username"},
                            "host": base.split("//")[1]}
        client = AsyncClient(bearer_token="t", return_type=dict)
        client.session = session
        out = await client.get_user(username="acme_help")
        assert out["data"]["id"] == "99" and seen[-1]["path"] == "/2/users/by/username/acme_help"
        other = await session.get(base + "/direct")  # requests elsewhere pass through untouched
        assert other.status == 200 and seen[-1]["path"] == "/direct"
