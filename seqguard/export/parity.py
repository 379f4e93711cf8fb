"""Parity gates, run on every export; a failed gate stops the export and names model, metric, value, threshold.

- fp32: ONNX Runtime logits vs the PyTorch model's, max |diff| <= 1e-4 on the calibration windows (and the reloaded
  PyTorch model vs the logits training saved with them, so a checkpoint that no longer reproduces itself is caught).
- int8 / fp16 vs fp32 ONNX: ROC-AUC of the anomaly margin may drop by at most 0.005, and at least 99 % of windows
  must get the same decision. Decisions are the checkpoint's ensemble decisions (allow / review / block, rules
  included), with only this model's logits swapped, where the ensemble uses the model; otherwise argmax.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

FP32_MAX_ABS = 1e-4
AUC_MAX_DROP = 0.005
MIN_AGREEMENT = 0.99


class ParityError(RuntimeError):
    """A gate that failed: which model, which metric, the measured value and the threshold."""

    def __init__(self, model: str, metric: str, value: float, threshold: float, relation: str) -> None:
        self.model, self.metric, self.value, self.threshold = model, metric, value, threshold
        super().__init__(f"parity gate failed for {model}: {metric} = {value:.6g} (must be {relation} {threshold:g})")


@dataclass
class GateReport:
    """Measured figures for one model, JSON-ready for the manifest."""

    figures: dict[str, Any] = field(default_factory=dict)

    def require_at_most(self, model: str, metric: str, value: float, threshold: float) -> None:
        self.figures[metric] = value
        if not value <= threshold:  # NaN fails too
            raise ParityError(model, metric, value, threshold, "<=")

    def require_at_least(self, model: str, metric: str, value: float, threshold: float) -> None:
        self.figures[metric] = value
        if not value >= threshold:
            raise ParityError(model, metric, value, threshold, ">=")


def ort_session(path: Path, threads: int | None = None):  # -> onnxruntime.InferenceSession
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def ort_logits(session: Any, batches: list[dict[str, np.ndarray]]) -> np.ndarray:
    names = [i.name for i in session.get_inputs()]
    return np.concatenate([session.run(["logits"], {n: b[n] for n in names})[0] for b in batches]).astype(np.float32)


def max_abs(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        return float("inf")
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))) if a.size else 0.0


def margin(logits: np.ndarray) -> np.ndarray:
    return logits[:, 1].astype(np.float64) - logits[:, 0].astype(np.float64)


def fp32_gate(name: str, onnx_logits: np.ndarray, torch_logits: np.ndarray, saved_logits: np.ndarray | None,
              tol: float = FP32_MAX_ABS) -> GateReport:
    report = GateReport()
    if saved_logits is not None:
        report.require_at_most(name, "torch_vs_saved_max_abs", max_abs(torch_logits, saved_logits), tol)
    report.require_at_most(name, "onnx_vs_torch_max_abs", max_abs(onnx_logits, torch_logits), tol)
    return report


Decide = Callable[[np.ndarray], np.ndarray]  # this model's logits [N, 2] -> decision per window [N]


def reduced_gate(name: str, precision: str, low: np.ndarray, fp32: np.ndarray, labels: np.ndarray, decide: Decide,
                 basis: str, max_drop: float = AUC_MAX_DROP, min_agreement: float = MIN_AGREEMENT) -> GateReport:
    from seqguard.train.metrics import roc_auc

    report = GateReport({"decision_basis": basis, "windows": len(labels)})
    report.figures[f"{precision}_vs_fp32_max_abs"] = max_abs(low, fp32)
    known = labels >= 0
    auc32 = roc_auc(labels[known], margin(fp32)[known]) if known.any() else float("nan")
    auc_low = roc_auc(labels[known], margin(low)[known]) if known.any() else float("nan")
    report.figures["roc_auc_fp32"] = auc32
    report.figures[f"roc_auc_{precision}"] = auc_low
    if np.isnan(auc32):
        report.figures["roc_auc_drop"] = None  # one class (or no labels): nothing to rank; decisions still gate
    else:
        report.require_at_most(name, "roc_auc_drop", auc32 - auc_low, max_drop)
    agreement = float(np.mean(decide(low) == decide(fp32))) if len(labels) else 1.0
    report.require_at_least(name, "decision_agreement", agreement, min_agreement)
    return report


def decider(name: str, scorer: Any | None, others: dict[str, np.ndarray], features: np.ndarray) -> tuple[Decide, str]:
    """Ensemble decisions with `name`'s logits varied and every other component at its fp32 logits; argmax when the
    ensemble does not use this model (or cannot be loaded)."""
    if scorer is not None and name in scorer.components and features.shape[1] > 0 and \
            all(c in others or c == name for c in scorer.components):
        def ensemble(logits: np.ndarray) -> np.ndarray:
            return scorer.score_batch({**others, name: logits}, features).rank

        return ensemble, "ensemble"
    return (lambda logits: np.argmax(logits, axis=1)), "argmax"


def latency_ms(session: Any, feed: dict[str, np.ndarray], budget_s: float = 2.0, max_runs: int = 50) -> float:
    """Median wall time of session.run on `feed` after a warm-up run, within a time budget."""
    names = [i.name for i in session.get_inputs()]
    feed = {n: feed[n] for n in names}
    session.run(["logits"], feed)
    times: list[float] = []
    deadline = time.perf_counter() + budget_s
    while len(times) < max_runs and (len(times) < 3 or time.perf_counter() < deadline):
        t0 = time.perf_counter()
        session.run(["logits"], feed)
        times.append((time.perf_counter() - t0) * 1000.0)
    return float(np.median(times))
