"""Generate broker/kafka/messages.py from Kafka's JSON message specs.

The specs are Apache Kafka's own (clients/src/main/resources/common/message/*.json), as shipped
inside the pinned kafka-python wheel (kafka/protocol/schemas/resources/). Each API the listener
speaks is listed in SPOKEN with the versions it answers; the generator turns its request and
response specs into the `field`/`struct` definitions of tidelog.broker.kafka.schema and formats the
module with ruff. `--check` exits 1 when the committed module differs from what it would write
(tests/unit/test_kafka_codegen.py runs it, as tests/unit/test_protos.py does for the gRPC stubs).

    python scripts/gen_kafka_messages.py [--check]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.resources
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "broker" / "kafka" / "messages.py"
SPEC_PACKAGE = "kafka.protocol.schemas.resources"
SPEC_DISTRIBUTION = ("kafka-python", "3.0.12")

# API name -> the versions this broker speaks (advertised in ApiVersions, in this order).
SPOKEN: dict[str, tuple[int, int]] = {
    "ApiVersions": (0, 4),
    "Metadata": (1, 12),
    "ListOffsets": (1, 6),  # 7+ asks for the max-timestamp record (-3), which the time index cannot answer yet
    "Produce": (3, 10),  # 3: RecordBatch v2; 11+: KIP-951's leader hints and 12+ KIP-890's transactions
    "Fetch": (4, 12),  # 4: RecordBatch v2; 13+ names topics by id
    "InitProducerId": (0, 4),  # 5+: KIP-890's transactions, 6: two-phase commit
    "FindCoordinator": (0, 4),  # 4: many keys at once; 5+: KIP-890, 6: share groups
    "JoinGroup": (0, 7),  # 8: a reason string, 9: KIP-814's skip_assignment
    "SyncGroup": (0, 5),
    "Heartbeat": (0, 4),
    "LeaveGroup": (0, 4),  # 5: a reason string
    "OffsetCommit": (2, 8),  # 9+: KIP-848's member epochs
    "OffsetFetch": (1, 8),  # 8: many groups at once; 9+: KIP-848's member epochs
    "CreateTopics": (2, 7),
    "DeleteTopics": (1, 5),  # 6: topics by id
    "DescribeConfigs": (1, 4),
    "ListGroups": (0, 4),  # 5: group types (KIP-848)
    "DescribeGroups": (0, 5),
    "SaslHandshake": (1, 1),  # 0 sends raw SASL tokens next, outside Kafka's framing: clients use 1 when offered
    "SaslAuthenticate": (0, 2),
}

_COMMENTS = re.compile(r"(?m)^\s*//.*\n?")
_PRIMITIVES = {"int8", "int16", "int32", "int64", "uint16", "float64", "bool", "string", "bytes", "records", "uuid"}


def load_spec(name: str) -> dict[str, Any]:
    text = importlib.resources.files(SPEC_PACKAGE).joinpath(f"{name}.json").read_text()
    spec: dict[str, Any] = json.loads(_COMMENTS.sub("", text))
    return spec


def snake(name: str) -> str:
    name = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()


def _default(raw: Any, type_: str) -> str | None:
    """The spec's default as Python source, when it is not the type's own."""
    if raw is None or raw == "":
        return None
    if raw == "null":
        return "None"
    if type_ == "bool":
        return "True" if str(raw).lower() == "true" else None
    if type_ in ("int8", "int16", "int32", "int64", "uint16"):
        value = int(str(raw), 0)
        return str(value) if value != 0 else None
    if type_ == "float64":
        return repr(float(raw)) if float(raw) else None
    return repr(raw) if type_ == "string" else None


def _field(spec: dict[str, Any], structs: dict[str, list[dict[str, Any]]], indent: str) -> str:
    type_: str = spec["type"]
    array = type_.startswith("[]")
    element = type_[2:] if array else type_
    args = [repr(snake(spec["name"]))]
    if element in _PRIMITIVES:
        args.append(repr(element))
    else:
        fields = spec.get("fields") or structs.get(element)
        if fields is None:
            raise SystemExit(f"gen_kafka_messages: {element} is neither a primitive nor a struct the spec defines")
        args.append(_struct(fields, structs, indent + "    "))
    args.append(repr(spec.get("versions", "0+")))
    if array:
        args.append("array=True")
    if spec.get("nullableVersions"):
        args.append(f"nullable={spec['nullableVersions']!r}")
    if "tag" in spec:
        args.append(f"tag={int(spec['tag'])}")
    default = _default(spec.get("default"), element) if not array and element in _PRIMITIVES else None
    if default is not None and default != "None":
        args.append(f"default={default}")
    return f"field({', '.join(args)})"


def _struct(fields: list[dict[str, Any]], structs: dict[str, list[dict[str, Any]]], indent: str) -> str:
    inner = ",\n".join(f"{indent}    {_field(f, structs, indent + '    ')}" for f in fields)
    return f"struct(\n{inner},\n{indent})" if fields else "struct()"


def _message(constant: str, spec: dict[str, Any], spoken: tuple[int, int]) -> str:
    low, high = (int(v) for v in spec["validVersions"].split("-"))
    if not (low <= spoken[0] and spoken[1] <= high):
        raise SystemExit(f"gen_kafka_messages: {spec['name']} speaks {spoken}, outside the spec's {low}-{high}")
    flexible = spec.get("flexibleVersions", "none")
    first_flexible = 32767 if flexible == "none" else int(flexible.rstrip("+"))
    structs = {s["name"]: s["fields"] for s in spec.get("commonStructs", [])}
    body = _struct(spec["fields"], structs, "    ")
    return (
        f"{constant} = Message(\n    {spec['name']!r},\n    {spec['apiKey']},\n    {spoken!r},\n"
        f"    {first_flexible},\n    {body},\n)\n"
    )


def generate() -> str:
    distribution, version = SPEC_DISTRIBUTION
    if importlib.metadata.version(distribution) != version:
        raise SystemExit(
            f"gen_kafka_messages: the specs come from {distribution}=={version} (pinned in pyproject.toml)"
        )
    parts = [
        f'"""Kafka\'s message specs for the APIs the listener speaks: generated, do not edit.\n\n'
        "Made by scripts/gen_kafka_messages.py from Apache Kafka's JSON specs as shipped in\n"
        f"{distribution}=={version}. "
        'Each Message\'s version range is what this broker answers (SPOKEN in the script)."""\n\n'
        "from __future__ import annotations\n\n"
        "from tidelog.broker.kafka.schema import Message, field, struct\n\n"
    ]
    pairs = []
    for api in SPOKEN:
        for kind in ("Request", "Response"):
            constant = f"{snake(api).upper()}_{kind.upper()}"
            parts.append(_message(constant, load_spec(f"{api}{kind}"), SPOKEN[api]) + "\n")
        pairs.append(
            f"    {snake(api).upper()}_REQUEST.api_key: ({snake(api).upper()}_REQUEST, {snake(api).upper()}_RESPONSE),"
        )
    parts.append(
        "# (request, response) by API key: what ApiVersions advertises, in this order.\n"
        "APIS: dict[int, tuple[Message, Message]] = {\n" + "\n".join(pairs) + "\n}\n"
    )
    source = "".join(parts)
    formatted = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--stdin-filename", str(OUTPUT), "-"],
        input=source,
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return formatted.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed module is stale")
    args = parser.parse_args()
    generated = generate()
    if args.check:
        if OUTPUT.read_text() != generated:
            print(f"{OUTPUT.relative_to(ROOT)} is stale: run python scripts/gen_kafka_messages.py", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(generated)
    print(f"wrote {OUTPUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
