"""The ensemble: a logistic-regression stacker over component scores, the unsupervised score and rule hits.

Two stackers are fitted on the *validation* windows (never on training windows, whose model scores are optimistic,
never on test windows):

- `main` over [each component model's logit margin, the tabular trees' log-odds, the unsupervised score, one 0/1
  input per rule];
- `degraded` over the same minus the component models, used when the model backend is down.

The tabular trees (seqguard.scoring.tabular, optional) are fitted on the training windows' aggregate features and run
inside the scorer, so they need no backend; comparing `main` with `degraded` on test data then says what the sequence
models add on top of the aggregates.

Inputs are standardised with the validation means / scales stored next to the coefficients; the output is the
logistic probability, calibrated on validation traffic (so its base rate is the validation base rate). Thresholds
for `review` and `block` are chosen on *out-of-fold* validation scores (5-fold cross-fitting) for target false-
positive rates (defaults: review at 1 %, block at 0.1 %), so the threshold does not ride on in-sample fit.

With small data the pipeline passes out-of-fold scores of the train + validation windows instead (k-fold by
entity), and the metrics record which (`fitted_on`). Each stacker is then chosen between the full stack and each of
its single model inputs (component margins, the tabular trees, the unsupervised score) by cross-validated PR-AUC on
those same rows, so the served score is not worse than its best input there (`metrics["selection"]` says which won
and by how much).

Without labels a stacker is of kind "percentile": the score is where the unsupervised score falls among the
training windows' scores, and thresholds are 1 - target FPR, i.e. the share of (mostly normal) training traffic each
decision flags. A label-free checkpoint combines the percentiles of every label-free component: the detector, the
isolation forest on the same aggregates (`isolation`, kept with the ensemble; also in the degraded stacker, as it
needs no model backend) and the surprise model `unsupervised_sequence`. The combination ("tail", see
`combine_percentiles`) is the mean of the components' -log tail shares -log(1 - p), scaled to [0, 1]: Fisher's
way of pooling p-values, so one component far out in its tail counts (a plain mean of percentiles lets two ordinary
components pull a window that one finds extreme back into the crowd; on the evaluation suite it lost to the
isolation forest alone). Thresholds are the matching quantiles of the combined score on the training windows.
Each label-free component keeps a quantile grid of its training-window scores (`reference`), so its component score
is a percentile too. Labels of one class only are an error, never a silent fallback to the detector. Everything is
plain JSON: no pickles.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from seqguard.scoring.entity import ENTITY_AGGREGATION_KEY
from seqguard.scoring.tabular import TreeModel

FORMAT = "seqguard-ensemble-v1"
UNSUPERVISED = "unsupervised"
SURPRISE = "unsupervised_sequence"  # the label-free sequence model (seqguard.train.surprise)
ISOLATION = "isolation_forest"  # the label-free isolation forest on the aggregates (seqguard.train.isolation)
TAIL_FLOOR = 1e-3  # the smallest tail share a percentile counts with: the reference grids resolve 1 / 1000
TABULAR = "tabular"
REFERENCE_LEVELS = np.linspace(0.0, 1.0, 1001)
StackerKind = Literal["logistic", "percentile"]


def margin_input(name: str) -> str:
    return f"margin:{name}"


def rule_input(rule_id: str) -> str:
    return f"rule:{rule_id}"


def logit_margin(logits: np.ndarray) -> np.ndarray:
    """[B, 2] logits to the log-odds of the anomaly class, float64."""
    x = np.asarray(logits, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(f"logits must be [batch, 2], got {list(x.shape)}")
    return x[:, 1] - x[:, 0]


def sigmoid(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    # exp(-|z|) is exp(-z) where z >= 0 and exp(z) elsewhere: the same two stable forms, without boolean indexing.
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def unsupervised_input(score: np.ndarray) -> np.ndarray:
    # ECOD sums -log tail probabilities: heavy right tail, so the stacker sees log1p of it.
    return np.log1p(np.maximum(np.asarray(score, dtype=np.float64), 0.0))


def threshold_for_fpr(negative_scores: np.ndarray, fpr: float) -> float:
    """The lowest threshold t with share(negatives >= t) <= fpr (decisions flag score >= t)."""
    neg = np.sort(np.asarray(negative_scores, dtype=np.float64))[::-1]
    if not len(neg):
        return 1.0
    k = int(np.floor(fpr * len(neg) + 1e-9))  # negatives allowed above the threshold
    if k >= len(neg):
        return float(neg[-1])
    return float(np.nextafter(neg[k], np.inf))


@dataclass
class Stacker:
    kind: StackerKind
    inputs: list[str]
    thresholds: dict[str, float]
    mean: np.ndarray = field(default_factory=lambda: np.zeros(0))
    scale: np.ndarray = field(default_factory=lambda: np.zeros(0))
    coef: np.ndarray = field(default_factory=lambda: np.zeros(0))
    intercept: float = 0.0
    metrics: dict[str, Any] = field(default_factory=dict)  # how it was fitted: counts, out-of-fold FPR/recall

    def linear(self, x: np.ndarray) -> np.ndarray:
        # A row-wise sum, not `@`: BLAS may accumulate a lone row and a row of a batch in different orders, and a
        # window's score must not depend on what shares its request (tests/test_service.py, the large-body lane).
        return self.contributions(x).sum(axis=-1) + self.intercept

    def contributions(self, x: np.ndarray) -> np.ndarray:
        """Per input, its term in the log-odds [B, n_inputs] (what a reason can cite)."""
        return (x - self.mean) / self.scale * self.coef

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "inputs": self.inputs,
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "coef": self.coef.tolist(),
            "intercept": self.intercept,
            "thresholds": self.thresholds,
            "metrics": self.metrics,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Stacker:
        return cls(
            kind=d["kind"],
            inputs=list(d["inputs"]),
            thresholds={k: float(v) for k, v in d["thresholds"].items()},
            mean=np.asarray(d["mean"], dtype=np.float64),
            scale=np.asarray(d["scale"], dtype=np.float64),
            coef=np.asarray(d["coef"], dtype=np.float64),
            intercept=float(d["intercept"]),
            metrics=dict(d.get("metrics", {})),
        )


def _fit_logistic(
    x: np.ndarray, y: np.ndarray, c: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    from sklearn.linear_model import LogisticRegression

    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale = np.where(scale > 1e-12, scale, 1.0)
    lr = LogisticRegression(C=c, max_iter=2000, random_state=seed)
    lr.fit((x - mean) / scale, y)
    return mean, scale, lr.coef_[0].astype(np.float64), float(lr.intercept_[0])


def fit_stacker(
    x: np.ndarray, y: np.ndarray, inputs: list[str], review_fpr: float, block_fpr: float, c: float = 1.0,
    seed: int = 0, folds: int = 5,
) -> Stacker:
    """A logistic stacker on validation inputs x [B, n_inputs] and labels y, with out-of-fold thresholds."""
    from sklearn.model_selection import StratifiedKFold

    y = np.asarray(y, dtype=np.int64)
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == len(y):
        raise ValueError("the stacker needs both normal and anomalous validation windows")
    mean, scale, coef, intercept = _fit_logistic(x, y, c, seed)
    st = Stacker("logistic", inputs, {}, mean, scale, coef, intercept)
    k = min(folds, n_pos, len(y) - n_pos)
    if k >= 2:
        oof = np.empty(len(y))
        for tr, te in StratifiedKFold(k, shuffle=True, random_state=seed).split(x, y):
            m, s, cf, b = _fit_logistic(x[tr], y[tr], c, seed)
            oof[te] = sigmoid(((x[te] - m) / s) @ cf + b)
        how = f"{k}-fold out-of-fold"
    else:  # too few positives to cross-fit: in-sample, and the metrics say so
        oof = sigmoid(st.linear(x))
        how = "in-sample (too few positives to cross-fit)"
    neg = oof[y == 0]
    st.thresholds = {"review": threshold_for_fpr(neg, review_fpr), "block": threshold_for_fpr(neg, block_fpr)}
    st.metrics = {
        "fitted_on": "validation",
        "n": len(y),
        "n_positive": n_pos,
        "thresholds_from": how,
        "target_fpr": {"review": review_fpr, "block": block_fpr},
        "oof_fpr": {d: float((neg >= t).mean()) for d, t in st.thresholds.items()},
        "oof_recall": {d: float((oof[y == 1] >= t).mean()) for d, t in st.thresholds.items()},
    }
    return st


def _cv_pr_auc(x: np.ndarray, y: np.ndarray, c: float, seed: int, folds: int) -> float:
    """PR-AUC (average precision) of out-of-fold logistic scores: what a candidate would do on unseen rows."""
    from sklearn.metrics import average_precision_score
    from sklearn.model_selection import StratifiedKFold

    k = min(folds, int(y.sum()), int(len(y) - y.sum()))
    if k < 2:
        return float("nan")
    oof = np.empty(len(y))
    for tr, te in StratifiedKFold(k, shuffle=True, random_state=seed).split(x, y):
        m, s, cf, b = _fit_logistic(x[tr], y[tr], c, seed)
        oof[te] = ((x[te] - m) / s) @ cf + b
    return float(average_precision_score(y, oof))


def select_stacker(
    x: np.ndarray, y: np.ndarray, inputs: list[str], review_fpr: float, block_fpr: float, c: float = 1.0,
    seed: int = 0, folds: int = 5, select_best: bool = True,
) -> Stacker:
    """The full stack, or its single best model input when that has the higher cross-validated PR-AUC (ties keep
    the stack). Rule inputs are not candidates on their own: they fire on few windows and say little alone."""
    y = np.asarray(y, dtype=np.int64)
    singles = [n for n in inputs if n.startswith("margin:") or n in (TABULAR, UNSUPERVISED)]
    cv = {"stack": _cv_pr_auc(x, y, c, seed, folds)}
    if select_best and len(inputs) > 1:
        for n in singles:
            cv[n] = _cv_pr_auc(x[:, [inputs.index(n)]], y, c, seed, folds)
    finite = {k: v for k, v in cv.items() if np.isfinite(v)}
    chosen = "stack"
    if finite and "stack" in finite:
        best = max(finite, key=lambda k: (finite[k], k == "stack"))
        if finite[best] > finite["stack"]:
            chosen = best
    if chosen == "stack":
        st = fit_stacker(x, y, inputs, review_fpr, block_fpr, c, seed, folds)
        why = ("the stack has the highest cross-validated PR-AUC" if len(finite) > 1 else
               "no selection (one input, selection off, or too few positives to cross-validate)")
    else:
        st = fit_stacker(x[:, [inputs.index(chosen)]], y, [chosen], review_fpr, block_fpr, c, seed, folds)
        why = (f"{chosen} alone has a higher cross-validated PR-AUC ({finite[chosen]:.4f}) than the stack "
               f"({finite['stack']:.4f})")
    st.metrics["selection"] = {"chosen": chosen, "why": why, "cv_pr_auc": cv}
    return st


def combine_percentiles(parts: list[np.ndarray], how: str = "mean") -> np.ndarray:
    """The label-free score from component percentiles [B] each, in [0, 1].

    "tail": the mean of -log max(1 - p, floor) over the components (Fisher-style pooling of tail shares), divided by
    -log(floor): 0 when every component puts the window below all training windows, 1 when every one puts it beyond
    them all. Linear in the log tail shares on purpose: an entity's score is the mean of its windows', and a squashing
    transform (1 - the geometric mean, say) would flatten the far tail back into the crowd before that mean (on the
    evaluation suite it cost a third of the entity PR-AUC). "mean": the plain mean (checkpoints written before
    "tail" existed)."""
    p = np.asarray(parts, dtype=np.float64)
    if how == "mean":
        return p.mean(axis=0)
    if how != "tail":
        raise ValueError(f"unknown label-free combination {how!r}")
    return -np.log(np.maximum(1.0 - p, TAIL_FLOOR)).mean(axis=0) / -np.log(TAIL_FLOOR)


def percentile_stacker(inputs: list[str], review_fpr: float, block_fpr: float, reason: str) -> Stacker:
    return Stacker("percentile", inputs, {"review": 1.0 - review_fpr, "block": 1.0 - block_fpr},
                   metrics={"fitted_on": "unlabeled training traffic", "why": reason,
                            "target_fpr": {"review": review_fpr, "block": block_fpr}})


def reference_grid(margins: np.ndarray) -> np.ndarray:
    """Quantiles of training-window margins at REFERENCE_LEVELS: enough to turn a margin into a percentile."""
    return np.quantile(np.asarray(margins, dtype=np.float64), REFERENCE_LEVELS)


def grid_percentile(grid: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Where `values` fall among the training windows (0..1), by interpolation in the quantile grid."""
    grid = np.maximum.accumulate(np.asarray(grid, dtype=np.float64))
    return np.interp(np.asarray(values, dtype=np.float64), grid, REFERENCE_LEVELS)


