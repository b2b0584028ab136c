"""The cluster crash harness, small: a SIGKILL with an immediate restart, a SIGKILL past the lease
and a SIGSTOP past the lease, one broker at a time, mid-stream; nothing acknowledged is lost, doubled
or reordered, and the replicas agree byte for byte. (`make test-fault-cluster` runs it big.)"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from scripts.cluster_faults import KINDS
from scripts.crash_harness_cluster import run


def test_acknowledged_records_and_replicas_survive_broker_faults(tmp_path: Path) -> None:
    if shutil.which("etcd") is None:
        pytest.fail("etcd is not installed: `make test` installs Debian's etcd-server")
    # Records flow until the faults are done, and each fault waits for records sent while its broker is
    # out: however fast the machine, every fault lands mid-stream.
    outcome = run(faults=3, records=20_000, partitions=3, seed=7, workdir=tmp_path, say=lambda _: None)
    assert outcome.ok, outcome.summary()
    assert outcome.faults == dict.fromkeys(KINDS, 1)  # each kind once
    assert outcome.leader_changes > 0  # a broker out past its lease led a partition: it moved
    assert outcome.sent >= 20_000 and outcome.verdict.acknowledged > 0
    assert outcome.verdict.found >= outcome.verdict.acknowledged
