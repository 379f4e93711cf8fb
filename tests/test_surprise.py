"""The label-free sequence component `unsupervised_sequence`: the next-event surprise model, its statistics, the
label-free ensemble (`train --no-labels`), its reasons and its export (tiny configs: seconds)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from seqguard.cli import main
from seqguard.features import describe_step, encode_window, pad_batch
from seqguard.generator import GeneratorConfig, generate
from seqguard.io import write_events
from seqguard.models import N_SURPRISE_STATS
from seqguard.scoring.ensemble import ISOLATION, SURPRISE, UNSUPERVISED, Ensemble, margin_input
from seqguard.scoring.scorer import Scorer
from seqguard.sequences import columns_from_frame
from seqguard.train.bert import pretrain
from seqguard.train.config import load_train_config
from seqguard.train.dataset import build_windows, split_windows
from seqguard.train.loop import predict_logits, setup_torch
from seqguard.train.surprise import surprise_margin, surprise_step, train_surprise

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "seqguard/data/train_tiny.yaml"


@cache
def _trained():
    cfg = load_train_config(TINY)
    setup_torch(0, 1)
    ev = generate(GeneratorConfig(users=500, days=4, seed=21)).events
    ws = build_windows(ev, cfg.sequence)
    split = split_windows(ws, cfg.split, 0)
    # A few more epochs than the tiny config: enough for the likelihoods to mean something, still seconds.
    bert = cfg.bert.model_copy(update={"pretrain_epochs": 6, "pretrain_lr": 3e-3})
    pre = pretrain(ws.encoded, split.train, cfg.sequence, bert, 0)
    res = train_surprise(pre, ws.encoded, split.train, cfg.sequence, bert, 0)
    return cfg, ws, split, res


def test_output_carries_surprise_and_step_and_ignores_padding() -> None:
    import torch

    _, ws, split, res = _trained()
    idx = split.test[:40]
    logits = predict_logits(res.model, ws.encoded, idx)
    z, step = surprise_margin(logits), surprise_step(logits)
    # The step is the argmax of the scored events' NLL, never the first event, always a real event.
    for k, i in enumerate(idx[:10]):
        batch = {k2: torch.from_numpy(v) for k2, v in pad_batch([ws.encoded[int(i)]]).items()}
        ev, scored = res.model.event_nll(batch["input_ids"], batch["attention_mask"])
        n_events = (len(ws.encoded[int(i)].input_ids) - 2) // 2
        assert not bool(scored[0, 0]) and int(scored[0].sum()) == max(n_events - 1, 0)
        if n_events > 1:
            assert step[k] == int(torch.argmax(ev[0] * scored[0]))
            assert 1 <= step[k] < n_events
    # Alone or padded next to a longer window: the same answer (the graph masks padding).
    longest = idx[np.argmax([len(ws.encoded[int(i)].input_ids) for i in idx])]
    for i in idx[:5]:
        pair = predict_logits(res.model, ws.encoded, np.array([i, longest]))[0]
        alone = predict_logits(res.model, ws.encoded, np.array([i]))[0]
        np.testing.assert_allclose(pair, alone, atol=1e-4)
    assert np.isfinite(z).all()


def test_statistics_are_standardised_on_training_windows_and_shuffles_are_surprising() -> None:
    _, ws, split, res = _trained()
    train_z = res.train_margins
    assert abs(train_z.mean()) < 0.05 and 0.2 < train_z.std() < 2.0
    c = res.model.config
    assert c.improbable_nll > 0 and len(c.stat_mean) == len(c.stat_scale) == len(c.stat_weights) == N_SURPRISE_STATS
    # The same windows with their events' order scrambled and a rare kind spliced in: far less likely.
    rng = np.random.default_rng(0)
    idx = split.test[[len(ws.encoded[int(i)].input_ids) >= 12 for i in split.test]][:60]
    enc = [ws.encoded[int(i)] for i in idx]
    scrambled = []
    for e in enc:
        ids = e.input_ids.copy()
        events = ids[1:-1].reshape(-1, 2)
        events = events[rng.permutation(len(events))]
        events[:, 1] = events[rng.permutation(len(events)), 1]  # contexts (gaps, hours) no longer fit their events
        ids[1:-1] = events.reshape(-1)
        scrambled.append(type(e)(ids, e.token_type_ids, e.features))
    # The "too surprising" half (mean event NLL) rises; the "too regular" half (repeated transitions) may fall, as
    # a shuffle breaks repeats, so the likelihood statistic is what this checks.
    import torch

    def mean_nll(windows: list) -> np.ndarray:
        batch = {k: torch.from_numpy(v) for k, v in pad_batch(windows).items()}
        with torch.inference_mode():
            return res.model.window_stats(batch["input_ids"], batch["attention_mask"])[0][:, 0].numpy()

    assert (mean_nll(scrambled) > mean_nll(enc)).mean() > 0.8


def test_describe_step_names_the_events_and_gap() -> None:
    cfg = load_train_config(TINY).sequence
    frame = pd.DataFrame({
        "user_id": ["u"] * 3, "ts": [1000.0, 1030.0, 1030.4], "event_type": ["view", "view", "purchase"],
        "item_id": ["i1", "i2", "i2"], "category_id": ["c1", "c1", "c1"], "price": [5.0, 5.0, 5.0],
        "payment_status": [None] * 3, "device_id": ["d"] * 3, "ip": ["1.1.1.1"] * 3, "country": ["CN"] * 3,
    })
    for col in ("event_id", "session_id", "quantity", "coupon_code", "text"):
        frame[col] = None
    enc = encode_window(columns_from_frame(frame), cfg)
    assert describe_step(enc.input_ids, 2, cfg) == "view→purchase within 2s"
    assert describe_step(enc.input_ids, 1, cfg) == "view→view after 10s-1m"
    assert describe_step(enc.input_ids, 0, cfg) == "view"


@pytest.fixture(scope="module")
def label_free(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`seqguard train --no-labels` on labelled generated data: the labels must be ignored."""
    tmp = tmp_path_factory.mktemp("nolabels")
    data = write_events(generate(GeneratorConfig(users=600, days=4, seed=5)).events, tmp / "events.parquet")
    out = tmp / "models"
    rc = main(["train", "--data", str(data), "--config", str(TINY), "--out", str(out), "--no-labels",
               "--no-progress"])
    assert rc == 0
    return out


