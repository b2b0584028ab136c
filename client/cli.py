"""The client side of the `tidelog` command: topics, produce, consume."""

from __future__ import annotations

import argparse
import os
import sys

from client import AdminClient, Consumer, Producer
from client._channel import DEFAULT_BOOTSTRAP
from client.consumer import OffsetReset
from client.errors import TidelogError


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bootstrap = argparse.ArgumentParser(add_help=False)
    bootstrap.add_argument(
        "--bootstrap",
        "-b",
        default=os.environ.get("TIDELOG_BOOTSTRAP", DEFAULT_BOOTSTRAP),
        help="broker address (env TIDELOG_BOOTSTRAP; default %(default)s)",
    )

    topics = commands.add_parser("topics", help="manage topics").add_subparsers(dest="action", required=True)
    create = topics.add_parser("create", parents=[bootstrap], help="create a topic")
    create.add_argument("name")
    create.add_argument("--partitions", "-p", type=int, default=1)
    create.add_argument("--config", "-c", action="append", default=[], metavar="KEY=VALUE")
    create.set_defaults(run=_topics_create)
    topics.add_parser("list", parents=[bootstrap], help="list topics").set_defaults(run=_topics_list)
    describe = topics.add_parser("describe", parents=[bootstrap], help="a topic's configs and partitions")
    describe.add_argument("name")
    describe.set_defaults(run=_topics_describe)
    delete = topics.add_parser("delete", parents=[bootstrap], help="delete a topic and its records")
    delete.add_argument("name")
    delete.set_defaults(run=_topics_delete)

    produce = commands.add_parser("produce", parents=[bootstrap], help="produce one record per line of stdin")
    produce.add_argument("topic")
    produce.add_argument("--partition", type=int)
    produce.add_argument("--key-separator", help="split each line into KEY<sep>VALUE")
    produce.set_defaults(run=_produce)

    consume = commands.add_parser("consume", parents=[bootstrap], help="print records, one per line")
    consume.add_argument("topic")
    consume.add_argument("--from-beginning", action="store_true", help="start at the earliest offset (default: latest)")
    consume.add_argument("--partition", type=int, help="only this partition")
    consume.add_argument("--max-messages", type=int, help="exit after this many records")
    consume.add_argument("--idle-timeout", type=float, help="exit after this many seconds without a record")
    consume.add_argument("--print-key", action="store_true")
    consume.add_argument("--print-offset", action="store_true")
    consume.set_defaults(run=_consume)


def run(args: argparse.Namespace) -> int:
    try:
        code: int = args.run(args)
        return code
    except TidelogError as err:
        print(f"tidelog: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _parse_configs(pairs: list[str]) -> dict[str, str]:
    configs = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"tidelog: --config takes KEY=VALUE, got {pair!r}")
        configs[key] = value
    return configs


def _topics_create(args: argparse.Namespace) -> int:
    with AdminClient(args.bootstrap) as admin:
        topic = admin.create_topic(args.name, args.partitions, _parse_configs(args.config))
    print(f"created topic {topic.name} with {topic.partitions} partition(s)")
    return 0


def _topics_list(args: argparse.Namespace) -> int:
    with AdminClient(args.bootstrap) as admin:
        for topic in admin.list_topics():
            print(f"{topic.name}\t{topic.partitions}")
    return 0


def _topics_describe(args: argparse.Namespace) -> int:
    with AdminClient(args.bootstrap) as admin:
        description = admin.describe_topic(args.name)
    topic = description.topic
    print(f"topic {topic.name}, {topic.partitions} partition(s)")
    for key, value in sorted(topic.configs.items()):
        print(f"  {key}={value}")
    print("partition\tlog_start\thigh_watermark\tsize_bytes")
    for p in description.partitions:
        print(f"{p.partition}\t{p.log_start_offset}\t{p.high_watermark}\t{p.size_bytes}")
    return 0


def _topics_delete(args: argparse.Namespace) -> int:
    with AdminClient(args.bootstrap) as admin:
        admin.delete_topic(args.name)
    print(f"deleted topic {args.name}")
    return 0


def _produce(args: argparse.Namespace) -> int:
    count = 0
    with Producer(args.bootstrap) as producer:
        futures = []
        for line in sys.stdin.buffer:
            line = line.rstrip(b"\r\n")
            key = None
            if args.key_separator:
                key, _, line = line.partition(args.key_separator.encode())
            futures.append(producer.send(args.topic, line, key=key or None, partition=args.partition))
            count += 1
        producer.flush()
        for future in futures:
            future.result()
    print(f"produced {count} record(s) to {args.topic}", file=sys.stderr)
    return 0


def _consume(args: argparse.Namespace) -> int:
    reset: OffsetReset = "earliest" if args.from_beginning else "latest"
    topics = [] if args.partition is not None else [args.topic]
    seen = 0
    with Consumer(args.bootstrap, topics=topics, auto_offset_reset=reset) as consumer:
        if args.partition is not None:
            consumer.assign([(args.topic, args.partition)])
        out = sys.stdout.buffer
        while args.max_messages is None or seen < args.max_messages:
            messages = consumer.poll(args.idle_timeout)
            if not messages and args.idle_timeout is not None:
                break
            for message in messages[: None if args.max_messages is None else args.max_messages - seen]:
                prefix = b""
                if args.print_offset:
                    prefix += f"{message.partition}:{message.offset}\t".encode()
                if args.print_key:
                    prefix += (message.key or b"") + b"\t"
                out.write(prefix + (message.value or b"") + b"\n")
                seen += 1
            out.flush()
    return 0
