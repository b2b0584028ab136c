"""Any language's stubs work: a Node.js @grpc/grpc-js client produces, subscribes, and joins a group."""

from __future__ import annotations

import json

from tests.harness import ROOT, BrokerProcess, new_topic, run_node
from tidelog import AdminClient, Producer, TopicPartition


def test_node_client_produces_and_subscribes(broker: BrokerProcess) -> None:
    stdout = run_node("produce_subscribe.js", broker.address, str(ROOT / "protos"), "from-node")
    assert json.loads(stdout) == [
        {"offset": 0, "value": "node-1"},
        {"offset": 1, "value": "node-2"},
        {"offset": 2, "value": "node-3"},
    ]


def test_node_client_joins_a_group_with_no_assignor_of_its_own(broker: BrokerProcess) -> None:
    topic = new_topic(broker.address)
    with Producer(broker.address) as producer:
        for value in (b"g1", b"g2", b"g3"):
            producer.send(topic, value, partition=0)
        producer.flush()
    outcome = json.loads(run_node("group_member.js", broker.address, str(ROOT / "protos"), topic, "node-group"))
    assert outcome == {
        "partitions": [f"{topic}/0"],
        "received": [{"partition": 0, "offset": i, "value": f"g{i + 1}"} for i in range(3)],
        "committed": 3,
    }
    with AdminClient(broker.address) as admin:
        assert admin.group_offsets("node-group") == {TopicPartition(topic, 0): 3}
