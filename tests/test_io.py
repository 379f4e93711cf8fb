import numpy as np
import pandas as pd
import pytest

from seqguard.io import DataError, RowErrors, load_mapping, read_events, write_events

ROWS = [
    {"user_id": "u1", "ts": "2026-10-05T08:00:00+00:00", "event_type": "view", "item_id": "i1", "price": 10.0},
    {"user_id": "u1", "ts": "2026-10-05T08:01:00+00:00", "event_type": "payment_attempt", "price": 3.5,
     "payment_status": "failed", "device_id": "d1", "quantity": 2},
    {"user_id": "u2", "ts": "2026-10-05T09:00:00+00:00", "event_type": "search", "text": "red shoes"},
]


@pytest.mark.parametrize("fmt", ["csv", "parquet", "jsonl"])
def test_round_trip(tmp_path, fmt):
    src = tmp_path / f"in.{fmt}"
    if fmt == "jsonl":
        pd.DataFrame(ROWS).to_json(src, orient="records", lines=True)
    elif fmt == "csv":
        pd.DataFrame(ROWS).to_csv(src, index=False)
    else:
        pd.DataFrame(ROWS).to_parquet(src)
    frame, report = read_events(src)
    assert report.rows_ok == 3 and report.rows_skipped == 0
    out = write_events(frame, tmp_path / f"out.{fmt}")
    again, _ = read_events(out)
    pd.testing.assert_frame_equal(frame, again, check_dtype=False)
    assert frame.loc[1, "payment_status"] == "failed" and frame.loc[1, "quantity"] == 2
    assert frame.loc[0, "ts"] == pd.Timestamp("2026-10-05T08:00:00Z").timestamp()


def test_bad_rows_reported_with_line_and_reason(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text(
        "user_id,ts,event_type,price\n"
        "u1,2026-10-05T08:00:00Z,view,\n"
        ",2026-10-05T08:00:00Z,view,\n"
        "u1,not-a-time,view,\n"
        "u1,2026-10-05T08:00:00Z,teleport,\n"
        "u1,2026-10-05T08:00:00Z,purchase,-5\n"
        "u1,2026-10-05T08:00:00,view,\n"
        "u1,2026-10-05T08:00"
    )
    frame, report = read_events(p)
    assert len(frame) == 1 and report.rows_read == 7 and report.rows_skipped == 6
    by_line = {e.line: (e.field, e.reason) for e in report.errors}
    assert by_line[3][0] == "user_id"
    assert by_line[4][0] == "ts"
    assert by_line[5] == ("event_type", "unknown event type")
    assert by_line[6][0] == "price"
    assert "offset" in by_line[7][1]
    assert "truncated" in by_line[8][1]
    with pytest.raises(RowErrors) as exc:
        read_events(p, on_error="fail")
    assert exc.value.report.rows_skipped == 6


def test_jsonl_bad_lines(tmp_path):
    p = tmp_path / "e.jsonl"
    p.write_text('{"user_id": "u", "ts": 1791187200, "event_type": "view"}\n{oops\n[1,2]\n')
    frame, report = read_events(p)
    assert len(frame) == 1 and {e.line for e in report.errors} == {2, 3}


def test_taobao_mapping_and_truncated_last_line(tmp_path):
    p = tmp_path / "UserBehavior.csv"
    p.write_text("1,2268318,2520377,pv,1511544070\n1,2333346,2520771,buy,1511561733\n2,3,4,fav,1511572885\n2,4,5,ca")
    mapping = load_mapping("seqguard/data/taobao_userbehavior.yaml")
    frame, report = read_events(p, mapping)
    assert frame["event_type"].tolist() == ["view", "purchase", "favorite"]
    assert frame["user_id"].tolist() == ["1", "1", "2"] and frame["country"].tolist() == ["CN"] * 3
    assert report.errors[0].line == 4 and "truncated" in report.errors[0].reason


def test_mapping_errors_are_clear(tmp_path):
    m = tmp_path / "m.yaml"
    m.write_text("fields: {colour: c}\nheader: false\n")
    with pytest.raises(DataError, match="colour"):
        load_mapping(m)
    m.write_text("fields: {user_id: uid, ts: t, event_type: e}\n")
    p = tmp_path / "x.csv"
    p.write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="uid"):
        read_events(p, load_mapping(m))
    with pytest.raises(DataError, match="does not exist"):
        read_events(tmp_path / "missing.csv")
    with pytest.raises(DataError, match="suffix"):
        read_events(m)


def test_epoch_milliseconds_detected(tmp_path):
    p = tmp_path / "ms.csv"
    p.write_text("user_id,ts,event_type\nu,1791187200000,view\nu,1791187200,view\n")
    frame, _ = read_events(p)
    assert np.allclose(frame["ts"], 1791187200.0)
