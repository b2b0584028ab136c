"""A group member in its own process, for tests that kill it: prints "partition offset" per record.

Usage: python -m tests.group_member_process ADDRESS TOPIC GROUP [SESSION_TIMEOUT_MS]
"""

from __future__ import annotations

import sys

from tidelog import Consumer


def main() -> None:
    address, topic, group = sys.argv[1:4]
    session_timeout_ms = int(sys.argv[4]) if len(sys.argv) > 4 else 3000
    with Consumer(
        address,
        topics=[topic],
        group=group,
        auto_offset_reset="earliest",
        session_timeout_ms=session_timeout_ms,
        auto_commit_interval_ms=100,
    ) as consumer:
        print("started", flush=True)
        while True:
            messages = consumer.poll(0.05)
            if messages:
                sys.stdout.write("".join(f"{m.partition} {m.offset}\n" for m in messages))
                sys.stdout.flush()


if __name__ == "__main__":
    main()
