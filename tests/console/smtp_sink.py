"""A minimal SMTP server on localhost that keeps what it receives (for the digest mail tests)."""

from __future__ import annotations

import asyncio
from email import message_from_bytes, policy


class SmtpSink:
    def __init__(self) -> None:
        self.messages: list = []
        self.server: asyncio.base_events.Server | None = None
        self.port = 0

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 sink ESMTP\r\n")
        while True:
            line = await reader.readline()
            if not line:
                break
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                writer.write(b"250-sink\r\n250 SIZE 10000000\r\n")
            elif verb == b"DATA":
                writer.write(b"354 go ahead\r\n")
                await writer.drain()
                data = await reader.readuntil(b"\r\n.\r\n")
                self.messages.append(message_from_bytes(data[:-5].replace(b"\r\n..", b"\r\n."), policy=policy.default))
                writer.write(b"250 queued\r\n")
            elif verb == b"QUIT":
                writer.write(b"221 bye\r\n")
                await writer.drain()
                break
            else:
                writer.write(b"250 ok\r\n")
            await writer.drain()
        writer.close()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._session, "127.0.0.1", 0, limit=2**24)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self.server.close()
        await self.server.wait_closed()
