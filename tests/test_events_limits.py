"""The event limits are declared once (seqguard.events.FIELD_LIMITS) and give the same answer, with the same reason,
whichever way an event comes in: the API's Event model or a file (JSONL, CSV; one case per file, and all cases in
one file, where the columns mix JSON types)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from pydantic import ValidationError

from seqguard.configfile import field_errors
from seqguard.events import EVENT_FIELDS, ID_CLIPPED, Event, clip_identifier
from seqguard.io import read_events
from tests.event_cases import BASE, CASES, LONG, Case


def _plain(v: Any) -> Any:
    if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
        return None
    if hasattr(v, "timestamp"):
        return v.timestamp()
    return getattr(v, "value", v.item() if hasattr(v, "item") else v)


def api_outcome(event: dict[str, Any]) -> tuple[str, Any]:
    try:
        record = Event.model_validate(event).to_record()
    except ValidationError as e:
        problems = [(p["field"], p["reason"]) for p in field_errors(e)]
        return "error", problems[0] if len(problems) == 1 else problems
    return "ok", {k: _plain(v) for k, v in record.items()}


def write_file(path: Path, events: list[dict[str, Any]]) -> Path:
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(e) + "\n" for e in events))
        return path
    columns = list(dict.fromkeys(k for e in events for k in e))
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(columns)
        for e in events:
            w.writerow(["" if e.get(c) is None else e[c] for c in columns])
    return path


def file_outcomes(path: Path, n: int) -> list[tuple[str, Any]]:
    frame, report = read_events(path)
    errors = {e.line: (e.field, e.reason) for e in report.errors}
    first = 2 if path.suffix == ".csv" else 1
    rows = iter(frame.to_dict(orient="records"))
    out = []
    for line in range(first, first + n):
        if line in errors:
            out.append(("error", errors[line]))
        else:
            out.append(("ok", {k: _plain(v) for k, v in next(rows).items() if k in EVENT_FIELDS}))
    return out


def expected(case: Case, outcome: tuple[str, Any]) -> None:
    kind, detail = outcome
    if case.error is not None:
        assert (kind, detail) == ("error", case.error)
    else:
        assert kind == "ok" and case.ok is not None, detail
        assert {k: detail[k] for k in case.ok} == case.ok


PATHS = [pytest.param(c, fmt, id=f"{fmt}-{c.name}") for c in CASES for fmt in ("jsonl", "csv") if fmt == "jsonl"
         or c.csv]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_api_path(case: Case) -> None:
    expected(case, api_outcome(case.event))


@pytest.mark.parametrize(("case", "fmt"), PATHS)
def test_file_path(case: Case, fmt: str, tmp_path: Path) -> None:
    expected(case, file_outcomes(write_file(tmp_path / f"e.{fmt}", [case.event]), 1)[0])


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_one_file_of_all_cases_answers_as_the_api(fmt: str, tmp_path: Path) -> None:
    cases = [c for c in CASES if fmt == "jsonl" or c.csv]
    got = file_outcomes(write_file(tmp_path / f"all.{fmt}", [c.event for c in cases]), len(cases))
    for case, outcome in zip(cases, got, strict=True):
        expected(case, outcome)
        assert outcome[0] == api_outcome(case.event)[0], case.name


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_clipped_ids_are_kept_and_counted(fmt: str, tmp_path: Path) -> None:
    # In JSONL the column mixes an integer with text (the per-value path); in CSV it is all text (the fast path).
    events = [{**BASE, "item_id": LONG}, {**BASE, "item_id": 5 if fmt == "jsonl" else "5"}, {**BASE, "item_id": "i"}]
    frame, report = read_events(write_file(tmp_path / f"e.{fmt}", events))
    assert frame["item_id"].tolist() == [clip_identifier(LONG.strip()), "5", "i"]
    assert report.fixed == {f"item_id: {ID_CLIPPED}": 1}
