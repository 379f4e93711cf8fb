"""`seqguard score --engine spark` in local[2] equals the single-process command: bit-equal decisions, |Δscore| <= 1e-6,
the same columns, the same row errors. One SparkSession for the whole module, tiny data."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from seqguard.cli import main
from seqguard.io import write_events

pytestmark = pytest.mark.slow

try:
    import pyspark  # noqa: F401

    HAVE_PYSPARK = True
except ImportError:
    HAVE_PYSPARK = False


@pytest.fixture(scope="module")
def spark() -> Iterator[object]:
    if not HAVE_PYSPARK:
        pytest.skip("pyspark is not installed (pip install -e '.[spark]'; `make setup` installs it)")
    if shutil.which("java") is None:
        pytest.skip("no Java on this machine: Spark needs Java >= 17 (`make setup` installs default-jdk-headless)")
    from seqguard.spark import get_session

    session = get_session("local[2]", app="seqguard-tests", conf={
        "spark.sql.shuffle.partitions": "4", "spark.ui.enabled": "false", "spark.default.parallelism": "2"})
    yield session
    session.stop()


@pytest.fixture(scope="module")
def sample(tiny_events: pd.DataFrame) -> pd.DataFrame:
    per_user = tiny_events.groupby("user_id")["scenario"].agg(lambda s: sorted(set(s) - {"normal"}) or ["normal"])
    chosen: list[str] = []
    for scen in ("normal", "card_testing", "click_farm_bot", "account_takeover"):
        chosen += [u for u, sc in per_user.items() if sc[0] == scen][:3]
    return tiny_events[tiny_events["user_id"].isin(chosen)].reset_index(drop=True)


def single_and_spark(args: list[str], out_single: Path, out_spark: Path,
                     capsys: pytest.CaptureFixture[str]) -> tuple[pd.DataFrame, pd.DataFrame, str, str]:
    assert main(["score", "--no-progress", *args, "--out", str(out_single)]) == 0
    single_log = capsys.readouterr().err
    code = main(["score", "--no-progress", "--engine", "spark", "--master", "local[2]", *args,
                 "--out", str(out_spark)])
    spark_log = capsys.readouterr().err
    assert code == 0, spark_log
    a = pd.read_parquet(out_single) if out_single.suffix == ".parquet" else pd.read_csv(out_single)
    b = pd.read_parquet(out_spark)
    return a, b, single_log, spark_log


def assert_equal_rows(a: pd.DataFrame, b: pd.DataFrame, key: list[str]) -> None:
    assert sorted(a.columns) == sorted(b.columns)
    b = b[list(a.columns)]
    if "window_date" in b:
        b = b.assign(window_date=b["window_date"].astype(str))
    a = a.sort_values(key).reset_index(drop=True)
    b = b.sort_values(key).reset_index(drop=True)
    assert len(a) == len(b) > 0
    assert (a["entity_id"] == b["entity_id"]).all()
    assert (a["decision"] == b["decision"]).all()
    assert np.abs(a["score"].to_numpy() - b["score"].to_numpy()).max() <= 1e-6
    for c in a.columns:
        if c.startswith("score_"):
            assert np.nanmax(np.abs(a[c].to_numpy() - b[c].to_numpy())) <= 1e-6, c
    for c in ("reasons", "n_events", "n_windows", "label", "scenario", "window_date", "aggregation"):
        if c in a:
            assert (a[c].fillna("") == b[c].fillna("")).all(), c


def test_spark_window_rows_equal_single_process(spark, tiny_repo: Path, sample: pd.DataFrame, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    data = write_events(sample, tmp_path / "events.parquet")
    a, b, _, log = single_and_spark(["--models", str(tiny_repo), "--data", str(data)],
                                    tmp_path / "single.parquet", tmp_path / "spark_out", capsys)
    assert_equal_rows(a, b, ["entity_id", "window_end"])
    assert (a["decision"] != "allow").any() and (a["label"] == 1).any()
    # Partitioned by the window's UTC date, and the timestamps keep their UTC instant.
    assert {p.name.split("=")[0] for p in (tmp_path / "spark_out").glob("window_date=*")} == {"window_date"}
    assert (a.sort_values(["entity_id", "window_end"])["window_end"].to_numpy()
            == b.sort_values(["entity_id", "window_end"])["window_end"].to_numpy()).all()
    assert f"read {len(sample)} rows, kept {len(sample)}, skipped 0" in log


def test_spark_mapping_row_errors_and_entity_level(spark, tiny_repo: Path, sample: pd.DataFrame, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    csv = tmp_path / "shop.csv"
    write_events(sample.drop(columns=["is_anomaly", "scenario"]), csv)
    raw = pd.read_csv(csv, dtype=str, keep_default_na=False)
    raw["event_type"] = raw["event_type"].replace({"view": "pv"})
    raw = raw.rename(columns={"user_id": "uid", "ts": "time", "event_type": "kind"})
    bad = raw.iloc[:3].copy()
    bad.loc[bad.index[0], "kind"] = "teleport"
    bad.loc[bad.index[1], "time"] = "yesterday"
    bad.loc[bad.index[2], "price"] = "-3"
    pd.concat([raw, bad]).to_csv(csv, index=False)
    mapping = tmp_path / "shop.yaml"
    fields = {c: c for c in raw.columns if c not in ("uid", "time", "kind")}
    mapping.write_text(json.dumps({"name": "shop", "fields": {"user_id": "uid", "ts": "time", "event_type": "kind",
                                                                **fields},
                                   "values": {"event_type": {"pv": "view"}}}))
    truth = sample.groupby("user_id")["is_anomaly"].max().astype(int)
    labels = tmp_path / "labels.csv"
    pd.DataFrame({"entity_id": truth.index[1:], "label": truth.to_numpy()[1:]}).to_csv(labels, index=False)
    args = ["--models", str(tiny_repo), "--data", str(csv), "--mapping", str(mapping), "--level", "entity",
            "--labels", str(labels)]
    a, b, single_log, spark_log = single_and_spark(args, tmp_path / "single.csv", tmp_path / "spark_ent", capsys)
    a["first_window_end"] = pd.to_datetime(a["first_window_end"], utc=True)
    a["last_window_end"] = pd.to_datetime(a["last_window_end"], utc=True)
    assert_equal_rows(a, b, ["entity_id"])
    assert b["aggregation"].nunique() == 1
    assert f"labels: {int(truth.iloc[1:].sum())} positive" in spark_log
    assert "1 scored entities without a label" in spark_log
    assert b.set_index("entity_id").loc[truth.index[1:], "label"].tolist() == truth.to_numpy()[1:].tolist()
    assert b.set_index("entity_id").loc[truth.index[0], "label"] == 0
    errors = json.loads((tmp_path / "spark_ent" / "_row_errors.json").read_text())
    assert errors["rows_skipped"] == 3 and errors["rows_read"] == len(raw) + 3
    assert errors["reasons"] == {"event_type: unknown event type": 1, "ts: cannot parse as ISO 8601 or epoch time": 1,
                                 "price: outside 0..1e+06": 1}
    for reason in errors["reasons"]:
        assert f"1 x {reason}" in single_log and f"1 x {reason}" in spark_log


def test_spark_python_api_hot_entity_and_repeated_ids(spark, tiny_repo: Path, sample: pd.DataFrame,
                                                      tmp_path: Path) -> None:
    """A hot entity (thousands of events, most of them cut before the shuffle) and re-sent event ids score as in
    one process, through `seqguard.spark.score(df, models)`."""
    from seqguard.batch_score import BatchScorer
    from seqguard.spark import score

    hot = sample[sample["user_id"] == sample["user_id"].iloc[0]]
    reps = [hot.assign(ts=hot["ts"] + 37.0 * k, event_id=hot["event_id"] + f"-{k}") for k in range(60)]
    frame = pd.concat([sample, *reps, sample.iloc[:50]], ignore_index=True)  # the last 50 rows are re-sent ids
    frame = frame.drop(columns=["is_anomaly", "scenario"])
    scorer = BatchScorer(tiny_repo)
    try:
        expected = scorer.score_frame(frame)
    finally:
        scorer.close()
    scored = score(spark.createDataFrame(frame.astype({"quantity": "float64"})), tiny_repo)
    # The window-length cut runs partly on the map side: the hot entity reaches the shuffle already truncated.
    plan = scored._jdf.queryExecution().executedPlan().toString()
    limits = [line for line in plan.splitlines() if "WindowGroupLimit" in line and ", Partial" in line]
    assert any(f"row_number(), {scorer.cfg.max_events}, Partial" in line for line in limits), limits
    got = scored.toPandas()
    assert len(hot) * 60 > 1000
    assert_equal_rows(expected, got[list(expected.columns)].assign(window_date=got["window_date"]),
                      ["entity_id", "window_end"])
