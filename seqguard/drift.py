"""Drift against the training reference: the reference saved with every checkpoint, and THE PSI function.

The reference is computed on the checkpoint's validation windows (entity-day windows the stacker and thresholds
were fitted on, never seen by the sequence models' gradient steps): per aggregate feature and for the ensemble score,
quantile bin edges and the share of windows in each bin, plus the decision rates. A small sample of the same rows
is kept too, for Evidently's report, which wants rows rather than histograms.

`psi` is the one population stability index of seqguard: `seqguard drift` writes it into its report and the
service's `seqguard_feature_psi` / `seqguard_score_psi` gauges are set from it, so the alarm and the report agree.

Bins come from the reference's quantiles with duplicates removed and a right-closed rule (`x <= edge`), so a
zero-heavy count feature gets the bins {0} and (0, inf) rather than ten empty ones. Empty bins are floored at
`EPS` on both sides: PSI stays finite, and one window landing in a bin the reference never saw counts, but mildly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from seqguard.features import FEATURE_NAMES

DRIFT_REFERENCE_FILE = "drift_reference.json"
DRIFT_SAMPLE_FILE = "drift_reference_sample.parquet"
SCORE = "score"
QUANTILES = tuple(i / 10 for i in range(1, 10))
SCORE_HIST_EDGES = tuple(i / 20 for i in range(21))
EPS = 1e-4
# Industry convention: < 0.1 stable, 0.1-0.25 moderate shift, > 0.25 a shift worth acting on.
PSI_WARN = 0.1
PSI_ALERT = 0.25
SAMPLE_ROWS = 2000
REFERENCE_FORMAT = "seqguard-drift-reference-v1"


class DriftError(ValueError):
    """A reference or a live sample that cannot be compared; the message says why."""


@dataclass(frozen=True)
class Binning:
    edges: np.ndarray  # interior cut points, ascending, unique
    expected: np.ndarray  # share of reference windows per bin, len(edges) + 1

    def shares(self, values: np.ndarray) -> np.ndarray:
        v = np.asarray(values, dtype=np.float64)
        v = v[np.isfinite(v)]
        if not len(v):
            return np.zeros(len(self.expected))
        counts = np.bincount(np.searchsorted(self.edges, v, side="left"), minlength=len(self.expected))
        return counts / len(v)

    def to_dict(self) -> dict[str, Any]:
        return {"edges": [float(x) for x in self.edges], "expected": [float(x) for x in self.expected]}

    @classmethod
    def fit(cls, values: np.ndarray) -> Binning:
        v = np.asarray(values, dtype=np.float64)
        v = v[np.isfinite(v)]
        if not len(v):
            raise DriftError("no finite reference values to bin")
        edges = np.unique(np.quantile(v, QUANTILES))
        b = cls(edges, np.zeros(len(edges) + 1))
        return cls(edges, b.shares(v))


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index between two share vectors over the same bins."""
    e = np.maximum(np.asarray(expected, dtype=np.float64), EPS)
    a = np.maximum(np.asarray(actual, dtype=np.float64), EPS)
    return float(np.sum((a - e) * np.log(a / e)))


@dataclass(frozen=True)
class DriftReference:
    bins: dict[str, Binning]  # every feature name and SCORE
    decision_rates: dict[str, float]
    score_hist: list[float]  # share per SCORE_HIST_EDGES bin, for the report's plot
    windows: int
    model_version: str | None = None

    @property
    def features(self) -> list[str]:
        return [n for n in self.bins if n != SCORE]

    def psi_of(self, name: str, values: np.ndarray) -> float:
        b = self.bins[name]
        return psi(b.expected, b.shares(values))

    def psi_table(self, features: np.ndarray, scores: np.ndarray) -> dict[str, float]:
        """PSI per feature (columns in FEATURE_NAMES order) and for the score, from live windows."""
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != len(self.features):
            raise DriftError(f"live features must be [n, {len(self.features)}], got {list(x.shape)}")
        out = {name: self.psi_of(name, x[:, j]) for j, name in enumerate(self.features)}
        out[SCORE] = self.psi_of(SCORE, scores)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"format": REFERENCE_FORMAT, "windows": self.windows, "model_version": self.model_version,
                "quantiles": list(QUANTILES), "bins": {k: b.to_dict() for k, b in self.bins.items()},
                "decision_rates": self.decision_rates, "score_hist_edges": list(SCORE_HIST_EDGES),
                "score_hist": self.score_hist}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DriftReference:
        if d.get("format") != REFERENCE_FORMAT:
            raise DriftError(f"drift reference format {d.get('format')!r}; expected {REFERENCE_FORMAT!r}")
        bins = {k: Binning(np.asarray(v["edges"], dtype=np.float64), np.asarray(v["expected"], dtype=np.float64))
                for k, v in d["bins"].items()}
        missing = [n for n in FEATURE_NAMES if n not in bins]
        if missing or SCORE not in bins:
            raise DriftError(f"the drift reference lacks {missing[:5] or [SCORE]}: written by another seqguard "
                             "version; re-train")
        ordered = {n: bins[n] for n in FEATURE_NAMES} | {SCORE: bins[SCORE]}
        return cls(ordered, dict(d["decision_rates"]), list(d["score_hist"]), int(d["windows"]),
                   d.get("model_version"))


