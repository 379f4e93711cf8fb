"""`train_checkpoint`: an events frame to a complete checkpoint folder (layout: seqguard.train.checkpoint).

Stages: windows + split -> unsupervised detector (training windows, no labels) -> masked-token pretraining (training
windows, no labels) -> with labels: BERT fine-tuning and the RNN -> the ensemble stackers on validation -> files ->
`Scorer.load` of the written folder scores validation (saved in calibration.npz) and test (metrics.json) -> the
optional text model and studies. The folder is written under a staging name and renamed at the end, so a crash
never leaves a half-written checkpoint behind a valid-looking `checkpoint.json`.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import seqguard
from seqguard.contracts import (
    CHECKPOINT_INDEX,
    DETECTOR_FILE,
    ENSEMBLE_FILE,
    METRICS_FILE,
    RULES_FILE,
    SEQUENCE_CONFIG_FILE,
    TOKENIZER_DIR,
)
from seqguard.crossentity import presence
from seqguard.drift import save_checkpoint_reference
from seqguard.features import FEATURE_NAMES
from seqguard.scoring.detector import ECODDetector
from seqguard.scoring.ensemble import Ensemble, logit_margin
from seqguard.scoring.entity import ENTITY_AGGREGATION_KEY
from seqguard.scoring.rules import default_rules_path, load_rules
from seqguard.scoring.scorer import Scorer
from seqguard.tokenizer import build_tokenizer, tokenizer_hash
from seqguard.train import bert as bert_stage
from seqguard.train import rnn as rnn_stage
from seqguard.train import surprise as surprise_stage
from seqguard.train.calibration import CALIBRATION_FILE, choose_windows, write_calibration
from seqguard.train.checkpoint import CheckpointError, save_model, weights_hash
from seqguard.train.components import BERT, RNN, fit_tabular
from seqguard.train.config import TrainConfig
from seqguard.train.dataset import build_windows, check_split, split_windows
from seqguard.train.entity_metrics import choose_aggregation, entity_report, unlabelled_aggregation
from seqguard.train.evaluate import operating_point
from seqguard.train.isolation import fit_isolation_forest
from seqguard.train.loop import predict_logits, setup_torch
from seqguard.train.metrics import clean, degenerate_sources, full_report, low_negative_warning
from seqguard.train.oof import small_data_oof
from seqguard.train.scores import ENSEMBLE, scorer_sources

TEXT = "text_minilm"
ENCODER = "pretrained_encoder"
CHECKPOINT_FORMAT = "seqguard-checkpoint-v1"


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class _Stages:
    """Numbered progress lines and per-stage wall times."""

    def __init__(self, log: Callable[[str], None]) -> None:
        self.log = log
        self.timings: dict[str, float] = {}
        self._t = time.perf_counter()
        self._start = self._t

    def done(self, name: str, detail: str = "") -> None:
        now = time.perf_counter()
        self.timings[name] = round(now - self._t, 2)
        self._t = now
        self.log(f"  {name:<28} {self.timings[name]:7.1f} s  {detail}")

    @property
    def total(self) -> float:
        return time.perf_counter() - self._start


def _size_mb(path: Path) -> float:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return round(sum(p.stat().st_size for p in files) / 1e6, 3)


def _bert_batch1_ms(model: Any, ws: Any, idx: np.ndarray, n: int = 64) -> float:
    """Median single-window torch latency (eval, 2 threads): the text model's cost is quoted against this."""
    pick = idx[: min(n, len(idx))]
    for i in pick[:3]:  # warm-up
        predict_logits(model, ws.encoded, np.array([i]))
    times = []
    for i in pick:
        t0 = time.perf_counter()
        predict_logits(model, ws.encoded, np.array([i]))
        times.append(time.perf_counter() - t0)
    return 1000.0 * float(np.median(times)) if times else float("nan")


def _fit_meta(fit: dict[str, Any]) -> dict[str, Any]:
    """What a model folder records about its training: no wall times, so the same training writes the same files."""
    return {k: fit[k] for k in ("best_round", "best_val_pr_auc", "rounds_run", "steps")}


