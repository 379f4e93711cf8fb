"""Outcomes: validation, the idempotent store, `seqguard feedback import`, and the join into training labels."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from seqguard.cli import main
from seqguard.feedback import (
    FeedbackError,
    FeedbackStore,
    apply_outcomes,
    entity_outcomes,
    parse_feedback,
)

TS = "2026-11-20T10:00:00Z"


def fb(**kw: object) -> dict[str, object]:
    return {"entity_id": "u-1", "outcome": "chargeback", "source": "psp", "ts": TS, **kw}


@pytest.mark.parametrize(("body", "field", "reason"), [
    (fb(entity_id=None), "entity_id or request_id", "one of them is required"),
    (fb(outcome="stolen"), "outcome", "chargeback"),
    (fb(label=False), "label", "contradicts outcome 'chargeback'"),
    (fb(ts="yesterday"), "ts", "datetime"),
    (fb(ts=(datetime.now(UTC) + timedelta(days=2)).isoformat()), "ts", "in the future"),
    (fb(source=""), "source", "at least 1"),
    (fb(feedback_id="has spaces"), "feedback_id", "pattern"),
    (fb(colour="red"), "colour", "Extra inputs"),
])
def test_invalid_feedback_names_the_field_and_the_reason(body: dict, field: str, reason: str) -> None:
    body = {k: v for k, v in body.items() if v is not None}
    with pytest.raises(FeedbackError) as e:
        parse_feedback(body)
    assert e.value.status == 422
    assert any(d["field"] == field and reason in d["reason"] for d in e.value.details), e.value.details


def test_store_is_durable_and_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "fb.sqlite"
    store = FeedbackStore(path)
    first = store.add(parse_feedback(fb()))
    again = store.add(parse_feedback(fb(label=True)))  # the same content (label agrees): a retry
    assert first.stored and not again.stored and first.feedback_id == again.feedback_id
    other = store.add(parse_feedback(fb(outcome="reviewed_ok")))
    assert other.stored and other.feedback_id != first.feedback_id
    store.add(parse_feedback(fb(feedback_id="case-7", entity_id="u-2")))
    with pytest.raises(FeedbackError) as e:
        store.add(parse_feedback(fb(feedback_id="case-7", entity_id="u-3")))
    assert e.value.status == 409 and e.value.details[0]["field"] == "feedback_id"
    store.close()
    # Another process (here: another connection) sees every committed record.
    rows = sqlite3.connect(path).execute("SELECT feedback_id, label FROM feedback ORDER BY feedback_id").fetchall()
    assert len(rows) == 3 and {r[0] for r in rows} >= {"case-7"}
    frame = FeedbackStore(path).frame()
    assert frame["label"].tolist().count(True) == 2


def test_import_reports_row_errors_and_is_idempotent(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv = tmp_path / "outcomes.csv"
    pd.DataFrame([
        {"entity_id": "u-1", "outcome": "chargeback", "source": "psp", "ts": TS, "label": ""},
        {"entity_id": "u-2", "outcome": "false_positive", "source": "review", "ts": TS, "label": "0"},
        {"entity_id": "", "outcome": "chargeback", "source": "psp", "ts": TS, "label": ""},
        {"entity_id": "u-4", "outcome": "refund", "source": "psp", "ts": TS, "label": ""},
    ]).to_csv(csv, index=False)
    store = tmp_path / "fb.sqlite"
    assert main(["feedback", "import", str(csv), "--store", str(store), "--on-error", "fail"]) == 2
    out = capsys.readouterr()
    assert "row 3: entity_id or request_id" in out.out and "row 4: outcome" in out.out
    assert "nothing was stored" in out.err
    assert FeedbackStore(store).count() == 0
    assert main(["feedback", "import", str(csv), "--store", str(store)]) == 0
    assert "4 row(s): 2 stored, 0 already there, 2 rejected" in capsys.readouterr().out
    assert main(["feedback", "import", str(csv), "--store", str(store)]) == 0
    assert "0 stored, 2 already there" in capsys.readouterr().out
    parquet = tmp_path / "more.parquet"
    pd.DataFrame([{"request_id": "req-9", "outcome": "confirmed_fraud", "source": "bot-team",
                   "ts": pd.Timestamp(TS)}]).to_parquet(parquet)
    assert main(["feedback", "import", str(parquet), "--store", str(store)]) == 0
    assert FeedbackStore(store).count() == 3


@pytest.mark.parametrize(("name", "text", "needle"), [
    ("f.xlsx", "x", "unknown format"),
    ("missing.csv", None, "no such file"),
    ("c.csv", "entity,outcome\nu,chargeback\n", "unknown column"),
])
def test_import_file_errors_exit_2(tmp_path: Path, name: str, text: str | None, needle: str,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / name
    if text is not None:
        path.write_text(text)
    assert main(["feedback", "import", str(path), "--store", str(tmp_path / "s.sqlite")]) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err


def test_outcomes_join_by_entity_and_by_request_through_the_score_log() -> None:
    feedback = pd.DataFrame([
        {"entity_id": "u-1", "request_id": None, "label": True, "outcome": "chargeback", "ts": pd.Timestamp(TS)},
        {"entity_id": "u-1", "request_id": None, "label": False, "outcome": "reviewed_ok",
         "ts": pd.Timestamp(TS) + timedelta(hours=1)},  # the later verdict wins
        {"entity_id": None, "request_id": "r-2", "label": True, "outcome": "confirmed_fraud", "ts": pd.Timestamp(TS)},
        {"entity_id": None, "request_id": "r-many", "label": True, "outcome": "confirmed_fraud",
         "ts": pd.Timestamp(TS)},
    ])
    log = pd.DataFrame({"request_id": ["r-2", "r-many", "r-many"], "entity_hash": ["h-u2", "h-u3", "h-u4"]})
    outcomes, report = entity_outcomes(feedback, log)
    assert (report.by_entity, report.by_request, report.unresolved) == (2, 1, 1)
    assert dict(zip(outcomes["key"], outcomes["label"], strict=True)) == {"id:u-1": False, "hash:h-u2": True}
    events = pd.DataFrame({"user_id": ["u-1", "u-1", "u-2", "u-5"], "is_anomaly": [True, True, False, True],
                           "scenario": ["x", "x", "normal", "card_testing"]})
    labelled, counts = apply_outcomes(events, outcomes, "user_id", hasher=lambda e: f"h-{e.replace('-', '')}")
    assert labelled["is_anomaly"].tolist() == [False, False, True, True]  # u-5 keeps the data's own label
    assert labelled["scenario"].tolist() == ["normal", "normal", "anomaly", "card_testing"]
    assert counts["entities_with_outcome_in_data"] == 2 and counts["fraud_entities_in_data"] == 1


def test_preflight_names_bad_loop_settings(tiny_repo: Path, tmp_path: Path) -> None:
    from seqguard.service.check import PreflightError, preflight
    from seqguard.service.settings import ServiceSettings

    log = str(tmp_path / "log")
    ok = ServiceSettings(repo=tiny_repo, score_log_path=log, shadow_repo=tiny_repo, feedback_path=tmp_path / "f.db")
    assert "verified" in preflight(ok)
    for bad, needle in ((dict(shadow_repo=tmp_path / "nope"), "SEQGUARD_SHADOW_REPO"),
                        (dict(feedback_path=tmp_path), "SEQGUARD_FEEDBACK_PATH"),
                        (dict(score_log_path=str(tiny_repo / "manifest.json")), "SEQGUARD_SCORE_LOG_PATH")):
        with pytest.raises(PreflightError, match=needle):
            preflight(ok.model_copy(update=bad))


def test_an_over_long_entity_id_is_clipped_as_the_api_and_files_clip_it() -> None:
    from seqguard.events import ID_MAX_CHARS, clip_identifier

    raw = "u-" + "x" * 300
    item = parse_feedback(fb(entity_id=raw))
    assert item.entity_id == clip_identifier(raw) and len(item.entity_id) == ID_MAX_CHARS
    assert parse_feedback(fb(entity_id="u-1")).entity_id == "u-1"
