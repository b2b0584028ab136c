"""The client side of the `tidelog` command: topics, groups, produce, consume.

Exit codes (see Exit): 0 success, 1 any other error, 2 usage, 3 topic not found,
4 already exists, 5 broker unreachable or timed out, 130 interrupted. An error is
one `tidelog: <message>` line on stderr.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
from typing import TYPE_CHECKING

from tidelog._channel import DEFAULT_BOOTSTRAP
from tidelog.cli import records
from tidelog.cli._base import Args, CliError, Exit, exit_code, open_admin
from tidelog.cli.groups import add_acls, add_cluster, add_groups
from tidelog.cli.output import (
    Table,
    configs_table,
    description_json,
    description_tables,
    print_json,
    print_tables,
    record_formatter,
    topic_json,
    unescape,
)
from tidelog.errors import AlreadyExistsError, NotFoundError, TidelogError

if TYPE_CHECKING:
    Commands = argparse._SubParsersAction[argparse.ArgumentParser]

# -- argument types (an ArgumentTypeError is a usage error: exit 2) ---------------------


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _timestamp(text: str) -> int:
    """Milliseconds since the epoch, or an ISO 8601 time (UTC unless it says otherwise)."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        when = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected milliseconds since the epoch or ISO 8601, got {text!r}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return int(when.timestamp() * 1000)


def _format_spec(text: str) -> str:
    try:
        record_formatter(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


# -- the parser -------------------------------------------------------------------------


def add_commands(commands: Commands) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--bootstrap",
        "-b",
        default=os.environ.get("TIDELOG_BOOTSTRAP", DEFAULT_BOOTSTRAP),
        metavar="HOST:PORT",
        help="broker address (env TIDELOG_BOOTSTRAP; default %(default)s)",
    )
    common.add_argument(
        "--timeout",
        type=_positive_float,
        default=30.0,
        metavar="SECONDS",
        help="how long to wait for the broker to answer a request (default %(default)s)",
    )
    common.add_argument("--token", help="bearer token for a broker that requires one (env TIDELOG_TOKEN)")
    common.add_argument("--tls-ca", metavar="PEM", help="connect with TLS, trusting this CA")
    common.add_argument("--tls-cert", metavar="PEM", help="client certificate for mTLS (with --tls-key)")
    common.add_argument("--tls-key", metavar="PEM", help="the client certificate's private key")
    as_json = argparse.ArgumentParser(add_help=False)
    as_json.add_argument("--json", action="store_true", help="print JSON instead of text or a table")
    _add_topics(commands, [common, as_json])
    add_groups(commands, [common, as_json], _timestamp)
    add_acls(commands, [common, as_json])
    add_cluster(commands, [common, as_json])
    _add_produce(commands, [common])
    _add_consume(commands, [common])
    _add_bench(commands)


def _add_topics(commands: Commands, parents: list[argparse.ArgumentParser]) -> None:
    topics = commands.add_parser("topics", help="create, list, describe, alter and delete topics")
    actions = topics.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", parents=parents, help="create a topic")
    create.add_argument("name")
    create.add_argument("--partitions", "-p", type=int, default=1)
    create.add_argument(
        "--replication-factor",
        "-r",
        type=int,
        metavar="R",
        help="copies of each partition (a cluster; default: the broker's)",
    )
    create.add_argument("--config", "-c", type=_key_value, action="append", default=[], metavar="KEY=VALUE")
    create.add_argument("--if-not-exists", action="store_true", help="succeed if the topic already exists")
    create.set_defaults(run=_topics_create)
    actions.add_parser("list", parents=parents, help="topics and their partition counts").set_defaults(run=_topics_list)
    describe = actions.add_parser("describe", parents=parents, help="a topic's partitions and configs")
    describe.add_argument("name")
    describe.set_defaults(run=_topics_describe)
    alter = actions.add_parser("alter", parents=parents, help="change a topic's configs")
    alter.add_argument("name")
    alter.add_argument("--config", "-c", type=_key_value, action="append", required=True, metavar="KEY=VALUE")
    alter.set_defaults(run=_topics_alter)
    delete = actions.add_parser("delete", parents=parents, help="delete a topic and its records")
    delete.add_argument("name")
    delete.add_argument("--if-exists", action="store_true", help="succeed if there is no such topic")
    delete.set_defaults(run=_topics_delete)


def _add_produce(commands: Commands, parents: list[argparse.ArgumentParser]) -> None:
    produce = commands.add_parser("produce", parents=parents, help="produce one record per line of stdin or a file")
    produce.add_argument("topic")
    produce.add_argument("--file", metavar="PATH", help="read records from PATH instead of stdin ('-': stdin)")
    produce.add_argument(
        "--partition", "-p", type=_non_negative_int, metavar="N", help="write every record to this partition"
    )
    produce.add_argument(
        "--key-separator", "-K", type=unescape, metavar="SEP", help="split each line into KEY<SEP>VALUE (\\t ok)"
    )
    produce.add_argument(
        "--header", "-H", type=_key_value, action="append", default=[], metavar="KEY=VALUE", help="repeatable"
    )
    produce.set_defaults(run=records.produce)


_CONSUME_EPILOG = """\
formats:
  value     the value, one per line (bytes as they are)
  json      one object per line: topic, partition, offset, timestamp_ms, key, value,
            headers [{key, value}]; bytes that are not UTF-8 come as key_base64 /
            value_base64 instead of key / value
  TEMPLATE  Python str.format over {topic} {partition} {offset} {timestamp_ms} {key}
            {value} {headers} (k=v,k=v); \\t and \\n are honoured, a newline is added
            unless the template ends with one

Starts at the end of the log (only new records) unless --from-beginning, --offset
or --timestamp says otherwise.
"""