def test_no_labels_trains_and_serves_the_detector_forest_and_surprise_pooled(label_free: Path) -> None:
    index = json.loads((label_free / "checkpoint.json").read_text())
    assert index["labels_used"] is False
    assert [m["name"] for m in index["models"]] == [SURPRISE]
    ens = Ensemble.load(label_free / "ensemble.json")
    assert ens.components == [SURPRISE] and ens.main.kind == "percentile"
    assert margin_input(SURPRISE) in ens.main.inputs and ISOLATION in ens.main.inputs
    assert ens.main.metrics["averaged"] == [UNSUPERVISED, ISOLATION, SURPRISE] and ens.main.metrics["combine"] == "tail"
    # Backend down: the detector and the forest (neither needs a model server), pooled the same way.
    assert ens.degraded.metrics["averaged"] == [UNSUPERVISED, ISOLATION] and ISOLATION in ens.degraded.inputs
    for name in (SURPRISE, ISOLATION):
        assert name in ens.reference and np.all(np.diff(ens.reference[name]) >= 0)
    assert ens.isolation is not None and ens.isolation.meta["estimator"] == "IsolationForest"
    # Thresholds are the training windows' own quantiles of the pooled score: inside (0, 1].
    for st in (ens.main, ens.degraded):
        assert 0 < st.thresholds["review"] < st.thresholds["block"] <= 1.0


