"""Run every ```python block of docs/sdk.md against a real broker, so the SDK guide stays true.

The convention (also in an HTML comment at the top of docs/sdk.md): the blocks run in the
order they appear, in one shared namespace, with "127.0.0.1:50051" replaced by the test
broker's address; a block fenced ```python no-run is skipped. Each block is its own test,
named by its line (``test_example[sdk.md:120]``); selecting one alone (``-k sdk.md:120``)
runs the blocks before it first. Tracebacks point at docs/sdk.md lines.
"""

from __future__ import annotations

import contextlib
import linecache
import re
import signal
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import pytest

from tests.harness import ROOT, BrokerProcess

DOC = ROOT / "docs" / "sdk.md"
DEFAULT_ADDRESS = "127.0.0.1:50051"
# An example that takes longer is stuck (a consumer loop that never ends, a lost acknowledgement).
BLOCK_TIMEOUT_S = 60
# Fence info strings allowed in the guide: a typo such as ```pyhton would silently skip a block.
KNOWN_FENCES = {"python", "python no-run", "sh", "text", ""}
_FENCE = re.compile(r"^```(.*)$")


@dataclass(frozen=True)
class Block:
    line: int  # of the opening fence, 1-based
    info: str
    source: str

    @property
    def runs(self) -> bool:
        return self.info == "python"

    @property
    def name(self) -> str:
        return f"sdk.md:{self.line}"


def read_blocks(text: str) -> list[Block]:
    """The fenced code blocks of a Markdown text (top-level fences only)."""
    blocks: list[Block] = []
    opened: tuple[int, str] | None = None
    body: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        match = _FENCE.match(line)
        if match is None:
            if opened is not None:
                body.append(line)
        elif opened is None:
            opened, body = (number, match.group(1).strip()), []
        else:
            blocks.append(Block(opened[0], opened[1], "\n".join(body) + "\n"))
            opened = None
    if opened is not None:
        raise ValueError(f"{DOC.name}:{opened[0]}: the code fence is never closed")
    return blocks


BLOCKS = read_blocks(DOC.read_text())
EXAMPLES = [block for block in BLOCKS if block.runs]


@dataclass
class DocRun:
    """The blocks run so far, in order, sharing one namespace."""

    address: str
    namespace: dict[str, Any] = field(default_factory=lambda: {"__name__": "sdk_md_examples"})
    ran: int = 0  # EXAMPLES[:ran] have run
    failed: Block | None = None

    def run_through(self, index: int) -> None:
        """Run EXAMPLES up to and including `index` that have not run yet."""
        if self.failed is not None:
            pytest.skip(f"an earlier example failed: docs/sdk.md:{self.failed.line}")
        while self.ran <= index:
            block = EXAMPLES[self.ran]
            self.ran += 1
            error = self._execute(block)
            if error is not None:
                self.failed = block
                if block is not EXAMPLES[index]:  # selected alone (-k): a prerequisite broke
                    error = f"docs/sdk.md:{block.line}, an earlier example this one needs, failed.\n{error}"
                pytest.fail(error, pytrace=False)

    def _execute(self, block: Block) -> str | None:
        """Run one block; None, or what went wrong with a traceback in the guide's line numbers."""
        # Padded with blank lines so that line numbers are the guide's own; registered with
        # linecache so that the traceback shows the example's source.
        source = "\n" * block.line + block.source.replace(DEFAULT_ADDRESS, self.address)
        filename = f"<docs/sdk.md:{block.line}>"
        linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
        code = compile(source, filename, "exec")
        try:
            with _time_limit(BLOCK_TIMEOUT_S, block):
                exec(code, self.namespace)
        except Exception as err:
            tb = err.__traceback__  # from the example's own frame on: its line, then the SDK's frames
            while tb is not None and tb.tb_frame.f_code.co_filename != filename:
                tb = tb.tb_next
            details = "".join(traceback.format_exception(type(err), err, tb))
            return f"the example at docs/sdk.md:{block.line} failed:\n{details}"
        return None


class ExampleTimeout(Exception):
    pass


@contextlib.contextmanager
def _time_limit(seconds: int, block: Block) -> Iterator[None]:
    """SIGALRM after `seconds`: a stuck example fails with its line instead of hanging the suite."""

    def expired(signum: int, frame: FrameType | None) -> None:
        raise ExampleTimeout(f"the example at docs/sdk.md:{block.line} ran longer than {seconds}s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="module")
def doc_run(broker: BrokerProcess) -> DocRun:
    return DocRun(broker.address)


def test_the_guide_has_runnable_examples() -> None:
    unknown = [f"docs/sdk.md:{b.line}: ```{b.info}" for b in BLOCKS if b.info not in KNOWN_FENCES]
    assert not unknown, f"unknown code fence info strings (known: {sorted(KNOWN_FENCES)}): {unknown}"
    assert len(EXAMPLES) >= 10
    assert any(DEFAULT_ADDRESS in block.source for block in EXAMPLES)


@pytest.mark.parametrize("index", range(len(EXAMPLES)), ids=[block.name for block in EXAMPLES])
def test_example(doc_run: DocRun, index: int) -> None:
    doc_run.run_through(index)
