"""`make run-cluster`: one etcd and three brokers on 127.0.0.1, data under ./data-cluster, until Ctrl-C.

Brokers listen on 127.0.0.1:50051, :50052 and :50053 (ids 0, 1, 2); etcd on free ports. Kill one by
hand (its PID is printed) and watch `tidelog cluster describe -b 127.0.0.1:50051` move its partitions.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from tidelog.testing import BrokerProcess, EtcdProcess


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--brokers", type=int, default=3)
    parser.add_argument("--data-dir", type=Path, default=Path("data-cluster"))
    parser.add_argument("--base-port", type=int, default=50051)
    parser.add_argument("--lease-s", type=int, default=5, help="how long a silent broker stays a member")
    args = parser.parse_args()
    args.data_dir.mkdir(parents=True, exist_ok=True)
    etcd = EtcdProcess(args.data_dir / "etcd").start()
    brokers: list[BrokerProcess] = []
    try:
        for broker_id in range(args.brokers):
            broker = BrokerProcess(
                args.data_dir / f"broker-{broker_id}",
                "--cluster",
                f"etcd://{etcd.endpoint}",
                "--broker-id",
                str(broker_id),
                "--cluster-lease-s",
                str(args.lease_s),
                "--default-replication-factor",
                str(min(3, args.brokers)),
            )
            broker.address = f"127.0.0.1:{args.base_port + broker_id}"
            brokers.append(broker.start())
        assert etcd.proc is not None
        print(f"etcd      {etcd.endpoint}  pid {etcd.proc.pid}  log {etcd.log_path}")
        for broker_id, broker in enumerate(brokers):
            assert broker.proc is not None
            print(f"broker {broker_id}  {broker.address}  pid {broker.proc.pid}  log {broker.log_path}")
        bootstrap = ",".join(b.address for b in brokers)
        print(f"\ntidelog cluster describe -b {brokers[0].address}\nbootstrap: {bootstrap}\nCtrl-C stops them all.")
        stop = threading.Event()
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        stop.wait()
    finally:
        for broker in brokers:
            if broker.proc is not None and broker.proc.poll() is None:
                broker.proc.send_signal(signal.SIGCONT)  # a broker paused by hand must hear the SIGTERM
                broker.stop()
        etcd.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
