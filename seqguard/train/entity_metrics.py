"""Entity-level figures (an account, a device, a session), as a risk team acts on them.

Window scores become one score per entity through `seqguard.scoring.entity` (the only place that is computed); an
entity is anomalous when any of its windows is, and its scenario is its most frequent attack scenario. Every figure
comes with a bootstrap interval over entities, and recall at 1 % FPR is not quoted (None, with a warning) when fewer
than `MIN_NEGATIVES_1PCT` normal entities make that operating point a matter of one or two entities.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from seqguard.scoring.entity import (
    AGGREGATIONS,
    DEFAULT_AGGREGATION,
    aggregate_entity_labels,
    aggregate_entity_scores,
)
from seqguard.train.metrics import NORMAL, fpr_threshold

MIN_NEGATIVES_1PCT = 100  # below this, recall at 1 % FPR rests on a single normal entity
FPRS = (0.01, 0.05)
N_BOOT = 200


def _ap(y: np.ndarray, s: np.ndarray) -> float:
    """Average precision (step-wise PR-AUC, ties as one threshold): sklearn's definition, vectorised for bootstraps."""
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == len(y):
        return float("nan")
    order = np.argsort(-s, kind="mergesort")
    ss, yy = s[order], y[order]
    last = np.r_[ss[1:] != ss[:-1], True]
    tp = np.cumsum(yy)[last]
    fp = np.cumsum(~yy)[last]
    precision = tp / (tp + fp)
    recall = tp / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def _auc(y: np.ndarray, s: np.ndarray) -> float:
    from scipy.stats import rankdata

    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    r = rankdata(s)
    return float((r[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _recall(y: np.ndarray, s: np.ndarray, fpr: float) -> float:
    if not y.any() or y.all():
        return float("nan")
    return float((s[y] >= fpr_threshold(s[~y], fpr)).mean())


def _figures(y: np.ndarray, s: np.ndarray) -> dict[str, float]:
    out = {"roc_auc": _auc(y, s), "pr_auc": _ap(y, s)}
    for f in FPRS:
        out[f"recall_at_{f:g}_fpr"] = _recall(y, s, f)
    return out


def _interval(samples: np.ndarray) -> list[float] | None:
    """The 95 % percentile interval of bootstrap samples (resamples with one class only give NaN and are left out)."""
    col = samples[np.isfinite(samples)]
    return [float(np.percentile(col, 2.5)), float(np.percentile(col, 97.5))] if len(col) else None


def _entity_scores(entity: np.ndarray, s: np.ndarray, method: str, order: pd.Series) -> np.ndarray:
    """Window scores aggregated per entity, in `order` (entity ids); an entity with no finite score gets the lowest."""
    agg = aggregate_entity_scores(entity, s, method)
    se = agg.set_index("entity_id")["score"].reindex(order).to_numpy(dtype=np.float64)
    return np.where(np.isfinite(se), se, np.nanmin(se) if np.isfinite(se).any() else 0.0)


def _with_intervals(y: np.ndarray, s: np.ndarray, boots: np.ndarray) -> dict[str, Any]:
    point = _figures(y, s)
    samples = np.array([list(_figures(y[b], s[b]).values()) for b in boots]) if len(boots) else np.zeros((0, 4))
    out: dict[str, Any] = {"n": len(y), "n_positive": int(y.sum())}
    for j, (k, v) in enumerate(point.items()):
        out[k] = v
        out[f"{k}_ci"] = _interval(samples[:, j] if len(samples) else np.zeros(0))
    n_neg = int((~y).sum())
    if n_neg < MIN_NEGATIVES_1PCT:
        out["recall_at_0.01_fpr_unquoted"] = out.pop("recall_at_0.01_fpr")
        out["recall_at_0.01_fpr"] = None
        out["recall_at_0.01_fpr_ci"] = None
    return out


def entity_table(entity: np.ndarray, y: np.ndarray, scenario: np.ndarray) -> pd.DataFrame:
    """One row per entity (order of first appearance): label (any window anomalous) and scenario."""
    lab = aggregate_entity_labels(entity, y)
    frame = pd.DataFrame({"entity_id": np.asarray(entity), "scenario": np.asarray(scenario, dtype=object),
                          "y": np.asarray(y, dtype=bool)})
    pos = frame[frame["y"]]
    scen = pos.groupby("entity_id", sort=False)["scenario"].agg(lambda v: v.value_counts().index[0])
    out = pd.DataFrame({"entity_id": lab.index, "label": lab.to_numpy().astype(bool)})
    out["scenario"] = out["entity_id"].map(scen).fillna(NORMAL).to_numpy(dtype=object)
    return out


def entity_report(entity: np.ndarray, y: np.ndarray, scenario: np.ndarray, sources: dict[str, np.ndarray],
                  method: str, n_boot: int = N_BOOT, seed: int = 0) -> dict[str, Any]:
    """Entity-level ROC-AUC, PR-AUC, recall at 1 % and 5 % FPR (with bootstrap intervals), overall and per scenario,
    for every score source, aggregated with `method`."""
    table = entity_table(entity, y, scenario)
    ye = table["label"].to_numpy(dtype=bool)
    scen = table["scenario"].to_numpy(dtype=object)
    rng = np.random.default_rng(seed)
    boots = rng.integers(0, len(ye), size=(n_boot, len(ye))) if n_boot > 0 else np.zeros((0, len(ye)), dtype=int)
    n_neg = int((~ye).sum())
    warnings = []
    if n_neg < MIN_NEGATIVES_1PCT:
        warnings.append(f"recall at 1 % FPR is not quoted: only {n_neg} normal entities (needs at least "
                        f"{MIN_NEGATIVES_1PCT}); read recall at 5 % FPR, PR-AUC and ROC-AUC instead")
    if int(ye.sum()) < 10:
        warnings.append(f"only {int(ye.sum())} anomalous entities: every figure rests on a handful of entities "
                        "(see the intervals)")
    scores: dict[str, Any] = {}
    for name, s in sources.items():
        se = _entity_scores(entity, s, method, table["entity_id"])
        row = _with_intervals(ye, se, boots)
        per: dict[str, Any] = {}
        for sc in sorted({str(x) for x in scen[ye]}):
            sel = (scen == sc) | ~ye
            sub_boot = rng.integers(0, int(sel.sum()), size=(min(n_boot, 100), int(sel.sum()))) if n_boot else []
            per[sc] = _with_intervals(ye[sel], se[sel], np.asarray(sub_boot))
        row["per_scenario"] = per
        scores[name] = row
    return {"aggregation": method, "entities": len(ye), "anomalous": int(ye.sum()), "normal": n_neg,
            "bootstrap": n_boot, "warnings": warnings, "scores": scores}


def unlabelled_aggregation(configured: str = "auto") -> tuple[str, dict[str, Any]]:
    """The entity aggregation of a checkpoint trained without labels: the configured one, else the default (there
    are no labels to choose on)."""
    if configured != "auto":
        return configured, {"why": f"set in the config (ensemble.entity_aggregation: {configured})"}
    return DEFAULT_AGGREGATION, {"why": "no labels to choose on: the default"}


def choose_aggregation(entity: np.ndarray, y: np.ndarray, score: np.ndarray, configured: str = "auto"
                       ) -> tuple[str, dict[str, Any]]:
    """The entity aggregation with the best entity-level PR-AUC on these (validation) windows; ties keep the
    default. A configured method is used as is (and its figures still recorded)."""
    ye = aggregate_entity_labels(entity, y)
    yb = ye.to_numpy().astype(bool)
    figures = {}
    for m in AGGREGATIONS:
        agg = aggregate_entity_scores(entity, score, m).set_index("entity_id")["score"].reindex(ye.index)
        s = agg.to_numpy(dtype=np.float64)
        figures[m] = {"pr_auc": _ap(yb, s), "roc_auc": _auc(yb, s)}
    info: dict[str, Any] = {"validation_entities": len(yb), "validation_anomalous_entities": int(yb.sum()),
                            "candidates": figures}
    if configured != "auto":
        info["why"] = f"set in the config (ensemble.entity_aggregation: {configured})"
        return configured, info
    finite = {m: f["pr_auc"] for m, f in figures.items() if np.isfinite(f["pr_auc"])}
    if not finite:
        info["why"] = f"validation cannot rank entities (one class); the default {DEFAULT_AGGREGATION}"
        return DEFAULT_AGGREGATION, info
    best = max(finite, key=lambda m: (finite[m], m == DEFAULT_AGGREGATION))
    info["why"] = (f"highest entity-level PR-AUC on validation ({finite[best]:.4f}; "
                   + ", ".join(f"{m} {v:.4f}" for m, v in finite.items()) + ")")
    return best, info


def paired_difference(entity: np.ndarray, y: np.ndarray, a: np.ndarray, b: np.ndarray, method: str,
                      n_boot: int = N_BOOT, seed: int = 0) -> dict[str, Any]:
    """Entity-level PR-AUC and ROC-AUC of two scores of the same windows, and the PR-AUC difference a - b with a
    paired bootstrap interval (the same resampled entities for both). Two scores' own intervals overlap whenever
    either is wide; whether one is better is the interval of their difference."""
    labels = aggregate_entity_labels(entity, y)
    ye = labels.to_numpy().astype(bool)
    ea, eb = (_entity_scores(entity, s, method, labels.index) for s in (a, b))
    boots = np.random.default_rng(seed).integers(0, len(ye), size=(n_boot, len(ye)))
    samples = np.array([[_ap(ye[i], ea[i]) - _ap(ye[i], eb[i]), _auc(ye[i], ea[i]), _auc(ye[i], eb[i])]
                        for i in boots]).reshape(-1, 3)
    return {"aggregation": method, "entities": len(ye), "anomalous": int(ye.sum()),
            "pr_auc": [_ap(ye, ea), _ap(ye, eb)], "roc_auc": [_auc(ye, ea), _auc(ye, eb)],
            "roc_auc_ci": [_interval(samples[:, 1]), _interval(samples[:, 2])],
            "difference": _ap(ye, ea) - _ap(ye, eb), "difference_ci": _interval(samples[:, 0])}
