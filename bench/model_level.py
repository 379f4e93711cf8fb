"""Model level: every variant of one model on the same inputs at the same shapes, timed in alternating rounds.

Inputs are seeded random token ids (speed does not depend on which ids) with a full attention mask, at the model's
benchmark length; PyTorch runs under inference_mode, ONNX Runtime through the export's own session settings; both
with 2 intra-op threads. Throughput is batch / mean call time; FLOP/s is the analytic FLOP count (bench.flops) of
the work done / mean call time, compared with the measured fp32 GEMM peak and with an fp32 GEMM (1024³) timed in the
same rounds (the roof under the same conditions).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from bench.common import interleaved, log, ort_session, ratio, set_threads
from bench.flops import bert_flops, describe
from bench.sources import ModelSource
from bench.variants import ORDER, Variant

INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def feeds(source: ModelSource, vocab_size: int, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed + batch)
    ids = rng.integers(source.vocab_low, vocab_size, size=(batch, source.seq_len), dtype=np.int64)
    return {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}


def _torch_call(model: Any, feed: dict[str, np.ndarray]) -> Callable[[], Any]:
    import torch

    tensors = {k: torch.from_numpy(v) for k, v in feed.items()}

    def call() -> Any:
        with torch.inference_mode():
            return model(**tensors).logits

    return call


def _ort_call(session: Any, feed: dict[str, np.ndarray]) -> Callable[[], Any]:
    names = [i.name for i in session.get_inputs()]
    sub = {n: feed[n] for n in names}
    return lambda: session.run(["logits"], sub)


def _logits(fn: Callable[[], Any]) -> np.ndarray:
    out = fn()
    out = out[0] if isinstance(out, list) else out
    return np.asarray(out.numpy() if hasattr(out, "numpy") else out, dtype=np.float32)


ROOF = "fp32_gemm_roof"
ROOF_N = 1024  # 2 GFLOP per call: long enough to reach the GEMM rate, short enough to sit in every round


def _roof_call() -> Callable[[], Any]:
    import torch

    a, b = torch.randn(ROOF_N, ROOF_N), torch.randn(ROOF_N, ROOF_N)
    out = torch.empty(ROOF_N, ROOF_N)
    return lambda: torch.matmul(a, b, out=out)


def run(source: ModelSource, variants: dict[str, Variant], batches: tuple[int, ...], budget_s: float,
        peak_gflops: float | None) -> dict[str, Any]:
    from transformers import AutoModelForSequenceClassification

    set_threads()
    config = source.config()
    model = AutoModelForSequenceClassification.from_pretrained(source.path).eval()
    n_params = sum(p.numel() for p in model.parameters())
    flops = bert_flops(config, source.seq_len)
    runnable = {n: v for n, v in variants.items() if n == "torch_fp32" or (v.path is not None and not v.error)}
    sessions = {n: ort_session(v.path) for n, v in runnable.items() if v.path is not None}  # type: ignore[arg-type]
    result: dict[str, Any] = {
        "label": source.label, "origin": source.origin, "trained": source.trained, "seq_len": source.seq_len,
        "config": describe(config, n_params), "flops_per_sequence": flops,
        "variants": {n: variants[n].summary() for n in ORDER if n in variants}, "batches": {},
    }
    for b in batches:
        feed = feeds(source, int(config.vocab_size), b)
        calls = {n: (_torch_call(model, feed) if n == "torch_fp32" else _ort_call(sessions[n], feed))
                 for n in ORDER if n in runnable}
        reference = _logits(calls["torch_fp32"])
        # The fp32 GEMM roof timed in the same alternating rounds as the variants: on a machine shared with other
        # jobs, the roof under the same conditions is the fair yardstick for "achieved FLOP/s vs peak".
        samples = interleaved({**calls, ROOF: _roof_call()}, budget_s * (2.0 if b >= 32 else 1.0))
        roof = samples.pop(ROOF).summary()
        roof_gflops = 2.0 * ROOF_N**3 / (roof["mean_ms"] / 1e3) / 1e9
        rows: dict[str, Any] = {}
        for n, s in samples.items():
            row = s.summary(items_per_call=b)
            row["gflops"] = flops["total"] * b / (row["mean_ms"] / 1e3) / 1e9
            row["peak_fraction"] = ratio(row["gflops"], peak_gflops)  # re-set by bench.run with the final peak
            row["roof_fraction"] = ratio(row["gflops"], roof_gflops)
            row["max_abs_logit_diff_vs_torch"] = float(np.max(np.abs(_logits(calls[n]) - reference)))
            rows[n] = row
        base = rows["torch_fp32"]["throughput_per_s"]
        for row in rows.values():
            row["speedup_vs_torch"] = ratio(row["throughput_per_s"], base)
        result["batches"][str(b)] = rows
        result.setdefault("roof_gflops", {})[str(b)] = {"mean": roof_gflops, "n": roof["n"],
                                                        "best": 2.0 * ROOF_N**3 / (roof["min_ms"] / 1e3) / 1e9}
        log(f"  {source.name} batch {b:>2} x {source.seq_len}: " + ", ".join(
            f"{n} {r['throughput_per_s']:.0f}/s (x{r['speedup_vs_torch']:.2f})" for n, r in rows.items()))
    return result
