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
    lf = r["label_free_check"]
    assert lf["aggregation"] == "mean" and f"paired difference {lf['difference']:+.3f}" in text
    assert "of the windows, as `train --no-labels` serves" in text
    assert (tmp_path / f"{r['name']}_entity_pr_auc.png").stat().st_size > 1000


def test_the_label_free_check_says_when_no_label_free_score_has_signal() -> None:
    from seqguard.evaluation.suite import _label_free_line

    lf = {"aggregation": "mean", "pr_auc": [0.466, 0.481], "roc_auc": [0.42, 0.45], "difference": -0.015,
          "difference_ci": [-0.03, -0.001], "roc_auc_ci": [[0.38, 0.46], [0.41, 0.50]]}
    line = _label_free_line(lf)
    assert line.startswith("- [MISS] label-free entity PR-AUC 0.466 vs isolation forest 0.481 (mean of the windows")
    assert "paired difference -0.015 [-0.030, -0.001]" in line and "no label-free signal on this set" in line
    assert "(entity ROC-AUC 0.420 [0.380, 0.460] and 0.450 [0.410, 0.500])" in line
    line = _label_free_line({**lf, "pr_auc": [0.5, 0.4], "roc_auc_ci": [[0.55, 0.7], [0.41, 0.5]]})
    assert line.startswith("- [ok]") and "no label-free signal" not in line


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


def _vews_folder(root: Path, vandals: int, benign: int) -> Path:
    """A VEWS-shaped folder (the staged columns, leaks included): each vandal edits once after its block."""
    import pandas as pd

    folder = root / "wikipedia_vews_vandals"
    folder.mkdir(parents=True)
    edits, users = [], []
    for i in range(vandals + benign):
        bad = i < vandals
        name = f"{'V' if bad else 'B'}user{i:03d}"
        blocked = "2013-03-01T00:00:00Z" if bad else "-"
        users.append([name, i, blocked, "vandalism" if bad else "-", "vandal" if bad else "benign", int(bad)])
        for k, (day, page) in enumerate([(1, "Foo"), (2, "Talk:Foo"), (3, "User talk:Bar"), (5, "Baz")]):
            month = 2 if k < 3 else 4  # the fourth edit falls after a vandal's block
            edits.append([name, 1000 * i + k, f"2013-{month:02d}-{day:02d}T10:00:00Z", page, str(bad), "-", int(bad),
                          0.9 if bad else 0.1, int(bad), "vandal" if bad else "benign", int(bad), "x.csv"])
    pd.DataFrame(edits, columns=["username", "revid", "revtime", "pagetitle", "isReverted", "revertTime",
                                 "cluebotRevert", "stiki_score", "stiki_REP_USER", "user_label", "is_vandal_user",
                                 "source_file"]).to_csv(folder / "edits.csv", index=False)
    pd.DataFrame(users, columns=["username", "userid", "blocked_time", "block_reason", "user_label",
                                 "is_vandal_user"]).to_csv(folder / "users.csv", index=False)
    return root


def test_wikipedia_sets_draw_their_vandal_share_and_keep_only_edits_before_the_block(tmp_path: Path) -> None:
    from seqguard.evaluation.datasets import SETS, SkipSet, wikipedia_vews

    root = _vews_folder(tmp_path, vandals=30, benign=30)
    ds = wikipedia_vews(root, users=20, vandal_share=0.25)
    per_user = ds.frame.groupby("user_id")["is_anomaly"].agg(["first", "size"])
    assert ds.name == "wikipedia_vews_25pct" and int(per_user["first"].sum()) == 5 and len(per_user) == 20
    assert "5 vandals and 15 benign users sampled (seed 0): 25% vandals instead of the staged 50%" in ds.notes[0]
    # Vandals lose the edit made after their block; benign users keep all four.
    assert set(per_user.loc[per_user["first"], "size"]) == {3} and set(per_user.loc[~per_user["first"], "size"]) == {4}
    assert set(ds.frame["category_id"]) == {"Main", "Talk", "User talk"}
    assert not {"isReverted", "cluebotRevert", "stiki_score"} & set(ds.frame.columns)
    assert wikipedia_vews(root, users=20, vandal_share=0.25).frame.equals(ds.frame)  # the same draw every run
    staged = SETS["wikipedia_vews"](root)
    assert staged.name == "wikipedia_vews" and staged.frame["user_id"].nunique() == 60
    with pytest.raises(SkipSet, match="needs 36 vandals and 4 benign users; the folder holds 30 and 30"):
        wikipedia_vews(root, users=40, vandal_share=0.9)
