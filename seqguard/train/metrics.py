"""Detection metrics, as a risk team reads them: ranking (ROC-AUC, PR-AUC), recall at a fixed false-positive rate,
precision at the top k, overall and per attack scenario (with counts).

Per scenario, a score is judged on that scenario's anomalous windows against *all* normal windows, and recall at
1 % FPR uses the threshold set on all normal windows: one operating point for the whole traffic, as deployed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from seqguard.scoring.ensemble import threshold_for_fpr

NORMAL = "normal"


def pr_auc(y: np.ndarray, s: np.ndarray) -> float:
    """Average precision (the step-wise PR-AUC, no optimistic interpolation)."""
    from sklearn.metrics import average_precision_score

    y = np.asarray(y).astype(bool)
    if not y.any() or y.all():
        return float("nan")
    return float(average_precision_score(y, s))


def roc_auc(y: np.ndarray, s: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    y = np.asarray(y).astype(bool)
    if not y.any() or y.all():
        return float("nan")
    return float(roc_auc_score(y, s))


def fpr_threshold(negative_scores: np.ndarray, fpr: float) -> float:
    """The lowest threshold t with share(negatives >= t) <= fpr (the rule the ensemble thresholds use too)."""
    if not len(negative_scores):
        return float("inf")
    return threshold_for_fpr(negative_scores, fpr)


def recall_at_fpr(y: np.ndarray, s: np.ndarray, fpr: float = 0.01, threshold: float | None = None) -> float:
    y = np.asarray(y).astype(bool)
    s = np.asarray(s, dtype=np.float64)
    if not y.any():
        return float("nan")
    t = fpr_threshold(s[~y], fpr) if threshold is None else threshold
    return float((s[y] >= t).mean())


def precision_at_k(y: np.ndarray, s: np.ndarray, k: int) -> float:
    y = np.asarray(y).astype(bool)
    if k <= 0 or not len(y):
        return float("nan")
    top = np.argsort(-np.asarray(s, dtype=np.float64), kind="stable")[:k]
    return float(y[top].mean())


def summary(y: np.ndarray, s: np.ndarray, fpr: float = 0.01, ks: tuple[int, ...] = (100,)) -> dict[str, Any]:
    y = np.asarray(y).astype(bool)
    out: dict[str, Any] = {
        "n": len(y),
        "n_positive": int(y.sum()),
        "roc_auc": roc_auc(y, s),
        "pr_auc": pr_auc(y, s),
        f"recall_at_{fpr:g}_fpr": recall_at_fpr(y, s, fpr),
    }
    for k in ks:
        out[f"precision_at_{k}"] = precision_at_k(y, s, k)
    return out


def per_scenario(y: np.ndarray, s: np.ndarray, scenario: np.ndarray, fpr: float = 0.01) -> dict[str, dict[str, Any]]:
    y = np.asarray(y).astype(bool)
    s = np.asarray(s, dtype=np.float64)
    t = fpr_threshold(s[~y], fpr)
    out = {}
    for name in sorted({str(x) for x in scenario[y]}):
        sel = np.asarray(scenario == name) & y
        both = sel | ~y
        out[name] = {
            "n_positive": int(sel.sum()),
            "roc_auc": roc_auc(y[both], s[both]),
            "pr_auc": pr_auc(y[both], s[both]),
            f"recall_at_{fpr:g}_fpr": float((s[sel] >= t).mean()),
        }
    return out


def full_report(y: np.ndarray, s: np.ndarray, scenario: np.ndarray, unseen: np.ndarray | None = None,
                fpr: float = 0.01) -> dict[str, Any]:
    """Overall + per scenario (+ seen / unseen entities) for one score."""
    out = summary(y, s, fpr)
    out["per_scenario"] = per_scenario(y, s, scenario, fpr)
    if unseen is not None and unseen.any() and (~unseen).any():
        out["unseen_entities"] = summary(y[unseen], s[unseen], fpr, ks=())
        out["seen_entities"] = summary(y[~unseen], s[~unseen], fpr, ks=())
    return out


RECALL_KEY = "recall_at_0.01_fpr"


def clean(obj: Any) -> Any:
    """NaN -> None and numpy scalars -> Python, so metrics serialise as strict JSON."""
    if isinstance(obj, dict):
        return {str(k): clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [clean(v) for v in obj]
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        v = float(obj)
        return None if not np.isfinite(v) else v
    if isinstance(obj, np.ndarray):
        return clean(obj.tolist())
    return obj


def degenerate_sources(sources: dict[str, np.ndarray], y: np.ndarray, min_positives: int,
                       where: str) -> list[dict[str, Any]]:
    """Scores that cannot be trusted on these windows: constant (a model that learned nothing, or ECOD on a
    handful of windows), or judged on fewer than `min_positives` anomalous windows. Reported, never hidden."""
    y = np.asarray(y).astype(bool)
    out = []
    n_pos = int(y.sum())
    if n_pos < min_positives:  # a property of the windows, so one entry for every source
        out.append({"source": "every score", "where": where, "problem": "too_few_positives",
                    "detail": f"judged on {n_pos} anomalous {where} windows (fewer than {min_positives}): its "
                              "figures and the choices made on them are noise-prone"})
    for name, s in sources.items():
        s = np.asarray(s, dtype=np.float64)
        finite = s[np.isfinite(s)]
        if len(finite) and float(finite.max() - finite.min()) <= 1e-9 * max(1.0, abs(float(finite.max()))):
            out.append({"source": name, "where": where, "problem": "constant",
                        "detail": f"the same score ({finite[0]:.4g}) for all {len(s)} {where} windows"})
        elif n_pos >= min_positives and (~y).sum() >= min_positives:
            auc = roc_auc(y, np.nan_to_num(s, nan=float(np.nanmin(s)) if len(finite) else 0.0))
            if auc < 0.45:  # clearly below chance: the score ranks this data the wrong way round
                out.append({"source": name, "where": where, "problem": "inverted",
                            "detail": f"ROC-AUC {auc:.3f} on {where}: it ranks normal windows above anomalous ones "
                                      "on this data"})
    return out


def low_negative_warning(y: np.ndarray, level: str, minimum: int = 100) -> list[str]:
    n_neg = int((~np.asarray(y).astype(bool)).sum())
    if n_neg < minimum:
        return [f"{level}: recall at 1 % FPR rests on {n_neg} normal {level}s (fewer than {minimum}): one or two "
                "of them decide it; read PR-AUC and ROC-AUC instead"]
    return []
