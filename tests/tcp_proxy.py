"""A TCP proxy in the test's own event loop, in front of a real server (PostgreSQL, Redis), to play
its outages without touching the shared server: ``up`` forwards; ``down`` refuses new connections
and cuts the open ones (a stopped server); ``hang`` is a black hole (connections open, nothing
forwarded either way, no reset: a frozen host or a partitioned network). Leaving ``hang`` resets
what was opened during it, as a host that comes back answers RST to connections it does not know."""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlsplit, urlunsplit


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.state = "up"
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task] = set()
        self._changed = asyncio.Event()

    @classmethod
    async def before(cls, url: str) -> tuple[TcpProxy, str]:
        """A started proxy to the server of ``url``, and the same URL through the proxy."""
        parts = urlsplit(url)
        proxy = cls(parts.hostname or "127.0.0.1", parts.port or 5432)
        await proxy.start()
        netloc = parts.netloc.rsplit("@", 1)
        host = f"127.0.0.1:{proxy.port}"
        return proxy, urlunsplit(parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host))

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def set(self, state: str) -> None:
        assert state in ("up", "down", "hang"), state
        old, self.state = self.state, state
        if state == "down":
            if self._server is not None:
                self._server.close()
                self._server = None
            self._cut()
        elif old == "hang":
            self._cut()
        if state != "down" and self._server is None:
            await self.start()
        self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _cut(self) -> None:
        for writer in list(self._writers):
            with contextlib.suppress(Exception):
                writer.transport.abort()
        self._writers.clear()

    async def close(self) -> None:
        """Stop listening and cut every connection; the connections' tasks end on their own."""
        self.state = "closed"
        if self._server is not None:
            self._server.close()
            self._server = None
        self._cut()
        self._wake()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            while self.state == "hang":  # accepted, never answered
                await self._changed.wait()
            if self.state != "up" or writer.is_closing():
                writer.transport.abort()
                return
            try:
                up_reader, up_writer = await asyncio.open_connection(*self.target)
            except OSError:
                writer.transport.abort()
                return
            self._writers.add(up_writer)
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            self._writers.discard(writer)
            if task is not None:
                self._tasks.discard(task)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                while self.state == "hang":  # swallowed in flight: neither side hears anything
                    await self._changed.wait()
                if self.state != "up":
                    break
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(writer)
            with contextlib.suppress(Exception):
                writer.transport.abort()
