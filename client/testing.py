"""Test your code against a real Tidelog broker.

    from tidelog.testing import run_broker

    def test_orders_flow():
        with run_broker() as address:
            with Producer(address) as producer:
                ...

`run_broker()` starts `tidelog serve` as a child process on a free 127.0.0.1
port with a temporary data directory, waits until it serves, yields its address
and stops it (by PID) afterwards. `BrokerProcess` is the same with more control:
stop, kill -9 and restart on the same port and data. `run_cluster()` starts a
real etcd and several clustered brokers, with faults by broker id.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tidelog.v1.broker_pb2 import GetMetadataRequest
from tidelog.v1.broker_pb2_grpc import BrokerStub

T = TypeVar("T")


def wait_for(condition: Callable[[], T], timeout: float = 10.0, interval: float = 0.01, what: str = "condition") -> T:
    """Poll `condition` until it returns something truthy; AssertionError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


async def wait_for_async(
    condition: Callable[[], T], timeout: float = 10.0, interval: float = 0.01, what: str = "condition"
) -> T:
    """`wait_for` in a coroutine: polls `condition` without blocking the event loop."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = condition()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


class BrokerProcess:
    """`tidelog serve` on 127.0.0.1, stopped by its PID.

    The first start takes a port the kernel picks; restarts keep that port, so
    clients that reconnect find the broker again.
    """

    def __init__(
        self,
        data_dir: Path,
        *extra_args: str,
        wrapper: Sequence[str] = (),
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        """`extra_args` go to `tidelog serve`; `wrapper` is a command the broker runs under
        (it must end by running the command line it is given); `credentials` are for a broker that
        serves TLS only (its health check at start)."""
        self.data_dir = Path(data_dir)
        self.credentials = credentials
        self.extra_args = extra_args
        self.wrapper = tuple(wrapper)
        self.proc: subprocess.Popen[bytes] | None = None
        self.address = ""
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}.log"

    def start(self, timeout: float = 30.0, health_timeout: float | None = None) -> BrokerProcess:
        """Start the broker and wait until its health check answers SERVING.

        `health_timeout` (default: `timeout`) bounds the plaintext health check alone, once the
        ready file is written: a broker that serves only TLS fails it with grpc.RpcError."""
        ready = self.data_dir.parent / f"{self.data_dir.name}.ready"
        ready.unlink(missing_ok=True)
        listen = self.address or "127.0.0.1:0"
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it while it runs
        self.proc = subprocess.Popen(
            [
                *self.wrapper,
                sys.executable,
                "-m",
                "tidelog",
                "serve",
                "--data-dir",
                str(self.data_dir),
                "--listen",
                listen,
                "--ready-file",
                str(ready),
                "--log-format",
                "json",
                *self.extra_args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        log.close()

        def is_ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"the broker exited with {self.proc.returncode}:\n{self.log()}")
            return ready.exists() and bool(ready.read_text())

        wait_for(is_ready, timeout, what="the broker to write its ready file")
        self.address = ready.read_text()
        if self.credentials is not None:
            channel = grpc.secure_channel(self.address, self.credentials)
        else:
            channel = grpc.insecure_channel(self.address)
        with channel:
            status = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(),
                timeout=timeout if health_timeout is None else health_timeout,
                wait_for_ready=True,
            )
            if status.status != health_pb2.HealthCheckResponse.SERVING:
                raise RuntimeError(f"the broker at {self.address} is not serving")
        return self

    def log(self) -> str:
        """What the broker wrote to its log so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM and wait (the clean shutdown path); returns the exit status."""
        assert self.proc is not None, "the broker was never started"
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        """SIGKILL (the crash path)."""
        assert self.proc is not None, "the broker was never started"
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)

    def restart(self) -> BrokerProcess:
        """Stop cleanly and start again on the same port and data."""
        self.stop()
        return self.start()


def _free_loopback_ports(count: int) -> list[int]:
    """Ports the kernel has just handed out on 127.0.0.1 (closed again: a server about to bind them)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


class EtcdProcess:
    """A real etcd (Debian's `etcd-server`) on free 127.0.0.1 ports with its own data directory, stopped
    by its PID: the coordination store of a Tidelog cluster, for tests."""

    def __init__(self, data_dir: Path, binary: str = "etcd") -> None:
        self.data_dir = Path(data_dir)
        self.binary = binary
        self.proc: subprocess.Popen[bytes] | None = None
        self.endpoint = ""  # HOST:PORT of its client API once started
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}.log"

    def start(self, timeout: float = 30.0) -> EtcdProcess:
        """Start etcd and wait until it reports itself healthy (trying other ports if one was taken)."""
        for _ in range(3):
            client, peer = _free_loopback_ports(2)
            if self._start_on(client, peer, timeout):
                return self
        raise RuntimeError(f"etcd did not start:\n{self.log()}")

    def _start_on(self, client: int, peer: int, timeout: float) -> bool:
        client_url, peer_url = f"http://127.0.0.1:{client}", f"http://127.0.0.1:{peer}"
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it while it runs
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--name",
                "tidelog-test",
                "--data-dir",
                str(self.data_dir),
                "--listen-client-urls",
                client_url,
                "--advertise-client-urls",
                client_url,
                "--listen-peer-urls",
                peer_url,
                "--initial-advertise-peer-urls",
                peer_url,
                "--initial-cluster",
                f"tidelog-test={peer_url}",
                "--logger",
                "zap",
                "--log-outputs",
                "stderr",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

        def healthy() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                return True  # exited: judged below
            try:
                with urllib.request.urlopen(f"{client_url}/health", timeout=1) as answer:
                    return b'"true"' in answer.read()
            except OSError:
                return False

        wait_for(healthy, timeout, interval=0.05, what="etcd to report itself healthy")
        if self.proc.poll() is not None:
            return False  # a port was taken meanwhile: try others
        self.endpoint = f"127.0.0.1:{client}"
        return True

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 20.0) -> int:
        assert self.proc is not None, "etcd was never started"
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        assert self.proc is not None, "etcd was never started"
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


