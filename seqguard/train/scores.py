"""Score sources for evaluation: the ensemble via `Scorer.score`, each component, and the plain baselines.

Every source is a float array where higher = more anomalous, so the same metrics apply to all of them. The
ensemble's numbers come from `Scorer.score` itself (the function the service calls), not from a re-implementation.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from seqguard.scoring.ensemble import logit_margin
from seqguard.scoring.rules import OUTCOME_RANK, RuleSet
from seqguard.scoring.scorer import DECISIONS, Decision, Scorer
from seqguard.train.isolation import N_TREES

ENSEMBLE = "ensemble"
DEGRADED = "ensemble_degraded"
UNSUPERVISED = "unsupervised"
TABULAR = "tabular"
RULES_ONLY = "rules_only"
ISOLATION_FOREST = "isolation_forest"
GRADIENT_BOOSTING = "gradient_boosting"


def rules_score(rules: RuleSet, features: np.ndarray) -> np.ndarray:
    """The rules as a ranking: the strongest outcome among all hits, ties broken by how many rules hold."""
    hits = rules.hits(features)
    if not hits.shape[1]:
        return np.zeros(len(features))
    ranks = np.array([OUTCOME_RANK[r.outcome] for r in rules.rules], dtype=np.float64)
    return np.where(hits, ranks[None, :], 0.0).max(axis=1) + 0.01 * hits.sum(axis=1)


def decision_ranks(decisions: list[Decision]) -> np.ndarray:
    return np.array([DECISIONS.index(d.decision) for d in decisions], dtype=np.int64)


def scorer_sources(scorer: Scorer, logits: dict[str, np.ndarray] | None, features: np.ndarray,
                   chunk: int = 4096) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """(score per source, ensemble decision rank) for windows with these component logits and features."""
    feats = np.asarray(features, dtype=np.float32)
    scores, ranks, degraded = [], [], []
    for i in range(0, len(feats), chunk):
        part = {k: v[i:i + chunk] for k, v in logits.items()} if logits is not None else None
        dec = scorer.score(part, feats[i:i + chunk])
        scores.append([d.score for d in dec])
        ranks.append(decision_ranks(dec))
        if logits is not None and scorer.components:
            degraded.append([d.score for d in scorer.score(None, feats[i:i + chunk])])
    out: dict[str, np.ndarray] = {ENSEMBLE: np.concatenate(scores) if scores else np.zeros(0)}
    if degraded:
        out[DEGRADED] = np.concatenate(degraded)
    # Every model given, served by the stacker or not: a component the ensemble does not use is still reported.
    for name in logits or {}:
        out[name] = logit_margin(logits[name])
    if scorer.ensemble.tabular is not None:
        out[TABULAR] = scorer.ensemble.tabular.decision_function(feats)
    out[UNSUPERVISED] = scorer.detector.score_samples(feats)
    out[RULES_ONLY] = rules_score(scorer.rules, feats)
    return out, (np.concatenate(ranks) if ranks else np.zeros(0, dtype=np.int64))


def fit_baselines(train_x: np.ndarray, train_y: np.ndarray | None, seed: int) -> dict[str, Any]:
    """An isolation forest (unsupervised, like the detector) and, with labels, gradient boosting on aggregates."""
    from sklearn.ensemble import HistGradientBoostingClassifier, IsolationForest

    out: dict[str, Any] = {
        ISOLATION_FOREST: IsolationForest(n_estimators=N_TREES, random_state=seed, n_jobs=1).fit(train_x)
    }
    if train_y is not None and 0 < int(train_y.sum()) < len(train_y):
        # The same small-data leaf size as the ensemble's trees (seqguard.scoring.tabular), so neither is a constant.
        out[GRADIENT_BOOSTING] = HistGradientBoostingClassifier(
            max_iter=300, learning_rate=0.1, random_state=seed, min_samples_leaf=max(1, min(20, len(train_y) // 20)),
        ).fit(train_x, train_y)
    return out


def baseline_scores(baselines: dict[str, Any], x: np.ndarray) -> dict[str, np.ndarray]:
    out = {}
    for name, model in baselines.items():
        if name == ISOLATION_FOREST:
            out[name] = -model.score_samples(x)  # sklearn: lower = more abnormal
        else:
            out[name] = model.predict_proba(x)[:, 1]
    return out
