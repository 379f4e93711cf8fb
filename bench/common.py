"""What every level shares: progress lines, thread settings, the timing loop and its statistics."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

THREADS = 2  # intra-op threads for every runtime: the machine has 2 cores, and the figures must be comparable

_T0 = time.perf_counter()


def log(msg: str) -> None:
    # Progress lines with the elapsed time: `make bench` runs for minutes and should show where it is.
    print(f"[bench {time.perf_counter() - _T0:6.1f}s] {msg}", flush=True)


def set_threads(threads: int = THREADS) -> None:
    """Torch's intra-op pool to `threads`; inter-op to 1 so no second pool competes for the same cores."""
    import torch

    torch.set_num_threads(threads)
    # Only settable before the first parallel op; harmless when already set.
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(1)


def ort_session(path: Path, threads: int = THREADS, spinning: bool = False) -> Any:
    """A session configured like seqguard.export.parity.ort_session (graph optimisation ALL, inter-op 1, CPU provider),
    with the intra-op pool's spin-waiting off by default. Why: several sessions live in this process, each with its own
    pool, and on 2 cores (shared with other work) a pool that spins after its run steals the cores the next
    session or PyTorch needs. Measured here: 2-3x slower ORT calls at batch 8 with three spinning sessions alive,
    and a single spinning session at batch 32 was slower too under background load; at batch 1 spinning saves
    ~0.1 ms. BENCHMARKS.md discusses what that means for the service (two sessions, spinning on)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    if not spinning:
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def cpu_snapshot() -> tuple[float, float, float] | None:
    """(machine busy CPU-seconds, machine total CPU-seconds, this process's CPU-seconds incl. reaped children)."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return None
    hz = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    t = os.times()
    return (sum(fields) - idle) / hz, sum(fields) / hz, t.user + t.system + t.children_user + t.children_system


def others_share(before: tuple[float, float, float] | None, after: tuple[float, float, float] | None) -> float | None:
    """Share of the machine's CPU capacity that other processes used between two snapshots: how contended a level
    was. Children still running (tritonserver, bentoml) count as others until reaped, so it is an upper bound."""
    if before is None or after is None or after[1] <= before[1]:
        return None
    others = (after[0] - before[0]) - (after[2] - before[2])
    return round(max(0.0, others / (after[1] - before[1])), 3)


@dataclass
class Samples:
    """Wall times of individual calls, in seconds."""

    times: list[float] = field(default_factory=list)

    def add(self, seconds: float) -> None:
        self.times.append(seconds)

    def summary(self, items_per_call: int = 1) -> dict[str, Any]:
        t = np.asarray(self.times, dtype=np.float64)
        if t.size == 0:
            return {"n": 0}
        mean = float(t.mean())
        return {
            "n": int(t.size),
            "p50_ms": float(np.percentile(t, 50) * 1e3),
            "p99_ms": float(np.percentile(t, 99) * 1e3),
            "mean_ms": float(mean * 1e3),
            "min_ms": float(t.min() * 1e3),
            # Throughput from the mean, not the median: it is what a stream of such calls sustains.
            "throughput_per_s": float(items_per_call / mean) if mean > 0 else 0.0,
        }


def time_calls(fn: Callable[[], Any], samples: Samples, budget_s: float, min_calls: int, max_calls: int = 10_000,
               warmup: int = 1) -> None:
    """Call `fn` until `budget_s` has passed and at least `min_calls` were timed (warm-up calls are not kept)."""
    for _ in range(warmup):
        fn()
    deadline = time.perf_counter() + budget_s
    done = 0
    while done < max_calls and (done < min_calls or time.perf_counter() < deadline):
        t0 = time.perf_counter()
        fn()
        samples.add(time.perf_counter() - t0)
        done += 1


def interleaved(calls: dict[str, Callable[[], Any]], budget_s: float, rounds: int = 3, min_calls: int = 2
                ) -> dict[str, Samples]:
    """Time several variants of the same work in alternating rounds, so a burst of load from another process on
    this shared machine hits all of them rather than whichever happened to run at that moment."""
    out = {name: Samples() for name in calls}
    per_round = budget_s / rounds
    for r in range(rounds):
        for name, fn in calls.items():
            # Re-warm only fast calls: a slow call's cold start is negligible and a warm-up would cost seconds.
            fast = not out[name].times or out[name].times[-1] < 0.2
            time_calls(fn, out[name], per_round, min_calls, warmup=1 if (r == 0 or fast) else 0)
    return out


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return float(a / b)


def file_size(path: Path) -> int:
    """Bytes of an ONNX model including any external-data files next to it."""
    size = path.stat().st_size
    data = path.with_name(path.name + "_data")
    if data.exists():
        size += data.stat().st_size
    return size
