"""Evaluate a checkpoint on labelled events: every score source, overall and per scenario, plus the baselines.

The data is windowed with the checkpoint's SequenceConfig and split with its split settings (same seed, so the same
days and the same unseen entities as in training); by default only the test days are scored. Sources:

- `ensemble` via `Scorer.score` (the service's function), `ensemble_degraded` (logits=None), each served component's
  logit margin, the `unsupervised` detector, `rules_only`;
- baselines fitted here on the training days of the same data: `isolation_forest` (unsupervised, aggregates) and
  `gradient_boosting` (supervised, aggregates).

Studies that need training (label efficiency, held-out scenarios) and the text model's cost are read from the
checkpoint's metrics.json, where `seqguard train --studies / --with-text-model` put them.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from seqguard.contracts import METRICS_FILE
from seqguard.scoring.entity import DEFAULT_AGGREGATION, ENTITY_AGGREGATION_KEY
from seqguard.scoring.scorer import Scorer
from seqguard.train.checkpoint import load_models, load_sequence_config, read_index
from seqguard.train.config import TrainConfig
from seqguard.train.dataset import DatasetError, build_windows, split_windows
from seqguard.train.entity_metrics import entity_report
from seqguard.train.loop import predict_logits, setup_torch
from seqguard.train.metrics import RECALL_KEY, clean, degenerate_sources, full_report, low_negative_warning
from seqguard.train.scores import ENSEMBLE, baseline_scores, fit_baselines, scorer_sources

SplitName = Literal["test", "all"]
Level = Literal["entity", "window", "both"]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def operating_point(ranks: np.ndarray, y: np.ndarray, scenario: np.ndarray,
                    rule_ranks: np.ndarray | None = None) -> dict[str, Any]:
    """What the deployed decisions do: share of normal windows reviewed / blocked (and how many of those a rule
    raised), recall per scenario."""
    y = y.astype(bool)
    out: dict[str, Any] = {
        "normal_windows": int((~y).sum()),
        "normal_raised_by_rules": int((rule_ranks[~y] >= 1).sum()) if rule_ranks is not None else None,
        "review_or_block_fpr": float((ranks[~y] >= 1).mean()) if (~y).any() else None,
        "block_fpr": float((ranks[~y] >= 2).mean()) if (~y).any() else None,
        "review_or_block_recall": float((ranks[y] >= 1).mean()) if y.any() else None,
        "block_recall": float((ranks[y] >= 2).mean()) if y.any() else None,
        "per_scenario": {},
    }
    for name in sorted({str(s) for s in scenario[y]}):
        sel = y & (scenario == name)
        out["per_scenario"][name] = {"n_positive": int(sel.sum()),
                                     "review_or_block": float((ranks[sel] >= 1).mean()),
                                     "block": float((ranks[sel] >= 2).mean())}
    return out


def evaluate_checkpoint(
    models_dir: str | Path,
    frame: pd.DataFrame,
    out_dir: str | Path,
    split: SplitName = "test",
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    level: Level = "both",
) -> dict[str, Any]:
    from seqguard.train.report import write_report

    log = log or _stderr
    t0 = time.perf_counter()
    models_dir, out_dir = Path(models_dir), Path(out_dir)
    index = read_index(models_dir)
    seq = load_sequence_config(models_dir)
    cfg = TrainConfig.model_validate(index["train_config"])
    scorer = Scorer.load(models_dir)
    setup_torch(cfg.seed, cfg.threads)
    ws = build_windows(frame, seq, progress)
    if not ws.has_labels:
        raise DatasetError("evaluation needs labels: the data has no is_anomaly column")
    y = ws.y()
    if split == "test":
        # The split the checkpoint was trained with (auto resolved to time or entity), so test is test.
        mode = (index.get("split") or {}).get("mode", "time")
        sp = split_windows(ws, cfg.split.model_copy(update={"mode": mode}), cfg.seed)
        idx, fit_idx, unseen = sp.test, sp.train, sp.unseen[sp.test]
    else:
        idx, fit_idx, unseen = np.arange(len(ws)), None, None
    if not 0 < y[idx].sum() < len(idx):
        raise DatasetError(f"the {split} windows hold only one class ({int(y[idx].sum())} anomalous of {len(idx)}); "
                           "metrics need both")
    log(f"evaluating {index.get('version')} on {len(idx):,} {split} windows ({int(y[idx].sum()):,} anomalous)")

    models = load_models(models_dir)
    # Every model of the checkpoint, whether the served stacker uses it or not.
    logits = {n: predict_logits(m, ws.encoded, idx) for n, m in models.items()}
    sources, ranks = scorer_sources(scorer, logits, ws.features[idx])
    # Baselines learn from the training days of this data (unsupervised on all, supervised with labels); with
    # --split all there are no held-back days, so only the isolation forest runs (fitted transductively).
    if fit_idx is not None:
        baselines = fit_baselines(ws.features[fit_idx], y[fit_idx], cfg.seed)
    else:
        baselines = fit_baselines(ws.features[idx], None, cfg.seed)
    sources.update(baseline_scores(baselines, ws.features[idx]))
    scen = ws.scenario[idx]
    metrics: dict[str, Any] = {
        "checkpoint": index.get("version"),
        "split": split,
        "windows": len(idx),
        "anomalous": int(y[idx].sum()),
        "scores": {name: full_report(y[idx], s, scen, unseen) for name, s in sources.items()},
        "operating_point": operating_point(ranks, y[idx], scen,
                                           scorer.rules.outcome_rank(scorer.rules.hits(ws.features[idx]))),
        "thresholds": scorer.thresholds,
        "review_fpr": scorer.ensemble.review_fpr,
        "block_fpr": scorer.ensemble.block_fpr,
        "stacker_fit": scorer.ensemble.main.metrics,
        "degraded_stacker_fit": scorer.ensemble.degraded.metrics,
        "level": level,
        "models": list(models),
        "served_components": scorer.components,
        "unused_components": [n for n in models if n not in scorer.components],
        "split_mode": {k: v for k, v in (index.get("split") or {}).items() if k in ("mode", "why")},
    }
    tr_min = cfg.ensemble.min_positives
    metrics["degenerate"] = degenerate_sources(sources, y[idx], tr_min, split)
    metrics["warnings"] = low_negative_warning(y[idx], f"{split} window")
    if level in ("entity", "both"):
        method = scorer.ensemble.entity_aggregation or DEFAULT_AGGREGATION
        how = (scorer.ensemble.entity_aggregation_metrics.get("why", "") if scorer.ensemble.entity_aggregation
               else "the checkpoint records none (trained before entity aggregation was chosen): the default")
        metrics["entity"] = entity_report(ws.entity[idx], y[idx], ws.scenario[idx], sources, method, seed=cfg.seed)
        metrics["entity"]["why"] = how
        metrics["warnings"] += metrics["entity"]["warnings"]
    train_metrics_path = models_dir / METRICS_FILE
    train_metrics = json.loads(train_metrics_path.read_text()) if train_metrics_path.is_file() else {}
    for key in ("label_efficiency", "held_out_scenarios", "text_model", "timings_s", "sizes_mb", "parameters",
                "latency", "fits", "pretraining", "degenerate", "out_of_fold", ENTITY_AGGREGATION_KEY):
        if key in train_metrics:
            metrics[f"train_{key}"] = train_metrics[key]
    metrics["targets"] = check_targets(metrics)
    metrics["seconds"] = round(time.perf_counter() - t0, 2)
    out_dir.mkdir(parents=True, exist_ok=True)
    curves = {name: (y[idx].astype(bool), s) for name, s in sources.items()}
    write_report(out_dir, clean(metrics), curves, components=scorer.components, level=level)
    (out_dir / "metrics.json").write_text(json.dumps(clean(metrics), indent=1) + "\n")
    return metrics


def check_targets(m: dict[str, Any]) -> list[dict[str, Any]]:
    """The acceptance targets on the test split, each with its measured value and whether it is met."""
    s = m["scores"]
    ens = s[ENSEMBLE]
    out = [
        _target("ensemble PR-AUC >= 0.90", ens["pr_auc"], 0.90),
        _target("ensemble recall at 1 % FPR >= 0.85", ens[RECALL_KEY], 0.85),
    ]
    comps = {k: v for k, v in s.items()
             if k in ("behaviour_bert", "sequence_rnn", "tabular", "unsupervised", "rules_only")
             or k in m.get("models", [])}
    if comps:
        best = max(comps, key=lambda k: comps[k]["pr_auc"] or 0.0)
        out.append({"target": f"ensemble PR-AUC >= best component ({best})", "value": ens["pr_auc"],
                    "bound": comps[best]["pr_auc"], "met": (ens["pr_auc"] or 0) >= (comps[best]["pr_auc"] or 0)})
    if "behaviour_bert" in s:
        for base in ("rules_only", "isolation_forest"):
            if base in s:
                out.append({"target": f"behaviour BERT PR-AUC > {base}", "value": s["behaviour_bert"]["pr_auc"],
                            "bound": s[base]["pr_auc"],
                            "met": (s["behaviour_bert"]["pr_auc"] or 0) > (s[base]["pr_auc"] or 0)})
    held = m.get("train_held_out_scenarios")
    if held:
        per = held["sources"][ENSEMBLE]
        for name in held["held_out"]:
            if name in per:
                out.append(_target(f"held-out scenario {name}: ensemble recall at 1 % FPR >= 0.5",
                                   per[name][RECALL_KEY], 0.5))
    return out


def _target(name: str, value: float | None, bound: float) -> dict[str, Any]:
    return {"target": name, "value": value, "bound": bound, "met": value is not None and value >= bound}


