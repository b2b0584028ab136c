"""`tidelog groups list|describe|reset-offsets|delete`: consumer groups from the command line."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING

from tidelog.cli._base import Args, Exit, open_admin
from tidelog.cli.output import Table, print_json, print_tables
from tidelog.types import ClusterPartition, GroupDescription

if TYPE_CHECKING:
    Commands = argparse._SubParsersAction[argparse.ArgumentParser]


def add_groups(commands: Commands, parents: list[argparse.ArgumentParser], timestamp: Callable[[str], int]) -> None:
    groups = commands.add_parser("groups", help="list, describe, reset and delete consumer groups")
    actions = groups.add_subparsers(dest="action", required=True)
    actions.add_parser("list", parents=parents, help="groups, their members and state").set_defaults(run=_list)
    describe = actions.add_parser("describe", parents=parents, help="members, partitions, offsets and lag")
    describe.add_argument("group")
    describe.set_defaults(run=_describe)
    reset = actions.add_parser(
        "reset-offsets", parents=parents, help="move a group's committed offsets (no live members)"
    )
    reset.add_argument("group")
    reset.add_argument("--topic", "-t", required=True)
    reset.add_argument("--partition", "-p", type=int, action="append", metavar="N", help="only these partitions")
    to = reset.add_mutually_exclusive_group(required=True)
    to.add_argument("--to-earliest", action="store_true", help="the log start")
    to.add_argument("--to-latest", action="store_true", help="the high watermark (skip everything)")
    to.add_argument("--to-offset", type=int, metavar="N", help="offset N")
    to.add_argument("--to-timestamp", type=timestamp, metavar="MS", help="the first record at/after MS or ISO time")
    reset.set_defaults(run=_reset)
    delete = actions.add_parser("delete", parents=parents, help="forget a group's committed offsets")
    delete.add_argument("group")
    delete.set_defaults(run=_delete)


def _list(args: Args) -> int:
    with open_admin(args) as admin:
        groups = admin.list_groups()
    if args.json:
        print_json([dataclasses.asdict(g) for g in groups])
    else:
        rows = [[g.name, g.members, g.state, g.generation] for g in groups]
        print_tables([Table(None, ("GROUP", "MEMBERS", "STATE", "GENERATION"), rows, frozenset({1, 3}))])
    return Exit.OK


def describe_tables(group: GroupDescription) -> list[Table]:
    members = Table(
        f"{group.name}: {group.state}, generation {group.generation}",
        ("MEMBER", "PEER", "TOPICS", "PARTITIONS"),
        [
            [m.member_id, m.peer, ",".join(m.topics), " ".join(f"{t}/{p}" for t, p in m.partitions)]
            for m in group.members
        ],
    )
    lag = Table(
        f"{group.name}: offsets",
        ("TOPIC", "PARTITION", "COMMITTED", "END", "LAG", "MEMBER"),
        [
            [
                p.topic,
                p.partition,
                p.committed_offset if p.committed_offset >= 0 else "-",
                p.end_offset,
                p.lag,
                p.member_id,
            ]
            for p in group.partitions
        ],
        frozenset({1, 2, 3, 4}),
    )
    return [members, lag]


def _describe(args: Args) -> int:
    with open_admin(args) as admin:
        group = admin.describe_group(args.group)
    if args.json:
        print_json(dataclasses.asdict(group))
    else:
        print_tables(describe_tables(group))
    return Exit.OK


def _reset(args: Args) -> int:
    position = "earliest" if args.to_earliest else "latest" if args.to_latest else None
    with open_admin(args) as admin:
        offsets = admin.reset_group_offsets(
            args.group,
            args.topic,
            position=position,
            offset=args.to_offset,
            timestamp_ms=args.to_timestamp,
            partitions=args.partition,
        )
    if args.json:
        print_json([{"topic": tp.topic, "partition": tp.partition, "offset": o} for tp, o in offsets.items()])
    else:
        rows = [[tp.topic, tp.partition, o] for tp, o in sorted(offsets.items())]
        print_tables([Table(f"{args.group}: new offsets", ("TOPIC", "PARTITION", "OFFSET"), rows, frozenset({1, 2}))])
    return Exit.OK


def _delete(args: Args) -> int:
    with open_admin(args) as admin:
        admin.delete_group(args.group)
    if args.json:
        print_json({"group": args.group, "deleted": True})
    else:
        print(f"deleted group {args.group}")
    return Exit.OK


def add_acls(commands: Commands, parents: list[argparse.ArgumentParser]) -> None:
    acls = commands.add_parser("acls", help="list, add and remove ACL rules (the broker needs --acls)")
    actions = acls.add_subparsers(dest="action", required=True)
    actions.add_parser("list", parents=parents, help="every rule in force, and where it comes from").set_defaults(
        run=_acls_list
    )
    add = actions.add_parser("add", parents=parents, help="add rules: 'allow alice produce topic:orders'")
    add.add_argument("rules", nargs="+", metavar="RULE")
    add.set_defaults(run=_acls_add)
    remove = actions.add_parser("remove", parents=parents, help="remove added rules")
    remove.add_argument("rules", nargs="+", metavar="RULE")
    remove.set_defaults(run=_acls_remove)


def _acls_list(args: Args) -> int:
    with open_admin(args) as admin:
        rules = admin.list_acls()
    if args.json:
        print_json([{"rule": rule, "source": source} for rule, source in rules])
    else:
        print_tables([Table(None, ("RULE", "SOURCE"), [[rule, source] for rule, source in rules])])
    return Exit.OK


def _acls_add(args: Args) -> int:
    with open_admin(args) as admin:
        admin.create_acls(args.rules)
    print(f"added {len(args.rules)} rule(s)")
    return Exit.OK


def _acls_remove(args: Args) -> int:
    with open_admin(args) as admin:
        deleted = admin.delete_acls(args.rules)
    print(f"removed {deleted} rule(s)")
    return Exit.OK


def add_cluster(commands: Commands, parents: list[argparse.ArgumentParser]) -> None:
    cluster = commands.add_parser("cluster", help="the brokers, the controller, and partitions short of replicas")
    actions = cluster.add_subparsers(dest="action", required=True)
    actions.add_parser(
        "describe", parents=parents, help="brokers, controller, under-replicated, offline and moving partitions"
    ).set_defaults(run=_cluster_describe)
    elect = actions.add_parser(
        "elect-leaders", parents=parents, help="move leadership to the preferred replicas (or --unclean)"
    )
    elect.add_argument("topic")
    elect.add_argument("-p", "--partition", type=int, action="append", help="this partition (repeat; default all)")
    elect.add_argument(
        "--unclean",
        action="store_true",
        help="lead partitions whose in-sync replicas are all gone from a live out-of-sync replica: what only "
        "the lost replicas held is gone for good",
    )
    elect.set_defaults(run=_cluster_elect)
    move = actions.add_parser("reassign", parents=parents, help="move partitions to new replicas")
    move.add_argument("topic")
    move.add_argument(
        "moves", nargs="+", metavar="PARTITION=BROKER,BROKER", help="e.g. 0=2,0,1 (the first is the preferred leader)"
    )
    move.set_defaults(run=_cluster_reassign)


def _cluster_elect(args: Args) -> int:
    with open_admin(args) as admin:
        results = admin.elect_leaders(args.topic, args.partition, unclean=args.unclean)
    if args.json:
        print_json([dataclasses.asdict(r) for r in results])
        return Exit.OK
    rows = [[r.partition, r.outcome, r.leader, r.leader_epoch, r.detail] for r in results]
    print_tables(
        [Table("elections", ("PARTITION", "OUTCOME", "LEADER", "EPOCH", "DETAIL"), rows, frozenset({0, 2, 3}))]
    )
    return Exit.OK


def _cluster_reassign(args: Args) -> int:
    moves: dict[int, list[int]] = {}
    for text in args.moves:
        partition, sep, brokers = text.partition("=")
        try:
            moves[int(partition)] = [int(b) for b in brokers.split(",")]
        except ValueError:
            sep = ""
        if not sep:
            raise SystemExit(f"tidelog: {text!r}: write a move as PARTITION=BROKER,BROKER (e.g. 0=2,0,1)")
    with open_admin(args) as admin:
        admin.reassign_partitions(args.topic, moves)
    print(f"moving {len(moves)} partition(s) of {args.topic}: `tidelog cluster describe` shows them until done")
    return Exit.OK


def _cluster_describe(args: Args) -> int:
    with open_admin(args) as admin:
        cluster = admin.describe_cluster()

    def rows(entries: list[ClusterPartition]) -> list[list[object]]:
        return [
            [p.topic, p.partition, p.leader, ",".join(map(str, p.replicas)), ",".join(map(str, p.isr))] for p in entries
        ]

    if args.json:
        print_json(
            {
                "brokers": [{"id": i, "address": a} for i, a in sorted(cluster.brokers.items())],
                "controller_id": cluster.controller_id,
                "under_replicated": [dataclasses.asdict(p) for p in cluster.under_replicated],
                "offline": [dataclasses.asdict(p) for p in cluster.offline],
                "reassigning": [dataclasses.asdict(p) for p in cluster.reassigning],
            }
        )
        return Exit.OK
    brokers = [[i, a, "controller" if i == cluster.controller_id else ""] for i, a in sorted(cluster.brokers.items())]
    columns = ("TOPIC", "PARTITION", "LEADER", "REPLICAS", "ISR")
    print_tables(
        [
            Table("brokers", ("ID", "ADDRESS", ""), brokers, frozenset({0})),
            Table("under-replicated partitions", columns, rows(cluster.under_replicated), frozenset({1, 2})),
            Table("offline partitions", columns, rows(cluster.offline), frozenset({1, 2})),
            Table(
                "partitions moving",
                (*columns, "TO"),
                [
                    [*row, ",".join(map(str, p.target_replicas))]
                    for row, p in zip(rows(cluster.reassigning), cluster.reassigning, strict=True)
                ],
                frozenset({1, 2}),
            ),
        ]
    )
    return Exit.OK
