import numpy as np
import pandas as pd
import pytest

from seqguard.events import ID_MAX_CHARS
from seqguard.io import read_events
from seqguard.labels import LabelsError, join_labels, load_labels


def _events() -> pd.DataFrame:
    return pd.DataFrame({
        "user_id": ["a", "a", "b", "c", "d"],
        "ts": [1.0, 2.0, 3.0, 4.0, 5.0],
        "event_type": ["view"] * 5,
    })


def _write(tmp_path, text: str, name: str = "labels.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_load_csv_with_scenario_and_bool_words(tmp_path):
    p = _write(tmp_path, "entity_id,label,scenario\na,1,bot\nb,false,\nc,TRUE,\n7,0,\n")
    lab = load_labels(p)
    assert list(lab.columns) == ["entity_id", "label", "scenario"]
    assert lab["entity_id"].tolist() == ["a", "b", "c", "7"]
    assert lab["label"].tolist() == [1, 0, 1, 0]
    assert lab["scenario"].tolist() == ["bot", None, None, None]


def test_load_parquet_with_integer_ids_and_renamed_columns(tmp_path):
    p = tmp_path / "l.parquet"
    pd.DataFrame({"username": [10, 11], "is_vandal_user": [1, 0]}).to_parquet(p)
    lab = load_labels(p, {"entity_id": "username", "label": "is_vandal_user"})
    assert lab["entity_id"].tolist() == ["10", "11"] and lab["label"].tolist() == [1, 0]


def test_id_column_named_after_entity_key(tmp_path):
    lab = load_labels(_write(tmp_path, "user_id,label\nx,1\n"))
    assert lab["entity_id"].tolist() == ["x"]


@pytest.mark.parametrize(("text", "message"), [
    ("entity_id,label\na,1\na,0\nb,1\nb,1\nc,0\n", "2 entity id(s) appear more than once (4 rows)"),
    ("entity_id,label\na,1\nb,2\nc,yes-ish\nd,2\n", "3 row(s) are not binary (0/1, true/false): '2' x2"),
    ("entity_id,label\na,1\nb,\n", "1 row(s) have no label"),
    ("entity_id,label\na,1\n,0\n", "1 row(s) have no entity id"),
    ("id,label\na,1\n", "no entity id column; expected one of ['entity_id', 'user_id'"),
    ("entity_id,y\na,1\n", "no label column; expected one of ['label', 'is_anomaly']"),
    ("entity_id,label\n", "has no rows"),
    ("", "is empty"),
])
def test_bad_tables_name_the_problem_with_counts(tmp_path, text, message):
    with pytest.raises(LabelsError, match="labels") as e:
        load_labels(_write(tmp_path, text))
    assert message in str(e.value)


def test_missing_file_format_and_renamed_column(tmp_path):
    with pytest.raises(LabelsError, match="does not exist"):
        load_labels(tmp_path / "nope.csv")
    with pytest.raises(LabelsError, match="cannot tell the format"):
        load_labels(_write(tmp_path, "x", "labels.xlsx"))
    with pytest.raises(LabelsError, match="the label column 'is_bad' is missing"):
        load_labels(_write(tmp_path, "entity_id,label\na,1\n"), {"label": "is_bad"})
    with pytest.raises(LabelsError, match="unknown role"):
        load_labels(_write(tmp_path, "entity_id,label\na,1\n"), {"labels": "x"})


def test_join_marks_every_event_and_reports_counts(tmp_path):
    lab = load_labels(_write(tmp_path, "entity_id,label,scenario\na,1,bot\nb,0,\nz,1,\n"))
    out, rep = join_labels(_events(), lab)
    assert out["is_anomaly"].tolist() == [True, True, False, False, False]
    assert out["scenario"].tolist() == ["bot", "bot", "normal", "normal", "normal"]
    assert (rep.positive_entities, rep.negative_entities) == (1, 1)
    assert rep.labelled_absent_from_events == 1  # z
    assert rep.event_entities_without_label == 2  # c, d
    assert rep.events_excluded == 0 and not rep.replaced_event_labels
    assert "2 of 4 entities in the events have no label: treated as normal" in rep.summary()


def test_join_exclude_drops_unlabelled_entities_and_unnamed_scenario_is_anomaly(tmp_path):
    lab = load_labels(_write(tmp_path, "entity_id,label\na,0\nd,1\n"))
    out, rep = join_labels(_events(), lab, unlabelled="exclude")
    assert out["user_id"].tolist() == ["a", "a", "d"]
    assert out["scenario"].tolist() == ["normal", "normal", "anomaly"]
    assert rep.events_excluded == 2 and "excluded" in rep.summary()


def test_join_replaces_event_labels_and_says_so(tmp_path):
    ev = _events().assign(is_anomaly=True, scenario="x")
    out, rep = join_labels(ev, load_labels(_write(tmp_path, "entity_id,label\nb,1\n")))
    assert out["is_anomaly"].tolist() == [False, False, True, False, False]
    assert rep.replaced_event_labels and "replaced" in rep.summary()


def test_join_errors_only_when_nothing_matches(tmp_path):
    lab = load_labels(_write(tmp_path, "entity_id,label\nq,1\nr,0\n"))
    with pytest.raises(LabelsError, match="0 of 2 labelled ids match the 4 user_id values"):
        join_labels(_events(), lab)
    with pytest.raises(LabelsError, match="unlabelled: 'drop'"):
        join_labels(_events(), lab, unlabelled="drop")
    with pytest.raises(LabelsError, match="no 'device_id' column"):
        join_labels(_events(), lab, entity_key="device_id")


def test_over_long_ids_are_clipped_alike_in_events_and_labels(tmp_path):
    long_a, long_b = "u" * 300, "u" * 299 + "v"  # same head, different values
    ev = tmp_path / "ev.csv"
    ev.write_text("user_id,ts,event_type,item_id\n"
                  f"{long_a},2026-10-05T08:00:00Z,view,{'t' * 400}\n"
                  f"{long_b},2026-10-05T08:01:00Z,view,i1\n")
    frame, report = read_events(ev)
    assert report.rows_ok == 2 and report.rows_skipped == 0
    assert frame["user_id"].str.len().max() == ID_MAX_CHARS
    assert frame["user_id"].nunique() == 2
    assert report.fixed["user_id: longer than 128 characters, clipped to head + hash"] == 2
    assert "kept, item_id: longer than 128 characters" in report.summary()
    lab = load_labels(_write(tmp_path, f"entity_id,label\n{long_a},1\n{long_b},0\n"))
    out, rep = join_labels(frame, lab)
    assert rep.positive_entities == 1 and rep.negative_entities == 1
    assert np.array_equal(out["is_anomaly"].to_numpy(), [True, False])