def test_scorer_averages_percentiles_and_explains_the_surprising_step(label_free: Path) -> None:
    from seqguard.train.checkpoint import load_models, load_sequence_config

    scorer = Scorer.load(label_free)
    cfg = load_sequence_config(label_free)
    model = load_models(label_free)[SURPRISE]
    ev = generate(GeneratorConfig(users=300, days=2, seed=9)).events
    ws = build_windows(ev, cfg)
    logits = {SURPRISE: predict_logits(model, ws.encoded)}
    bs = scorer.score_batch(logits, ws.features)
    parts = [bs.component_scores[UNSUPERVISED], bs.component_scores[ISOLATION],
             scorer.ensemble.percentile(SURPRISE, surprise_margin(logits[SURPRISE]))]
    # The mean -log tail share (floored at 1/1000), over log(1000): one component deep in its tail counts.
    expected = -np.mean([np.log(np.maximum(1 - p, 1e-3)) for p in parts], axis=0) / np.log(1000)
    np.testing.assert_allclose(bs.score, expected)
    assert np.all((bs.component_scores[SURPRISE] >= 0) & (bs.component_scores[SURPRISE] <= 1))
    top = np.argsort(-bs.component_scores[SURPRISE])[:5]
    assert bs.component_scores[SURPRISE][top[0]] >= 0.99
    decisions = scorer.score({SURPRISE: logits[SURPRISE][top]}, ws.features[top],
                             [ws.encoded[int(i)].input_ids for i in top], cfg)
    for i, d in zip(top, decisions, strict=True):
        unusual = [r for r in d.reasons if r.startswith("unusual step: ")]
        if bs.component_scores[SURPRISE][i] >= 0.99:
            assert len(unusual) == 1 and ("→" in unusual[0] or "event" in unusual[0])
    # The isolation forest explains a window it isolates faster than 99 % of training windows.
    far = np.flatnonzero(bs.component_scores[ISOLATION] >= 0.99)[:3]
    assert len(far)
    for d in scorer.score({SURPRISE: logits[SURPRISE][far]}, ws.features[far]):
        assert any(r.startswith("isolation forest: isolated faster than") for r in d.reasons)
    # Degraded (backend down): the detector and the isolation forest, still scored.
    deg = scorer.score_batch(None, ws.features)
    expected = -(np.log(np.maximum(1 - deg.component_scores[UNSUPERVISED], 1e-3))
                 + np.log(np.maximum(1 - deg.component_scores[ISOLATION], 1e-3))) / 2 / np.log(1000)
    np.testing.assert_allclose(deg.score, expected)


def test_label_free_checkpoint_exports_and_the_onnx_graph_matches(label_free: Path, tmp_path: Path) -> None:
    rc = main(["export", "--models", str(label_free), "--target", "cpu", "--precision", "fp32",
               "--out", str(tmp_path / "repo")])
    assert rc == 0
    manifest = json.loads((tmp_path / "repo" / "manifest.json").read_text())
    names = json.dumps(manifest)
    assert SURPRISE in names


def test_repeated_transitions_marks_a_step_seen_before_in_the_window() -> None:
    """The regularity statistic: an event whose (previous event, event) tokens already occurred earlier."""
    import torch

    from seqguard.models import repeated_transitions

    rng = np.random.default_rng(0)
    for n in (1, 2, 3, 8, 30):
        events = rng.integers(10, 13, size=(n, 2))  # few distinct tokens: repeats happen
        ids = np.concatenate([[2], events.ravel(), [3], [0] * 9])  # CLS, events, SEP, padding
        pairs = [tuple(e) for e in events]
        steps = [(pairs[i - 1], pairs[i]) for i in range(1, n)]
        expected = [False] + [steps[i - 1] in steps[: i - 1] for i in range(1, n)]
        got = repeated_transitions(torch.tensor(ids[None, :]))[0, :n].tolist()
        assert got == expected, (n, got, expected)
    # A bot repeating one step: every transition after the first repeats.
    bot = np.concatenate([[2], np.tile([20, 30], 10), [3]])
    assert repeated_transitions(torch.tensor(bot[None, :]))[0, :10].tolist() == [False, False] + [True] * 8
