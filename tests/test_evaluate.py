"""Evaluation: metric definitions, the report of a real (tiny) checkpoint, and the command's errors."""

import json

import numpy as np
import pytest

from seqguard.cli import main
from seqguard.train.metrics import (
    RECALL_KEY,
    clean,
    per_scenario,
    pr_auc,
    precision_at_k,
    recall_at_fpr,
    summary,
)


def test_recall_at_fpr_uses_the_normal_scores_threshold():
    y = np.array([0] * 100 + [1] * 4, dtype=bool)
    s = np.concatenate([np.arange(100, dtype=float), [99.5, 98.5, 50.0, 200.0]])
    # 1 % of 100 normals = 1 may score above the threshold: t just above 98 -> 99.5, 98.5 and 200 are caught.
    assert recall_at_fpr(y, s, 0.01) == pytest.approx(0.75)
    assert recall_at_fpr(y, s, 0.0) == pytest.approx(0.5)  # 99.5 and 200 beat every normal


def test_precision_at_k_and_pr_auc():
    y = np.array([1, 0, 1, 0, 0], dtype=bool)
    s = np.array([0.9, 0.8, 0.7, 0.1, 0.0])
    assert precision_at_k(y, s, 2) == pytest.approx(0.5)
    assert pr_auc(y, s) == pytest.approx((1.0 + 2 / 3) / 2)
    assert np.isnan(pr_auc(np.zeros(3, bool), np.arange(3.0)))


def test_per_scenario_judges_each_scenario_against_all_normals():
    y = np.array([0] * 200 + [1] * 6, dtype=bool)
    s = np.concatenate([np.linspace(0, 1, 200), [5, 5, 5, 0.5, 0.5, 5]])
    scen = np.array(["normal"] * 200 + ["a", "a", "a", "b", "b", "b"], dtype=object)
    per = per_scenario(y, s, scen)
    assert per["a"]["n_positive"] == 3 and per["a"][RECALL_KEY] == 1.0 and per["a"]["pr_auc"] == 1.0
    assert per["b"][RECALL_KEY] == pytest.approx(1 / 3)
    out = clean(summary(y, s))
    json.dumps(out, allow_nan=False)
    assert out["n_positive"] == 6


@pytest.fixture(scope="module")
def report(tiny_checkpoint, tiny_events, tmp_path_factory):
    from seqguard.train.evaluate import evaluate_checkpoint

    out = tmp_path_factory.mktemp("report")
    return out, evaluate_checkpoint(tiny_checkpoint, tiny_events, out, progress=False, log=lambda *_: None)


def test_evaluate_writes_report_metrics_and_plots(report):
    out, m = report
    for name in ("report.md", "metrics.json", "roc.png", "pr.png", "per_scenario_recall.png"):
        assert (out / name).is_file(), name
    on_disk = json.loads((out / "metrics.json").read_text())
    expected = {"ensemble", "ensemble_degraded", "behaviour_bert", "sequence_rnn", "unsupervised", "rules_only",
                "isolation_forest", "gradient_boosting"}
    assert expected <= set(on_disk["scores"])
    for s in on_disk["scores"].values():
        assert {"roc_auc", "pr_auc", RECALL_KEY, "precision_at_100", "per_scenario"} <= set(s)
        assert all("n_positive" in v for v in s["per_scenario"].values())
    assert "unseen_entities" in on_disk["scores"]["ensemble"]
    text = (out / "report.md").read_text()
    assert "## Targets" in text and "## Per scenario" in text and "Label efficiency" in text
    assert "train with `seqguard train --studies`" in text  # the tiny checkpoint ran no studies
    if not all(t["met"] for t in m["targets"]):
        assert "Missed targets — analysis" in text


def test_evaluate_reads_the_same_test_split_as_training(report, tiny_checkpoint):
    _, m = report
    trained = json.loads((tiny_checkpoint / "metrics.json").read_text())
    assert m["windows"] == trained["split"]["test"]["windows"]
    # The ensemble's test PR-AUC at evaluation equals the one training computed: same windows, same Scorer.
    assert m["scores"]["ensemble"]["pr_auc"] == pytest.approx(trained["test"]["ensemble"]["pr_auc"], abs=1e-6)


def test_studies_run_and_reach_the_report(tiny_events, tmp_path):
    from seqguard.train.config import TINY_CONFIG, load_train_config
    from seqguard.train.evaluate import evaluate_checkpoint
    from seqguard.train.pipeline import train_checkpoint

    cfg = load_train_config(TINY_CONFIG)
    cfg = cfg.model_copy(update={"rnn": cfg.rnn.model_copy(update={"enabled": False}),
                                 "studies": cfg.studies.model_copy(update={"held_out_scenarios": ["brushing"]})})
    ck = train_checkpoint(tiny_events, cfg, tmp_path / "m", progress=False, studies=True, log=lambda *_: None)
    m = json.loads((ck / "metrics.json").read_text())
    runs = m["label_efficiency"]["runs"]
    assert {(r["fraction"], r["pretrained"]) for r in runs} == {(0.5, True), (0.5, False), (1.0, True), (1.0, False)}
    held = m["held_out_scenarios"]
    assert held["held_out"] == ["brushing"]
    assert held["sources"]["ensemble"]["brushing"]["held_out"] is True
    ev = evaluate_checkpoint(ck, tiny_events, tmp_path / "r", progress=False, log=lambda *_: None)
    assert (tmp_path / "r" / "label_efficiency.png").is_file()
    assert any(t["target"].startswith("held-out scenario brushing") for t in ev["targets"])
    text = (tmp_path / "r" / "report.md").read_text()
    assert "Unseen attacks" in text and "brushing | **yes**" in text


def test_evaluate_command_errors(tiny_events, tiny_checkpoint, tmp_path, capsys):
    data = tmp_path / "events.parquet"
    tiny_events.drop(columns=["is_anomaly", "scenario"]).to_parquet(data)
    code = main(["evaluate", "--models", str(tiny_checkpoint), "--data", str(data), "--out", str(tmp_path / "r"),
                 "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "needs labels" in err and "Traceback" not in err
    code = main(["evaluate", "--models", str(tmp_path / "nothing"), "--data", str(data), "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "does not exist" in err


def test_evaluate_command_runs(tiny_events, tiny_checkpoint, tmp_path, capsys):
    data = tmp_path / "events.parquet"
    tiny_events.to_parquet(data)
    code = main(["evaluate", "--models", str(tiny_checkpoint), "--data", str(data), "--out", str(tmp_path / "r"),
                 "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0 and "ensemble PR-AUC" in out and (tmp_path / "r" / "report.md").is_file()
