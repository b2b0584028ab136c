"""The benchmark's command line: what to run, running it, and the table (or JSON) it prints."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from tidelog import AdminClient
from tidelog.bench import cluster as cluster_bench
from tidelog.bench import tidelog_modes
from tidelog.bench.peers import PEER_NAMES
from tidelog.bench.stats import Figures, cpu_figures, cpu_seconds, format_number, summarize
from tidelog.bench.tidelog_modes import Workload
from tidelog.testing import BrokerProcess, ClusterProcess

MODES = ("produce", "consume", "e2e", "fanout", "failover")
PEER_MODES = ("produce", "consume", "e2e")
Results = dict[str, dict[str, list[Figures]]]  # system -> mode -> one Figures per run
# Figures where lower is better: their ratio is peer / Tidelog, so a ratio above 1 always favours Tidelog.
_LOWER_IS_BETTER = {"p50_ms", "p99_ms", "p999_ms"}
_RATIO_FIGURES = ("records_per_s", "p50_ms", "p99_ms", "p999_ms")
_TABLE_FIGURES = (
    "records_per_s",
    "mb_per_s",
    "wire_mb_per_s",
    "disk_mb",
    "p50_ms",
    "p99_ms",
    "p999_ms",
    "client_cpu_ms_per_1k",
    "broker_cpu_ms_per_1k",
    "rss_mb",
)
FAILOVER = "tidelog failover"  # the system the failover mode's figures are filed under
# The failover figures, in the order printed: (key, what it is, unit).
_FAILOVER_FIGURES = (
    ("kill_election_s", "kill -9 of the leader -> a new leader in GetMetadata", "s"),
    ("kill_first_ack_s", "kill -9 -> first ack of a record sent after it", "s"),
    ("kill_max_gap_s", "longest gap between acks around the kill", "s"),
    ("kill_errors", "failed sends from the kill to the SIGTERM", ""),
    ("rejoin_s", "restart of the killed broker -> in the ISR again", "s"),
    ("rejoin_max_gap_s", "longest gap between acks while it rejoins", "s"),
    ("stop_handover_s", "SIGTERM of the leader -> a new leader in GetMetadata", "s"),
    ("stop_first_ack_s", "SIGTERM -> first ack of a record sent after it", "s"),
    ("stop_max_gap_s", "longest gap between acks around the SIGTERM", "s"),
    ("stop_exit_s", "SIGTERM -> the broker exited", "s"),
    ("stop_errors", "failed sends after the SIGTERM", ""),
    ("sent", "records sent", ""),
    ("acknowledged", "records acknowledged", ""),
    ("failed", "records failed", ""),
    ("lost", "acknowledged records missing when read back", ""),
    ("duplicates", "records stored twice", ""),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--mode", default="produce,consume,e2e", help=f"comma-separated, of {', '.join(MODES)} (default %(default)s)"
    )
    parser.add_argument("--bootstrap", help="benchmark a running broker instead of starting one")
    parser.add_argument(
        "--cluster",
        type=int,
        default=0,
        metavar="N",
        help="start an etcd and N clustered brokers (127.0.0.1, temp data dirs) instead of one broker",
    )
    parser.add_argument(
        "--replication-factor",
        metavar="R[,R...]",
        help="run the modes once per replication factor, on the same brokers (default 1; above 1 needs a cluster)",
    )
    parser.add_argument(
        "--lease-s", type=int, default=2, help="--cluster: the brokers' --cluster-lease-s (default %(default)s)"
    )
    parser.add_argument(
        "--failover-rate", type=float, default=2000, help="failover: records per second (default %(default)s)"
    )
    parser.add_argument("--cluster-dir", type=Path, help="--cluster: keep the data and logs here (default: a temp dir)")
    parser.add_argument("--broker-log-level", default="warning", help="the brokers' --log-level (default %(default)s)")
    parser.add_argument("--records", type=int, default=500_000, help="records to produce (default %(default)s)")
    parser.add_argument("--duration", type=float, help="produce for this many seconds instead of --records")
    parser.add_argument("--size", type=int, default=100, help="value bytes per record (default %(default)s)")
    parser.add_argument("--partitions", type=int, default=1)
    parser.add_argument("--producers", type=int, default=1, help="producer processes (default %(default)s)")
    parser.add_argument("--keys", action="store_true", help="keyed records (1024 distinct keys)")
    parser.add_argument(
        "--send-many", type=int, default=0, metavar="N", help="produce with Producer.send_many() in calls of N records"
    )
    parser.add_argument(
        "--group", action="store_true", help="consume: read as the one member of a new consumer group (Groups.Consume)"
    )
    parser.add_argument(
        "--per-record",
        action="store_true",
        help="consume one Message at a time through poll() (each value in hand), not poll_batches()",
    )
    parser.add_argument(
        "--compression",
        choices=("none", "zstd", "lz4"),
        help="the producer's codec (given, even none: values are compressible JSON events; default: none, "
        "values of one byte repeated)",
    )
    parser.add_argument("--linger-ms", type=float, default=5)
    parser.add_argument("--batch-bytes", type=int, default=256 << 10)
    parser.add_argument("--rate", type=float, default=5000, help="e2e: records per second (default %(default)s)")
    parser.add_argument("--seconds", type=float, default=5, help="e2e: how long to send (default %(default)s)")
    parser.add_argument(
        "--rates",
        help="e2e at each of these rates (comma-separated records/s): a latency-throughput curve, one row per rate",
    )
    parser.add_argument(
        "--plot", type=Path, metavar="FILE.png", help="draw the --rates curve (every system) into this PNG (matplotlib)"
    )
    parser.add_argument("--subscribers", type=int, default=8, help="fanout: readers (default %(default)s)")
    parser.add_argument("--fsync", choices=("always", "interval"), default="always")
    parser.add_argument("--idle-subscribers", type=int, default=0, help="hold this many idle Subscribe streams open")
    parser.add_argument("--runs", type=int, default=3, help="repeat; figures are medians (default %(default)s)")
    parser.add_argument("--vs", default="", help="peers in the same run: redis, nats (comma-separated)")
    parser.add_argument(
        "--kafka",
        action="store_true",
        help="also run Tidelog through its Kafka listener, with confluent-kafka as the client",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tidelog bench",
        description="Tidelog's throughput and latency through the Python SDK, optionally beside Redis Streams "
        "and NATS JetStream. Starts its own broker (127.0.0.1, a temp data dir) unless --bootstrap is given.",
    )
    add_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(build_parser().parse_args(argv))


def run_command(args: argparse.Namespace) -> int:
    modes = _choices(args.mode, MODES, "--mode")
    peers = _choices(args.vs, PEER_NAMES, "--vs") if args.vs else []
    factors = replication_factors(args)
    if args.cluster and args.bootstrap:
        raise SystemExit("tidelog bench: --cluster starts its own brokers; it does not take --bootstrap")
    if args.cluster < 0 or (args.cluster and max(f or 1 for f in factors) > args.cluster):
        raise SystemExit("tidelog bench: --cluster N takes N >= 1 brokers, at least the largest --replication-factor")
    if "failover" in modes and args.cluster < 3:
        raise SystemExit("tidelog bench: --mode failover needs --cluster 3 or more")
    rates = e2e_rates(args)
    if args.plot is not None and not args.rates:
        raise SystemExit("tidelog bench: --plot draws the --rates curve: give --rates too")
    if args.plot is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise SystemExit("tidelog bench: --plot needs matplotlib: pip install 'tidelog[bench]'") from None
    workload = Workload(
        records=args.records,
        size=args.size,
        partitions=args.partitions,
        producers=args.producers,
        keys=args.keys,
        linger_ms=args.linger_ms,
        batch_bytes=args.batch_bytes,
        duration=args.duration,
        rate=args.rate,
        seconds=args.seconds,
        subscribers=args.subscribers,
        send_many=args.send_many,
        group=args.group,
        compression=args.compression,
        per_record=args.per_record,
    )
    if peers:
        from tidelog.bench.peers import missing_requirements

        missing = [message for spec in peers if (message := missing_requirements(spec))]
        if missing:
            raise SystemExit("tidelog bench: " + "; ".join(missing))
    ours = [m for m in modes if m != "failover"]
    steps = args.runs * (
        len(ours) * len(factors)
        + ("failover" in modes)
        + sum(len([m for m in modes if m in PEER_MODES]) for _ in [*peers, *(["kafka"] if args.kafka else [])])
    )
    with _progress(steps, quiet=args.json) as advance:
        results: Results = run_tidelog(args, modes, workload, advance)
        if args.kafka:
            results.update(run_peer("kafka", args, modes, workload, advance))
        for spec in peers:
            results.update(run_peer(spec, args, modes, workload, advance))
    if args.json:
        print(json.dumps(_as_json(results, args), indent=2))
    else:
        print_table(results, args)
    if args.plot is not None:
        from tidelog.bench.plot import latency_curve

        latency_curve(results, rates, args.plot, _settings_line(args))
        _note(f"tidelog bench: the curve is in {args.plot}", args.json)
    return 0


def e2e_rates(args: argparse.Namespace) -> list[float]:
    """The --rates list (records/s), or the one --rate."""
    if not args.rates:
        return [args.rate]
    try:
        rates = [float(item) for item in args.rates.split(",") if item.strip()]
    except ValueError:
        rates = []
    if not rates or min(rates) <= 0:
        raise SystemExit("tidelog bench: --rates takes a comma-separated list of records per second > 0")
    return rates


def e2e_mode(rate: float, args: argparse.Namespace) -> str:
    """An e2e result's mode name: "e2e", or "e2e@RATE" on a --rates curve."""
    return f"e2e@{rate:g}" if args.rates else "e2e"


