"""The targets, each judged met / missed on this run's own figures, with the measured ratio beside the threshold.
A target whose level did not run is "not measured", never met."""

from __future__ import annotations

from typing import Any

MET, MISSED, NOT_MEASURED = "met", "missed", "not measured"


def _row(key: str, what: str, measured: float | None, threshold: float, unit: str, higher_is_better: bool = True,
         detail: str = "") -> dict[str, Any]:
    if measured is None:
        status = NOT_MEASURED
    elif higher_is_better:
        status = MET if measured >= threshold else MISSED
    else:
        status = MET if measured <= threshold else MISSED
    return {"key": key, "target": what, "measured": measured, "threshold": threshold, "unit": unit,
            "comparison": ">=" if higher_is_better else "<=", "status": status, "detail": detail}


def _get(d: Any, *path: str) -> Any:
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return None
        d = d[p]
    return d


def evaluate(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    peak = _get(results, "peak", "fp32_peak_gflops")
    for name, label in (("behaviour_bert", "behaviour BERT"), ("minilm", "MiniLM")):
        b32 = _get(results, "models", name, "batches", "32")
        speed = _get(b32, "ort_int8_dynamic_fused", "speedup_vs_torch")
        plain = _get(b32, "ort_int8_dynamic", "speedup_vs_torch")
        detail = f"plain-graph int8: x{plain:.2f}" if plain is not None else ""
        ref = _get(results, "models", "behaviour_bert_4x256", "batches", "32", "ort_int8_dynamic_fused",
                   "speedup_vs_torch")
        if name == "behaviour_bert" and ref is not None:
            detail += f"; the 4x256 reference BERT: x{ref:.2f}"
        rows.append(_row(f"model_{name}_int8_fused_vs_eager_b32",
                         f"{label}: fused int8 >= 2x PyTorch eager at batch 32", speed, 2.0, "x", detail=detail))
    for name, label in (("behaviour_bert", "behaviour BERT"), ("minilm", "MiniLM")):
        b32 = _get(results, "models", name, "batches", "32") or {}
        roof = _get(results, "models", name, "roof_gflops", "32", "mean")
        int8 = {k: v for k, v in b32.items() if k.startswith("ort_int8") and v.get("gflops")}
        best = max(int8, key=lambda k: int8[k]["gflops"]) if int8 else None
        # Judged against the fp32 GEMM timed in the same rounds (same share of the machine); the standalone
        # best-of-7 peak, possibly taken in a quieter moment, is shown beside it.
        value = int8[best]["gflops"] / roof if best and roof else None
        detail = ""
        if best and roof:
            detail = f"{best}: {int8[best]['gflops']:.1f} GFLOP/s vs fp32 GEMM {roof:.1f} in the same rounds"
            if peak:
                detail += f" (x{int8[best]['gflops'] / peak:.2f} of the standalone peak {peak:.1f})"
        rows.append(_row(f"int8_flops_{name}", f"{label}: int8 effective FLOP/s >= 1.5x measured fp32 GEMM peak "
                         "(best int8 variant, batch 32)", value, 1.5, "x peak", detail=detail))
    system = _get(results, "system", "pipelines", "seqguard", "speedup_vs_seeds")
    plain = _get(results, "system", "pipelines", "int8_plain_bucketed", "speedup_vs_seeds")
    rows.append(_row("system_vs_seeds", "system level: seqguard path >= 5x the seeds' pipeline (sequences/s)",
                     system, 5.0, "x", detail=f"with the plain int8 graph: x{plain:.2f}" if plain else ""))
    overhead = _get(results, "service", "overhead_ms_p50")
    split = _get(results, "service", "overhead_split_ms_p50") or {}
    rows.append(_row("service_overhead_p50", "service overhead at batch 1 <= 3 ms p50 over the raw embedded backend",
                     overhead, 3.0, "ms", higher_is_better=False,
                     detail=", ".join(f"{k.replace('_', ' ')} {v:.1f} ms" for k, v in split.items())))
    triton = _get(results, "triton") or {}
    scaling = triton.get("scaling_dynamic_batching")
    vs_none = triton.get("dynamic_top_vs_best_no_batching")
    rows.append(_row("triton_dynamic_batching_scaling", "Triton dynamic batching: concurrency 16 >= 2x concurrency 1 "
                     "(throughput)", scaling, 2.0, "x",
                     detail=f"vs the best level without dynamic batching: x{vs_none:.2f}" if vs_none else ""))
    ratios = _get(results, "floor", "ratios") or {}
    for key, what, threshold, unit, higher in (
        ("events_c8_rps_ratio", "/events (1 event) rps at concurrency 8 >= 50 % of a trivial BentoML endpoint's",
         0.5, "x", True),
        ("events_c1_p50_ratio", "/events p50 at concurrency 1 <= 2x the trivial BentoML endpoint's", 2.0, "x", False),
        ("score_c8_rps_ratio", "/score (1 x 32 events) rps at concurrency 8 >= 35 % of the trivial endpoint's",
         0.35, "x", True),
        ("fairness_probe_p99_ms", "one-event /events p99 <= 100 ms while 4 maximum-size /score requests run",
         100.0, "ms", False),
    ):
        rows.append(_row(f"floor_{key}", what, ratios.get(key), threshold, unit, higher_is_better=higher))
    in_process = _get(results, "score_log", "in_process", "events_path", "overhead_ms_p50")
    rows.append(_row("score_log_overhead_ms_p50", "score log on: /events p50 overhead < 0.5 ms (paired calls)",
                     _get(results, "score_log", "overhead_ms_p50"), 0.5, "ms", higher_is_better=False,
                     detail=f"in process: {in_process} ms"))
    return rows
