"""The peers `tidelog bench --vs` measures beside Tidelog: Redis Streams and NATS JetStream.

Each peer is a context manager that starts its own server (the Debian package's binary) on
127.0.0.1, a free port and a temp data dir, drives it with its own Python client, and stops it by
its PID on exit. The modes mirror Tidelog's:

``produce(records, size)``
    Durable writes, every one acknowledged before the figure is final.
    Redis: ``XADD`` pipelined in batches of 1000 (one round trip per batch; with
    ``appendfsync always`` Redis fsyncs the AOF before it answers). JetStream: ``publish_async``
    with a window of outstanding publishes; every PubAck is awaited.
``consume(records, size)``
    A catch-up read of everything the last ``produce`` wrote. Redis: ``XRANGE`` pages.
    JetStream: a pull consumer fetching batches, with ``AckPolicy.NONE`` (a read with nothing
    acknowledged per message, like Tidelog's consumer reading without committing offsets).
``e2e(rate, seconds, size)``
    Sends paced at ``rate`` while a reader receives live; latency is send→receipt from a
    ``perf_counter_ns`` stamp in the first 8 bytes of each value. Redis: a pacing thread hands
    stamped values to a writer thread that sends what is queued (one XADD, or a pipeline when
    a round trip took longer than the interval); a reader thread on ``XREAD BLOCK``. JetStream:
    a task on the client's loop paces ``publish_async`` (acks awaited at the end); a push
    consumer's callback receives.

Durability of the peers as run here: Redis with ``--appendfsync always`` for Tidelog's
``--fsync always`` and ``everysec`` for ``interval``. nats-server 2.9 (Debian bookworm's) has no
per-write fsync setting (``sync_interval``/``always`` came in 2.10): JetStream acks once the
write is in its file store's page cache and fsyncs in the background (strace: no fsync during a
produce), so the same for both settings, and its name says so.

The clients are imported lazily: this module imports without them; ``missing_requirements``
says what is absent.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import queue
import shlex
import shutil
import socket
import statistics
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    from nats.aio.client import Client as NatsClient

PEER_NAMES = ("redis", "nats")
INSTALL_HINT = "install with: make bench-peers"

STAMP = struct.Struct(">q")  # perf_counter_ns at send, the first bytes of an e2e value
WARMUP = STAMP.pack(0)  # the stamp of the record that proves the reader is live
START_TIMEOUT = 15.0  # seconds for a server to accept and answer its client
STOP_GRACE = 5.0  # seconds between SIGTERM and SIGKILL
OP_TIMEOUT = 60.0  # seconds any one wait in a mode may take before it is an error
E2E_DRAIN = 10.0  # seconds after the last e2e send for the reader to see it

REDIS_BATCH = 1000  # XADDs per pipeline round trip
REDIS_PAGE = 10_000  # entries per XRANGE
NATS_WINDOW = 4000  # outstanding JetStream publishes (nats-py's own default)
NATS_FETCH = 1000  # messages per pull request

_BINARIES = {"redis": "redis-server", "nats": "nats-server"}
_MODULES = {"redis": ("redis", "hiredis"), "nats": ("nats",)}
_SEARCH_PATH = ("/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin")  # nats-server is in /usr/sbin

T = TypeVar("T")


class Peer(Protocol):
    name: str

    def __enter__(self) -> Peer: ...

    def __exit__(self, *exc: object) -> None: ...

    def produce(self, records: int, size: int) -> dict[str, float]: ...

    def consume(self, records: int, size: int) -> dict[str, float]: ...

    def e2e(self, rate: float, seconds: float, size: int) -> dict[str, float]: ...


def open_peer(spec: str, fsync: str) -> Peer:
    """A peer, not yet started: use it in a ``with``. ``fsync`` is Tidelog's setting, "always" or "interval"."""
    if fsync not in ("always", "interval"):
        raise ValueError(f"fsync must be 'always' or 'interval', not {fsync!r}")
    if spec == "redis":
        return RedisPeer(fsync)
    if spec == "nats":
        return NatsPeer(fsync)
    raise ValueError(f"unknown peer {spec!r}: choose from {', '.join(PEER_NAMES)}")


def missing_requirements(spec: str) -> str | None:
    """None if the peer's server binary and Python client are here, else what is missing and how to install it."""
    if spec not in _BINARIES:
        raise ValueError(f"unknown peer {spec!r}: choose from {', '.join(PEER_NAMES)}")
    missing = [] if _find_binary(_BINARIES[spec]) else [_BINARIES[spec]]
    missing += [f"python module {m}" for m in _MODULES[spec] if importlib.util.find_spec(m) is None]
    if not missing:
        return None
    return f"{spec}: {', '.join(missing)} not found; {INSTALL_HINT}"