@contextmanager
def run_broker(*extra_args: str, data_dir: Path | None = None) -> Iterator[str]:
    """A real broker for the duration of the block; yields its ``"127.0.0.1:PORT"`` address.

    ``extra_args`` go to ``tidelog serve`` (e.g. ``"--fsync", "interval"``); the data
    lives in a temporary directory unless ``data_dir`` is given.
    """
    with tempfile.TemporaryDirectory(prefix="tidelog-") as tmp:
        process = BrokerProcess(data_dir or Path(tmp) / "data", *extra_args)
        try:
            yield process.start().address
        finally:
            if process.proc is not None:
                try:
                    process.stop()
                except subprocess.TimeoutExpired:
                    process.kill()


class ClusterProcess:
    """One etcd and `brokers` Tidelog brokers (ids 0, 1, ...) on 127.0.0.1 with their own data
    directories under `root`, each stopped by its PID; faults by broker id: kill (SIGKILL), pause
    (SIGSTOP, held past the lease it is a zombie), resume (SIGCONT) and restart."""

    def __init__(
        self,
        root: Path,
        brokers: int = 3,
        *extra_args: str,
        lease_s: int = 2,
        name: str = "tidelog",
        broker_args: Mapping[int, Sequence[str]] | None = None,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        """`extra_args` go to every broker, `broker_args[id]` to that one only; `credentials` to reach
        brokers that serve TLS only."""
        self.root = Path(root)
        self.credentials = credentials
        self.broker_args = dict(broker_args or {})
        self.etcd = EtcdProcess(self.root / "etcd")
        self.count = brokers
        self.extra_args = extra_args
        self.lease_s = lease_s
        self.name = name
        self.brokers: dict[int, BrokerProcess] = {}

    def start(self, timeout: float = 30.0) -> ClusterProcess:
        self.root.mkdir(parents=True, exist_ok=True)
        self.etcd.start(timeout)
        for broker_id in range(self.count):
            args: tuple[str, ...] = ("--cluster", f"etcd://{self.etcd.endpoint}", "--cluster-name", self.name)
            args += ("--broker-id", str(broker_id), "--cluster-lease-s", str(self.lease_s), *self.extra_args)
            args += tuple(self.broker_args.get(broker_id, ()))
            broker = BrokerProcess(self.root / f"broker-{broker_id}", *args, credentials=self.credentials)
            self.brokers[broker_id] = broker.start(timeout)
        self.wait_registered(timeout)
        return self

    def wait_registered(self, timeout: float = 30.0) -> None:
        """Until every running broker's metadata lists every running broker: a registration reaches the
        others through etcd's watch, so a topic of a factor N created before that may be refused.
        Brokers that want a token (--auth-tokens) cannot be asked: their callers wait themselves."""
        running = {
            b: broker.address for b, broker in self.brokers.items() if broker.proc and broker.proc.poll() is None
        }

        def seen_by(address: str) -> set[int]:
            if self.credentials is not None:
                channel = grpc.secure_channel(address, self.credentials)
            else:
                channel = grpc.insecure_channel(address)
            with channel:
                try:
                    answer = BrokerStub(channel).GetMetadata(GetMetadataRequest(), timeout=5)
                except grpc.RpcError as err:
                    if err.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
                        return set(running)
                    return set()
            return {b.id for b in answer.brokers}

        wait_for(
            lambda: all(seen_by(address) >= set(running) for address in running.values()),
            timeout,
            interval=0.05,
            what=f"every broker to see brokers {sorted(running)} registered",
        )

    @property
    def addresses(self) -> dict[int, str]:
        return {broker_id: broker.address for broker_id, broker in self.brokers.items()}

    @property
    def bootstrap(self) -> str:
        """Every broker's address, comma-separated: what a client's bootstrap list takes."""
        return ",".join(self.addresses.values())

    def kill(self, broker_id: int) -> None:
        self.brokers[broker_id].kill()

    def pause(self, broker_id: int) -> None:
        proc = self.brokers[broker_id].proc
        assert proc is not None
        proc.send_signal(signal.SIGSTOP)

    def resume(self, broker_id: int) -> None:
        proc = self.brokers[broker_id].proc
        assert proc is not None
        proc.send_signal(signal.SIGCONT)

    def restart(self, broker_id: int, timeout: float = 30.0) -> None:
        """Start a killed or stopped broker again, on its port and data."""
        broker = self.brokers[broker_id]
        if broker.proc is not None and broker.proc.poll() is None:
            broker.stop()
        broker.start(timeout)

    def stop(self) -> None:
        for broker_id, broker in self.brokers.items():
            if broker.proc is not None and broker.proc.poll() is None:
                self.resume(broker_id)
                try:
                    broker.stop()
                except subprocess.TimeoutExpired:
                    broker.kill()
        if self.etcd.proc is not None:
            self.etcd.stop()


@contextmanager
def run_cluster(brokers: int = 3, *extra_args: str, lease_s: int = 2) -> Iterator[ClusterProcess]:
    """A real etcd and `brokers` brokers for the duration of the block (see ClusterProcess); every
    broker serves on a free 127.0.0.1 port with its data in a temporary directory."""
    with tempfile.TemporaryDirectory(prefix="tidelog-cluster-") as tmp:
        cluster = ClusterProcess(Path(tmp), brokers, *extra_args, lease_s=lease_s)
        try:
            yield cluster.start()
        finally:
            cluster.stop()
