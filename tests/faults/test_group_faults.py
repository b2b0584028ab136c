"""Consumer groups under faults: members killed with SIGKILL, and churn, while records flow."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter

from tests.harness import ROOT, BrokerProcess, new_topic, wait_for
from tidelog import AdminClient, AsyncConsumer, Consumer, Producer

Processed = list[tuple[int, int]]  # (partition, offset)


class MemberProcess:
    """tests/group_member_process.py in its own process; what it processed, read from its stdout."""

    def __init__(self, address: str, topic: str, group: str, session_timeout_ms: int = 3000) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.group_member_process", address, topic, group, str(session_timeout_ms)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.processed: Processed = []
        self.started = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line == "started\n":
                self.started.set()
                continue
            partition, offset = line.split()
            self.processed.append((int(partition), int(offset)))

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


class MemberThread:
    """A group Consumer in this process, polling on a thread."""

    def __init__(self, address: str, topic: str, group: str) -> None:
        self.consumer = Consumer(
            address, topics=[topic], group=group, auto_offset_reset="earliest", auto_commit_interval_ms=100
        )
        self.processed: Processed = []
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while self.running:
            self.processed += [(m.partition, m.offset) for m in self.consumer.poll(0.05)]

    def stop(self) -> None:
        self.running = False
        self.thread.join()
        self.consumer.close()


def owners(address: str, group: str) -> dict[str, set[tuple[str, int]]]:
    with AdminClient(address) as admin:
        return {m.member_id: set(m.partitions) for m in admin.describe_group(group).members}


def test_killed_members_partitions_move_to_the_others(broker: BrokerProcess) -> None:
    topic = new_topic(broker.address, partitions=12)
    a, b = MemberThread(broker.address, topic, "kill-g"), MemberThread(broker.address, topic, "kill-g")
    # Its session outlasts the wait below: only noticing the dropped connection moves its partitions in time.
    victim = MemberProcess(broker.address, topic, "kill-g", session_timeout_ms=300_000)
    try:
        wait_for(
            lambda: sorted(len(tps) for tps in owners(broker.address, "kill-g").values()) == [4, 4, 4],
            what="12 partitions spread over the 3 members",
        )
        victims = set(owners(broker.address, "kill-g")) - {a.consumer._async._group.member_id}  # type: ignore[union-attr]
        victims -= {b.consumer._async._group.member_id}  # type: ignore[union-attr]
        (victim_id,) = victims
        victim_partitions = owners(broker.address, "kill-g")[victim_id]
        killed_at = time.monotonic()
        victim.kill()
        wait_for(
            lambda: len(a.consumer.assignment()) + len(b.consumer.assignment()) == 12,
            timeout=30,
            what="the killed member's partitions to move to the other two",
        )
        print(f"partitions of a killed member reassigned after {(time.monotonic() - killed_at) * 1000:.0f} ms")
        with Producer(broker.address) as producer:
            for _, partition in victim_partitions:
                producer.send(topic, b"after", partition=partition)
            producer.flush()
        wait_for(
            lambda: {p for p, _ in a.processed + b.processed} >= {p for _, p in victim_partitions},
            what="records of every moved partition processed",
        )
    finally:
        victim.kill()
        a.stop()
        b.stop()


def test_every_record_is_processed_at_least_once_while_members_are_killed(broker: BrokerProcess) -> None:
    topic = new_topic(broker.address, partitions=6)
    steady = MemberThread(broker.address, topic, "alo-g")
    killed: list[MemberProcess] = []
    snapshots: list[dict[str, set[tuple[str, int]]]] = []
    kills_done = threading.Event()
    sent: Counter[int] = Counter()  # partition -> records produced
    cap = 5_000_000  # a bound, should the members never get going

    def near_caught_up() -> bool:  # what the members processed (with duplicates) trails what was sent by little
        processed = len(steady.processed) + sum(len(m.processed) for m in killed)
        return kills_done.is_set() or processed >= sum(sent.values()) - 12_000

    def produce() -> None:
        # Records flow until every kill has happened, however fast this machine starts the members,
        # each chunk once the group has nearly caught up: a steady flow that kills land in.
        with Producer(broker.address) as producer:
            chunk = 0
            while (not kills_done.is_set() or chunk < 12) and sum(sent.values()) < cap:
                partition = chunk % 6
                start = sent[partition]
                producer.send_many(topic, [b"%d" % i for i in range(start, start + 1000)], partition=partition)
                sent[partition] += 1000
                chunk += 1
                wait_for(near_caught_up, timeout=60, what="the group to process all but 12,000 records sent")
            producer.flush()

    sender = threading.Thread(target=produce)
    sender.start()
    try:
        for number in range(3):  # members join, process a while, and are killed mid-stream
            member = MemberProcess(broker.address, topic, "alo-g")
            killed.append(member)
            wait_for(
                lambda m=member: len(m.processed) > 2000,  # type: ignore[misc]
                timeout=60,
                what=f"member {number + 1} to process 2,000 records",
            )
            snapshots.append(owners(broker.address, "alo-g"))
            member.kill()
        kills_done.set()
        sender.join()
        everything = {(p, o) for p, count in sent.items() for o in range(count)}

        def seen() -> set[tuple[int, int]]:
            return set(steady.processed).union(*(m.processed for m in killed))

        wait_for(lambda: len(seen()) >= len(everything), timeout=60, what=f"all {len(everything)} records processed")
        processed = seen()
        assert processed == everything
        for snapshot in snapshots:  # no partition held by two members at once
            held = [tp for tps in snapshot.values() for tp in tps]
            assert len(held) == len(set(held))
        # Duplicates only where a member was killed (or gave a partition up) before committing.
        in_steady = Counter(steady.processed)
        assert all(count == 1 for count in in_steady.values()), "the steady member processed a record twice"
    finally:
        kills_done.set()
        sender.join(60)
        for member in killed:
            member.kill()
        steady.stop()


def test_fifty_members_churning_converge_and_lose_nothing(broker: BrokerProcess) -> None:
    topic = new_topic(broker.address, partitions=8)
    total = 20_000
    rng = random.Random(7)

    async def scenario() -> tuple[set[tuple[int, int]], list[int]]:
        processed: set[tuple[int, int]] = set()
        members: list[tuple[AsyncConsumer, asyncio.Task[None]]] = []

        async def run(consumer: AsyncConsumer) -> None:
            while True:
                processed.update((m.partition, m.offset) for m in await consumer.getmany(0.05))

        async def join() -> None:
            consumer = AsyncConsumer(
                broker.address,
                topics=[topic],
                group="churn-g",
                auto_offset_reset="earliest",
                auto_commit_interval_ms=100,
            )
            await consumer.start()
            members.append((consumer, asyncio.create_task(run(consumer))))

        async def leave() -> None:
            consumer, task = members.pop(rng.randrange(len(members)))
            task.cancel()
            await consumer.close()

        for _ in range(50):
            await join()
        with Producer(broker.address) as producer:
            for start in range(0, total, 500):
                producer.send_many(topic, [b"x"] * 500, partition=start // 500 % 8)
                for _ in range(2):  # churn while records flow
                    await (leave() if members and rng.random() < 0.5 else join())
            producer.flush()
        while len(members) > 5:
            await leave()

        def counts() -> list[int]:
            return sorted(len(c.assignment()) for c, _ in members)

        deadline = time.monotonic() + 30  # a condition over many consumers: polled, with a deadline
        while (len(processed) < total or counts() != [1, 1, 2, 2, 2]) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        final = counts()
        for consumer, task in members:
            task.cancel()
            await consumer.close()
        return processed, final

    processed, final = asyncio.run(scenario())
    assert len(processed) == total
    assert final == [1, 1, 2, 2, 2]  # 8 partitions over the 5 left: balanced within one


def test_a_member_rejoins_after_a_broker_kill_and_resumes_from_committed_offsets(own_broker: BrokerProcess) -> None:
    own_broker.start()
    topic = new_topic(own_broker.address, partitions=2)
    with Producer(own_broker.address) as producer:
        for i in range(10):
            producer.send(topic, b"before-%d" % i, partition=i % 2)
        producer.flush()
    member = MemberThread(own_broker.address, topic, "restart-g")
    try:
        wait_for(lambda: len(member.processed) == 10, what="the 10 records before the kill")
        # The thread's next poll marks them processed; auto-commit (every 100 ms) follows.
        with AdminClient(own_broker.address) as admin:
            wait_for(lambda: sum(admin.group_offsets("restart-g").values()) == 10, what="the 10 records committed")
        own_broker.kill()  # committed offsets are durable; membership is rebuilt by rejoining
        own_broker.start()
        with Producer(own_broker.address) as producer:
            for i in range(4):
                producer.send(topic, b"after-%d" % i, partition=i % 2)
            producer.flush()
        wait_for(lambda: len(member.processed) >= 14, timeout=20, what="the 4 records after the restart")
        assert sorted(member.processed) == sorted(
            [(p, o) for p in range(2) for o in range(5)] + [(p, o) for p in range(2) for o in range(5, 7)]
        )
    finally:
        member.stop()