def _find_binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    return next((str(p) for p in (Path(d) / name for d in _SEARCH_PATH) if p.is_file() and os.access(p, os.X_OK)), None)


def _require(spec: str) -> str:
    problem = missing_requirements(spec)
    if problem is not None:
        raise RuntimeError(problem)
    binary = _find_binary(_BINARIES[spec])
    assert binary is not None
    return binary


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _throughput(records: int, payload: int, seconds: float) -> dict[str, float]:
    return {"records_per_s": records / seconds, "mb_per_s": payload / seconds / 1e6, "records": records}


def _latency(latencies_us: Sequence[float]) -> dict[str, float]:
    if len(latencies_us) < 2:
        raise RuntimeError(f"e2e: {len(latencies_us)} latency sample(s); need at least two")
    q = statistics.quantiles(latencies_us, n=1000, method="inclusive")
    return {"p50_ms": q[499] / 1000, "p99_ms": q[989] / 1000, "p999_ms": q[998] / 1000}


def pace(rate: float, count: int, send: Callable[[int], None]) -> float:
    """Call ``send(i)`` ``count`` times on a fixed schedule of ``rate`` per second; the seconds it took."""
    interval = 1 / rate
    began = time.perf_counter()
    for i in range(count):
        delay = began + i * interval - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        send(i)
    return time.perf_counter() - began


def e2e_count(rate: float, seconds: float) -> int:
    if rate <= 0 or seconds <= 0:
        raise ValueError("e2e needs a positive rate and duration")
    return max(2, round(rate * seconds))


