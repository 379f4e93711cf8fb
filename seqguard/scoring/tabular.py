"""A gradient-boosted tree model on the aggregate features, stored as plain JSON arrays and evaluated in numpy.

Why it is in the ensemble: on aggregate features, boosted trees are a strong, cheap learner, and they need no model
backend, so the degraded path (Triton down) keeps most of the ensemble's accuracy. The stacker weighs it against the
sequence models on validation data, so the report can say whether the sequence models still add something on top
(ensemble vs degraded ensemble), i.e. whether they earn their latency.

Trained with scikit-learn's `HistGradientBoostingClassifier` (fast, early-stopped, deterministic for a seed). Its
fitted trees are read from the estimator's tree arrays (left / right child, feature, numeric threshold, leaf value,
learning rate already applied) into JSON; prediction walks all trees at once, one depth level per step, sending
x <= threshold left as scikit-learn does. Those arrays are not public API, so `fit` checks that the exported trees
reproduce scikit-learn's own decision function and refuses to return a model that does not (a changed scikit-learn
fails training loudly, never serves different scores). Features are never missing (encode_window fills every one),
so missing-value routing is not exported.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from seqguard.features import FEATURE_NAMES

FORMAT = "seqguard-gbt-v1"


class TreeModel:
    def __init__(self, feature_names: tuple[str, ...] | list[str], baseline: float, trees: list[dict[str, list]],
                 meta: dict[str, Any] | None = None) -> None:
        self.feature_names = tuple(feature_names)
        self.baseline = float(baseline)
        self.trees = trees
        self.meta = meta or {}
        n = max((len(t["left"]) for t in trees), default=1)
        t_count = len(trees)
        # Padded [n_trees, max_nodes] arrays: one gather per depth level for the whole batch and every tree.
        self._left = np.zeros((t_count, n), dtype=np.int64)
        self._right = np.zeros((t_count, n), dtype=np.int64)
        self._feature = np.zeros((t_count, n), dtype=np.int64)
        self._threshold = np.zeros((t_count, n), dtype=np.float64)
        self._value = np.zeros((t_count, n), dtype=np.float64)
        self._leaf = np.ones((t_count, n), dtype=bool)
        for i, t in enumerate(trees):
            k = len(t["left"])
            left = np.asarray(t["left"], dtype=np.int64)
            self._leaf[i, :k] = left < 0
            self._left[i, :k] = np.where(left < 0, 0, left)
            self._right[i, :k] = np.maximum(np.asarray(t["right"], dtype=np.int64), 0)
            self._feature[i, :k] = np.maximum(np.asarray(t["feature"], dtype=np.int64), 0)
            self._threshold[i, :k] = np.asarray(t["threshold"], dtype=np.float64)
            self._value[i, :k] = np.asarray(t["value"], dtype=np.float64)
        self._depth = int(max((t.get("depth", 0) for t in trees), default=0))
        # Flat tables over [tree, node] (node ids carry their tree's offset); a leaf points at itself on both
        # sides, so a walk that reached it stays put.
        flat = (np.arange(t_count) * n)[:, None]
        idx = np.arange(t_count * n).reshape(t_count, n)
        self._go_left_to = np.where(self._leaf, idx, flat + self._left).ravel()
        self._go_right_to = np.where(self._leaf, idx, flat + self._right).ravel()
        self._root = (np.arange(t_count) * n).astype(np.int64)
        self._flat_feature = self._feature.ravel()
        self._flat_threshold = self._threshold.ravel()
        self._flat_value = self._value.ravel()
        # Pointer jumping (_jump): after k squarings of the one-step map, every node points 2^k levels down.
        self._jumps = max(1, int(np.ceil(np.log2(max(self._depth, 1)))))

    JUMP_ROWS = 4  # up to this many windows, pointer jumping; beyond, the level-by-level walk is faster

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Log-odds of the anomaly class per window, float64. Two exact evaluations of the same trees (the same
        comparisons, leaves and sums; a test holds them equal bit for bit): pointer jumping for the one or few
        windows of a real-time request, the level-by-level walk for batches."""
        x = np.asarray(X, dtype=np.float32).astype(np.float64)
        if x.ndim != 2 or x.shape[1] != len(self.feature_names):
            raise ValueError(f"expected [batch, {len(self.feature_names)}] features, got {list(x.shape)}")
        return self._jump(x) if x.shape[0] <= self.JUMP_ROWS else self._walk(x)

    def _walk(self, x: np.ndarray) -> np.ndarray:
        """All trees one depth level per step: ~6 numpy calls per level, cheap per window in large batches."""
        b, t_count = x.shape[0], len(self.trees)
        width = self._left.shape[1]
        # Flat indexing into the padded [tree, node] arrays: node ids carry their tree's offset.
        base = (np.arange(t_count) * width)[None, :]
        left, right = self._left.ravel(), self._right.ravel()
        feature, threshold, leaf = self._feature.ravel(), self._threshold.ravel(), self._leaf.ravel()
        node = np.broadcast_to(base, (b, t_count)).copy()
        xf = x.ravel()
        row = (np.arange(b) * x.shape[1])[:, None]
        for _ in range(self._depth):
            go_left = xf[row + feature[node]] <= threshold[node]
            nxt = base + np.where(go_left, left[node], right[node])
            node = np.where(leaf[node], node, nxt)
        return self.baseline + self._value.ravel()[node].sum(axis=1)

    def _jump(self, x: np.ndarray) -> np.ndarray:
        """Every split of every tree compared at once ([rows, nodes]); each node's next node follows from its
        comparison; squaring that map log2(depth) times sends every root to its leaf. About a dozen numpy calls
        whatever the depth (these trees are ~20 levels deep): a third of the walk's time for one window."""
        b, width = x.shape[0], len(self._flat_feature)
        go_left = x[:, self._flat_feature] <= self._flat_threshold  # as scikit-learn: x <= threshold (NaN: right)
        offset = (np.arange(b) * width)[:, None]
        step = (np.where(go_left, self._go_left_to, self._go_right_to) + offset).ravel()
        for _ in range(self._jumps):
            step = step[step]
        # C order, as the depth-by-depth walk had it: the row sums then add the trees in the same order.
        leaves = np.ascontiguousarray(step.reshape(b, width)[:, self._root]) - offset
        return self.baseline + self._flat_value[leaves].sum(axis=1)

    @classmethod
    def fit(cls, X: np.ndarray, y: np.ndarray, max_iter: int = 300, max_leaf_nodes: int = 31,
            learning_rate: float = 0.1, negative_share: float = 1.0, seed: int = 0) -> TreeModel:
        """Fit on X [N, F] and binary y; `negative_share` < 1 subsamples normal windows (seeded) for speed."""
        from sklearn.ensemble import HistGradientBoostingClassifier

        x = np.asarray(X, dtype=np.float32)
        y = np.asarray(y, dtype=np.int64)
        if negative_share < 1.0:
            rng = np.random.default_rng(seed + 31)
            neg = np.flatnonzero(y == 0)
            keep = np.sort(np.concatenate([np.flatnonzero(y == 1),
                                           rng.choice(neg, max(1, round(negative_share * len(neg))), replace=False)]))
            x, y = x[keep], y[keep]
        # sklearn's default leaf size (20) on a few dozen windows allows no split at all: the trees would output a
        # constant. Below 400 windows the leaf size shrinks with the data (unchanged at and above 400).
        min_leaf = max(1, min(20, len(y) // 20))
        gb = HistGradientBoostingClassifier(max_iter=max_iter, max_leaf_nodes=max_leaf_nodes,
                                            learning_rate=learning_rate, random_state=seed, min_samples_leaf=min_leaf)
        gb.fit(x, y)
        trees = []
        for (pred,) in gb._predictors:  # binary: one tree per iteration
            nodes = pred.nodes
            if nodes["is_categorical"].any():
                raise RuntimeError("categorical splits cannot be exported")
            leaf = nodes["is_leaf"].astype(bool)
            trees.append({
                "left": np.where(leaf, -1, nodes["left"]).astype(np.int64).tolist(),
                "right": np.where(leaf, -1, nodes["right"]).astype(np.int64).tolist(),
                "feature": np.where(leaf, -1, nodes["feature_idx"]).astype(np.int64).tolist(),
                "threshold": nodes["num_threshold"].astype(np.float64).tolist(),
                "value": np.where(leaf, nodes["value"], 0.0).astype(np.float64).tolist(),
                "depth": int(nodes["depth"].max()),
            })
        baseline = float(np.ravel(gb._baseline_prediction)[0])
        model = cls(FEATURE_NAMES, baseline, trees, {
            "estimator": "HistGradientBoostingClassifier", "iterations": int(gb.n_iter_), "max_iter": max_iter,
            "max_leaf_nodes": max_leaf_nodes, "learning_rate": learning_rate, "negative_share": negative_share,
            "train_windows": len(y), "train_positive": int(y.sum()), "min_samples_leaf": min_leaf})
        check = np.asarray(X[: min(len(X), 5000)], dtype=np.float32)
        if not np.allclose(model.decision_function(check), gb.decision_function(check), atol=1e-6, rtol=1e-6):
            raise RuntimeError("the exported trees do not reproduce scikit-learn's predictions (a scikit-learn "
                               "change?); refusing to use them")
        return model

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "feature_names": list(self.feature_names), "baseline": self.baseline,
                "meta": self.meta, "trees": self.trees}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TreeModel:
        if d.get("format") != FORMAT:
            raise ValueError(f"not a seqguard tree model (format {d.get('format')!r}, expected {FORMAT!r})")
        return cls(d["feature_names"], d["baseline"], d["trees"], d.get("meta"))
