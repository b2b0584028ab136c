"""A real etcd and three brokers per test, on loopback ports with temp data dirs."""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

from tidelog.testing import ClusterProcess, EtcdProcess


@contextmanager
def own_cluster(
    root: Path, *broker_args: str, lease_s: int = 2, one_broker_args: Mapping[int, Sequence[str]] | None = None
) -> Iterator[ClusterProcess]:
    """Three brokers with these extra flags (and `one_broker_args[id]` for one), stopped (each by its
    PID) at the end."""
    if shutil.which("etcd") is None:
        pytest.fail("etcd is not installed: `make test` installs Debian's etcd-server")
    process = ClusterProcess(root, 3, *broker_args, lease_s=lease_s, broker_args=one_broker_args)
    try:
        yield process.start()
    finally:
        process.stop()


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdProcess]:
    """One etcd for a module's in-process tests (each uses a cluster name of its own)."""
    if shutil.which("etcd") is None:
        pytest.fail("etcd is not installed: `make test` installs Debian's etcd-server")
    process = EtcdProcess(tmp_path_factory.mktemp("etcd") / "data").start()
    yield process
    process.stop()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[ClusterProcess]:
    with own_cluster(tmp_path, "--retention-ms", "-1") as process:
        yield process