def _add_bench(commands: Commands) -> None:
    from tidelog.bench.run import add_arguments

    bench = commands.add_parser(
        "bench", help="throughput and latency through the SDK, optionally beside Redis Streams and NATS JetStream"
    )
    add_arguments(bench)
    bench.set_defaults(run=_bench)


def _bench(args: Args) -> int:
    from tidelog.bench.run import run_command

    return run_command(args)


def _add_consume(commands: Commands, parents: list[argparse.ArgumentParser]) -> None:
    consume = commands.add_parser(
        "consume",
        parents=parents,
        help="print records, one per line",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_CONSUME_EPILOG,
    )
    consume.add_argument("topic")
    start = consume.add_mutually_exclusive_group()
    start.add_argument("--from-beginning", action="store_true", help="start at the earliest offset")
    start.add_argument(
        "--offset", "-o", type=int, metavar="N", help="start at offset N (N < 0: N records before the end)"
    )
    start.add_argument(
        "--timestamp", type=_timestamp, metavar="MS", help="start at the first record at/after MS (or an ISO 8601 time)"
    )
    consume.add_argument(
        "--partition", "-p", type=_non_negative_int, metavar="N", help="only this partition (default: all)"
    )
    consume.add_argument(
        "--group",
        "-g",
        metavar="GROUP",
        help="read as a member of this consumer group: the group's share of partitions, from its committed "
        "offsets (--from-beginning where it has none), committing what was printed",
    )
    consume.add_argument("--max", "--max-messages", type=_non_negative_int, metavar="N", help="exit after N records")
    consume.add_argument(
        "--idle-timeout", type=_positive_float, metavar="SECONDS", help="exit after SECONDS without a record"
    )
    consume.add_argument(
        "--format",
        type=_format_spec,
        default="value",
        help="value (default), json, or a template such as '{partition}:{offset}\\t{key}\\t{value}'",
    )
    # Older spellings, kept for scripts: the same as a '{partition}:{offset}\t{key}\t{value}' template.
    consume.add_argument("--print-key", action="store_true", help=argparse.SUPPRESS)
    consume.add_argument("--print-offset", action="store_true", help=argparse.SUPPRESS)
    consume.set_defaults(run=records.consume)


# -- running a command ------------------------------------------------------------------


def run(args: Args) -> int:
    try:
        return int(args.run(args))
    except KeyboardInterrupt:
        return Exit.INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`| head`): nothing is wrong, and nothing more can be printed.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return Exit.OK
    except TidelogError as err:
        code = exit_code(err)
        return _fail(f"broker {args.bootstrap}: {err}" if code == Exit.UNREACHABLE else str(err), code)
    except CliError as err:
        return _fail(str(err), err.code)
    except TimeoutError:
        return _fail(f"broker {args.bootstrap}: timed out", Exit.UNREACHABLE)
    except OSError as err:
        return _fail(f"{err.filename}: {err.strerror}" if err.filename else str(err), Exit.ERROR)
    except Exception as err:  # a bug, but still one line and not a traceback
        return _fail(f"unexpected {type(err).__name__}: {err}", Exit.ERROR)


def _fail(message: str, code: Exit) -> int:
    print("tidelog: " + " ".join(message.split()), file=sys.stderr)
    return code


def _say(args: Args, data: object, text: str) -> None:
    if args.json:
        print_json(data)
    else:
        print(text)


# -- topics -----------------------------------------------------------------------------


def _topics_create(args: Args) -> int:
    with open_admin(args) as admin:
        try:
            topic = admin.create_topic(args.name, args.partitions, dict(args.config), args.replication_factor)
            text = f"created topic {topic.name} with {topic.partitions} partition(s)"
        except AlreadyExistsError:
            if not args.if_not_exists:
                raise
            topic = admin.describe_topic(args.name).topic
            text = f"topic {topic.name} already exists"
    _say(args, topic_json(topic), text)
    return Exit.OK


def _topics_list(args: Args) -> int:
    with open_admin(args) as admin:
        topics = admin.list_topics()
    if args.json:
        print_json([topic_json(t) for t in topics])
    else:
        print_tables([Table(None, ("NAME", "PARTITIONS"), [[t.name, t.partitions] for t in topics], frozenset({1}))])
    return Exit.OK


def _topics_describe(args: Args) -> int:
    with open_admin(args) as admin:
        description = admin.describe_topic(args.name)
    if args.json:
        print_json(description_json(description))
    else:
        print_tables(description_tables(description))
    return Exit.OK


def _topics_alter(args: Args) -> int:
    with open_admin(args) as admin:
        topic = admin.alter_topic_configs(args.name, dict(args.config))
    if args.json:
        print_json(topic_json(topic))
    else:
        print_tables([configs_table(topic, f"{topic.name}: configs")])
    return Exit.OK


def _topics_delete(args: Args) -> int:
    with open_admin(args) as admin:
        try:
            admin.delete_topic(args.name)
            deleted, text = True, f"deleted topic {args.name}"
        except NotFoundError:
            if not args.if_exists:
                raise
            deleted, text = False, f"topic {args.name} does not exist"
    _say(args, {"name": args.name, "deleted": deleted}, text)
    return Exit.OK