def build_reference(features: np.ndarray, scores: np.ndarray, decisions: list[str] | np.ndarray,
                    model_version: str | None = None) -> DriftReference:
    x = np.asarray(features, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    if len(x) != len(s) or not len(s):
        raise DriftError(f"reference needs as many scores as windows (got {len(x)} windows, {len(s)} scores)")
    bins = {name: Binning.fit(x[:, j]) for j, name in enumerate(FEATURE_NAMES)}
    bins[SCORE] = Binning.fit(s)
    dec = pd.Series(np.asarray(decisions, dtype=object))
    rates = {d: float((dec == d).mean()) for d in ("allow", "review", "block")}
    hist = np.histogram(np.clip(s, 0, 1), bins=SCORE_HIST_EDGES)[0] / len(s)
    return DriftReference(bins, rates, [float(h) for h in hist], len(s), model_version)


def save_reference(folder: str | Path, features: np.ndarray, scores: np.ndarray, decisions: list[str],
                   seed: int = 0) -> DriftReference:
    """Write the reference (JSON) and a row sample (Parquet, for Evidently) into a checkpoint folder."""
    folder = Path(folder)
    ref = build_reference(features, scores, decisions)
    (folder / DRIFT_REFERENCE_FILE).write_text(json.dumps(ref.to_dict(), indent=1) + "\n")
    rows = reference_frame(features, scores, decisions)
    if len(rows) > SAMPLE_ROWS:
        rows = rows.sample(SAMPLE_ROWS, random_state=seed).sort_index()
    rows.to_parquet(folder / DRIFT_SAMPLE_FILE, index=False)
    return ref


def save_checkpoint_reference(folder: str | Path, scorer: Any, logits: dict[str, np.ndarray] | None,
                              features: np.ndarray, seed: int = 0) -> DriftReference:
    """The training pipeline's one call: score the reference windows with the saved scorer, then save."""
    decisions = scorer.score(logits, features) if len(features) else []
    if not decisions:
        raise DriftError("no validation windows to build the drift reference from")
    return save_reference(folder, features, np.array([d.score for d in decisions]),
                          [d.decision for d in decisions], seed)


def reference_frame(features: np.ndarray, scores: np.ndarray, decisions: list[str] | np.ndarray) -> pd.DataFrame:
    frame = pd.DataFrame(np.asarray(features, dtype=np.float64), columns=list(FEATURE_NAMES))
    frame[SCORE] = np.asarray(scores, dtype=np.float64)
    frame["decision"] = np.asarray(decisions, dtype=object)
    return frame


def load_reference(folder: str | Path) -> DriftReference:
    path = Path(folder) / DRIFT_REFERENCE_FILE
    if not path.is_file():
        raise DriftError(f"{folder} has no {DRIFT_REFERENCE_FILE}: re-train (checkpoints from before the feedback "
                         "loop carry no drift reference) or export again")
    try:
        return DriftReference.from_dict(json.loads(path.read_text()))
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise DriftError(f"{path} is not a valid drift reference: {e}") from None


def load_reference_sample(folder: str | Path) -> pd.DataFrame:
    path = Path(folder) / DRIFT_SAMPLE_FILE
    if not path.is_file():
        raise DriftError(f"{folder} has no {DRIFT_SAMPLE_FILE}: re-train to get a reference sample")
    return pd.read_parquet(path)
