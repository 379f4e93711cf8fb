"""THE scoring function: component logits + aggregate features -> score, decision, reasons.

`seqguard evaluate`, the training pipeline (for the scores it saves) and the service all call `Scorer.score`, so the
same window gets the same answer offline and online. It needs no torch: model logits come from whichever backend
ran the models (torch, ONNX Runtime, Triton), or are None when that backend is down.

Decision logic, in order:
1. score = the `main` stacker's probability (or the `degraded` stacker's when logits is None);
2. decision = block if score >= block threshold, review if >= review threshold, else allow;
3. a fired rule can raise it (allow -> review -> block), never lower it;
4. reasons = the fired rules' reasons, then the detector's deepest feature tails ("max_failed_payments_10m=8
   (p>99.9%)"), then the model (sequence model or aggregate-feature trees) that pushed the score up most, then,
   when the label-free sequence model finds the window more surprising than 99 % of training windows, its most
   surprising step ("unusual step: view→purchase within 2s"), and when a label-free stacker's isolation forest
   isolates it faster than 99 % of training windows, that.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from seqguard.config import SequenceConfig
from seqguard.contracts import DETECTOR_FILE, ENSEMBLE_FILE, RULES_FILE
from seqguard.features import FEATURE_NAMES, describe_step
from seqguard.scoring.detector import ECODDetector
from seqguard.scoring.ensemble import (
    ISOLATION,
    SURPRISE,
    TABULAR,
    UNSUPERVISED,
    Ensemble,
    Stacker,
    combine_percentiles,
    logit_margin,
    margin_input,
    matrix,
    sigmoid,
    signals,
)
from seqguard.scoring.rules import RuleSet, load_rules

DECISIONS = ("allow", "review", "block")  # index = rank, as rules.OUTCOME_RANK
SURPRISE_REASON_PERCENTILE = 0.99  # also the isolation forest's


class ScorerError(ValueError):
    """A checkpoint folder the scorer cannot load, or inputs it cannot score; the message says which."""


@dataclass
class Decision:
    score: float
    decision: str
    component_scores: dict[str, float]
    rules_fired: list[dict[str, str]] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    degraded: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class BatchScores:
    """The vectorised part of scoring (what metrics need), before per-window reasons are written."""

    score: np.ndarray  # float64 [B] in [0, 1]
    rank: np.ndarray  # int64 [B]: 0 allow, 1 review, 2 block (rules included)
    component_scores: dict[str, np.ndarray]  # name -> float64 [B] in [0, 1]
    rule_hits: np.ndarray  # bool [B, n_rules]
    contributions: np.ndarray  # float64 [B, n_inputs] of the stacker used
    stacker: Stacker
    degraded: bool
    tails: tuple[np.ndarray, np.ndarray]  # the detector's (P(X <= x), P(X >= x)) per window and feature
    surprise_step: np.ndarray | None = None  # int64 [B]: the label-free sequence model's most surprising event


class Scorer:
    def __init__(self, ensemble: Ensemble, rules: RuleSet, detector: ECODDetector, reason_k: int = 3) -> None:
        if ensemble.rule_ids != rules.ids:
            raise ScorerError(f"the ensemble was fitted on rules {ensemble.rule_ids}, but the rules file has "
                              f"{rules.ids}; re-train (or restore the rules file the ensemble was fitted with)")
        if tuple(detector.feature_names) != FEATURE_NAMES:
            raise ScorerError("the unsupervised detector was fitted on different features than this seqguard "
                              "computes; re-train it")
        self.ensemble = ensemble
        self.rules = rules
        self.detector = detector
        self.reason_k = reason_k

    @classmethod
    def load(cls, folder: str | Path) -> Scorer:
        folder = Path(folder)
        files = {name: folder / name for name in (ENSEMBLE_FILE, RULES_FILE, DETECTOR_FILE)}
        missing = [n for n, p in files.items() if not p.is_file()]
        if missing:
            raise ScorerError(f"{folder}: missing {', '.join(missing)} (not a seqguard checkpoint folder?)")
        loaded: dict[str, Any] = {}
        for name, loader in ((ENSEMBLE_FILE, Ensemble.load), (DETECTOR_FILE, ECODDetector.load)):
            try:
                loaded[name] = loader(files[name])
            except KeyError as e:
                raise ScorerError(f"{files[name]} lacks the field {e}: written by a different seqguard version? "
                                  "Re-train the checkpoint") from None
            except ValueError as e:  # JSON errors and format mismatches
                raise ScorerError(f"{files[name]}: {e}") from None
        ensemble, detector = loaded[ENSEMBLE_FILE], loaded[DETECTOR_FILE]
        return cls(ensemble, load_rules(files[RULES_FILE]), detector)

    @property
    def components(self) -> list[str]:
        return list(self.ensemble.components)

    @property
    def thresholds(self) -> dict[str, float]:
        return dict(self.ensemble.main.thresholds)

    # -- vectorised -----------------------------------------------------------------------------------------------

    def score_batch(self, logits: dict[str, np.ndarray] | None, features: np.ndarray) -> BatchScores:
        x = np.asarray(features, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != len(FEATURE_NAMES):
            raise ScorerError(f"features must be [batch, {len(FEATURE_NAMES)}], got {list(x.shape)}")
        b = x.shape[0]
        degraded = logits is None and bool(self.components)
        margins: dict[str, np.ndarray] = {}
        if logits is not None:
            missing = [c for c in self.components if c not in logits]
            if missing:
                raise ScorerError(f"logits for {missing} are missing (got {sorted(logits)})")
            for c in self.components:
                m = logit_margin(logits[c])
                if len(m) != b:
                    raise ScorerError(f"logits[{c!r}] has {len(m)} rows, features have {b}")
                margins[c] = m
        tails = self.detector.tail_probs(x)  # once: the score and the reasons both read them
        unsup = self.detector.score_samples(x, tails)
        hits = self.rules.hits(x)
        tab = self.ensemble.tabular.decision_function(x) if self.ensemble.tabular is not None else None
        stacker = self.ensemble.degraded if logits is None else self.ensemble.main
        # A label-free component's score is its percentile among training windows (its margin is no log-odds).
        comps = {c: self.ensemble.percentile(c, margins[c]) if c in self.ensemble.reference else sigmoid(margins[c])
                 for c in self.components if c in margins}
        if tab is not None:
            comps[TABULAR] = sigmoid(tab)
        comps[UNSUPERVISED] = self.detector.percentile(unsup)
        step = None
        if logits is not None and SURPRISE in margins:
            step = np.rint(-np.asarray(logits[SURPRISE], dtype=np.float64)[:, 0]).astype(np.int64)
        if stacker.kind == "percentile":
            if ISOLATION in stacker.inputs and self.ensemble.isolation is not None:  # label-free checkpoints only
                comps[ISOLATION] = self.ensemble.percentile(ISOLATION, self.ensemble.isolation.decision_function(x))
            averaged = [comps[UNSUPERVISED]] + [comps[n] for n in (ISOLATION, *self.components)
                                                if n in comps and (n == ISOLATION or margin_input(n) in stacker.inputs)]
            score = combine_percentiles(averaged, stacker.metrics.get("combine", "mean"))
            contrib = np.zeros((b, len(stacker.inputs)))
        else:
            inp = matrix(signals(margins, tab, unsup, hits, self.rules.ids), stacker.inputs)
            score = sigmoid(stacker.linear(inp))
            contrib = stacker.contributions(inp)
        t = stacker.thresholds
        rank = np.where(score >= t["block"], 2, np.where(score >= t["review"], 1, 0))
        rank = np.maximum(rank, self.rules.outcome_rank(hits))
        return BatchScores(score, rank.astype(np.int64), comps, hits, contrib, stacker, degraded, tails, step)

    # -- per window -----------------------------------------------------------------------------------------------

    def score(self, logits: dict[str, np.ndarray] | None, features: np.ndarray,
              input_ids: list[np.ndarray] | None = None, seq_cfg: SequenceConfig | None = None) -> list[Decision]:
        """One Decision per window. `logits`: component name -> [B, 2] float32, or None when the backend is down.
        `input_ids` (each window's tokens) and `seq_cfg` let the surprise reason name the step's events."""
        bs = self.score_batch(logits, features)
        feats = np.asarray(features, dtype=np.float32)
        detector_reasons = self.detector.reasons(feats, self.reason_k, tails=bs.tails)
        model_inputs = [(i, name.removeprefix("margin:")) for i, name in enumerate(bs.stacker.inputs)
                        if (name.startswith("margin:") and name != margin_input(SURPRISE)) or name == TABULAR]
        out = []
        for i in range(len(bs.score)):
            fired = self.rules.fired(bs.rule_hits[i])
            reasons = [f"rule {r['id']}: {r['reason']}" for r in fired]
            reasons += [fr.text() for fr in detector_reasons[i]]
            if model_inputs:
                j, name = max(model_inputs, key=lambda jn: bs.contributions[i, jn[0]])
                if bs.contributions[i, j] > 0:
                    reasons.append(f"model {name}: anomaly probability {bs.component_scores[name][i]:.3f}")
            if bs.surprise_step is not None and bs.component_scores[SURPRISE][i] >= SURPRISE_REASON_PERCENTILE:
                p = int(bs.surprise_step[i])
                step = (describe_step(input_ids[i], p, seq_cfg) if input_ids is not None and seq_cfg is not None
                        else f"event {p + 1} of the window")
                reasons.append(f"unusual step: {step} (surprise above {100 * bs.component_scores[SURPRISE][i]:.1f} "
                               "% of training windows)")
            if ISOLATION in bs.component_scores and bs.component_scores[ISOLATION][i] >= SURPRISE_REASON_PERCENTILE:
                reasons.append(f"isolation forest: isolated faster than {100 * bs.component_scores[ISOLATION][i]:.1f} "
                               "% of training windows")
            out.append(Decision(
                score=float(bs.score[i]),
                decision=DECISIONS[int(bs.rank[i])],
                component_scores={k: float(v[i]) for k, v in bs.component_scores.items()},
                rules_fired=fired,
                reasons=reasons,
                degraded=bs.degraded,
            ))
        return out
