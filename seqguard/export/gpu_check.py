"""Check the GPU precision path of a checkpoint's behaviour BERT on a machine with a CUDA GPU.

    python seqguard/export/gpu_check.py --models models --out gpu_check.json

Standalone on purpose (numpy, torch, transformers, scikit-learn only): GPU hosts rarely carry seqguard's pinned
environment. It runs the saved BertForSequenceClassification in fp32 and fp16 on the GPU over the checkpoint's
calibration windows (validation data, never test) and reports what the fp16 export's parity gate asks for — logit
difference, ROC-AUC drop, decision agreement — plus GPU latency per batch size. It also says which of the deployed
GPU runtimes (onnxruntime-gpu's CUDA / TensorRT providers, the `tensorrt` package) the host has, because the
Triton `--target gpu` repository runs on those, not on PyTorch.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np


def _runtimes() -> dict[str, Any]:
    found: dict[str, Any] = {}
    try:
        import onnxruntime as ort

        found["onnxruntime"] = {"version": ort.__version__, "providers": ort.get_available_providers()}
    except ImportError:
        found["onnxruntime"] = None
    try:
        import tensorrt  # type: ignore[import-not-found]

        found["tensorrt"] = tensorrt.__version__
    except ImportError:
        found["tensorrt"] = None
    return found


def _auc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    from sklearn.metrics import roc_auc_score

    keep = labels >= 0
    if len(set(labels[keep].tolist())) < 2:
        return None
    return float(roc_auc_score(labels[keep], scores[keep]))


def _latency_ms(model: Any, batch: int, length: int, dtype: Any, vocab: int, runs: int = 50) -> dict[str, float]:
    import torch

    ids = torch.randint(5, vocab, (batch, length), device="cuda")
    mask = torch.ones_like(ids)
    types = torch.zeros_like(ids)
    times = []
    with torch.inference_mode(), torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32):
        for _ in range(10):
            model(input_ids=ids, attention_mask=mask, token_type_ids=types)
        torch.cuda.synchronize()
        for _ in range(runs):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            model(input_ids=ids, attention_mask=mask, token_type_ids=types)
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
    arr = np.asarray(times)
    return {"p50": float(np.percentile(arr, 50)), "p99": float(np.percentile(arr, 99)),
            "seq_per_s": float(batch * 1000.0 / np.percentile(arr, 50))}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", type=Path, default=Path("models"))
    p.add_argument("--out", type=Path, default=Path("gpu_check.json"))
    args = p.parse_args(argv)

    import torch
    from transformers import BertForSequenceClassification

    if not torch.cuda.is_available():
        print("gpu_check: no CUDA GPU here; nothing to check", file=sys.stderr)
        return 2
    calib = np.load(args.models / "calibration.npz")
    labels = calib["labels"]
    feed = {k: torch.from_numpy(calib[k]).cuda() for k in ("input_ids", "attention_mask", "token_type_ids")}
    model = BertForSequenceClassification.from_pretrained(args.models / "behaviour_bert").cuda().eval()
    out: dict[str, Any] = {
        "host": platform.node(),
        "gpu": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "runtimes": _runtimes(),
        "windows": len(labels),
        "anomalous": int((labels == 1).sum()),
    }
    logits = {}
    with torch.inference_mode():
        logits["fp32"] = model(**feed).logits.float().cpu().numpy()
        with torch.autocast("cuda", dtype=torch.float16):
            logits["fp16"] = model(**feed).logits.float().cpu().numpy()
    saved = calib["logits__behaviour_bert"] if "logits__behaviour_bert" in calib.files else None
    margin = {k: v[:, 1] - v[:, 0] for k, v in logits.items()}
    auc32, auc16 = _auc(margin["fp32"], labels), _auc(margin["fp16"], labels)
    out["parity"] = {
        "fp32_gpu_vs_saved_cpu_max_abs": float(np.abs(logits["fp32"] - saved).max()) if saved is not None else None,
        "fp16_vs_fp32_max_abs": float(np.abs(logits["fp16"] - logits["fp32"]).max()),
        "roc_auc_fp32": auc32,
        "roc_auc_fp16": auc16,
        "roc_auc_drop": (auc32 - auc16) if auc32 is not None and auc16 is not None else None,
        "same_argmax_share": float((logits["fp16"].argmax(1) == logits["fp32"].argmax(1)).mean()),
    }
    vocab = int(model.config.vocab_size)
    out["latency_ms"] = {
        name: {
            f"b{b}x{length}": _latency_ms(model, b, length, dt, vocab) for b in (1, 8, 32, 128) for length in (64, 128)
        }
        for name, dt in (("fp32", torch.float32), ("fp16", torch.float16))
    }
    out["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    args.out.write_text(json.dumps(out, indent=1))
    print(json.dumps(out["parity"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
