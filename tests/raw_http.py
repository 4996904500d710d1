"""HTTP requests written byte by byte over a raw socket, for what no client library sends: over-long
addresses and headers, unknown methods, control characters, bytes that are not HTTP at all."""

from __future__ import annotations

import asyncio
import json

MARK = b"x7q" * 20  # would show up if the answer quoted the request


async def send(port: int, head: bytes) -> tuple[int, dict[str, str], bytes]:
    """One request (``head`` without the blank line); the answer's status, headers and body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head + b"\r\n")
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    top, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = top.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


def request(target: bytes, *extra: bytes, method: bytes = b"GET") -> bytes:
    top = [method + b" " + target + b" HTTP/1.1", b"Host: localhost", b"Connection: close"]
    return b"\r\n".join([*top, *extra, b""])


def json_error(status: int, headers: dict[str, str], body: bytes) -> dict:
    """The service's JSON error body, checked: JSON content type, its status, a message."""
    assert headers["content-type"].startswith("application/json"), (status, headers, body[:200])
    error = json.loads(body)["error"]
    assert error["status"] == status and error["message"]
    return error