def signals(margins: dict[str, np.ndarray] | None, tabular: np.ndarray | None, unsupervised: np.ndarray,
            rule_hits: np.ndarray, rule_ids: list[str]) -> dict[str, np.ndarray]:
    """Every stacker input by name, float64 [B]; a stacker takes the columns it was fitted on."""
    out: dict[str, np.ndarray] = {}
    for name, m in (margins or {}).items():
        out[margin_input(name)] = np.asarray(m, dtype=np.float64)
    if tabular is not None:
        out[TABULAR] = np.asarray(tabular, dtype=np.float64)
    out[UNSUPERVISED] = unsupervised_input(unsupervised)
    hits = np.asarray(rule_hits, dtype=np.float64).reshape(len(unsupervised), -1)
    for j, rid in enumerate(rule_ids):
        out[rule_input(rid)] = hits[:, j]
    return out


def matrix(sig: dict[str, np.ndarray], inputs: list[str]) -> np.ndarray:
    missing = [n for n in inputs if n not in sig]
    if missing:
        raise ValueError(f"stacker inputs {missing} are not available")
    return np.column_stack([sig[n] for n in inputs])


@dataclass
class Ensemble:
    components: list[str]  # model names whose logits `main` needs, in input order
    rule_ids: list[str]
    main: Stacker
    degraded: Stacker
    review_fpr: float = 0.01
    block_fpr: float = 0.001
    tabular: TreeModel | None = None  # boosted trees on the aggregate features (no backend needed)
    entity_aggregation: str | None = None  # window scores -> entity score (seqguard.scoring.entity), chosen in training
    entity_aggregation_metrics: dict[str, Any] = field(default_factory=dict)  # how it was chosen
    reference: dict[str, np.ndarray] = field(default_factory=dict)  # label-free component -> quantile grid
    isolation: TreeModel | None = None  # the label-free isolation forest (decision_function = log2 anomaly score)

    def percentile(self, name: str, margins: np.ndarray) -> np.ndarray:
        return grid_percentile(self.reference[name], margins)

    @staticmethod
    def input_names(components: list[str], rule_ids: list[str], tabular: bool = False,
                    isolation: bool = False) -> list[str]:
        return ([margin_input(c) for c in components] + ([TABULAR] if tabular else []) + [UNSUPERVISED]
                + ([ISOLATION] if isolation else []) + [rule_input(r) for r in rule_ids])

    @classmethod
    def label_free(cls, components: list[str], rule_ids: list[str], grids: dict[str, np.ndarray],
                   review_fpr: float, block_fpr: float, isolation: TreeModel | None = None,
                   train_percentiles: dict[str, np.ndarray] | None = None) -> Ensemble:
        """The label-free ensemble over `components` (those with a reference grid), the detector and the isolation
        forest. `train_percentiles`: each part's percentiles on the same training windows (UNSUPERVISED, ISOLATION,
        each component), for thresholds at the combined score's own quantiles; without them, 1 - target FPR."""
        iso = isolation is not None and ISOLATION in grids
        free = [n for n in components if n in grids]

        def stacker(comps: list[str]) -> Stacker:
            st = percentile_stacker(cls.input_names(comps, rule_ids, isolation=iso), review_fpr, block_fpr,
                                    "no labels")
            parts = [UNSUPERVISED] + ([ISOLATION] if iso else []) + comps
            if len(parts) > 1:
                st.metrics["averaged"], st.metrics["combine"] = parts, "tail"
                if train_percentiles is not None:
                    score = combine_percentiles([train_percentiles[n] for n in parts], "tail")
                    st.thresholds = {"review": threshold_for_fpr(score, review_fpr),
                                     "block": threshold_for_fpr(score, block_fpr)}
            return st

        return cls(free, list(rule_ids), stacker(free), stacker([]), review_fpr, block_fpr, reference=grids,
                   isolation=isolation if iso else None)

    @classmethod
    def fit(
        cls, components: list[str], rule_ids: list[str], margins: dict[str, np.ndarray] | None,
        unsupervised: np.ndarray, rule_hits: np.ndarray, y: np.ndarray | None, review_fpr: float = 0.01,
        block_fpr: float = 0.001, c: float = 1.0, seed: int = 0, tabular: TreeModel | None = None,
        features: np.ndarray | None = None, select_best: bool = False, fitted_on: str = "validation",
        folds: int = 5, tabular_scores: np.ndarray | None = None, reference: dict[str, np.ndarray] | None = None,
        unsupervised_reference: np.ndarray | None = None, isolation: TreeModel | None = None,
        isolation_reference: np.ndarray | None = None,
    ) -> Ensemble:
        """Fit on validation windows (or out-of-fold rows): component margins, unsupervised scores, rule hits,
        labels (and, with a tree model, the windows' features to score it on). `components` may shrink to the
        models the chosen stacker uses. `reference`: label-free components' margins on training windows;
        `unsupervised_reference`: the detector's percentiles on the same windows (for label-free thresholds);
        `isolation` / `isolation_reference`: the label-free isolation forest and its scores on those windows (kept
        with labels too: the suite derives the label-free score from a labelled checkpoint)."""
        grids = {n: reference_grid(m) for n, m in (reference or {}).items() if len(m)}
        if isolation is not None and isolation_reference is not None and len(isolation_reference):
            grids[ISOLATION] = reference_grid(isolation_reference)
        else:
            isolation = None
        if y is None:
            train_pct = None
            if unsupervised_reference is not None:  # every reference holds the same training windows, in order
                train_pct = {UNSUPERVISED: np.asarray(unsupervised_reference, dtype=np.float64)}
                train_pct.update({n: grid_percentile(grids[n], m) for n, m in (reference or {}).items() if n in grids})
                if isolation is not None:
                    train_pct[ISOLATION] = grid_percentile(grids[ISOLATION], isolation_reference)
            return cls.label_free(components, rule_ids, grids, review_fpr, block_fpr, isolation, train_pct)
        n_pos = int(np.sum(y))
        if not 0 < n_pos < len(y):
            # Never a silent fallback to the detector: the caller must fix the split (dataset.check_split).
            raise ValueError(f"the ensemble needs both classes in {fitted_on}: {n_pos} anomalous of {len(y)} "
                             "windows")
        if tabular is not None and features is None and tabular_scores is None:
            raise ValueError("a tree model needs the validation features")
        if tabular_scores is not None:  # out-of-fold tree scores (small data): not the final trees' in-sample ones
            tab = np.asarray(tabular_scores, dtype=np.float64)
        else:
            tab = tabular.decision_function(features) if tabular is not None else None
        sig = signals(margins, tab, unsupervised, rule_hits, rule_ids)
        deg_names = cls.input_names([], rule_ids, tabular is not None)
        deg = select_stacker(matrix(sig, deg_names), y, deg_names, review_fpr, block_fpr, c, seed, folds,
                             select_best)
        if components:
            names = cls.input_names(components, rule_ids, tabular is not None)
            main = select_stacker(matrix(sig, names), y, names, review_fpr, block_fpr, c, seed, folds, select_best)
        else:  # labels but no sequence models: the degraded stacker is the ensemble
            main = deg
        for st in (main, deg):
            st.metrics["fitted_on"] = fitted_on
        used = [cname for cname in components if margin_input(cname) in main.inputs]
        # The trees stay even when no stacker uses them: cheap, and every component keeps being reported.
        return cls(used, list(rule_ids), main, deg, review_fpr, block_fpr, tabular, reference=grids,
                   isolation=isolation)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "components": self.components,
            "rule_ids": self.rule_ids,
            "review_fpr": self.review_fpr,
            "block_fpr": self.block_fpr,
            "main": self.main.to_dict(),
            "degraded": self.degraded.to_dict(),
            "tabular": self.tabular.to_dict() if self.tabular is not None else None,
            ENTITY_AGGREGATION_KEY: self.entity_aggregation,
            "entity_aggregation_metrics": self.entity_aggregation_metrics,
            "reference": {n: g.tolist() for n, g in self.reference.items()},
            ISOLATION: self.isolation.to_dict() if self.isolation is not None else None,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Ensemble:
        if d.get("format") != FORMAT:
            raise ValueError(f"not a seqguard ensemble (format {d.get('format')!r}, expected {FORMAT!r})")
        tab = TreeModel.from_dict(d["tabular"]) if d.get("tabular") else None
        ref = {n: np.asarray(g, dtype=np.float64) for n, g in (d.get("reference") or {}).items()}
        iso = TreeModel.from_dict(d[ISOLATION]) if d.get(ISOLATION) else None
        return cls(list(d["components"]), list(d["rule_ids"]), Stacker.from_dict(d["main"]),
                   Stacker.from_dict(d["degraded"]), float(d["review_fpr"]), float(d["block_fpr"]), tab,
                   d.get(ENTITY_AGGREGATION_KEY), dict(d.get("entity_aggregation_metrics") or {}), ref, iso)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> Ensemble:
        return cls.from_dict(json.loads(Path(path).read_text()))
