"""`tidelog`: run the broker (`tidelog serve`), check and copy its data (`verify`, `backup`), and talk
to it (topics, groups, produce, consume). The only place logging is configured."""

from __future__ import annotations

import argparse
import logging
import sys
import tomllib
from pathlib import Path

from tidelog.cli import commands as client_cli
from tidelog.cli.serve import add_maintenance, add_serve, serve


def build_parser() -> argparse.ArgumentParser:
    return _build()[0]


def _build() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    parser = argparse.ArgumentParser(prog="tidelog", description="Tidelog: a Kafka-style log broker over gRPC.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = add_serve(commands)
    add_maintenance(commands)
    client_cli.add_commands(commands)
    return parser, serve_parser


def config_defaults(serve: argparse.ArgumentParser, path: Path) -> dict[str, object]:
    """The serve settings of a TOML file, checked against the flags: each error names its key."""
    try:
        document = tomllib.loads(path.read_text())
    except OSError as err:
        raise SystemExit(f"tidelog: --config {path}: {err.strerror}") from None
    except tomllib.TOMLDecodeError as err:
        raise SystemExit(f"tidelog: --config {path}: not valid TOML: {err}") from None
    flags = {
        option[2:]: action
        for action in serve._actions
        for option in action.option_strings
        if option.startswith("--") and option not in ("--help", "--config")
    }
    defaults: dict[str, object] = {}
    for key, value in document.items():
        action = flags.get(key.replace("_", "-"))
        if action is None:
            raise SystemExit(
                f"tidelog: --config {path}: unknown key {key!r}; keys are serve's flags: {', '.join(sorted(flags))}"
            )
        if isinstance(action, argparse._StoreTrueAction):
            if not isinstance(value, bool):
                raise SystemExit(f"tidelog: --config {path}: {key} must be true or false")
            defaults[action.dest] = value
            continue
        if isinstance(value, dict | list):
            raise SystemExit(f"tidelog: --config {path}: {key} must be a single value")
        try:
            converted = action.type(str(value)) if callable(action.type) else str(value)
        except (TypeError, ValueError):
            raise SystemExit(f"tidelog: --config {path}: {key} = {value!r} is not valid") from None
        if action.choices is not None and converted not in action.choices:
            raise SystemExit(f"tidelog: --config {path}: {key} must be one of {', '.join(map(str, action.choices))}")
        defaults[action.dest] = converted
    return defaults


def main(argv: list[str] | None = None) -> None:
    parser, serve_parser = _build()
    args = parser.parse_args(argv)
    if args.command == "serve" and args.config is not None:
        serve_parser.set_defaults(**config_defaults(serve_parser, args.config))
        args = parser.parse_args(argv)  # flags given on the command line still win
    if args.command == "serve":
        sys.exit(serve(args))  # the broker's structlog is set up from its flags
    if args.command in ("verify", "backup"):
        sys.exit(args.run(args))
    # The SDK logs through `logging`: its warnings (a reconnect, a failed auto-commit) go to stderr,
    # never among the records a command writes to stdout.
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="tidelog: %(levelname)s %(message)s")
    sys.exit(client_cli.run(args))