def _prepare_out(out_dir: Path) -> Path:
    if out_dir.exists() and not out_dir.is_dir():
        raise CheckpointError(f"{out_dir} exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / CHECKPOINT_INDEX).exists():
        raise CheckpointError(f"{out_dir} is not empty and holds no checkpoint; refusing to overwrite it")
    staging = out_dir.parent / f".{out_dir.name}.partial-{os.getpid()}"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    return staging


def _publish(staging: Path, out_dir: Path) -> None:
    if out_dir.exists():
        shutil.rmtree(out_dir)
    staging.rename(out_dir)


def train_checkpoint(
    frame: pd.DataFrame,
    cfg: TrainConfig,
    out_dir: str | Path,
    progress: bool = True,
    with_text_model: bool = False,
    studies: bool = False,
    log: Callable[[str], None] | None = None,
    data_notes: dict[str, Any] | None = None,
) -> Path:
    """Train everything on `frame` (an events frame, labels optional) and write the checkpoint folder.
    `data_notes`: what reading the data did (the labels join, the time zone), kept in metrics.json and the index."""
    log = log or _stderr
    out_dir = Path(out_dir)
    staging = _prepare_out(out_dir)
    try:
        _train(frame, cfg, staging, progress, with_text_model, studies, log, data_notes or {})
        _publish(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir


def _train(frame: pd.DataFrame, cfg: TrainConfig, out: Path, progress: bool, with_text_model: bool, studies: bool,
           log: Callable[[str], None], data_notes: dict[str, Any]) -> None:
    st = _Stages(log)
    setup_torch(cfg.seed, cfg.threads)
    seq = cfg.sequence
    metrics: dict[str, Any] = {"timings_s": st.timings, "data_notes": data_notes}

    ws = build_windows(frame, seq, progress)
    split = split_windows(ws, cfg.split, cfg.seed)
    log(f"  split: {split.mode} ({split.why})")
    check_split(ws, split)  # before any model is trained: one class in validation or test is an error, not a warning
    metrics["cross_entity"] = presence(ws.columns)  # absent device_id / ip: said, not silently constant
    if metrics["cross_entity"]["note"]:
        log(f"  cross-entity: {metrics['cross_entity']['note']}")
    y = ws.y() if ws.has_labels else None
    labelled = y is not None
    metrics["split"] = split.describe(ws)
    st.done("windows + split", f"{len(ws):,} windows of {len(np.unique(ws.entity)):,} entities from "
                               f"{len(frame):,} events; train/val/test = {len(split.train):,}/{len(split.val):,}/"
                               f"{len(split.test):,}")

    rules_src = cfg.rules or default_rules_path()
    rules = load_rules(rules_src)
    (out / RULES_FILE).write_text(Path(rules_src).read_text())
    detector = ECODDetector(contamination=cfg.detector.contamination,
                            tail_floor=cfg.detector.tail_floor).fit(ws.features[split.train])
    detector.save(out / DETECTOR_FILE)
    seq.save(out / SEQUENCE_CONFIG_FILE)
    tokenizer = build_tokenizer(seq)
    tokenizer.save_pretrained(out / TOKENIZER_DIR)
    st.done("detector + rules", f"ECOD on {len(split.train):,} unlabeled windows; {len(rules.rules)} rules")

    pre = bert_stage.pretrain(ws.encoded, split.train, seq, cfg.bert, cfg.seed, progress)
    metrics["pretraining"] = pre.to_dict()
    st.done("bert pretraining", f"{pre.steps} steps, masked-token loss {pre.final_loss or float('nan'):.3f}")
    # The label-free sequence component (next-event surprise), from the pretrained weights, labels never read.
    sur = surprise_stage.train_surprise(pre, ws.encoded, split.train, seq, cfg.bert, cfg.seed, progress)
    if sur is not None:
        metrics["surprise"] = sur.to_dict()
        st.done("surprise model", f"{sur.steps} steps, next-event loss {sur.final_loss or float('nan'):.3f}")

    # The label-free isolation forest (labels never read), kept with the ensemble; its reference windows are the
    # surprise model's, so every label-free part is measured on the same training windows.
    isolation = fit_isolation_forest(ws.features[split.train], cfg.seed)
    ref_idx = sur.reference_idx if sur is not None else split.train
    st.done("isolation forest", f"{len(isolation.trees)} trees on {len(split.train):,} unlabeled windows")

    models: dict[str, Any] = {}
    entries: list[dict[str, str]] = []
    fits: dict[str, Any] = {}
    pretrained_entry = None
    if labelled:
        assert y is not None
        bert = bert_stage.new_classifier(seq, cfg.bert, pre.encoder_state(), cfg.seed)
        fit = bert_stage.finetune(bert, ws.encoded, y, split.train, split.val, cfg.bert, cfg.positive_weight,
                                  cfg.seed, progress)
        fits[BERT] = fit.to_dict()
        models[BERT] = bert
        entries.append(save_model(bert, tokenizer, out / BERT, seq, BERT, "bert",
                                  {"pretrained": pre.model is not None, "fit": _fit_meta(fits[BERT])}))
        st.done("bert fine-tuning", f"best round {fit.best_round}/{fit.rounds_run}, val PR-AUC "
                                    f"{fit.best_val_pr_auc or float('nan'):.4f}")
        if cfg.rnn.enabled:
            rnn = rnn_stage.new_rnn(seq, cfg.rnn, cfg.seed)
            fit = rnn_stage.train_rnn(rnn, ws.encoded, y, split.train, split.val, cfg.rnn, cfg.positive_weight,
                                      cfg.seed, progress)
            fits[RNN] = fit.to_dict()
            models[RNN] = rnn
            entries.append(save_model(rnn, tokenizer, out / RNN, seq, RNN, "rnn", {"fit": _fit_meta(fits[RNN])}))
            st.done("rnn training", f"best round {fit.best_round}/{fit.rounds_run}, val PR-AUC "
                                    f"{fit.best_val_pr_auc or float('nan'):.4f}")
    elif pre.model is not None:
        pre.model.save_pretrained(out / ENCODER)
        tokenizer.save_pretrained(out / ENCODER)
        pretrained_entry = {"name": ENCODER, "kind": "bert_mlm", "path": ENCODER}
    if sur is not None:
        models[surprise_stage.NAME] = sur.model
        entries.append(save_model(sur.model, tokenizer, out / surprise_stage.NAME, seq, surprise_stage.NAME,
                                  surprise_stage.KIND, {"pretrained": pre.model is not None, "labels_used": False}))
    metrics["fits"] = fits
    tabular = None
    if labelled and y is not None and cfg.tabular.enabled:
        tabular = fit_tabular(ws.features[split.train], y[split.train], cfg)
        st.done("tabular trees", f"{tabular.meta['iterations']} trees on {tabular.meta['train_windows']:,} windows")

    val = split.val
    val_logits = {n: predict_logits(m, ws.encoded, val) for n, m in models.items()}
    # Where the stacker learns: validation, or with small data the out-of-fold scores of train + validation.
    fit_idx, fit_margins, fit_tab, fitted_on = val, {n: logit_margin(v) for n, v in val_logits.items()}, None, \
        "validation"
    if labelled and y is not None:
        oof = small_data_oof(ws, y, split, cfg, pre.encoder_state(), list(models), log, progress)
        if oof is not None:
            if sur is not None:  # label-free: its scores on train + validation need no folds (labels unread)
                oof.margins[surprise_stage.NAME] = logit_margin(predict_logits(sur.model, ws.encoded, oof.idx))
            metrics["out_of_fold"] = oof.info
            fit_idx, fit_margins, fit_tab, fitted_on = oof.idx, oof.margins, oof.tabular, oof.info["fitted_on"]
            st.done("out-of-fold scores", oof.info["summary"])
    feats_fit = ws.features[fit_idx]
    if tabular is not None and fit_tab is None:
        fit_tab = tabular.decision_function(feats_fit)
    ensemble = Ensemble.fit(
        list(models), rules.ids, fit_margins, detector.score_samples(feats_fit), rules.hits(feats_fit),
        y[fit_idx] if labelled and y is not None else None, cfg.ensemble.review_fpr, cfg.ensemble.block_fpr,
        cfg.ensemble.c, cfg.seed, tabular, feats_fit, select_best=cfg.ensemble.select_best, fitted_on=fitted_on,
        folds=cfg.ensemble.oof_folds, tabular_scores=fit_tab,
        reference={surprise_stage.NAME: sur.train_margins} if sur is not None else None,
        unsupervised_reference=detector.percentile(detector.score_samples(ws.features[ref_idx])),
        isolation=isolation, isolation_reference=isolation.decision_function(ws.features[ref_idx]))
    for which in ("main", "degraded"):
        sel = getattr(ensemble, which).metrics.get("selection")
        if sel:
            log(f"  {which} stacker: {sel['chosen']} ({sel['why']})")
    ensemble.save(out / ENSEMBLE_FILE)
    scorer = Scorer.load(out)  # from the files just written: what export and the service will load
    if labelled and y is not None:
        val_sources, _ = scorer_sources(scorer, val_logits, ws.features[val])
        method, how = choose_aggregation(ws.entity[val], y[val], val_sources[ENSEMBLE],
                                         cfg.ensemble.entity_aggregation)
    else:
        method, how = unlabelled_aggregation(cfg.ensemble.entity_aggregation)
    ensemble.entity_aggregation, ensemble.entity_aggregation_metrics = method, how
    scorer.ensemble.entity_aggregation, scorer.ensemble.entity_aggregation_metrics = method, how
    ensemble.save(out / ENSEMBLE_FILE)
    log(f"  entity aggregation: {method} ({how['why']})")
    metrics[ENTITY_AGGREGATION_KEY] = {"method": method, **how}
    cal_idx = choose_windows(ws, val, cfg.calibration_windows, cfg.seed)
    write_calibration(out / CALIBRATION_FILE, ws, cal_idx, models, scorer)
    st.done("ensemble + calibration", f"{ensemble.main.kind} stacker over {len(ensemble.main.inputs)} inputs, "
                                      f"{len(cal_idx)} calibration windows")

    # Metrics through the saved scorer: validation (what the stacker saw) and test (what nobody saw).
    degenerate: list[dict[str, Any]] = []
    for name, idx in (("validation", val), ("test", split.test)):
        logits = val_logits if name == "validation" else {n: predict_logits(m, ws.encoded, idx)
                                                          for n, m in models.items()}
        sources, ranks = scorer_sources(scorer, logits, ws.features[idx])
        if name == "test":
            test_sources, test_ranks = sources, ranks
        if labelled and y is not None:
            unseen = split.unseen[idx] if name == "test" else None
            metrics[name] = {src: full_report(y[idx], s, ws.scenario[idx], unseen) for src, s in sources.items()}
            degenerate += degenerate_sources(sources, y[idx], cfg.ensemble.min_positives, name)
    if labelled and y is not None:
        metrics["test_decisions"] = operating_point(test_ranks, y[split.test], ws.scenario[split.test])
        metrics["test_entity"] = entity_report(ws.entity[split.test], y[split.test], ws.scenario[split.test],
                                               test_sources, method, seed=cfg.seed)
        metrics["warnings"] = low_negative_warning(y[split.test], "test window") + \
            metrics["test_entity"]["warnings"]
        for w in metrics["warnings"]:
            log(f"  warning: {w}")
    metrics["degenerate"] = degenerate
    for d in degenerate:
        log(f"  warning: degenerate {d['source']} on {d['where']}: {d['detail']}")
    save_checkpoint_reference(out, scorer, val_logits, ws.features[val], cfg.seed)  # the drift monitor's baseline
    st.done("scoring val + test", "")

    if BERT in models:
        metrics["latency"] = {"behaviour_bert_batch1_ms": _bert_batch1_ms(models[BERT], ws, split.test)}
    if with_text_model and labelled and y is not None:
        from seqguard.train.text import train_text_model

        res = train_text_model(ws, split.train, split.test, cfg.text, cfg.positive_weight, cfg.seed, progress)
        entries.append(save_model(res.model, res.tokenizer, out / TEXT, seq, TEXT, "text",
                                  {"input": "serialize_text", "max_events": cfg.text.max_events,
                                   "max_length": cfg.text.max_length, "served": False}))
        pos = {int(i): k for k, i in enumerate(split.test)}
        sub = np.array([pos[int(i)] for i in res.test_idx])
        yt = y[res.test_idx]
        same = {TEXT: logit_margin(res.test_logits)}
        same.update({k: v[sub] for k, v in test_sources.items()})
        metrics["text_model"] = {
            **res.stats,
            "behaviour_bert_batch1_ms": metrics.get("latency", {}).get("behaviour_bert_batch1_ms"),
            "same_windows": {k: full_report(yt, s, ws.scenario[res.test_idx]) for k, s in same.items()},
        }
        st.done("text model (MiniLM)", f"{res.stats['train_windows']} windows, {res.stats['train_seconds']:.0f} s")

    if studies and labelled:
        from seqguard.train import studies as study

        main = None
        if "test" in metrics and BERT in metrics["test"]:
            t = metrics["test"][BERT]
            main = {"pr_auc": t["pr_auc"], "roc_auc": t["roc_auc"], "recall_at_0.01_fpr": t["recall_at_0.01_fpr"]}
        metrics["label_efficiency"] = study.label_efficiency(ws, split, cfg, pre.encoder_state(), main, progress)
        st.done("study: label efficiency", "")
        metrics["held_out_scenarios"] = study.held_out_scenarios(ws, split, cfg, pre.encoder_state(), rules, detector,
                                                                 progress)
        st.done("study: held-out scenarios", ", ".join(cfg.studies.held_out_scenarios))

    weight_files = [str(p.relative_to(out)) for p in sorted(out.rglob("*.safetensors"))]
    weight_files += [ENSEMBLE_FILE, DETECTOR_FILE, RULES_FILE]
    created = datetime.now(UTC)
    index = {
        "format": CHECKPOINT_FORMAT,
        "version": f"seqguard-{created:%Y%m%d}-{weights_hash(out, weight_files)[:8]}",
        "created": created.isoformat(timespec="seconds"),
        "seqguard_version": seqguard.__version__,
        "models": entries,
        "ensemble_components": scorer.components,
        "pretrained": pretrained_entry,
        "labels_used": labelled,
        ENTITY_AGGREGATION_KEY: method,
        "sequence_config_hash": seq.config_hash(),
        "tokenizer_hash": tokenizer_hash(out / TOKENIZER_DIR),
        "feature_names": list(FEATURE_NAMES),
        "files": {"sequence_config": SEQUENCE_CONFIG_FILE, "tokenizer": TOKENIZER_DIR, "ensemble": ENSEMBLE_FILE,
                  "rules": RULES_FILE, "unsupervised": DETECTOR_FILE, "metrics": METRICS_FILE,
                  "calibration": CALIBRATION_FILE},
        "train_config": cfg.model_dump(mode="json"),
        "split": metrics["split"],
        "data": {"events": len(frame), "entities": len(np.unique(ws.entity)), "windows": len(ws), **data_notes},
    }
    metrics["sizes_mb"] = {e["name"]: _size_mb(out / e["path"]) for e in entries}
    metrics["parameters"] = {n: int(sum(p.numel() for p in m.parameters())) for n, m in models.items()}
    metrics["version"] = index["version"]
    st.done("write checkpoint", "")
    metrics["timings_s"]["total"] = round(st.total, 2)
    (out / METRICS_FILE).write_text(json.dumps(clean(metrics), indent=1) + "\n")
    (out / CHECKPOINT_INDEX).write_text(json.dumps(index, indent=2) + "\n")
