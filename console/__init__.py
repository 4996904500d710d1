"""The web console and HTTP API (aiohttp)."""
