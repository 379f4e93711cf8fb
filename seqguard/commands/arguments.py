"""Argument blocks that several commands share, defined once, so that a flag means the same thing in every command.

Help texts stay per command where the commands say different things about the same flag (what `--models` must hold,
what `--out` is); the flag's name, type, default and choices come from here.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from seqguard.cli import CliError

MAPPING_HELP = "column-mapping YAML for a foreign layout"
ON_ERROR_HELP = "what to do with malformed rows"
FORMATS = ("parquet", "csv", "jsonl")  # what `generate` and `inject` write


def add_models(p: argparse.ArgumentParser, help: str) -> None:
    """--models: the checkpoint folder or model repository a command reads."""
    p.add_argument("--models", required=True, type=Path, help=help)


def add_data(p: argparse.ArgumentParser, help: str, type: Any = Path) -> None:
    """--data: the events to read (`score` takes a folder or glob too, so it keeps the text)."""
    p.add_argument("--data", required=True, type=type, help=help)


def add_mapping(p: argparse.ArgumentParser, help: str = MAPPING_HELP) -> None:
    """--mapping: a seqguard.io.ColumnMapping YAML for a foreign layout."""
    p.add_argument("--mapping", type=Path, default=None, help=help)


def add_labels(p: argparse.ArgumentParser, labels_help: str, unlabelled_help: str) -> None:
    """--labels / --unlabelled: an entity labels table joined on the entity key, and what unlisted entities are."""
    p.add_argument("--labels", type=Path, help=labels_help)
    p.add_argument("--unlabelled", choices=("normal", "exclude"), default="normal", help=unlabelled_help)


def add_data_arguments(p: argparse.ArgumentParser) -> None:
    """--mapping / --labels / --unlabelled: shared by train, evaluate (and any command that reads labelled data)."""
    add_mapping(p, MAPPING_HELP + " (may state the data's utc_offset_hours and the labels table's columns)")
    add_labels(p, "entity labels table (.csv / .parquet): entity_id,label[,scenario], joined on the entity key; an "
               "entity's label marks all of its windows",
               "with --labels: entities without a label are normal (default) or left out")


def add_outcome_arguments(p: argparse.ArgumentParser) -> None:
    """--feedback / --log / --salt: the outcomes that label a champion's recent data (compare, retrain)."""
    p.add_argument("--feedback", type=Path, help="feedback store (SQLite) whose outcomes label the data's entities")
    p.add_argument("--log", help="score log, to resolve outcomes given by request_id (folder or s3://...)")
    p.add_argument("--salt", default="seqguard", help="the service's SEQGUARD_LOG_SALT (score-log entity hashes)")


def add_on_error(p: argparse.ArgumentParser, help: str = ON_ERROR_HELP) -> None:
    p.add_argument("--on-error", choices=("skip", "fail"), default="skip", help=help)


def add_no_progress(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def add_out(p: argparse.ArgumentParser, help: str, default: Path | None = None) -> None:
    """--out as a path: required unless the command has a default folder."""
    p.add_argument("--out", required=default is None, type=Path, default=default, help=help)


def add_seed(p: argparse.ArgumentParser, help: str) -> None:
    p.add_argument("--seed", type=int, default=0, help=help)


def add_format(p: argparse.ArgumentParser, what: str) -> None:
    """--format: checked by `output_format` in run(), so that a wrong one is a CliError naming the flag."""
    p.add_argument("--format", default="parquet", help=f"{what} format: {' | '.join(FORMATS)} (default parquet)")


def output_format(value: str) -> str:
    fmt = str(value).lower()
    if fmt not in FORMATS:
        raise CliError(f"--format: unknown format {value!r}; use one of {', '.join(FORMATS)}")
    return fmt
