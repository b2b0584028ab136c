"""The crash harness, small: SIGKILL the broker a few times mid-stream; nothing acknowledged is lost,
doubled or reordered, and no failed request is half written. (`make test-fault` runs it big.)"""

from __future__ import annotations

from pathlib import Path

from scripts.crash_harness import run


def test_acknowledged_records_survive_kills(tmp_path: Path) -> None:
    verdict = run(kills=3, records=20_000, partitions=3, seed=7, workdir=tmp_path, say=lambda _: None)
    assert verdict.ok, verdict.summary()
    assert verdict.acknowledged > 0 and verdict.found >= verdict.acknowledged


def test_compressed_batches_survive_kills_and_retries(tmp_path: Path) -> None:
    """Idempotent retries of compressed batches across kills: each stored once, in order."""
    verdict = run(
        kills=3, records=20_000, partitions=3, seed=11, workdir=tmp_path, say=lambda _: None, compression="zstd"
    )
    assert verdict.ok, verdict.summary()
    assert verdict.acknowledged > 0 and verdict.found >= verdict.acknowledged
