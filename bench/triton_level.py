"""Triton: the local tritonserver (seqguard.processes.tritonserver.TritonProcess) on a CPU repository, with and without
dynamic batching, under closed-loop load of batch-1 requests to the ensemble at several concurrencies
(tritonclient gRPC asyncio, one client process on the same 2 cores as the server).

Triton's dynamic batcher merges only requests of one shape (the repository declares no ragged inputs), so the
requests carry real windows padded to one common length; one extra run at the highest concurrency sends windows at
their own (pad_batch) lengths and shows what shape fragmentation costs. The average executed batch size per model
comes from Triton's own /metrics counters (requests / executions).
"""

from __future__ import annotations

import asyncio
import re
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.common import Samples, log
from seqguard.contracts import ENSEMBLE_MODEL, ensemble_output, infer_inputs
from seqguard.features import Encoded, pad_batch

_METRIC = re.compile(r'^(nv_inference_request_success|nv_inference_exec_count)\{model="([^"]+)",version="[^"]*"\}'
                     r"\s+([0-9.eE+]+)")


def _counters(metrics_url: str) -> dict[tuple[str, str], float]:
    with urllib.request.urlopen(metrics_url, timeout=5) as r:
        text = r.read().decode()
    out: dict[tuple[str, str], float] = {}
    for line in text.splitlines():
        m = _METRIC.match(line)
        if m:
            out[(m.group(1), m.group(2))] = float(m.group(3))
    return out


def _batch_sizes(before: dict[tuple[str, str], float], after: dict[tuple[str, str], float]) -> dict[str, float]:
    models = {m for _, m in after if m != ENSEMBLE_MODEL}
    out = {}
    for m in sorted(models):
        req = after.get(("nv_inference_request_success", m), 0) - before.get(("nv_inference_request_success", m), 0)
        ex = after.get(("nv_inference_exec_count", m), 0) - before.get(("nv_inference_exec_count", m), 0)
        if ex > 0:
            out[m] = req / ex
    return out


def _requests(windows: list[Encoded], pad_to: int | None) -> list[list[Any]]:
    import tritonclient.grpc.aio as grpcclient

    return [infer_inputs(pad_batch([e], pad_to=pad_to), grpcclient) for e in windows]


async def _closed_loop(url: str, pool: list[list[Any]], outputs: list[str], concurrency: int, duration_s: float,
                       warmup_s: float) -> tuple[Samples, int, float]:
    import tritonclient.grpc.aio as grpcclient

    client = grpcclient.InferenceServerClient(url)
    requested = [grpcclient.InferRequestedOutput(o) for o in outputs]
    samples = Samples()
    errors = 0
    t_start = time.perf_counter()
    measure_from = t_start + warmup_s
    stop_at = measure_from + duration_s

    async def worker(k: int) -> None:
        nonlocal errors
        i = k
        while True:
            now = time.perf_counter()
            if now >= stop_at:
                return
            t0 = time.perf_counter()
            try:
                await client.infer(ENSEMBLE_MODEL, pool[i % len(pool)], outputs=requested, client_timeout=30)
            except Exception:
                errors += 1
                continue
            t1 = time.perf_counter()
            if t0 >= measure_from and t1 <= stop_at:  # only calls wholly inside the window count
                samples.add(t1 - t0)
            i += concurrency

    try:
        await asyncio.gather(*(worker(k) for k in range(concurrency)))
    finally:
        await client.close()
    return samples, errors, duration_s


def _run_levels(triton: Any, windows: list[Encoded], pad_to: int, components: list[str], levels: tuple[int, ...],
                duration_s: float, warmup_s: float, mixed: bool) -> dict[str, Any]:
    assert triton.urls is not None
    outputs = [ensemble_output(c) for c in components]
    fixed = _requests(windows, pad_to)
    out: dict[str, Any] = {}
    runs = [(f"c{c}", c, fixed) for c in levels]
    if mixed:
        runs.append((f"c{max(levels)}_mixed_lengths", max(levels), _requests(windows, None)))
    for key, c, pool in runs:
        before = _counters(triton.urls.metrics_url)
        samples, errors, dur = asyncio.run(_closed_loop(triton.urls.grpc, pool, outputs, c, duration_s, warmup_s))
        after = _counters(triton.urls.metrics_url)
        row = samples.summary()
        row["throughput_per_s"] = row["n"] / dur  # closed loop: completed requests per second of the window
        row.update(concurrency=c, errors=errors, avg_executed_batch=_batch_sizes(before, after))
        out[key] = row
        log(f"    {key}: {row['throughput_per_s']:.0f} req/s, p50 {row.get('p50_ms', 0):.1f} ms, "
            f"p99 {row.get('p99_ms', 0):.1f} ms, batches {row['avg_executed_batch']}")
    return out


def run(repo: Path, repo_note: str, work: Path, windows: list[Encoded], levels: tuple[int, ...] = (1, 8, 16),
        duration_s: float = 6.0, warmup_s: float = 1.0) -> dict[str, Any]:
    from bench.repo import describe, without_dynamic_batching
    from seqguard.processes.tritonserver import TritonProcess

    info = describe(repo)
    max_len = int(info["max_len"])
    # One common request length: 32 tokens (the median window is shorter) or the repository's max_len if smaller.
    pad_to = min(32, max_len)
    pool = [e for e in windows if len(e.input_ids) <= pad_to][:256]
    components = [c["name"] for c in info["components"]]
    result: dict[str, Any] = {"repository": info, "repository_source": repo_note, "request_len": pad_to,
                              "request_pool": len(pool), "duration_s": duration_s, "client": "tritonclient.grpc.aio"}
    nodb = without_dynamic_batching(repo, work / "triton_repo_no_dynamic_batching")
    for key, path, mixed in (("dynamic_batching", repo, True), ("no_dynamic_batching", nodb, False)):
        log(f"  tritonserver on {path} ({key.replace('_', ' ')})")
        with TritonProcess(path) as triton:
            result[key] = _run_levels(triton, pool, pad_to, components, levels, duration_s, warmup_s, mixed)
    db, no = result["dynamic_batching"], result["no_dynamic_batching"]
    top = f"c{max(levels)}"
    result["scaling_dynamic_batching"] = db[top]["throughput_per_s"] / db["c1"]["throughput_per_s"]
    result["scaling_no_dynamic_batching"] = no[top]["throughput_per_s"] / no["c1"]["throughput_per_s"]
    result["dynamic_vs_none_at_top"] = db[top]["throughput_per_s"] / no[top]["throughput_per_s"]
    # The fairer baseline: the default scheduler at whatever concurrency suits it best (its c1 has no queue delay).
    best_none = max(r["throughput_per_s"] for k, r in no.items() if k[1:].isdigit())
    result["dynamic_top_vs_best_no_batching"] = db[top]["throughput_per_s"] / best_none
    return result
