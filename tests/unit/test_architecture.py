"""The dependency rules of docs/architecture.md, checked on every module's imports (an AST walk).

- tidelog.common imports nothing of the project;
- the SDK (tidelog and its modules but broker, cli, bench) imports tidelog.common, tidelog.v1 and
  itself, never the broker, the CLI or the benchmarks;
- tidelog.broker imports tidelog.common, tidelog.v1 and itself, never the SDK or the CLI;
- only tidelog.broker.storage imports lmdb;
- tidelog.broker.api (the gRPC services) never reaches into storage;
- tidelog.broker.console reaches the broker through its gRPC API only (never the services, the log's
  service, security or storage: the broker's ACLs must judge everything it shows);
- outside storage, only its interface and writer are seen (the server assembles the LMDB store);
- the benchmarks use the public SDK only (no private module, no broker);
- nothing imports the folders' own names (`client`, `broker`) instead of `tidelog`.
"""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import ROOT

# package -> the folder it lives in (pyproject.toml's package-dir)
ROOTS = {
    "tidelog": ROOT / "client",
    "tidelog.broker": ROOT / "broker",
    "tidelog.bench": ROOT / "scripts" / "bench",
    "tidelog.v1": ROOT / "protos" / "tidelog" / "v1",
}
NOT_SDK = ("tidelog.broker", "tidelog.cli", "tidelog.bench", "tidelog.v1", "tidelog.common")
# What the rest of the broker may see of storage; only the assembly opens a store of its own.
STORAGE_FACE = ("tidelog.broker.storage", "tidelog.broker.storage.interface", "tidelog.broker.storage.writer")
ASSEMBLY = ("tidelog.broker.server", "tidelog.cli")
# What the console must not reach past the gRPC API for.
BEYOND_THE_CONSOLE = (
    "tidelog.broker.api",
    "tidelog.broker.storage",
    "tidelog.broker.log.service",
    "tidelog.broker.security",
)
PUBLIC_SDK = ("tidelog", "tidelog.errors", "tidelog.types", "tidelog.serde", "tidelog.testing", "tidelog.v1")


def module_name(path: Path) -> str:
    for package, folder in sorted(ROOTS.items(), key=lambda item: -len(str(item[1]))):
        if folder in path.parents or path.parent == folder:
            parts = path.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            return ".".join((package, *parts))
    raise AssertionError(f"{path} is in no package folder")


def modules() -> Iterator[tuple[str, Path]]:
    for package, folder in ROOTS.items():
        for path in sorted(folder.rglob("*.py")):
            if package == "tidelog" and any(
                str(other) in str(path) for p, other in ROOTS.items() if p != "tidelog" and other != folder
            ):
                continue
            if "_pb2" in path.name:
                continue
            yield module_name(path), path


def imports(path: Path, module: str, known: frozenset[str] = frozenset()) -> Iterator[str]:
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = module.split(".")[: -node.level or None]
                yield ".".join([*base, node.module] if node.module else base)
            elif node.module:
                yield node.module
                for alias in node.names:  # `from tidelog import errors` imports tidelog.errors
                    if f"{node.module}.{alias.name}" in known:
                        yield f"{node.module}.{alias.name}"


def within(name: str, *packages: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def is_sdk(name: str) -> bool:
    return within(name, "tidelog") and not within(name, *NOT_SDK)


def rule_breaks(module: str, imported: str) -> str | None:
    project = within(imported, "tidelog", "client", "broker")
    if within(imported, "client", "broker"):
        return "imports a folder's name: import from tidelog"
    if within(module, "tidelog.common") and project and not within(imported, "tidelog.common"):
        return "tidelog.common imports nothing of the project"
    if (
        is_sdk(module)
        and module != "tidelog.__main__"
        and within(imported, "tidelog.broker", "tidelog.cli", "tidelog.bench")
    ):
        return "the SDK never imports the broker, the CLI or the benchmarks"
    broker_reaches_out = (
        not within(imported, "tidelog.broker", "tidelog.common", "tidelog.v1") and imported != "tidelog"
    )
    if within(module, "tidelog.broker") and project and broker_reaches_out:
        return "the broker imports only itself, tidelog.common and tidelog.v1"
    if within(imported, "lmdb") and not within(module, "tidelog.broker.storage"):
        return "only tidelog.broker.storage imports lmdb"
    if within(module, "tidelog.broker.api") and within(imported, "tidelog.broker.storage"):
        return "the API layer goes through the log and the groups, never storage"
    if within(module, "tidelog.broker.console") and within(imported, *BEYOND_THE_CONSOLE):
        return "the console calls the broker's gRPC API as its viewer: it never reaches past it"
    storage_inside = within(imported, "tidelog.broker.storage") and imported not in STORAGE_FACE
    if storage_inside and not within(module, "tidelog.broker.storage", *ASSEMBLY):
        return "only storage knows its keys and transactions: use storage.interface (and the writer)"
    if within(module, "tidelog.bench") and project:
        if within(imported, "tidelog.bench"):
            return None
        if imported not in PUBLIC_SDK and not within(imported, "tidelog.v1"):
            return "the benchmarks use the public SDK only"
    return None


# Rules this layout still breaks, each a debt to pay (none now).
KNOWN_BREAKS: set[tuple[str, str]] = set()


def test_every_module_follows_the_dependency_rules() -> None:
    breaks = set()
    found = {}
    known = frozenset(module for module, _ in modules())
    for module, path in modules():
        for imported in imports(path, module, known):
            reason = rule_breaks(module, imported)
            if reason:
                breaks.add((module, imported))
                found[(module, imported)] = reason
    new = sorted(breaks - KNOWN_BREAKS)
    assert not new, "\n".join(f"{m} imports {i}: {found[(m, i)]}" for m, i in new)
    paid = sorted(KNOWN_BREAKS - breaks)
    assert not paid, f"no longer broken, take them off KNOWN_BREAKS: {paid}"


@pytest.mark.parametrize(
    ("module", "imported"),
    [
        ("tidelog.producer", "tidelog.broker.errors"),
        ("tidelog.broker.errors", "tidelog.errors"),
        ("tidelog.common.reasons", "tidelog.errors"),
        ("tidelog.broker.log.retention", "lmdb"),
        ("tidelog.broker.api.data", "tidelog.broker.storage.lmdb_store"),
        ("tidelog.bench.run", "tidelog._channel"),
        ("tidelog.testing", "client.errors"),
        ("tidelog.broker.log.retention", "tidelog.broker.storage.keys"),
        ("tidelog.broker.groups.offsets", "tidelog.broker.storage.lmdb_store"),
        ("tidelog.broker.console.api", "tidelog.broker.api.admin"),
        ("tidelog.broker.console.tail", "tidelog.broker.log.service"),
    ],
)
def test_the_rules_can_fail(module: str, imported: str) -> None:
    assert rule_breaks(module, imported)


def test_pyproject_lists_every_package_folder() -> None:
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {module_name(init) for _, init in modules() if init.name == "__init__.py"}
    on_disk |= {"tidelog.v1"}
    assert listed == on_disk
