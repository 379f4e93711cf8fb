"""Accuracy beside speed: each precision's ROC-AUC on the checkpoint's calibration (validation) windows.

The windows, labels and the PyTorch reference come through seqguard.export.checkpoint / seqguard.export.parity, the
same readers the export's parity gates use. Only a trained model has a ROC-AUC worth reading; for a randomly
initialised one the section says so instead of printing numbers that would look like a finding.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.common import ort_session
from bench.sources import ModelSource
from bench.variants import ORDER, Variant


def run(source: ModelSource, variants: dict[str, Variant]) -> dict[str, Any]:
    if not source.trained or source.checkpoint is None:
        return {"model": source.name, "meaningful": False,
                "reason": "the model is not trained (random weights or a fresh head): ROC-AUC would be noise; "
                          "run `make model` first for a trained checkpoint"}
    from seqguard.export.onnx_export import load_torch_model, torch_logits
    from seqguard.export.parity import margin, max_abs, ort_logits
    from seqguard.train.metrics import roc_auc

    calib = source.checkpoint.calibration()
    batches = calib.chunks(64)
    known = calib.labels >= 0
    ref = torch_logits(load_torch_model(source.path), batches)
    rows: dict[str, Any] = {}
    for name in ORDER:
        v = variants.get(name)
        if v is None or (name != "torch_fp32" and (v.path is None or v.error)):
            continue
        logits = ref if name == "torch_fp32" else ort_logits(ort_session(v.path), batches)  # type: ignore[arg-type]
        auc = roc_auc(calib.labels[known], margin(logits)[known]) if known.any() else float("nan")
        rows[name] = {
            "roc_auc": None if np.isnan(auc) else float(auc),
            "max_abs_logit_diff_vs_torch": max_abs(logits, ref),
            "same_argmax_as_torch": float(np.mean(np.argmax(logits, 1) == np.argmax(ref, 1))),
        }
    base = rows["torch_fp32"]["roc_auc"]
    for row in rows.values():
        row["roc_auc_drop_vs_torch"] = None if base is None or row["roc_auc"] is None else base - row["roc_auc"]
    return {"model": source.name, "meaningful": True, "windows": len(calib),
            "anomalous": int((calib.labels == 1).sum()), "checkpoint": source.checkpoint.version, "variants": rows}
