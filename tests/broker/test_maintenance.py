"""`tidelog verify` and `tidelog backup` beside a running broker."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.harness import ROOT, BrokerProcess, gather, wait_for
from tidelog import AdminClient, Consumer, Producer
from tidelog.broker.batches import HEADER_SIZE
from tidelog.broker.storage.lmdb_store import LmdbStore


def tidelog(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tidelog", *args], cwd=ROOT, capture_output=True, text=True, timeout=60
    )


def test_verify_and_backup_a_live_broker_then_serve_the_backup(own_broker: BrokerProcess, tmp_path: Path) -> None:
    own_broker.start()
    with AdminClient(own_broker.address) as admin:
        admin.create_topic("kept", partitions=2)
    with Producer(own_broker.address) as producer:
        producer.send_many("kept", [b"v%d" % i for i in range(300)], partition=0)
        for i in range(20):
            producer.send("kept", b"w%d" % i, partition=1)
        producer.flush()

    checked = tidelog("verify", "--data-dir", str(own_broker.data_dir), "--json")
    assert checked.returncode == 0, checked.stderr
    report = json.loads(checked.stdout)
    assert report["records"] == 320 and report["topics"] == 1 and report["problems"] == []

    copy = tmp_path / "backup"
    backed = tidelog("backup", str(copy), "--data-dir", str(own_broker.data_dir))
    assert backed.returncode == 0 and "backed up" in backed.stdout, backed.stderr
    again = tidelog("backup", str(copy), "--data-dir", str(own_broker.data_dir))
    assert again.returncode == 1 and "not empty" in again.stderr

    restored = BrokerProcess(copy, "--retention-ms", "-1").start()
    try:
        with Consumer(restored.address, topics=["kept"], auto_offset_reset="earliest") as consumer:
            got: list[bytes] = []
            wait_for(lambda: gather(got, (m.value for m in consumer.poll(0.1))) >= 320, what="the 320 records")
        assert sorted(got) == sorted([b"v%d" % i for i in range(300)] + [b"w%d" % i for i in range(20)])
    finally:
        restored.stop()


def test_verify_finds_a_damaged_record(own_broker: BrokerProcess) -> None:
    own_broker.start()
    with AdminClient(own_broker.address) as admin:
        admin.create_topic("fragile")
    with Producer(own_broker.address) as producer:
        producer.send("fragile", b"precious value", partition=0).result(10)
    assert own_broker.stop() == 0

    store = LmdbStore(own_broker.data_dir, sync=True, map_size=1 << 30)
    with store.env.begin(write=True, db=store.log) as txn:
        key, value = next(iter(txn.cursor()))
        damaged = bytearray(value)
        at = bytes(damaged).index(b"precious", HEADER_SIZE)
        damaged[at] ^= 0xFF
        txn.put(key, bytes(damaged))
    store.close()

    checked = tidelog("verify", "--data-dir", str(own_broker.data_dir))
    assert checked.returncode == 1
    assert "fragile/0 batch at offset 0: CRC32C mismatch" in checked.stdout
    missing = tidelog("verify", "--data-dir", str(own_broker.data_dir / "nope"))
    assert missing.returncode == 1 and "no data.mdb" in missing.stderr