def replication_factors(args: argparse.Namespace) -> list[int | None]:
    """The --replication-factor list; [None] (the broker's default) for a single broker without one."""
    if args.replication_factor is None:
        return [1] if args.cluster else [None]
    try:
        factors = [int(item) for item in args.replication_factor.split(",") if item.strip()]
    except ValueError:
        factors = []
    if not factors or min(factors) < 1:
        raise SystemExit("tidelog bench: --replication-factor takes a comma-separated list of integers >= 1")
    return list(dict.fromkeys(factors))


def system_label(factor: int | None) -> str:
    """How a replication factor's results are labelled: "tidelog" alone, "tidelog rf=3" with one."""
    return "tidelog" if factor is None else f"tidelog rf={factor}"


def _choices(text: str, allowed: Sequence[str], option: str) -> list[str]:
    chosen = [item.strip() for item in text.split(",") if item.strip()]
    unknown = [item for item in chosen if item not in allowed]
    if unknown or not chosen:
        raise SystemExit(f"tidelog bench: {option} takes a comma-separated list of {', '.join(allowed)}")
    return chosen


def run_tidelog(args: argparse.Namespace, modes: list[str], w: Workload, advance: Callable[[str], None]) -> Results:
    """Each mode per run and replication factor (interleaved, so that a drift of the machine's speed
    touches every factor alike), then the failover mode per run; one system per factor."""
    factors = replication_factors(args)
    ours = [m for m in modes if m != "failover"]
    results: Results = {system_label(factor): {} for factor in factors} if ours else {}
    with ExitStack() as stack:
        cluster: ClusterProcess | None = None
        broker: BrokerProcess | None = None
        if args.cluster:
            cluster = stack.enter_context(
                cluster_bench.start_cluster(
                    args.cluster, args.fsync, args.lease_s, args.broker_log_level, args.cluster_dir
                )
            )
            bootstrap = cluster.bootstrap
        elif args.bootstrap:
            bootstrap = args.bootstrap
        else:
            broker = stack.enter_context(_broker(args.fsync, args.broker_log_level))
            bootstrap = broker.address
        if args.idle_subscribers:
            stack.enter_context(_idle_subscribers(bootstrap, args.idle_subscribers, clustered=cluster is not None))
        for run in range(args.runs):
            for factor in factors if ours else []:
                system = system_label(factor)
                out = results[system]
                # A fresh name each time: an id() of a freed object comes back, and the topic then exists.
                topic = f"bench-{run}-{'' if factor is None else f'rf{factor}-'}{uuid.uuid4().hex[:12]}"
                with AdminClient(bootstrap) as admin:
                    admin.create_topic(topic, partitions=w.partitions, replication_factor=factor)
                    admin.create_topic(f"{topic}-e2e", replication_factor=factor)
                if cluster is not None:
                    cluster_bench.wait_replicated(cluster, topic, w.partitions, factor or 1)
                    cluster_bench.wait_replicated(cluster, f"{topic}-e2e", 1, factor or 1)
                written = 0
                pids = _broker_pids(broker, cluster)
                for mode in ours:
                    advance(f"{system} {mode} (run {run + 1}/{args.runs})")
                    if mode in ("consume", "fanout") and not written:
                        written = int(tidelog_modes.produce(bootstrap, topic, w)["records"]) + 1  # untimed fill
                    cpu_before = cpu_seconds(pids)
                    if mode == "produce":
                        figures = tidelog_modes.produce(bootstrap, topic, w)
                        written += int(figures["records"]) + 1  # + the warm-up record
                    elif mode == "consume":
                        figures = tidelog_modes.consume(bootstrap, topic, w, written)
                    elif mode == "fanout":
                        figures = tidelog_modes.fanout(bootstrap, topic, w, written)
                    else:
                        for rate in e2e_rates(args):
                            cpu_before = cpu_seconds(pids)
                            figures = tidelog_modes.end_to_end(bootstrap, f"{topic}-e2e", replace(w, rate=rate))
                            figures |= cpu_figures(cpu_before, cpu_seconds(pids), int(figures["records"]), bool(pids))
                            out.setdefault(e2e_mode(rate, args), []).append(figures)
                        continue
                    figures |= cpu_figures(cpu_before, cpu_seconds(pids), int(figures["records"]), bool(pids))
                    if mode in ("produce", "consume"):
                        figures |= _on_the_wire(bootstrap, topic, figures)
                    out.setdefault(mode, []).append(figures)
                if broker is not None and broker.proc is not None:
                    out.setdefault("broker", []).append({"rss_mb": _rss_mb(broker.proc.pid)})
                if cluster is not None:  # the brokers this run started, as the CPU figures count them
                    out.setdefault("brokers", []).append({"rss_mb": sum(_rss_mb(pid) for pid in pids)})
            if "failover" in modes and cluster is not None:
                advance(f"tidelog failover (run {run + 1}/{args.runs})")
                figures = cluster_bench.failover(
                    cluster, args.failover_rate, w.size, w.linger_ms, lambda line: _note(line, args.json)
                )
                results.setdefault(FAILOVER, {}).setdefault("failover", []).append(figures)
    return results


