"""The console's live tail over plain HTTP: its events, and that a page going away ends its stream."""

from __future__ import annotations

import http.client
import json
import urllib.request
from pathlib import Path

from tests.broker.test_metrics import free_port, scrape
from tests.harness import BrokerProcess, logged, wait_for
from tidelog import AdminClient, Producer


def test_a_closed_tail_ends_its_subscription(tmp_path: Path) -> None:
    metrics = f"127.0.0.1:{free_port()}"
    broker = BrokerProcess(
        tmp_path / "data",
        *("--console-listen", "127.0.0.1:0", "--metrics-listen", metrics, "--heartbeat-ms", "100"),
    ).start()
    try:
        with AdminClient(broker.address) as admin:
            admin.create_topic("tailed", partitions=2)
        url = logged(broker, "console_serving", "url")
        with urllib.request.urlopen(f"{url}api/session", timeout=10) as answer:  # no tokens: a session at once
            cookie = answer.headers["Set-Cookie"].split(";", 1)[0]
        host, port = url.removeprefix("http://").rstrip("/").rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        conn.request("GET", "/api/topics/tailed/tail?start=earliest", headers={"Cookie": cookie})
        stream = conn.getresponse()
        assert stream.status == 200 and stream.headers["Content-Type"] == "text/event-stream"
        assert stream.readline() == b"event: ready\n"
        assert json.loads(stream.readline().removeprefix(b"data: ")) == {"starts": {"0": 0, "1": 0}}
        with Producer(broker.address) as producer:
            producer.send("tailed", b'{"n": 1}', key=b"k", partition=1)
            producer.flush()
        lines: list[bytes] = []
        while not lines or lines[-1] != b"event: record\n":  # skip the heartbeats' comment lines
            lines.append(stream.readline())
        record = json.loads(stream.readline().removeprefix(b"data: "))
        assert (record["partition"], record["offset"], record["value"]["kind"]) == (1, 0, "json")

        def open_tails() -> float:
            return scrape(metrics).get(("tidelog_open_streams", (("method", "SubscribePartitions"),)), 0.0)

        assert open_tails() == 1
        conn.close()  # the page goes away
        wait_for(lambda: open_tails() == 0 or None, 30, what="the tail's SubscribePartitions stream to end")
        assert '"console_request_failed"' not in broker.log()
    finally:
        broker.stop()
