"""The committed tidelog.v1 stubs are what `make proto` generates from protos/ now."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.harness import ROOT

GENERATED = ROOT / "protos" / "tidelog" / "v1"


def test_generated_stubs_are_fresh(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_protos.py"), "--out", str(tmp_path)],
        check=True,
        env=env,
        capture_output=True,
    )
    fresh = {
        p.relative_to(tmp_path / "tidelog" / "v1"): p.read_bytes() for p in (tmp_path / "tidelog" / "v1").iterdir()
    }
    committed = {
        p.relative_to(GENERATED): p.read_bytes()
        for p in GENERATED.iterdir()
        if p.suffix in (".py", ".pyi") and p.name != "__init__.py"
    }
    assert sorted(fresh) == sorted(committed), "run `make proto` and commit the result"
    stale = [str(name) for name in fresh if fresh[name] != committed[name]]
    assert not stale, f"stale generated stubs {stale}: run `make proto` and commit the result"


def test_import_path_equals_proto_path() -> None:
    from tidelog.v1 import broker_pb2

    assert broker_pb2.DESCRIPTOR.name == "tidelog/v1/broker.proto"
    assert broker_pb2.__file__ is not None and Path(broker_pb2.__file__).resolve().parent == GENERATED