def _broker_pids(broker: BrokerProcess | None, cluster: ClusterProcess | None) -> list[int]:
    """The brokers this run started (none with --bootstrap: their CPU is not ours to read)."""
    processes = [broker] if broker is not None else list(cluster.brokers.values()) if cluster is not None else []
    return [p.proc.pid for p in processes if p.proc is not None]


def _on_the_wire(bootstrap: str, topic: str, figures: Figures) -> Figures:
    """Bytes on disk after the mode, and the MB/s they make on the wire (stored batches travel as stored)."""
    disk = tidelog_modes.stored_bytes(bootstrap, topic)
    seconds = figures["records"] / figures["records_per_s"]
    return {"disk_mb": disk / 1e6, "wire_mb_per_s": disk / seconds / 1e6}


def _note(line: str, quiet: bool) -> None:
    if not quiet:
        print(line, file=sys.stderr)


def _rss_mb(pid: int) -> float:
    """The broker's resident memory after a run (Linux /proc), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_peer(
    spec: str, args: argparse.Namespace, modes: list[str], w: Workload, advance: Callable[[str], None]
) -> Results:
    from tidelog.bench.kafka_path import KafkaPath
    from tidelog.bench.peers import Peer, open_peer

    out: dict[str, list[Figures]] = {}
    opened: Peer = KafkaPath(args.fsync, args.linger_ms) if spec == "kafka" else open_peer(spec, args.fsync)
    with opened as peer:
        for run in range(args.runs):
            for mode in [m for m in modes if m in PEER_MODES]:
                advance(f"{peer.name} {mode} (run {run + 1}/{args.runs})")
                if mode == "produce":
                    out.setdefault(mode, []).append(peer.produce(w.records, w.size))
                elif mode == "consume":
                    if "produce" not in modes:
                        peer.produce(w.records, w.size)
                    out.setdefault(mode, []).append(peer.consume(w.records, w.size))
                else:
                    for rate in e2e_rates(args):
                        out.setdefault(e2e_mode(rate, args), []).append(peer.e2e(rate, w.seconds, w.size))
        return {peer.name: out}


@contextmanager
def _broker(fsync: str, log_level: str = "warning") -> Iterator[BrokerProcess]:
    with tempfile.TemporaryDirectory(prefix="tidelog-bench-") as tmp:
        broker = BrokerProcess(Path(tmp) / "data", "--fsync", fsync, "--log-level", log_level).start()
        try:
            yield broker
        finally:
            broker.stop()


@contextmanager
def _idle_subscribers(bootstrap: str, count: int, clustered: bool = False) -> Iterator[None]:
    """N live Subscribe streams on a topic nobody writes to: what idle consumers cost the broker
    (in a cluster, the topic's leader)."""
    import grpc

    from tidelog.v1.broker_pb2 import SubscribeRequest
    from tidelog.v1.broker_pb2_grpc import BrokerStub

    with AdminClient(bootstrap) as admin:
        if "bench-idle" not in [t.name for t in admin.list_topics()]:
            admin.create_topic("bench-idle")
    address = cluster_bench.leader_address(bootstrap, "bench-idle") if clustered else bootstrap
    with grpc.insecure_channel(address) as channel:
        stub = BrokerStub(channel)
        streams = []
        for _ in range(count):  # one at a time: each is live (its first response read) before the next opens
            stream = stub.Subscribe(SubscribeRequest(topic="bench-idle"))
            next(stream)
            streams.append(stream)
        try:
            yield
        finally:
            for stream in streams:
                stream.cancel()


@contextmanager
def _progress(steps: int, quiet: bool) -> Iterator[Callable[[str], None]]:
    """A progress bar on stderr when it is a terminal; `advance(label)` starts the next step."""
    if quiet or not sys.stderr.isatty():
        yield lambda label: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), transient=True
    ) as progress:
        task = progress.add_task("starting", total=steps)
        started = False

        def advance(label: str) -> None:
            nonlocal started
            progress.update(task, description=label, advance=1 if started else 0)
            started = True

        yield advance


