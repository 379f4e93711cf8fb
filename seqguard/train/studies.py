"""Studies that need extra training runs; their results go into metrics.json and the evaluation report.

- Label efficiency: fine-tune the behaviour BERT on 1 %, 10 %, 100 % of the labelled training windows (stratified,
  seeded), once from the masked-token-pretrained encoder and once from scratch, and score each on the test split.
  Small fractions run at least `min_steps` optimiser steps so they are not judged on a handful of updates.
  Validation (early stopping) keeps all its labels in every run: the study varies the *training* labels.
- Unseen attacks: hold some scenarios out of training *and* validation entirely (their windows are dropped; the
  unlabeled pretraining may still have seen their traffic, as it would in production), train the BERT, the RNN and
  the stacker again, and report each held-out scenario's recall at 1 % FPR on the test split.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from seqguard.scoring.detector import ECODDetector
from seqguard.scoring.ensemble import Ensemble, logit_margin
from seqguard.scoring.rules import RuleSet
from seqguard.scoring.scorer import Scorer
from seqguard.train import bert as bert_stage
from seqguard.train import rnn as rnn_stage
from seqguard.train.config import TrainConfig
from seqguard.train.dataset import Split, WindowSet
from seqguard.train.loop import predict_logits
from seqguard.train.metrics import RECALL_KEY, fpr_threshold, pr_auc, recall_at_fpr, roc_auc
from seqguard.train.scores import DEGRADED, ENSEMBLE, TABULAR, UNSUPERVISED, scorer_sources

STUDY_MIN_STEPS = 150


def _stratified(ws: WindowSet, idx: np.ndarray, frac: float, rng: np.random.Generator) -> np.ndarray:
    y = ws.labels[idx]
    pos, neg = idx[y], idx[~y]
    k_pos = max(1, round(frac * len(pos)))
    k_neg = max(1, round(frac * len(neg)))
    return np.sort(np.concatenate([rng.choice(pos, min(k_pos, len(pos)), replace=False),
                                   rng.choice(neg, min(k_neg, len(neg)), replace=False)]))


def label_efficiency(ws: WindowSet, split: Split, cfg: TrainConfig, encoder_state: dict[str, Any] | None,
                     main_result: dict[str, float] | None, progress: bool = False) -> dict[str, Any]:
    y = ws.y()
    rng = np.random.default_rng(cfg.seed + 7)
    rows = []
    for frac in cfg.studies.label_fractions:
        sub = split.train if frac >= 1.0 else _stratified(ws, split.train, frac, rng)
        for pretrained in (True, False):
            if pretrained and encoder_state is None:
                continue
            if frac >= 1.0 and pretrained and main_result is not None:
                rows.append({"fraction": frac, "pretrained": True, "train_windows": len(sub),
                             "train_anomalous": int(y[sub].sum()), **main_result, "reused_main_model": True})
                continue
            t0 = time.perf_counter()
            loop = cfg.bert.model_copy(update={"min_steps": max(cfg.bert.min_steps, STUDY_MIN_STEPS)})
            model = bert_stage.new_classifier(ws.cfg, loop, encoder_state if pretrained else None, cfg.seed)
            fit = bert_stage.finetune(model, ws.encoded, y, sub, split.val, loop, cfg.positive_weight, cfg.seed,
                                      progress, desc=f"study: {frac:.0%} labels, {'pre' if pretrained else 'no pre'}")
            s = logit_margin(predict_logits(model, ws.encoded, split.test))
            yt = y[split.test]
            rows.append({"fraction": frac, "pretrained": pretrained, "train_windows": len(sub),
                         "train_anomalous": int(y[sub].sum()), "pr_auc": pr_auc(yt, s), "roc_auc": roc_auc(yt, s),
                         RECALL_KEY: recall_at_fpr(yt, s, 0.01), "steps": fit.steps,
                         "seconds": time.perf_counter() - t0})
    return {"model": "behaviour_bert", "evaluated_on": "test", "runs": rows}


def held_out_scenarios(ws: WindowSet, split: Split, cfg: TrainConfig, encoder_state: dict[str, Any] | None,
                       rules: RuleSet, detector: ECODDetector, progress: bool = False) -> dict[str, Any]:
    held = list(cfg.studies.held_out_scenarios)
    present = sorted({str(s) for s in ws.scenario[split.test][ws.labels[split.test]]})
    missing = [s for s in held if s not in present]
    y = ws.y()
    keep = ~np.isin(ws.scenario, held)
    train, val = split.train[keep[split.train]], split.val[keep[split.val]]
    from seqguard.train.pipeline import fit_tabular

    t0 = time.perf_counter()
    models: dict[str, Any] = {}
    bert = bert_stage.new_classifier(ws.cfg, cfg.bert, encoder_state, cfg.seed)
    bert_stage.finetune(bert, ws.encoded, y, train, val, cfg.bert, cfg.positive_weight, cfg.seed, progress,
                        desc="study: held-out scenarios, bert")
    models["behaviour_bert"] = bert
    if cfg.rnn.enabled:
        rnn = rnn_stage.new_rnn(ws.cfg, cfg.rnn, cfg.seed)
        rnn_stage.train_rnn(rnn, ws.encoded, y, train, val, cfg.rnn, cfg.positive_weight, cfg.seed, progress)
        models["sequence_rnn"] = rnn
    # The trees are refitted without the held-out scenarios too: nothing supervised may have seen them.
    tabular = fit_tabular(ws.features[train], y[train], cfg) if cfg.tabular.enabled else None
    val_logits = {n: predict_logits(m, ws.encoded, val) for n, m in models.items()}
    feats_val = ws.features[val]
    ens = Ensemble.fit(list(models), rules.ids, {n: logit_margin(v) for n, v in val_logits.items()},
                       detector.score_samples(feats_val), rules.hits(feats_val), y[val], cfg.ensemble.review_fpr,
                       cfg.ensemble.block_fpr, cfg.ensemble.c, cfg.seed, tabular, feats_val,
                       select_best=cfg.ensemble.select_best)
    scorer = Scorer(ens, rules, detector)
    test = split.test
    logits = {n: predict_logits(m, ws.encoded, test) for n, m in models.items()}
    sources, _ = scorer_sources(scorer, logits, ws.features[test])
    yt = y[test].astype(bool)
    scen = ws.scenario[test]
    result: dict[str, Any] = {"held_out": held, "missing_from_test": missing, "seconds": 0.0, "sources": {}}
    for name in (ENSEMBLE, DEGRADED, *models, *([TABULAR] if tabular is not None else []), UNSUPERVISED):
        s = sources[name]
        t = fpr_threshold(s[~yt], 0.01)
        per = {}
        for sc in present:
            sel = yt & (scen == sc)
            per[sc] = {"n_positive": int(sel.sum()), RECALL_KEY: float((s[sel] >= t).mean()),
                       "held_out": sc in held}
        result["sources"][name] = per
    result["seconds"] = time.perf_counter() - t0
    return result
