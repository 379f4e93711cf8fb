"""The evaluation suite (`make evaluate`) on a tiny generated set: every score at both levels, intervals, report,
plots; an absent ../shared set is skipped with its reason (tests never read ../shared)."""

from __future__ import annotations

from pathlib import Path

import pytest

from seqguard.evaluation.datasets import EvalSet, generator_set
from seqguard.evaluation.suite import (
    BASELINES,
    FRACTIONS,
    LABEL_FREE,
    SERVED,
    label_efficiency_study,
    label_free_scorer,
    run_set,
    run_suite,
    write_report,
)

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "seqguard/data/train_tiny.yaml"


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, EvalSet]:
    out = tmp_path_factory.mktemp("suite")
    ds = generator_set(seed=77, users=500, days=4)
    return out / "runs" / ds.name, run_set(ds, out / "runs" / ds.name, config=TINY, log=lambda *_: None), ds


def test_every_score_at_both_levels_with_intervals(result: tuple[Path, dict, EvalSet]) -> None:
    _, r, _ = result
    for level in ("windows", "entities"):
        names = set(r[level])
        assert {SERVED, LABEL_FREE, "served_without_sequence_models", *BASELINES} <= names
        assert {"component:behaviour_bert", "component:unsupervised_sequence", "component:unsupervised"} <= names
        for m in r[level].values():
            for key in ("roc_auc", "pr_auc", "recall_at_0.05_fpr"):
                lo, hi = m[f"{key}_ci"]
                assert lo <= m[key] + 1e-9 and m[key] - 1e-9 <= hi, (key, m)
    # Entities are fewer than windows (several days each), and every anomalous entity has a scenario.
    assert r["split"]["test_entities"] <= r["split"]["test"]
    per = r["entities"][SERVED]["per_scenario"]
    assert "normal" not in per and sum(v["n_positive"] for v in per.values()) == r["split"]["test_anomalous_entities"]
    assert r["split"]["mode"] in ("time", "entity") and r["split"]["why"]


def test_report_and_plots(result: tuple[Path, dict, EvalSet], tmp_path: Path) -> None:
    _, r, _ = result
    path = write_report(tmp_path, [r], {"bitcoin_otc": "absent"}, 12.0)
    text = path.read_text()
    assert "bitcoin_otc: skipped" in text and "**entity level**" in text and "**window level**" in text
    assert "label-free entity PR-AUC" in text and "sequence models add" in text
    assert (tmp_path / f"{r['name']}_entity_pr_auc.png").stat().st_size > 1000


def test_absent_shared_sets_are_skipped(tmp_path: Path) -> None:
    report = run_suite(tmp_path / "out", ["taobao_inject_1", "wikipedia_vews"], shared=tmp_path / "nothing",
                       config=TINY, log=lambda *_: None)
    text = report.read_text()
    assert "taobao_inject_1: skipped" in text and "is absent" in text and "wikipedia_vews: skipped" in text


def test_eval_set_shape() -> None:
    ds = generator_set(seed=5, users=120, days=2)
    assert isinstance(ds, EvalSet) and {"is_anomaly", "scenario"} <= set(ds.frame.columns)


def test_label_efficiency_with_and_without_the_pretrained_encoder(result: tuple[Path, dict, EvalSet],
                                                                   tmp_path: Path) -> None:
    _, r, ds = result
    study = label_efficiency_study(ds, TINY, log=lambda *_: None)
    runs = study["runs"]
    assert sorted({x["fraction"] for x in runs}) == FRACTIONS
    assert {x["pretrained"] for x in runs} == {True, False}
    train = {x["fraction"]: x["train_windows"] for x in runs}
    assert train[0.01] < train[0.25] < train[1.0]
    path = write_report(tmp_path, [{**r, "label_efficiency": study}], {}, 1.0)
    assert "**label efficiency**" in path.read_text() and (tmp_path / "label_efficiency.png").is_file()


def test_label_free_score_is_what_train_no_labels_serves(result: tuple[Path, dict, EvalSet], tmp_path: Path) -> None:
    """The suite's label-free score (from the labelled checkpoint's detector and surprise model) ranks exactly as
    the checkpoint `train --no-labels` writes for the same data."""
    import numpy as np

    from seqguard.evaluation.suite import _train_cfg
    from seqguard.scoring.ensemble import SURPRISE
    from seqguard.scoring.scorer import Scorer
    from seqguard.train.checkpoint import load_models
    from seqguard.train.dataset import build_windows
    from seqguard.train.loop import predict_logits
    from seqguard.train.pipeline import train_checkpoint

    run_dir, _, ds = result
    cfg = _train_cfg(ds, False, TINY)  # exactly the suite's config for this set
    nolabels = train_checkpoint(ds.frame.drop(columns=["is_anomaly", "scenario"]), cfg, tmp_path / "free",
                                progress=False, log=lambda *_: None)
    ws = build_windows(ds.frame, cfg.sequence)
    idx = np.arange(0, len(ws), 7)
    x = ws.features[idx]
    derived = label_free_scorer(Scorer.load(run_dir / "models"))
    a = derived.score_batch({SURPRISE: predict_logits(load_models(run_dir / "models")[SURPRISE], ws.encoded, idx)}, x)
    served = Scorer.load(nolabels)
    b = served.score_batch({SURPRISE: predict_logits(load_models(nolabels)[SURPRISE], ws.encoded, idx)}, x)
    np.testing.assert_allclose(a.score, b.score, atol=1e-6)
