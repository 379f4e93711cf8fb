"""The unsupervised detector: ECOD-style empirical tail probabilities on the aggregate window features.

ECOD (Li et al., 2022) scores a point by how far into the tails of each feature's *empirical* distribution it lies:
per feature, o_left = -log P(X <= x) and o_right = -log P(X >= x); the window's score is the largest of the summed
left tails, the summed right tails, and the sum of the tail each feature's skewness points at. No labels: it is
fitted on unlabeled training traffic only (which may contain a few attacks, as real traffic does).

One change to plain ECOD: each per-feature tail score counts only beyond a floor, max(0, o - log(1 / tail_floor))
with tail_floor = 5 %. With ~56 features, plain ECOD sums ~56 moderate tails (each ~1 on average for a normal
window), and that noise swamps a single feature far out in its tail (8 failed payments in 10 minutes scores
-log(1/n) ~ 10, the same as a busy but normal window's sum). The floor keeps the score to features that are
actually unusual; on synthetic traffic it roughly doubles the detector's PR-AUC.

Stored form (JSON, no pickles): per feature a grid of values with the exact empirical P(X <= v) and P(X >= v) at
each one. Features with few distinct values (counts) keep every value and are looked up exactly; continuous ones
keep quantiles at levels dense in both tails (down to 1e-4), and probabilities between grid points are linearly
interpolated. Probabilities are smoothed as (n p + 1) / (n + 1), so a value beyond anything seen in training gets
1 / (n + 1), never zero.

Conventions: `fit(X)` returns self; `score_samples(X)` is the anomaly score, **higher = more anomalous** (as PyOD's
`decision_function`, not sklearn's IsolationForest `score_samples`); `predict(X)` is 1 for outliers (score above the
training quantile `1 - contamination`), 0 otherwise.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from seqguard.features import FEATURE_NAMES

FORMAT = "seqguard-ecod-v1"
# Quantile levels for continuous features: a uniform body plus both tails resolved to 1e-4.
_TAILS = np.array([1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2])
LEVELS = np.unique(np.concatenate([np.linspace(0.0, 1.0, 129), _TAILS, 1.0 - _TAILS]))


@dataclass(frozen=True)
class FeatureReason:
    feature: str
    value: float
    direction: str  # "high" | "low"
    tail_prob: float  # P(X >= value) for "high", P(X <= value) for "low", on training traffic
    z: float  # robust z-score: (value - median) / (1.4826 MAD), std when MAD is 0

    def text(self) -> str:
        # The share of training windows on the far side, floored at 0.1 % (finer is not meaningful at our sizes).
        tail_pct = max(0.1, round(100.0 * self.tail_prob, 1))
        bound = f"p>{100.0 - tail_pct:.1f}%" if self.direction == "high" else f"p<{tail_pct:.1f}%"
        return f"{self.feature}={_fmt_value(self.value)} ({bound})"

    def to_dict(self) -> dict[str, Any]:
        return {"feature": self.feature, "value": self.value, "direction": self.direction,
                "tail_prob": self.tail_prob, "z": self.z, "text": self.text()}


def _fmt_value(v: float) -> str:
    return f"{v:.0f}" if float(v).is_integer() else f"{v:.3g}"


class ECODDetector:
    def __init__(self, feature_names: tuple[str, ...] | list[str] = FEATURE_NAMES, max_exact: int = 256,
                 contamination: float = 0.01, tail_floor: float = 0.05) -> None:
        self.feature_names = tuple(feature_names)
        self.max_exact = max_exact
        self.contamination = contamination
        self.tail_floor = tail_floor
        self.n_: int = 0
        self.grids_: list[dict[str, Any]] = []
        self.skew_: np.ndarray = np.zeros(0)
        self.median_: np.ndarray = np.zeros(0)
        self.scale_: np.ndarray = np.zeros(0)
        self.threshold_: float = np.inf
        self.score_grid_: np.ndarray = np.zeros(0)  # training scores at LEVELS: percentiles for reports
        self._cache: list[tuple[np.ndarray, np.ndarray, np.ndarray, bool]] | None = None
        self._flat_cache: tuple[np.ndarray, ...] | None = None

    # -- fitting --------------------------------------------------------------------------------------------------

    def fit(self, X: np.ndarray, y: Any = None) -> ECODDetector:  # y ignored: unsupervised
        x = self._check(X, fitting=True).astype(np.float64)
        n = x.shape[0]
        if n < 2:
            raise ValueError("the detector needs at least 2 windows to fit")
        self.n_ = n
        self.grids_ = [self._grid(np.sort(x[:, j])) for j in range(x.shape[1])]
        self._cache = None
        self._flat_cache = None
        mean = x.mean(axis=0)
        std = x.std(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            skew = np.where(std > 0, ((x - mean) ** 3).mean(axis=0) / std**3, 0.0)
        self.skew_ = np.nan_to_num(skew)
        self.median_ = np.median(x, axis=0)
        mad = 1.4826 * np.median(np.abs(x - self.median_), axis=0)
        self.scale_ = np.where(mad > 0, mad, np.where(std > 0, std, 1.0))
        train_scores = self.score_samples(x)
        self.threshold_ = float(np.quantile(train_scores, 1.0 - self.contamination))
        self.score_grid_ = np.quantile(train_scores, LEVELS)
        return self

    def _grid(self, col: np.ndarray) -> dict[str, Any]:
        n = len(col)
        values = np.unique(col)
        exact = len(values) <= self.max_exact
        if not exact:
            values = np.unique(np.quantile(col, LEVELS, method="inverted_cdf"))
        le = np.searchsorted(col, values, side="right") / n
        ge = 1.0 - np.searchsorted(col, values, side="left") / n
        return {"exact": bool(exact), "values": values.tolist(), "le": le.tolist(), "ge": ge.tolist()}

    # -- scoring --------------------------------------------------------------------------------------------------

    def tail_probs(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(P(X <= x), P(X >= x)) per window and feature on the training distribution, smoothed, float64.

        One searchsorted over every feature's grid at once: the grids are concatenated as complex keys
        (feature index + 1j * value), which numpy orders lexicographically, so a window's value lands inside its
        own feature's grid. Same indices, same arithmetic as a per-feature loop (`_tail_probs_loop`, kept as the
        reference the tests compare with bit for bit), without 40 rounds of small numpy calls per request."""
        x = self._check(X).astype(np.float64)
        keys, values, le, ge, start, size, interp = self._flat()
        q = np.empty(x.shape, dtype=np.complex128)
        q.real = np.arange(x.shape[1], dtype=np.float64)[None, :]
        q.imag = x
        i_le = np.searchsorted(keys, q, side="right") - start - 1  # last grid value <= x, per feature
        i_ge = np.searchsorted(keys, q, side="left") - start  # first grid value >= x
        last = size - 1
        p_le = np.where(i_le >= 0, le[start + np.clip(i_le, 0, last)], 0.0)
        p_ge = np.where(i_ge < size, ge[start + np.clip(i_ge, 0, last)], 0.0)
        if interp.any():
            # Between two quantiles the true ECDF is unknown: interpolate instead of taking the step (np.interp's
            # own formula: slope * (x - x_j) + y_j on the segment x_j <= x < x_j+1).
            inside = interp[None, :] & (x > values[start]) & (x < values[start + last])
            j = start + np.clip(i_le, 0, np.maximum(last - 1, 0))
            dx = values[j + 1] - values[j]
            with np.errstate(divide="ignore", invalid="ignore"):
                p_le = np.where(inside, (le[j + 1] - le[j]) / dx * (x - values[j]) + le[j], p_le)
                p_ge = np.where(inside, (ge[j + 1] - ge[j]) / dx * (x - values[j]) + ge[j], p_ge)
        n = float(self.n_)
        return (n * p_le + 1.0) / (n + 1.0), (n * p_ge + 1.0) / (n + 1.0)

    def _tail_probs_loop(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The per-feature reference of `tail_probs` (np.searchsorted / np.interp feature by feature)."""
        x = self._check(X).astype(np.float64)
        left = np.empty_like(x)
        right = np.empty_like(x)
        for j, (v, le, ge, exact) in enumerate(self._arrays()):
            col = x[:, j]
            i_le = np.searchsorted(v, col, side="right") - 1  # last grid value <= x
            i_ge = np.searchsorted(v, col, side="left")  # first grid value >= x
            p_le = np.where(i_le >= 0, le[np.clip(i_le, 0, len(v) - 1)], 0.0)
            p_ge = np.where(i_ge < len(v), ge[np.clip(i_ge, 0, len(v) - 1)], 0.0)
            if not exact and len(v) > 1:
                inside = (col > v[0]) & (col < v[-1])
                p_le = np.where(inside, np.interp(col, v, le), p_le)
                p_ge = np.where(inside, np.interp(col, v, ge), p_ge)
            left[:, j] = p_le
            right[:, j] = p_ge
        n = float(self.n_)
        return (n * left + 1.0) / (n + 1.0), (n * right + 1.0) / (n + 1.0)

    def _arrays(self) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, bool]]:
        """The grids as numpy arrays, built once (the JSON form holds lists)."""
        if self._cache is None or len(self._cache) != len(self.grids_):
            self._cache = [(np.asarray(g["values"], dtype=np.float64), np.asarray(g["le"], dtype=np.float64),
                            np.asarray(g["ge"], dtype=np.float64), bool(g["exact"])) for g in self.grids_]
        return self._cache

    def _flat(self) -> tuple[np.ndarray, ...]:
        """Every feature's grid concatenated: (complex keys, values, le, ge, start [F], size [F], interpolate [F])."""
        if self._flat_cache is None or len(self._flat_cache[4]) != len(self.grids_):
            arrays = self._arrays()
            size = np.array([len(v) for v, *_ in arrays], dtype=np.int64)
            start = np.concatenate([[0], np.cumsum(size)[:-1]]).astype(np.int64)
            values = np.concatenate([v for v, *_ in arrays])
            keys = np.empty(len(values), dtype=np.complex128)
            keys.real = np.repeat(np.arange(len(arrays), dtype=np.float64), size)
            keys.imag = values
            le = np.concatenate([a[1] for a in arrays])
            ge = np.concatenate([a[2] for a in arrays])
            # One trailing copy, so `j + 1` of a one-value grid stays in bounds (its result is never selected).
            values, le, ge = (np.append(a, a[-1:]) for a in (values, le, ge))
            interp = np.array([not exact and len(v) > 1 for v, _, _, exact in arrays], dtype=bool)
            self._flat_cache = (keys, values, le, ge, start, size, interp)
        return self._flat_cache

    def _tail_scores(self, X: np.ndarray, tails: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[
        np.ndarray, np.ndarray, np.ndarray
    ]:
        left, right = self.tail_probs(X) if tails is None else tails
        floor = -np.log(self.tail_floor) if self.tail_floor < 1 else 0.0
        o_left = np.maximum(-np.log(left) - floor, 0.0)
        o_right = np.maximum(-np.log(right) - floor, 0.0)
        o_auto = np.where(self.skew_[None, :] < 0, o_left, o_right)
        return o_left, o_right, o_auto

    def score_samples(self, X: np.ndarray, tails: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """Anomaly score per window (higher = more anomalous), float64. `tails`: tail_probs(X), if already known."""
        o_left, o_right, o_auto = self._tail_scores(X, tails)
        return np.maximum.reduce([o_left.sum(axis=1), o_right.sum(axis=1), o_auto.sum(axis=1)])

    decision_function = score_samples

    def percentile(self, scores: np.ndarray) -> np.ndarray:
        """Where scores fall among the training windows' scores, in [0, 1] (0.99 = above 99 % of training)."""
        grid = self.score_grid_
        cached = getattr(self, "_percentile_grid", None)
        if cached is None or cached[0] is not grid:  # computed once per grid, not per request
            # Equal quantiles (ties at 0) would make np.interp ambiguous: take the highest level per distinct value.
            values, last = np.unique(grid[::-1], return_index=True)
            cached = self._percentile_grid = (grid, values, LEVELS[::-1][last])
        return np.interp(np.asarray(scores, dtype=np.float64), cached[1], cached[2], left=0.0, right=1.0)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return (self.score_samples(X) > self.threshold_).astype(np.int64)

    def reasons(self, X: np.ndarray, k: int = 3, min_score: float = -np.log(0.05),
                tails: tuple[np.ndarray, np.ndarray] | None = None) -> list[list[FeatureReason]]:
        """Per window, up to k features deepest in a tail (tail probability below 5 % by default), deepest first."""
        x = self._check(X).astype(np.float64)
        left, right = self.tail_probs(x) if tails is None else tails
        high = right <= left
        tail = np.where(high, right, left)
        score = -np.log(tail)
        z = (x - self.median_[None, :]) / self.scale_[None, :]
        # Stable order: deepest tail first, then feature order, so equal scores always list the same way.
        order = np.lexsort((np.broadcast_to(np.arange(x.shape[1]), x.shape), -score), axis=1)
        out: list[list[FeatureReason]] = []
        for i in range(x.shape[0]):
            row = []
            for j in order[i, :k]:
                if score[i, j] < min_score:
                    break
                row.append(FeatureReason(self.feature_names[j], float(x[i, j]), "high" if high[i, j] else "low",
                                         float(tail[i, j]), float(z[i, j])))
            out.append(row)
        return out

    # -- (de)serialisation ----------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "feature_names": list(self.feature_names),
            "n": self.n_,
            "max_exact": self.max_exact,
            "contamination": self.contamination,
            "tail_floor": self.tail_floor,
            "threshold": self.threshold_,
            "levels": LEVELS.tolist(),
            "score_grid": self.score_grid_.tolist(),
            "skew": self.skew_.tolist(),
            "median": self.median_.tolist(),
            "scale": self.scale_.tolist(),
            "grids": self.grids_,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ECODDetector:
        if d.get("format") != FORMAT:
            raise ValueError(f"not a seqguard ECOD detector (format {d.get('format')!r}, expected {FORMAT!r})")
        det = cls(d["feature_names"], max_exact=int(d["max_exact"]), contamination=float(d["contamination"]),
                  tail_floor=float(d["tail_floor"]))
        det.n_ = int(d["n"])
        det.threshold_ = float(d["threshold"])
        if not np.array_equal(np.asarray(d["levels"]), LEVELS):
            raise ValueError("the detector was saved with different quantile levels; re-train it")
        det.score_grid_ = np.asarray(d["score_grid"], dtype=np.float64)
        det.skew_ = np.asarray(d["skew"], dtype=np.float64)
        det.median_ = np.asarray(d["median"], dtype=np.float64)
        det.scale_ = np.asarray(d["scale"], dtype=np.float64)
        det.grids_ = list(d["grids"])
        return det

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict()) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> ECODDetector:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def _check(self, X: np.ndarray, fitting: bool = False) -> np.ndarray:
        x = np.asarray(X)
        if x.ndim != 2 or x.shape[1] != len(self.feature_names):
            raise ValueError(f"expected [batch, {len(self.feature_names)}] features, got {list(x.shape)}")
        if not fitting and not self.grids_:
            raise ValueError("the detector is not fitted")
        if not np.isfinite(x).all():
            raise ValueError("features contain NaN or infinity")
        return x