def _settings_line(args: argparse.Namespace) -> str:
    amount = f"{args.duration:g} s of records" if args.duration else f"{args.records:,} records"
    where = ""
    if args.cluster:
        factors = ",".join(str(f) for f in replication_factors(args))
        where = f"{args.cluster} brokers (lease {args.lease_s} s), replication factor {factors}, acks=all, "
    elif args.replication_factor is not None:
        where = f"replication factor {args.replication_factor}, acks=all, "
    return (
        f"{where}{amount} of {args.size} B, {args.partitions} partition(s), {args.producers} producer(s), "
        f"keys {'on' if args.keys else 'off'}, "
        f"{f'send_many({args.send_many})' if args.send_many else 'send()'}, "
        f"{'consume through a group, ' if args.group else ''}"
        f"{'consume per record (poll), ' if args.per_record else ''}"
        f"{f'compression={args.compression} (JSON values), ' if args.compression else ''}"
        f"fsync={args.fsync}, linger={args.linger_ms:g} ms, "
        f"batch={args.batch_bytes:,} B, e2e at {args.rates or f'{args.rate:,.0f}'}/s for {args.seconds:g} s, "
        f"median of {args.runs} run(s) (min-max)"
    )


def print_table(results: Results, args: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 200)
    throughput = {system: modes for system, modes in results.items() if system != FAILOVER}
    if throughput:
        table = Table(title=f"tidelog bench: {_settings_line(args)}", title_justify="left")
        columns = (
            "system",
            "mode",
            "records/s",
            "MB/s",
            "wire MB/s",
            "disk MB",
            "p50 ms",
            "p99 ms",
            "p99.9 ms",
            "client CPU ms/1k",
            "broker CPU ms/1k",
            "RSS MB",
        )
        for column in columns:
            table.add_column(column, justify="left" if column in ("system", "mode") else "right")
        for system, modes in throughput.items():
            for mode, runs in modes.items():
                s = summarize(runs)
                cells = [s[k].format() if k in s else "" for k in _TABLE_FIGURES]
                table.add_row(system, mode, *cells)
        console.print(table)
    replication = replication_rows(results)
    if replication:
        base = next(iter(throughput))
        replication_table = Table(title="Replication's cost, same run", title_justify="left")
        for column in ("system", "mode", f"records/s ÷ {base}'s"):
            replication_table.add_column(column, justify="left" if column in ("system", "mode") else "right")
        for system, mode, ratio in replication:
            replication_table.add_row(system, mode, f"{ratio:.2f}")
        console.print(replication_table)
    ratios = ratio_rows(results)
    if ratios:
        ratio_table = Table(
            title="Tidelog's advantage (x over the peer; above 1 means Tidelog is better)", title_justify="left"
        )
        for column in ("peer", "mode", "figure", "x"):
            ratio_table.add_column(column, justify="right" if column == "x" else "left")
        for peer, mode, figure, ratio in ratios:
            ratio_table.add_row(peer, mode, figure, f"{ratio:.2f}")
        console.print(ratio_table)
    if FAILOVER in results:
        runs = results[FAILOVER]["failover"]
        lease = runs[0]["lease_s"]
        failover_table = Table(
            title=f"tidelog bench failover: 3 replicas, acks=all, {args.failover_rate:,.0f} records/s of "
            f"{args.size} B, {args.cluster} brokers, lease {lease:g} s, fsync={args.fsync}, "
            f"median of {len(runs)} run(s) (min-max)",
            title_justify="left",
        )
        for column in ("figure", "value", "each run", "goal"):
            failover_table.add_column(column, justify="left" if column in ("figure", "goal") else "right")
        s = summarize(runs)
        for key, label, unit in _FAILOVER_FIGURES:
            if key in s:
                show = format_number if unit else "{:,.0f}".format  # seconds, or counts
                low, median, high = show(s[key].low), show(s[key].median), show(s[key].high)
                value = (median if low == high else f"{median} ({low}-{high})") + (f" {unit}" if unit else "")
                each = " / ".join(show(run[key]) for run in runs) if len(runs) > 1 else ""
                failover_table.add_row(label, value, each, _failover_goal(key, s[key].high, lease))
        console.print(failover_table)


