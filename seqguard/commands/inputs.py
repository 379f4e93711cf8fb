"""The events a command reads, with every problem a user can fix turned into a CliError (exit 2) naming it.

`--on-error fail` prints the whole row report before the one-line error, so the user sees every bad row at once.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from seqguard.cli import CliError
from seqguard.io import DataError, ReadReport, RowErrors, load_mapping, read_events


@contextmanager
def data_errors(*also: type[Exception]) -> Iterator[None]:
    """Inside: DataError (and the `also` exceptions) become CliError with their message; RowErrors print their report
    first and say how many rows --on-error fail refused."""
    try:
        yield
    except RowErrors as e:
        print(e.report.summary(), file=sys.stderr)
        raise CliError(f"{e.report.rows_skipped} malformed row(s) and --on-error fail") from None
    except (DataError, *also) as e:
        raise CliError(str(e)) from None


def read_events_reported(path: Path, mapping: Any = None, on_error: str = "skip",
                         what: str | None = None) -> tuple[Any, ReadReport]:
    """The events frame and its read report (printed to stderr). `mapping` is a loaded ColumnMapping or None;
    with `what` ("train on", ...) a file with no usable row is an error rather than an empty frame."""
    with data_errors():
        frame, report = read_events(path, mapping, on_error=on_error)
    print(report.summary(), file=sys.stderr)
    if what is not None and report.rows_ok == 0:
        raise CliError(f"{path}: no usable rows{f' to {what}' if what else ''}")
    return frame, report


def read_events_or_exit(path: Path, mapping: Path | None = None, on_error: str = "skip") -> Any:
    """An events file (through the mapping YAML at `mapping`) as a frame with at least one usable row."""
    with data_errors():
        loaded = load_mapping(mapping) if mapping else None
    return read_events_reported(path, loaded, on_error, what="")[0]
