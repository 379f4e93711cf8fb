"""The isolation forest of the label-free mode, as a TreeModel (plain JSON, evaluated in numpy like the boosted trees).

Why it is there: on the evaluation suite an isolation forest on the aggregate features is the strongest label-free
baseline, and a label-free mode that ignores it is beaten by it on most sets. It never reads labels: it is fitted on
the training windows' aggregates, like the ECOD detector.

scikit-learn's IsolationForest scores a window by its mean path length E[h(x)] over the trees, h = the leaf's depth
plus c(n), the expected path length of an unbuilt subtree of the n training samples left in that leaf; the anomaly
score is 2 ** (-E[h(x)] / c(max_samples)). Each leaf here holds -h / (n_trees * c(max_samples)), so the TreeModel's
sum over trees is log2 of that anomaly score (higher = more anomalous), and the scorer turns it into a percentile
among the training windows. `fit` checks the exported trees against scikit-learn's own scores and refuses a mismatch.
"""

from __future__ import annotations

import numpy as np

from seqguard.features import FEATURE_NAMES
from seqguard.scoring.tabular import TreeModel

N_TREES = 200  # the suite's isolation-forest baseline (seqguard.train.scores.fit_baselines) uses the same count


def average_path_length(n: np.ndarray) -> np.ndarray:
    """c(n): the expected path length of an unsuccessful search in a binary search tree of n points."""
    n = np.asarray(n, dtype=np.float64)
    out = np.zeros_like(n)
    out[n == 2] = 1.0
    big = n > 2
    out[big] = 2.0 * (np.log(n[big] - 1.0) + np.euler_gamma) - 2.0 * (n[big] - 1.0) / n[big]
    return out


def fit_isolation_forest(X: np.ndarray, seed: int, n_trees: int = N_TREES) -> TreeModel:
    """An isolation forest on the windows' aggregate features X [N, F] (labels never read)."""
    from sklearn.ensemble import IsolationForest

    x = np.asarray(X, dtype=np.float32)
    forest = IsolationForest(n_estimators=n_trees, random_state=seed, n_jobs=1).fit(x)
    if forest.max_features != 1.0:
        raise RuntimeError("the exported isolation forest assumes every tree sees every feature")
    norm = float(average_path_length(np.array([forest.max_samples_]))[0]) * n_trees
    trees = []
    for est in forest.estimators_:
        t = est.tree_
        leaf = t.children_left < 0
        depth = t.compute_node_depths() - 1  # edges from the root
        h = depth + average_path_length(t.n_node_samples)
        trees.append({
            "left": np.where(leaf, -1, t.children_left).astype(np.int64).tolist(),
            "right": np.where(leaf, -1, t.children_right).astype(np.int64).tolist(),
            "feature": np.where(leaf, -1, t.feature).astype(np.int64).tolist(),
            "threshold": np.where(leaf, 0.0, t.threshold).astype(np.float64).tolist(),
            "value": np.where(leaf, -h / norm if norm > 0 else 0.0, 0.0).astype(np.float64).tolist(),
            "depth": int(depth.max()),
        })
    model = TreeModel(FEATURE_NAMES, 0.0, trees, {"estimator": "IsolationForest", "trees": n_trees,
                                                  "max_samples": int(forest.max_samples_), "train_windows": len(x)})
    check = x[: min(len(x), 5000)]
    if not np.allclose(2.0 ** model.decision_function(check), -forest.score_samples(check), atol=1e-9, rtol=1e-9):
        raise RuntimeError("the exported isolation forest does not reproduce scikit-learn's scores (a scikit-learn "
                           "change?); refusing to use it")
    return model