class _Server:
    """A server child process in its own temp dir, its output in a log there; stopped by its PID."""

    def __init__(self, label: str, binary: str, prefix: str) -> None:
        self.label = label
        self.binary = binary
        self.dir = Path(tempfile.mkdtemp(prefix=prefix))
        self.log = self.dir / "server.log"
        self.port = _free_port()
        self.command: list[str] = []
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, args: Sequence[str]) -> None:
        """Start the binary and wait until its port accepts connections."""
        self.command = [self.binary, *args]
        with self.log.open("wb") as log:
            self._proc = subprocess.Popen(
                self.command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=self.dir
            )
        self.wait_until(self._accepts, "accepting connections")

    def _accepts(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def wait_until(self, ready: Callable[[], bool], what: str, timeout: float = START_TIMEOUT) -> None:
        """Poll ``ready`` until it is true, failing fast if the process exits, and at the deadline."""
        deadline = time.monotonic() + timeout
        while True:
            if self._proc is None or self._proc.poll() is not None:
                status = "never started" if self._proc is None else f"exited with status {self._proc.returncode}"
                raise self.failure(status)
            if ready():
                return
            if time.monotonic() > deadline:
                raise self.failure(f"not {what} after {timeout:.0f} s")
            time.sleep(0.02)  # polling interval, not synchronisation

    def failure(self, why: str) -> RuntimeError:
        return RuntimeError(
            f"{self.label}: {self.binary} failed to start ({why})\n"
            f"  command: {shlex.join(self.command)}\n"
            f"  log tail:\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError as e:
            return f"    (no log: {e})"
        return "\n".join("    " + line for line in text.splitlines()[-lines:]) or "    (empty)"

    def stop(self) -> None:
        """SIGTERM by PID, SIGKILL after STOP_GRACE, then remove the temp dir."""
        proc = self._proc
        try:
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(STOP_GRACE)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(STOP_GRACE)
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


class RedisPeer:
    """Redis Streams: one stream per ``produce``, the value in field ``v``; redis-py with hiredis."""

    def __init__(self, fsync: str) -> None:
        self.appendfsync = "always" if fsync == "always" else "everysec"
        self.name = f"redis (appendfsync {self.appendfsync})"
        self._server: _Server | None = None
        self._client: Any = None  # redis.Redis
        self._stream: str | None = None  # what the last produce wrote
        self._written = 0
        self._streams = 0
        self.e2e_sent_per_s = 0.0  # the rate the last e2e's sender achieved (below `rate` if it fell behind)

    def __enter__(self) -> RedisPeer:
        binary = _require("redis")
        import redis

        server = _Server(self.name, binary, "tidelog-bench-redis-")
        try:
            # AOF only (no RDB snapshots), no config file: the defaults plus these.
            options = {
                "port": str(server.port),
                "bind": "127.0.0.1",
                "dir": str(server.dir),
                "appendonly": "yes",
                "appendfsync": self.appendfsync,
                "save": "",
                "daemonize": "no",
                "logfile": "",
            }
            server.start([arg for key, value in options.items() for arg in (f"--{key}", value)])
            self._client = redis.Redis(host="127.0.0.1", port=server.port, socket_timeout=OP_TIMEOUT)
            server.wait_until(self._answers, "answering PING")
        except BaseException:
            self._close_client()
            server.stop()
            raise
        self._server = server
        return self

    def __exit__(self, *exc: object) -> None:
        self._close_client()
        if self._server is not None:
            self._server.stop()
            self._server = None

    def _answers(self) -> bool:
        import redis

        try:
            return bool(self._client.ping())
        except redis.RedisError:
            return False

    def _close_client(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _new_client(self) -> Any:
        import redis

        if self._server is None:
            raise RuntimeError(f"{self.name}: not started; use it in a `with` block")
        return redis.Redis(host="127.0.0.1", port=self._server.port, socket_timeout=OP_TIMEOUT)

    def _new_stream(self) -> str:
        self._streams += 1
        return f"bench-{self._streams}"

    def produce(self, records: int, size: int) -> dict[str, float]:
        client = self._client
        if client is None:
            raise RuntimeError(f"{self.name}: not started; use it in a `with` block")
        if self._stream is not None:
            client.delete(self._stream)
        stream = self._new_stream()
        self._stream, self._written = stream, 0
        value = b"x" * size
        pipe = client.pipeline(transaction=False)
        began = time.perf_counter()
        written = 0
        while written < records:
            batch = min(REDIS_BATCH, records - written)
            for _ in range(batch):
                pipe.xadd(stream, {b"v": value})
            ids = pipe.execute()  # raises on the first error reply
            if len(ids) != batch:
                raise RuntimeError(f"{self.name}: XADD batch of {batch} answered {len(ids)}")
            written += batch
        elapsed = time.perf_counter() - began
        self._written = written
        return _throughput(written, written * size, elapsed)

    def consume(self, records: int, size: int) -> dict[str, float]:
        client = self._client
        if client is None or self._stream is None:
            raise RuntimeError(f"{self.name}: consume needs a produce first")
        stream, expected = self._stream, self._written
        start: bytes | str = "-"
        seen = payload = 0
        began = time.perf_counter()
        while True:
            page = client.xrange(stream, min=start, max="+", count=REDIS_PAGE)
            for _id, fields in page:
                payload += len(fields[b"v"])
            seen += len(page)
            if len(page) < REDIS_PAGE:
                break
            start = b"(" + page[-1][0]  # exclusive: after the last entry read
        elapsed = time.perf_counter() - began
        if seen != expected:
            raise RuntimeError(f"{self.name}: consume read {seen} records, produce wrote {expected}")
        return _throughput(seen, payload, elapsed)

    def e2e(self, rate: float, seconds: float, size: int) -> dict[str, float]:
        """Paced sends through a writer thread that pipelines whatever is queued; a reader on XREAD BLOCK.

        The pacing thread stamps each value and queues it, as an application hands a record to an
        async producer; the writer sends what is queued as one pipeline per round trip. At low
        load that is one XADD at a time; with ``appendfsync always`` one XADD round trip waits for
        an fsync, and one XADD at a time could not keep up with 5,000/s here: the queueing shows in
        the latency instead of the rate silently dropping.
        """
        client = self._client
        if client is None:
            raise RuntimeError(f"{self.name}: not started; use it in a `with` block")
        count = e2e_count(rate, seconds)
        stream = self._new_stream()
        padding = b"x" * max(0, size - STAMP.size)
        latencies_us: list[float] = []
        live, done, stop = threading.Event(), threading.Event(), threading.Event()
        errors: list[BaseException] = []
        outbox: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()  # None: no more
        reader_client = self._new_client()

        def read() -> None:
            last: bytes | str = "0-0"  # the stream is new: everything on it
            try:
                while not stop.is_set() and len(latencies_us) < count:
                    reply = reader_client.xread({stream: last}, count=REDIS_PAGE, block=200)
                    now = time.perf_counter_ns()
                    for _name, entries in reply or ():
                        for entry_id, fields in entries:
                            last = entry_id
                            value = fields[b"v"]
                            if value[: STAMP.size] == WARMUP:
                                live.set()
                            else:
                                latencies_us.append((now - STAMP.unpack_from(value)[0]) / 1000)
            except BaseException as e:
                errors.append(e)
            finally:
                live.set()
                done.set()

        def write() -> None:
            pipe = client.pipeline(transaction=False)
            try:
                while True:
                    batch = [outbox.get(timeout=OP_TIMEOUT)]
                    with contextlib.suppress(queue.Empty):
                        while batch[-1] is not None:
                            batch.append(outbox.get_nowait())
                    for value in batch:
                        if value is not None:
                            pipe.xadd(stream, {b"v": value})
                    if len(pipe):
                        pipe.execute()
                    if batch[-1] is None:
                        return
            except BaseException as e:
                errors.append(e)
                done.set()

        reader = threading.Thread(target=read, name="redis-e2e-reader", daemon=True)
        writer = threading.Thread(target=write, name="redis-e2e-writer", daemon=True)
        reader.start()
        try:
            client.xadd(stream, {b"v": WARMUP + padding})
            if not live.wait(OP_TIMEOUT) or errors:
                raise RuntimeError(f"{self.name}: e2e reader not live: {errors or 'timed out'}")
            writer.start()
            try:
                sending = pace(rate, count, lambda _i: outbox.put(STAMP.pack(time.perf_counter_ns()) + padding))
            finally:
                outbox.put(None)
            self.e2e_sent_per_s = count / sending
            if not done.wait(E2E_DRAIN):
                raise RuntimeError(f"{self.name}: e2e reader saw {len(latencies_us)}/{count} within {E2E_DRAIN:.0f} s")
        finally:
            stop.set()
            if writer.ident is not None:  # started
                writer.join(OP_TIMEOUT)
            reader.join(OP_TIMEOUT)
            reader_client.close()
            client.delete(stream)
        if errors:
            raise RuntimeError(f"{self.name}: e2e failed: {errors[0]!r}") from errors[0]
        if len(latencies_us) != count:
            raise RuntimeError(f"{self.name}: e2e reader saw {len(latencies_us)} records, {count} were sent")
        return _latency(latencies_us)


class NatsPeer:
    """NATS JetStream: a file-storage stream on one subject per ``produce``; nats-py on an asyncio loop per call."""

    def __init__(self, fsync: str) -> None:
        self.fsync = fsync  # nats-server 2.9 has no per-write fsync: the same run for both settings
        self.name = "nats jetstream (file, background fsync)"
        self._server: _Server | None = None
        self._stream: str | None = None  # what the last produce wrote
        self._subject = ""
        self._written = 0
        self._streams = 0
        self.e2e_sent_per_s = 0.0  # the rate the last e2e's sender achieved (below `rate` if it fell behind)

    def __enter__(self) -> NatsPeer:
        binary = _require("nats")
        server = _Server(self.name, binary, "tidelog-bench-nats-")
        try:
            # No -m: the monitoring port stays off.
            server.start(["-js", "-sd", str(server.dir / "jetstream"), "-a", "127.0.0.1", "-p", str(server.port)])
            self._server = server
            try:
                self._run(self._check_jetstream(), START_TIMEOUT)
            except Exception as e:
                raise server.failure(f"JetStream not answering: {e!r}") from e
        except BaseException:
            self._server = None
            server.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        """Run a mode's coroutine on a fresh loop in this thread, with an overall deadline."""

        async def bounded() -> T:
            return await asyncio.wait_for(coro, timeout)

        return asyncio.run(bounded())

    async def _connect(self) -> NatsClient:
        import nats

        if self._server is None:
            raise RuntimeError(f"{self.name}: not started; use it in a `with` block")
        return await nats.connect(
            f"nats://127.0.0.1:{self._server.port}", allow_reconnect=False, connect_timeout=5, name="tidelog-bench"
        )

    async def _check_jetstream(self) -> None:
        nc = await self._connect()
        try:
            await nc.jetstream().account_info()
        finally:
            await nc.close()

    def produce(self, records: int, size: int) -> dict[str, float]:
        self._streams += 1
        stream, subject = f"BENCH{self._streams}", f"bench.{self._streams}"
        previous, self._stream, self._subject, self._written = self._stream, stream, subject, 0
        written, elapsed = self._run(
            self._produce(previous, stream, subject, records, size), OP_TIMEOUT + records / 1000
        )
        self._written = written
        return _throughput(written, written * size, elapsed)

    async def _produce(
        self, previous: str | None, stream: str, subject: str, records: int, size: int
    ) -> tuple[int, float]:
        from nats.js.api import StorageType

        nc = await self._connect()
        try:
            js = nc.jetstream(publish_async_max_pending=NATS_WINDOW)
            if previous is not None:
                await js.delete_stream(previous)
            await js.add_stream(name=stream, subjects=[subject], storage=StorageType.FILE)
            value = b"x" * size
            began = time.perf_counter()
            # No wait_stall: it wraps every publish in a timer task (a third of the rate); the
            # deadline is _run's over the whole produce.
            acks = [await js.publish_async(subject, value) for _ in range(records)]
            results = await asyncio.gather(*acks)  # every PubAck; the first error raises
            elapsed = time.perf_counter() - began
            if results and (results[-1].stream != stream or results[-1].seq != records):
                raise RuntimeError(f"{self.name}: last ack {results[-1]}, expected seq {records} on {stream}")
            return len(results), elapsed
        finally:
            await nc.close()

    def consume(self, records: int, size: int) -> dict[str, float]:
        if self._stream is None:
            raise RuntimeError(f"{self.name}: consume needs a produce first")
        expected = self._written
        seen, payload, elapsed = self._run(
            self._consume(self._stream, self._subject, expected), OP_TIMEOUT + expected / 1000
        )
        if seen != self._written:
            raise RuntimeError(f"{self.name}: consume read {seen} records, produce wrote {self._written}")
        return _throughput(seen, payload, elapsed)

    async def _consume(self, stream: str, subject: str, expected: int) -> tuple[int, int, float]:
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        nc = await self._connect()
        try:
            js = nc.jetstream()
            config = ConsumerConfig(ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL)
            sub = await js.pull_subscribe(subject, stream=stream, config=config)
            seen = payload = 0
            began = time.perf_counter()
            while seen < expected:
                messages = await sub.fetch(min(NATS_FETCH, expected - seen), timeout=10)
                seen += len(messages)
                payload += sum(len(m.data) for m in messages)
            elapsed = time.perf_counter() - began
            await sub.unsubscribe()
            return seen, payload, elapsed
        finally:
            await nc.close()

    def e2e(self, rate: float, seconds: float, size: int) -> dict[str, float]:
        count = e2e_count(rate, seconds)
        self._streams += 1
        stream, subject = f"BENCH{self._streams}", f"bench.{self._streams}"
        latencies_us = self._run(self._e2e(stream, subject, rate, count, size), OP_TIMEOUT + count / rate)
        return _latency(latencies_us)

    async def _e2e(self, stream: str, subject: str, rate: float, count: int, size: int) -> list[float]:
        from nats.aio.msg import Msg
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StorageType

        nc = await self._connect()
        try:
            js = nc.jetstream(publish_async_max_pending=NATS_WINDOW)
            await js.add_stream(name=stream, subjects=[subject], storage=StorageType.FILE)
            padding = b"x" * max(0, size - STAMP.size)
            latencies_us: list[float] = []
            live, done = asyncio.Event(), asyncio.Event()

            async def receive(msg: Msg) -> None:
                now = time.perf_counter_ns()
                if msg.data[: STAMP.size] == WARMUP:
                    live.set()
                    return
                latencies_us.append((now - STAMP.unpack_from(msg.data)[0]) / 1000)
                if len(latencies_us) >= count:
                    done.set()

            # A push consumer delivering new messages as they are stored; nothing to ack.
            config = ConsumerConfig(ack_policy=AckPolicy.NONE)
            sub = await js.subscribe(
                subject, stream=stream, cb=receive, manual_ack=True, config=config, deliver_policy=DeliverPolicy.NEW
            )
            await js.publish(subject, WARMUP + padding)
            await asyncio.wait_for(live.wait(), OP_TIMEOUT)

            # A task on this loop paces the sends, publishing without waiting for each ack (the
            # acks are awaited at the end), as an asyncio application uses nats-py.
            acks: list[asyncio.Future[Any]] = []
            interval = 1 / rate
            began = time.perf_counter()
            for i in range(count):
                delay = began + i * interval - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                acks.append(await js.publish_async(subject, STAMP.pack(time.perf_counter_ns()) + padding))
            self.e2e_sent_per_s = count / (time.perf_counter() - began)
            try:
                await asyncio.wait_for(done.wait(), E2E_DRAIN)
            except TimeoutError:
                raise RuntimeError(f"{self.name}: e2e subscriber saw {len(latencies_us)}/{count}") from None
            await asyncio.wait_for(asyncio.gather(*acks), OP_TIMEOUT)
            await sub.unsubscribe()
            with contextlib.suppress(Exception):
                await js.delete_stream(stream)
            return latencies_us
        finally:
            await nc.close()
