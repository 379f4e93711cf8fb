"""The `seqguard` console command: one subcommand per stage, each defined in its own module.

Every command module exposes `register(subparsers)`, which adds its parser and sets `func` to a callable taking the
parsed namespace and returning an exit code. Errors a user can fix are raised as `CliError` and printed as one
clear line (never a traceback).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Modules that contribute subcommands, in the order `--help` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "seqguard.commands.generate",
    "seqguard.commands.inject",
    "seqguard.commands.sequences",
    "seqguard.commands.train",
    "seqguard.commands.evaluate",
    "seqguard.commands.export",
    "seqguard.commands.deploy",
    "seqguard.commands.loadtest",
    "seqguard.commands.capacity",
    "seqguard.commands.feedback",
    "seqguard.commands.drift",
    "seqguard.commands.retrain",
    "seqguard.commands.compare",
)


class CliError(Exception):
    """A problem with the user's input: printed as `seqguard <cmd>: error: <message>`, exit code 2."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="seqguard",
        description="Behaviour-sequence anomaly detection for e-commerce: data, training, export, serving, load tests.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CliError as e:
        print(f"seqguard {args.command}: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"seqguard {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    # Run through the package module, so CliError raised by commands is the class main() catches.
    from seqguard.cli import main as package_main

    sys.exit(package_main())
