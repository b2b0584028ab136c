"""A loopback TCP proxy the tests put between a client and the broker to inject faults.

`cut()` closes every connection (the client sees UNAVAILABLE and reconnects); `cut(hold=True)`
also refuses new ones until `heal()` (a link down for a while);
`swallow_answers()` drops what the broker sends back on the open connections
(and on new ones too with `new_connections=True`) while requests still reach it,
so the broker writes records whose acknowledgements never arrive.
"""

from __future__ import annotations

import asyncio
import contextlib

from tidelog._loop import LoopThread


class TcpProxy:
    def __init__(self, upstream: str = "") -> None:
        self.upstream = upstream  # HOST:PORT; may be set after start (a broker that listens later)
        self._io = LoopThread("test-proxy")
        self._writers: set[asyncio.StreamWriter] = set()
        self._swallowing: set[asyncio.StreamWriter] = set()  # client writers whose answers are dropped
        self._server: asyncio.Server | None = None
        self.swallow_new = False
        self.holding = False  # a cut that lasts: new connections are closed at once
        self.connections = 0
        self.address = ""

    def start(self) -> TcpProxy:
        self._server = self._io.run(asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.address = f"127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self.holding or not self.upstream:
            client_writer.close()
            return
        try:
            host, port = self.upstream.rsplit(":", 1)
            broker_reader, broker_writer = await asyncio.open_connection(host, int(port))
        except OSError:
            client_writer.close()
            return
        self._writers |= {client_writer, broker_writer}
        if self.swallow_new:
            self._swallowing.add(client_writer)
        await asyncio.gather(
            self._pump(client_reader, broker_writer, answers=False),
            self._pump(broker_reader, client_writer, answers=True),
            return_exceptions=True,
        )
        for writer in (client_writer, broker_writer):
            self._writers.discard(writer)
            self._swallowing.discard(writer)
            writer.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, answers: bool) -> None:
        try:
            while data := await reader.read(65536):
                if answers and writer in self._swallowing:
                    continue
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()

    def swallow_answers(self, new_connections: bool = False) -> None:
        """Drop the broker's bytes to the client on every open connection (and new ones if asked)."""

        async def mark() -> None:
            self.swallow_new = new_connections
            self._swallowing |= self._writers

        self._io.run(mark())

    def cut(self, hold: bool = False) -> None:
        """Close every open connection, both ways (with `hold`, and every new one until heal())."""

        async def close_all() -> None:
            self.swallow_new = False
            self.holding = hold
            for writer in list(self._writers):
                transport = writer.transport
                with contextlib.suppress(Exception):
                    transport.abort()

        self._io.run(close_all())

    def heal(self) -> None:
        """Let new connections through again after cut(hold=True)."""

        async def open_up() -> None:
            self.holding = False

        self._io.run(open_up())

    def close(self) -> None:
        """Stop listening and cut every connection. On the proxy's own loop: asyncio's server is not
        thread-safe, and closing it from the test's thread raced with connections closing."""
        server = self._server

        async def stop() -> None:
            if server is not None:
                server.close()

        self._io.run(stop())
        self.cut()
        self._io.close()
