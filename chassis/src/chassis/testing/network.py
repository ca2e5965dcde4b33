"""A hop on loopback between a client and a server whose links a test can make go silent:
how a connection dies in a network partition or a database failover. Nothing closes and
nothing is refused; the client's statements simply get no answer, and Postgres, on the far
side, sees its client quiet but still there."""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType
from urllib.parse import urlsplit, urlunsplit


class SilentHop:
    """Forwards every connection made to `port` to (host, target_port), each over a link of
    its own, until `silence` makes one drop whatever either side sends."""

    def __init__(self, host: str, target_port: int) -> None:
        self.host, self.target_port = host, target_port
        self.port = 0
        self._server: asyncio.Server | None = None
        # By the port the far side sees the link come from (Postgres's `client_port`).
        self._silent: set[int] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []

    @classmethod
    def to(cls, dsn: str) -> SilentHop:
        """A hop to the server a DSN names."""
        parts = urlsplit(dsn)
        return cls(parts.hostname or "127.0.0.1", parts.port or 5432)

    def dsn(self, dsn: str) -> str:
        """The same DSN, through this hop."""
        parts = urlsplit(dsn)
        user = parts.netloc.rpartition("@")[0]
        netloc = f"{user}@127.0.0.1:{self.port}" if user else f"127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    def silence(self, client_port: int) -> None:
        """The link the server sees coming from `client_port` goes silent both ways."""
        self._silent.add(client_port)

    async def __aenter__(self) -> SilentHop:
        self._server = await asyncio.start_server(self._link, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _link(
        self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter
    ) -> None:
        server_in, server_out = await asyncio.open_connection(self.host, self.target_port)
        self._writers += [client_out, server_out]
        seen_from = server_out.get_extra_info("sockname")[1]
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await asyncio.gather(
                self._pipe(client_in, server_out, seen_from),
                self._pipe(server_in, client_out, seen_from),
            )
        except asyncio.CancelledError:
            pass  # (the hop closing: asyncio's server would log a link's task cancelled)
        finally:
            self._tasks.discard(task)

    async def _pipe(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, link: int
    ) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await source.read(65536):
                if link in self._silent:
                    continue  # read and dropped: neither side hears anything again
                sink.write(data)
                await sink.drain()
        if link not in self._silent:
            sink.close()
