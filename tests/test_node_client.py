"""Any language's stubs work: a Node.js @grpc/grpc-js client produces and subscribes."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from tests.harness import ROOT, BrokerProcess

NODE_DIR = ROOT / "tests" / "node"


def test_node_client_produces_and_subscribes(broker: BrokerProcess) -> None:
    node = shutil.which("node")
    if node is None or not (NODE_DIR / "node_modules" / "@grpc" / "grpc-js").exists():
        pytest.fail("node and tests/node/node_modules are set up by `make test`")
    result = subprocess.run(
        [node, "produce_subscribe.js", broker.address, str(ROOT / "protos"), "from-node"],
        cwd=NODE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [
        {"offset": 0, "value": "node-1"},
        {"offset": 1, "value": "node-2"},
        {"offset": 2, "value": "node-3"},
    ]