def _failover_goal(key: str, worst: float, lease_s: float) -> str:
    """Issue 16's goals, judged on the worst run."""
    if key == "kill_first_ack_s":
        return f"<= lease + 1 s = {lease_s + 1:g} s: {'met' if worst <= lease_s + 1 else 'MISSED'}"
    if key == "stop_max_gap_s":
        return f"< 1 s: {'met' if worst < 1 else 'MISSED'}"
    if key == "stop_errors":
        return f"0: {'met' if worst == 0 else 'MISSED'}"
    if key == "lost":
        return f"0: {'met' if worst == 0 else 'MISSED'}"
    return ""


def replication_rows(results: Results) -> list[tuple[str, str, float]]:
    """(system, mode, its records/s ÷ the first replication factor's) for each further factor."""
    systems = [name for name in results if name.startswith("tidelog rf=")]
    if len(systems) < 2:
        return []
    base = {mode: summarize(runs) for mode, runs in results[systems[0]].items()}
    rows = []
    for system in systems[1:]:
        for mode, runs in results[system].items():
            ours = summarize(runs)
            if "records_per_s" in ours and "records_per_s" in base.get(mode, {}):
                rows.append((system, mode, ours["records_per_s"].median / base[mode]["records_per_s"].median))
    return rows


def ratio_rows(results: Results) -> list[tuple[str, str, str, float]]:
    """(peer, mode, figure, Tidelog's advantage) for each figure both sides have; Tidelog's side is
    "tidelog", or the first replication factor's."""
    systems = [name for name in results if name.startswith("tidelog") and name != FAILOVER]
    ours = {mode: summarize(runs) for mode, runs in results.get(systems[0], {}).items()} if systems else {}
    rows = []
    for peer, modes in results.items():
        if peer.startswith("tidelog"):
            continue
        for mode, runs in modes.items():
            theirs = summarize(runs)
            for figure in _RATIO_FIGURES:
                if figure in theirs and figure in ours.get(mode, {}):
                    a, b = ours[mode][figure].median, theirs[figure].median
                    ratio = b / a if figure in _LOWER_IS_BETTER else a / b
                    rows.append((peer, mode, figure, ratio))
    return rows


def _as_json(results: Results, args: argparse.Namespace) -> dict[str, Any]:
    return {
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if not callable(v)},
        "median": {
            system: {mode: {k: s.median for k, s in summarize(runs).items()} for mode, runs in modes.items()}
            for system, modes in results.items()
        },
        "range": {
            system: {mode: {k: [s.low, s.high] for k, s in summarize(runs).items()} for mode, runs in modes.items()}
            for system, modes in results.items()
        },
        "advantage": [{"peer": p, "mode": m, "figure": f, "ratio": r} for p, m, f, r in ratio_rows(results)],
        "replication": [{"system": s, "mode": m, "ratio": r} for s, m, r in replication_rows(results)],
        "runs": results,
    }
