"""Typed keys of the aiohttp application's state."""

from typing import Any

from aiohttp import web

RUNTIME = web.AppKey("runtime", Any)
DEMO_LOGIN = web.AppKey("demo_login", Any)
PRINCIPAL = web.RequestKey("principal", Any)  # who is asking (console.auth.Principal), set by @require
