"""`seqguard score`: offline rows equal the real service's /score answers; chunking never changes a score; every
bad input gets a clear error."""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from seqguard.cli import main
from seqguard.io import read_events, write_events
from tests.support import start_service

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def events_file(tiny_events: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A few entities of every kind (normal, several attack scenarios), several days each."""
    per_user = tiny_events.groupby("user_id")["scenario"].agg(lambda s: sorted(set(s) - {"normal"}) or ["normal"])
    chosen: list[str] = []
    for scen in ("normal", "card_testing", "click_farm_bot", "account_takeover", "coupon_abuse"):
        chosen += [u for u, sc in per_user.items() if sc[0] == scen][:2]
    frame = tiny_events[tiny_events["user_id"].isin(chosen)]
    return write_events(frame, tmp_path_factory.mktemp("score_data") / "events.parquet")


def score(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["score", "--no-progress", *args])
    captured = capsys.readouterr()
    return code, captured.err + captured.out


def post(url: str, body: Any) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    out = []
    for rec in frame.drop(columns=["is_anomaly", "scenario"], errors="ignore").to_dict(orient="records"):
        out.append({k: (int(v) if k == "quantity" else v) for k, v in rec.items() if v is not None and v is not pd.NA
                    and not (isinstance(v, float) and np.isnan(v))})
    return out


@pytest.fixture(scope="module")
def service(tiny_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server, url = start_service(tmp_path_factory.mktemp("score_svc"), {"SEQGUARD_REPO": str(tiny_repo)})
    yield url
    server.stop()


def assert_same_answer(row: pd.Series, answer: dict[str, Any]) -> None:
    assert row["decision"] == answer["decision"], (row["entity_id"], row["score"], answer["score"])
    assert row["score"] == pytest.approx(answer["score"], abs=1e-6)
    for name, value in answer["component_scores"].items():
        assert row[f"score_{name}"] == pytest.approx(value, abs=1e-6), name
    assert row["reasons"].split(" | ") == answer["reasons"] if answer["reasons"] else row["reasons"] == ""
    assert row["rules_fired"] == ",".join(r["id"] for r in answer["rules_fired"])
    assert row["n_events"] == answer["n_events"]
    assert bool(row["degraded"]) is answer["degraded"] is False


def test_offline_score_equals_the_service(service: str, tiny_repo: Path, events_file: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "latest.parquet"
    code, err = score(["--models", str(tiny_repo), "--data", str(events_file), "--out", str(out),
                       "--every", "entity"], capsys)
    assert code == 0, err
    rows = pd.read_parquet(out).set_index("entity_id", drop=False)
    frame, _ = read_events(events_file)
    assert set(rows.index) == set(frame["user_id"])
    assert rows["label"].sum() > 0 and (rows["label"] == 0).sum() > 0
    for entity, evs in frame.groupby("user_id"):
        status, body = post(service + "/score", {"events": records(evs)})
        assert status == 200, body
        (answer,) = body["results"]
        assert answer["model_version"] == rows.loc[entity, "model_version"]
        assert_same_answer(rows.loc[entity], answer)
    assert rows["decision"].nunique() > 1, "every entity got the same decision: the comparison proves little"


def test_every_day_window_equals_the_service_on_the_events_up_to_its_end(
        service: str, tiny_repo: Path, events_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "days.csv"
    code, err = score(["--models", str(tiny_repo), "--data", str(events_file), "--out", str(out)], capsys)
    assert code == 0, err
    rows = pd.read_csv(out, keep_default_na=False)
    frame, _ = read_events(events_file)
    multi = rows.groupby("entity_id").size()
    entity = multi[multi >= 2].index[0]
    evs = frame[frame["user_id"] == entity]
    for _, row in rows[rows["entity_id"] == entity].iterrows():
        end = pd.Timestamp(row["window_end"]).timestamp()
        status, body = post(service + "/score", {"events": records(evs[evs["ts"] <= end + 1e-6])})
        assert status == 200, body
        assert_same_answer(row, body["results"][0])


def test_chunked_scoring_equals_one_chunk_and_entity_rows_aggregate(
        tiny_repo: Path, events_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    whole, chunked = tmp_path / "whole.parquet", tmp_path / "chunked.parquet"
    code, err = score(["--models", str(tiny_repo), "--data", str(events_file), "--out", str(whole)], capsys)
    assert code == 0, err
    assert "1 bucket(s)" in err
    code, err = score(["--models", str(tiny_repo), "--data", str(events_file), "--out", str(chunked),
                       "--chunk-rows", "50"], capsys)
    assert code == 0, err
    n_buckets = int(err.rsplit(" bucket(s)", 1)[0].rsplit("; ", 1)[1])
    assert n_buckets > 2
    key = ["entity_id", "window_end"]
    a = pd.read_parquet(whole).sort_values(key).reset_index(drop=True)
    b = pd.read_parquet(chunked).sort_values(key).reset_index(drop=True)
    assert list(a.columns) == list(b.columns) and len(a) == len(b) > 0
    assert (a["decision"] == b["decision"]).all() and (a["reasons"] == b["reasons"]).all()
    np.testing.assert_allclose(a["score"], b["score"], rtol=0, atol=1e-12)

    ent = tmp_path / "entities.parquet"
    code, err = score(["--models", str(tiny_repo), "--data", str(events_file), "--out", str(ent),
                       "--level", "entity", "--chunk-rows", "50"], capsys)
    assert code == 0, err
    e = pd.read_parquet(ent).set_index("entity_id")
    method = e["aggregation"].iloc[0]  # the tiny checkpoint's trained choice, or the default
    assert (e["aggregation"] == method).all() and method in ("max", "mean", "median")
    assert f"entity scores: {method} of window scores (" in err
    expected = a.groupby("entity_id")["score"].agg(method)
    np.testing.assert_allclose(e.loc[expected.index, "score"], expected, rtol=0, atol=1e-12)
    assert (e.loc[expected.index, "n_windows"] == a.groupby("entity_id").size()).all()
    assert (e["label"] == a.groupby("entity_id")["label"].max().reindex(e.index)).all()
    code, err = score(["--models", str(tiny_repo), "--data", str(events_file), "--out", str(ent),
                       "--level", "entity", "--aggregation", "max"], capsys)
    assert code == 0 and "max of window scores (--aggregation)" in err
    np.testing.assert_allclose(pd.read_parquet(ent).set_index("entity_id").loc[expected.index, "score"],
                               a.groupby("entity_id")["score"].max(), rtol=0, atol=1e-12)


def test_bad_rows_are_counted_or_fail(tiny_repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "events.csv"
    data.write_text("user_id,ts,event_type,price\n"
                    "u1,2026-10-01T10:00:00Z,view,10\n"
                    "u1,2026-10-01T10:01:00Z,teleport,10\n"
                    "u1,2026-10-01T10:02:00Z,purchase,-5\n"
                    "u2,yesterday,view,\n"
                    "u2,2026-10-01T11:00:00Z,add_to_cart,3\n")
    out = tmp_path / "s.csv"
    code, err = score(["--models", str(tiny_repo), "--data", str(data), "--out", str(out)], capsys)
    assert code == 0, err
    assert "read 5 rows, kept 2, skipped 3" in err
    assert "1 x event_type: unknown event type" in err and "1 x price: outside 0..1e+06" in err
    assert sorted(pd.read_csv(out)["entity_id"]) == ["u1", "u2"]
    code, err = score(["--models", str(tiny_repo), "--data", str(data), "--out", str(out), "--on-error", "fail"],
                      capsys)
    assert code == 2 and "3 malformed row(s) and --on-error fail" in err
    empty = tmp_path / "nothing.csv"
    empty.write_text("user_id,ts,event_type\nu1,never,view\n")
    code, err = score(["--models", str(tiny_repo), "--data", str(empty), "--out", str(tmp_path / "e.csv")], capsys)
    assert code == 2 and "no usable rows to score" in err and not (tmp_path / "e.csv").exists()


def test_bad_models_and_flags_get_clear_errors(tiny_repo: Path, tiny_checkpoint: Path, events_file: Path,
                                               tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = str(tmp_path / "s.parquet")
    base = ["--data", str(events_file), "--out", out]
    code, err = score(["--models", str(tiny_checkpoint), *base], capsys)
    assert code == 2 and "is a checkpoint folder" in err and "run `seqguard export" in err
    code, err = score(["--models", str(tmp_path / "nowhere"), *base], capsys)
    assert code == 2 and "nowhere: does not exist" in err
    bad = tmp_path / "repo"
    shutil.copytree(tiny_repo, bad)
    ens = bad / "ensemble.json"
    ens.write_text(ens.read_text().replace("0", "1", 1))
    code, err = score(["--models", str(bad), *base], capsys)
    assert code == 2 and "changed: ensemble.json" in err and "does not match its manifest" in err
    code, err = score(["--models", str(tiny_repo), "--data", str(tmp_path / "none.parquet"), "--out", out], capsys)
    assert code == 2 and "none.parquet: does not exist" in err
    code, err = score(["--models", str(tiny_repo), "--data", str(events_file), "--out", str(tmp_path / "s.json")],
                      capsys)
    assert code == 2 and "use a .parquet or .csv file name" in err
    code, err = score(["--models", str(tiny_repo), *base, "--chunk-rows", "0"], capsys)
    assert code == 2 and "--chunk-rows: must be at least 1" in err
    code, err = score(["--models", str(tiny_repo), *base, "--master", "local[2]"], capsys)
    assert code == 2 and "--master: only with --engine spark" in err
    mapping = tmp_path / "m.yaml"
    mapping.write_text("fields: {user_id: uid, ts: time, event_type: kind}\n")
    code, err = score(["--models", str(tiny_repo), *base, "--mapping", str(mapping)], capsys)
    assert code == 2 and "maps user_id from column 'uid', which the file lacks" in err
    assert not Path(out).exists()


def test_labels_table_marks_entities_and_bad_tables_are_named(
        tiny_repo: Path, events_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    frame, _ = read_events(events_file)
    truth = frame.groupby("user_id")["is_anomaly"].max()
    table = pd.DataFrame({"entity_id": truth.index, "label": truth.astype(int).to_numpy()})
    labelled, unlabelled = table.iloc[1:], table["entity_id"].iloc[0]
    labels = tmp_path / "labels.csv"
    labelled.assign(scenario=np.where(labelled["label"] == 1, "bot", None)).to_csv(labels, index=False)
    events = tmp_path / "events.parquet"
    write_events(frame.drop(columns=["is_anomaly", "scenario"]), events)
    out = tmp_path / "ent.parquet"
    code, err = score(["--models", str(tiny_repo), "--data", str(events), "--out", str(out), "--level", "entity",
                       "--labels", str(labels)], capsys)
    assert code == 0, err
    assert (f"labels: {int(labelled['label'].sum())} positive and {int((labelled['label'] == 0).sum())} negative "
            "entities matched; 0 labelled entities absent from the events; 1 scored entities without a label "
            "(treated as normal)") in err
    rows = pd.read_parquet(out).set_index("entity_id")
    assert rows.loc[unlabelled, "label"] == 0 and rows.loc[unlabelled, "scenario"] == "normal"
    lab = labelled.set_index("entity_id")["label"]
    assert (rows.loc[lab.index, "label"] == lab).all()
    assert set(rows.loc[lab.index[lab == 1], "scenario"]) == {"bot"}
    code, err = score(["--models", str(tiny_repo), "--data", str(events), "--out", str(out), "--labels", str(labels),
                       "--unlabelled", "exclude"], capsys)
    assert code == 0 and unlabelled not in set(pd.read_parquet(out)["entity_id"])

    strangers = tmp_path / "strangers.csv"
    strangers.write_text("entity_id,label\nnobody-1,1\nnobody-2,0\n")
    code, err = score(["--models", str(tiny_repo), "--data", str(events), "--out", str(tmp_path / "x.parquet"),
                       "--labels", str(strangers)], capsys)
    assert code == 2 and "no entity of the labels table occurs in the events: 0 of 2 labelled ids match" in err
    assert not (tmp_path / "x.parquet").exists()
    dup = tmp_path / "dup.csv"
    dup.write_text("entity_id,label\na,1\na,0\nb,maybe\n")
    code, err = score(["--models", str(tiny_repo), "--data", str(events), "--out", str(tmp_path / "x.parquet"),
                       "--labels", str(dup)], capsys)
    assert code == 2 and "labels file" in err and str(dup) in err


def test_the_trained_entity_aggregation_is_used_and_named(tiny_repo: Path, events_file: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    from seqguard.manifest import Manifest, write_manifest

    repo = tmp_path / "repo"
    shutil.copytree(tiny_repo, repo)
    ens = json.loads((repo / "ensemble.json").read_text())
    ens["entity_aggregation"] = "median"
    (repo / "ensemble.json").write_text(json.dumps(ens))
    write_manifest(repo, Manifest.load(repo).model_copy(update={"ensemble": ens}))
    out = tmp_path / "e.parquet"
    code, err = score(["--models", str(repo), "--data", str(events_file), "--out", str(out), "--level", "entity"],
                      capsys)
    assert code == 0, err
    assert "entity scores: median of window scores (" in err and "entity_aggregation" in err
    assert set(pd.read_parquet(out)["aggregation"]) == {"median"}


def test_jsonl_in_chunks_scores_like_parquet_and_names_bad_lines(
        tiny_repo: Path, events_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    frame = pd.read_parquet(events_file)
    lines = [json.dumps(r, default=str) for r in records(frame)]
    lines[3:3] = ["{not json", "[1, 2]", ""]
    data = tmp_path / "events.jsonl"
    data.write_text("\n".join(lines) + "\n")
    ref, out = tmp_path / "ref.parquet", tmp_path / "jsonl.parquet"
    assert score(["--models", str(tiny_repo), "--data", str(events_file), "--out", str(ref)], capsys)[0] == 0
    code, err = score(["--models", str(tiny_repo), "--data", str(data), "--out", str(out), "--chunk-rows", "40"],
                      capsys)
    assert code == 0, err
    assert f"read {len(frame) + 2} rows, kept {len(frame)}, skipped 2" in err
    assert "line 4: (line): invalid JSON" in err and "line 5: (line): expected a JSON object" in err
    key = ["entity_id", "window_end"]
    a = pd.read_parquet(ref).sort_values(key).reset_index(drop=True)
    b = pd.read_parquet(out).sort_values(key).reset_index(drop=True)
    assert len(a) == len(b) > 0 and (a["decision"] == b["decision"]).all()
    np.testing.assert_allclose(a["score"], b["score"], rtol=0, atol=1e-12)


@pytest.mark.parametrize("chunk_rows", [2, 5, 1000])
def test_chunked_jsonl_errors_name_the_file_line(tmp_path: Path, chunk_rows: int) -> None:
    """Rows after blank and unparsable lines keep their own line numbers, in every chunk size (no model needed)."""
    from seqguard.batch_score import ReadTotals, read_chunks
    from seqguard.io import read_events

    def event(i: int, **extra: Any) -> str:
        return json.dumps({"user_id": f"u{i % 2}", "ts": 1_760_000_000 + i, "event_type": "view", **extra})

    text = "\n".join([
        event(1),                              # line 1
        "",                                    # line 2: blank, skipped silently
        "{not json",                           # line 3
        event(2),                              # line 4
        "",                                    # line 5
        "",                                    # line 6
        event(3, event_type="teleport"),       # line 7: a bad field after blank and bad lines
        "[1, 2]",                              # line 8
        event(4),                              # line 9
        event(5, ts="yesterday"),              # line 10
        "{truncated",                          # line 11: after the last good row (alone in no chunk of its own)
    ]) + "\n"
    data = tmp_path / "events.jsonl"
    data.write_text(text)
    totals = ReadTotals()
    kept = pd.concat(list(read_chunks(data, chunk_rows=chunk_rows, totals=totals)))
    report = totals.merged(str(data))
    assert len(kept) == 3 and report.rows_skipped == 5
    lines = sorted((e.line, e.field) for e in report.errors)
    assert lines == [(3, "(line)"), (7, "event_type"), (8, "(line)"), (10, "ts"), (11, "(line)")]
    # The whole-file reader numbers the same lines.
    _, whole = read_events(data)
    assert sorted((e.line, e.field) for e in whole.errors) == lines
