"""The ``constrain`` command line: ``demo``, ``bench jsonschemabench``, ``conformance``."""

from __future__ import annotations

import argparse
import importlib
import sys

# sub-command modules, each exporting add_parser(subparsers) and run(args) -> int
_COMMANDS = ["constrain.cli.demo", "constrain.cli.bench", "constrain.cli.conformance"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="constrain", description="Constrained decoding for language models: masks, samplers, benchmarks."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMANDS:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue  # command not part of this build
            raise
        mod.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    from constrain.errors import ConstrainError

    try:
        return int(args.run(args) or 0)
    except ConstrainError as exc:
        print(f"constrain: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("constrain: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
