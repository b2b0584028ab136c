"""A Kafka group member (confluent-kafka) in its own process, for tests that kill it: it prints
"partition offset" for each record, then commits it (so what it committed, it printed).

Usage: python -m tests.kafka.kafka_member BOOTSTRAP TOPIC GROUP SESSION_TIMEOUT_MS
"""

from __future__ import annotations

import sys

import confluent_kafka


def main() -> None:
    bootstrap, topic, group, session_timeout_ms = sys.argv[1:5]
    consumer = confluent_kafka.Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": int(session_timeout_ms),
            "heartbeat.interval.ms": 100,
        }
    )
    consumer.subscribe([topic])
    print("started", flush=True)
    while True:
        message = consumer.poll(0.05)
        if message is None or message.error():
            continue
        print(f"{message.partition()} {message.offset()}", flush=True)
        consumer.commit(message=message, asynchronous=False)


if __name__ == "__main__":
    main()
