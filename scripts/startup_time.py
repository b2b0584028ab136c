"""How long the broker takes to start on a data directory of a given size.

python scripts/startup_time.py --gb 1 --gb 10      # fills each through the broker, then restarts it 3 times

Start-up reads one stats record per partition and never scans the log, so the figure should not grow
with the log; this measures it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tidelog import AdminClient, Producer
from tidelog.testing import BrokerProcess

VALUE = b"x" * 1000


def fill(broker: BrokerProcess, gigabytes: float, partitions: int = 4) -> int:
    with AdminClient(broker.address) as admin:
        admin.create_topic("bulk", partitions)
    records = int(gigabytes * (1 << 30) / len(VALUE))
    began = time.monotonic()
    with Producer(broker.address, buffer_bytes=256 << 20) as producer:
        for start in range(0, records, 1000):
            producer.send_many("bulk", [VALUE] * min(1000, records - start), partition=(start // 1000) % partitions)
        producer.flush(3600)
    elapsed = time.monotonic() - began
    rate = records * len(VALUE) / elapsed / 1e6
    print(f"  wrote {records:,} records of {len(VALUE)} B in {elapsed:.0f} s ({rate:.0f} MB/s)")
    return records


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gb", type=float, action="append", required=True, help="log size to measure (repeatable)")
    parser.add_argument("--restarts", type=int, default=3)
    parser.add_argument("--fsync", choices=("always", "interval"), default="interval", help="while filling")
    args = parser.parse_args()
    for gigabytes in args.gb:
        with tempfile.TemporaryDirectory(prefix="tidelog-startup-", dir=".") as workdir:
            data = Path(workdir) / "data"
            broker = BrokerProcess(data, "--retention-ms", "-1", "--fsync", args.fsync).start()
            try:
                fill(broker, gigabytes)
            finally:
                broker.stop()
            size = (data / "data.mdb").stat().st_size
            times = []
            for _ in range(args.restarts):
                began = time.monotonic()
                broker = BrokerProcess(data, "--retention-ms", "-1").start()  # until health says SERVING
                times.append(time.monotonic() - began)
                broker.stop()
            print(
                f"{gigabytes:g} GB requested, data.mdb {size / (1 << 30):.2f} GiB: start-up to SERVING "
                f"median {statistics.median(times) * 1000:.0f} ms (min {min(times) * 1000:.0f}, "
                f"max {max(times) * 1000:.0f}) over {args.restarts} restarts"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
