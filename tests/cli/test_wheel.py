"""The built wheel, as a new user gets it: `pip install` into a fresh venv, then the `tidelog` command
serves, and a produce/consume round trip goes through it, from a folder outside the repository."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import ROOT, wait_for

pytestmark = pytest.mark.slow


def run(*args: str | Path, cwd: Path, stdin: str = "", timeout: float = 300) -> str:
    result = subprocess.run(
        [str(a) for a in args], cwd=cwd, input=stdin, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, f"{args} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """(the wheel, the bin folder of a fresh venv it is installed in)."""
    root = tmp_path_factory.mktemp("wheel")
    dist = root / "dist"
    # The project's own venv has the build backend, so the build needs nothing from the network.
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", dist, ROOT, cwd=root)
    (wheel,) = dist.glob("tidelog-*.whl")
    venv.create(root / "venv", with_pip=True)
    bin_dir = root / "venv" / "bin"
    run(bin_dir / "python", "-m", "pip", "install", "-q", wheel, cwd=root)
    yield wheel, bin_dir


def test_the_wheel_holds_the_tidelog_package_only(installed: tuple[Path, Path]) -> None:
    names = zipfile.ZipFile(installed[0]).namelist()
    tops = {name.split("/")[0] for name in names}
    assert tops == {"tidelog", next(t for t in tops if t.endswith(".dist-info"))}, tops
    for expected in ("tidelog/cli/main.py", "tidelog/bench/run.py", "tidelog/broker/server.py", "tidelog/py.typed"):
        assert expected in names
    assert "tidelog/v1/broker.proto" in names


def test_the_installed_command_serves_and_round_trips(installed: tuple[Path, Path], tmp_path: Path) -> None:
    bin_dir = installed[1]
    assert "serve" in run(bin_dir / "tidelog", "--help", cwd=tmp_path)
    ready = tmp_path / "ready"
    with open(tmp_path / "broker.log", "wb") as log:
        broker = subprocess.Popen(
            [
                bin_dir / "tidelog",
                "serve",
                "--data-dir",
                tmp_path / "data",
                "--listen",
                "127.0.0.1:0",
                "--ready-file",
                ready,
                "--log-format",
                "json",
            ],
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        )
    try:
        address = wait_for(
            lambda: ready.read_text() if ready.exists() else "", 60, what="the installed broker's ready file"
        )
        tidelog = (bin_dir / "tidelog", "-b", address)
        run(*tidelog[:1], "topics", "create", "wheel-demo", *tidelog[1:], cwd=tmp_path)
        run(*tidelog[:1], "produce", "wheel-demo", *tidelog[1:], cwd=tmp_path, stdin="one\ntwo\n")
        out = run(
            *tidelog[:1],
            "consume",
            "wheel-demo",
            "--from-beginning",
            "--max",
            "2",
            "--idle-timeout",
            "30",
            *tidelog[1:],
            cwd=tmp_path,
        )
        assert out.split() == ["one", "two"]
        sdk = "from tidelog import Consumer; c = Consumer('%s', topics=['wheel-demo'], auto_offset_reset='earliest')\n"
        sdk += "got = []\nwhile len(got) < 2: got += c.poll(5)\nprint(*[m.value.decode() for m in got]); c.close()"
        assert run(bin_dir / "python", "-c", sdk % address, cwd=tmp_path).split() == ["one", "two"]
    finally:
        broker.terminate()
        broker.wait(30)
