"""Small data: out-of-fold scores for the stacker and its thresholds (k-fold by entity over train + validation).

With a few hundred labelled entities the validation slice holds a handful of positives, too few to fit a stacker or
place a threshold. Instead every train + validation window gets a score from component models that never saw its
entity: the entities are cut into k folds (stratified by the entity label, by the same seeded hash as the entity
split), and for each fold the sequence models and the trees are trained on the other folds (from the same pretrained
encoder) and score the held-out one. The served models are still the ones trained on the train split; the stacker
learns how to combine their kind of scores from rows none of them had seen. Each fold's early stopping watches its
own held-out fold, which flatters the out-of-fold scores a little; the test split is never touched.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from seqguard.scoring.ensemble import logit_margin
from seqguard.train.config import TrainConfig
from seqguard.train.dataset import Split, WindowSet, _entity_hash


@dataclass
class OutOfFold:
    idx: np.ndarray  # window indices (train + validation), in the order of the score arrays
    margins: dict[str, np.ndarray]  # component -> out-of-fold logit margin
    tabular: np.ndarray | None  # out-of-fold tree log-odds
    info: dict[str, Any]


def entity_folds(entity: np.ndarray, y: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Fold number per window: whole entities per fold, positives and negatives dealt round-robin in hash order."""
    ents, inv = np.unique(entity.astype(str), return_inverse=True)
    pos = np.zeros(len(ents), dtype=bool)
    np.logical_or.at(pos, inv, y.astype(bool))
    h = _entity_hash(ents, seed + 1)
    fold = np.zeros(len(ents), dtype=np.int64)
    for cls in (False, True):
        members = np.flatnonzero(pos == cls)
        fold[members[np.argsort(h[members], kind="stable")]] = np.arange(len(members)) % k
    return fold[inv]


def small_data_oof(ws: WindowSet, y: np.ndarray, split: Split, cfg: TrainConfig, encoder_state: Any,
                   model_names: list[str], log: Callable[[str], None], progress: bool) -> OutOfFold | None:
    """Out-of-fold scores when train + validation hold fewer than `ensemble.oof_below_entities` entities; None
    (and a log line saying why) otherwise."""
    from seqguard.train import bert as bert_stage
    from seqguard.train import rnn as rnn_stage
    from seqguard.train.loop import predict_logits
    from seqguard.train.pipeline import BERT, RNN, fit_tabular

    pool = np.concatenate([split.train, split.val])
    n_ent = len(np.unique(ws.entity[pool]))
    limit = cfg.ensemble.oof_below_entities
    if n_ent >= limit:
        log(f"  stacker on validation: {n_ent:,} labelled train + validation entities (out-of-fold below {limit})")
        return None
    ents_pos = len(np.unique(ws.entity[pool][y[pool].astype(bool)]))
    k = min(cfg.ensemble.oof_folds, ents_pos, n_ent - ents_pos)
    if k < 2:
        log(f"  stacker on validation: {ents_pos} anomalous entities are too few for out-of-fold scores")
        return None
    fold = entity_folds(ws.entity[pool], y[pool], k, cfg.seed)
    margins = {n: np.zeros(len(pool)) for n in model_names}
    tab = np.zeros(len(pool)) if cfg.tabular.enabled else None
    per_fold = []
    for f in range(k):
        held = fold == f
        tr, te = pool[~held], pool[held]
        per_fold.append({"fold": f, "windows": int(held.sum()), "positives": int(y[te].sum()),
                         "entities": len(np.unique(ws.entity[te])),
                         "positive_entities": len(np.unique(ws.entity[te][y[te].astype(bool)]))})
        if not y[tr].any():
            continue
        if BERT in margins:
            m = bert_stage.new_classifier(cfg.sequence, cfg.bert, encoder_state, cfg.seed)
            bert_stage.finetune(m, ws.encoded, y, tr, te, cfg.bert, cfg.positive_weight, cfg.seed, progress,
                                desc=f"bert fold {f + 1}/{k}")
            margins[BERT][held] = logit_margin(predict_logits(m, ws.encoded, te))
        if RNN in margins:
            m = rnn_stage.new_rnn(cfg.sequence, cfg.rnn, cfg.seed)
            rnn_stage.train_rnn(m, ws.encoded, y, tr, te, cfg.rnn, cfg.positive_weight, cfg.seed, progress)
            margins[RNN][held] = logit_margin(predict_logits(m, ws.encoded, te))
        if tab is not None:
            tab[held] = fit_tabular(ws.features[tr], y[tr], cfg).decision_function(ws.features[te])
    positives = [p["positives"] for p in per_fold]
    info = {"fitted_on": f"{k}-fold out-of-fold scores of train + validation (by entity)", "folds": k,
            "entities": n_ent, "anomalous_entities": ents_pos, "below_entities": limit, "per_fold": per_fold,
            "summary": f"{k} folds by entity over {n_ent} entities; anomalous windows per fold: {positives}"}
    log(f"  small data ({n_ent} labelled entities < {limit}): stacker and thresholds on {info['summary']}")
    return OutOfFold(pool, margins, tab, info)
