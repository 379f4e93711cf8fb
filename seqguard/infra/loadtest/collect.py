"""What the locustfile measures beyond locust's own stats, and the final stats JSON it writes when locust quits.

Locust counts requests and percentiles; it knows nothing of status codes per endpoint, of answers that were
`degraded`, of when the service recovered, or of stages in a step run. Those are counted here, in the locust
process, and written together with locust's final figures (read from `environment.stats` in the quitting listener:
the CSV lags the final summary).
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np

AGGREGATED = "Aggregated"
MAX_TRANSITIONS = 20_000
PERCENTILES = {"p50_ms": 0.50, "p95_ms": 0.95, "p99_ms": 0.99}


def endpoint_figures(entry: Any) -> dict[str, float | int | None]:
    """One locust StatsEntry as plain figures (percentiles as locust computes them for its own report)."""
    n = int(entry.num_requests)
    out: dict[str, float | int | None] = {
        "requests": n,
        "failures": int(entry.num_failures),
        "error_rate": float(entry.num_failures) / n if n else 0.0,  # locust counts failures among its requests
        "rps": float(entry.total_rps),
        "avg_ms": float(entry.avg_response_time) if n else None,
        "max_ms": float(entry.max_response_time) if n else None,
    }
    for key, q in PERCENTILES.items():
        out[key] = float(entry.get_response_time_percentile(q)) if n else None
    return out


def figures_from_samples(times_ms: list[float], failures: int, window_s: float) -> dict[str, float | int | None]:
    n = len(times_ms)
    arr = np.asarray(times_ms, dtype=np.float64)
    out: dict[str, float | int | None] = {
        "requests": n,
        "failures": failures,
        "error_rate": failures / n if n else (1.0 if failures else 0.0),
        "rps": n / window_s if window_s > 0 else 0.0,
        "avg_ms": float(arr.mean()) if n else None,
        "max_ms": float(arr.max()) if n else None,
    }
    for key, q in PERCENTILES.items():
        out[key] = float(np.percentile(arr, q * 100)) if n else None
    return out


class Collector:
    """Counts per response (status codes, degraded answers, decisions) and, in step mode, samples per stage."""

    def __init__(self, steps: tuple[int, ...] | None = None, stage_s: float = 20.0, spawn_rate: float = 10.0) -> None:
        self.t0: float | None = None
        self.status: dict[str, Counter[str]] = defaultdict(Counter)
        self.results = 0
        self.degraded = 0
        self.degraded_reasons: Counter[str] = Counter()
        self.decisions: dict[str, Counter[str]] = defaultdict(Counter)  # account kind -> decision -> count
        self.timeline: dict[int, Counter[str]] = defaultdict(Counter)  # second since start -> counts
        self.transitions: list[tuple[float, bool]] = []  # (wall time, degraded) whenever the answer kind flips
        self.last_ok: float | None = None
        self.last_degraded: float | None = None
        self.first_degraded: float | None = None
        self.steps = steps
        self.stage_s = stage_s
        self.spawn_rate = spawn_rate
        self.stage_samples: dict[int, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        self.stage_failures: dict[int, Counter[str]] = defaultdict(Counter)
        self.extra: dict[str, Any] = {}

    def start(self, t: float | None = None) -> None:
        if self.t0 is None:
            self.t0 = time.time() if t is None else t

    # -- per request ---------------------------------------------------------------------------------------------

    def on_request(self, name: str, response_time_ms: float, failed: bool, status: int | str | None) -> None:
        now = time.time()
        self.start(now)
        assert self.t0 is not None
        if status is not None:
            self.status[name][str(status)] += 1
        sec = int(now - self.t0)
        self.timeline[sec]["requests"] += 1
        if failed:
            self.timeline[sec]["failures"] += 1
        if isinstance(status, int) and status >= 500:
            self.timeline[sec]["5xx"] += 1
        if self.steps:
            stage = self._stage_at(now)
            if stage is not None:
                self.stage_samples[stage][name].append(response_time_ms)
                if failed:
                    self.stage_failures[stage][name] += 1

    def on_results(self, results: list[dict[str, Any]], kinds: dict[str, str]) -> None:
        """The entity results of one successful answer; `kinds` maps entity ids to normal / attack."""
        now = time.time()
        self.start(now)
        assert self.t0 is not None
        degraded = False
        for r in results:
            self.results += 1
            if r.get("degraded"):
                degraded = True
                self.degraded += 1
                self.degraded_reasons.update(r.get("degraded_reasons") or ["unspecified"])
            self.decisions[kinds.get(str(r.get("entity_id")), "unknown")][str(r.get("decision"))] += 1
        sec = int(now - self.t0)
        self.timeline[sec]["results"] += len(results)
        if degraded:
            self.timeline[sec]["degraded_answers"] += 1
            self.last_degraded = now
            self.first_degraded = self.first_degraded or now
        else:
            self.last_ok = now
        if (not self.transitions or self.transitions[-1][1] != degraded) and len(self.transitions) < MAX_TRANSITIONS:
            self.transitions.append((now, degraded))

    # -- step mode ------------------------------------------------------------------------------------------------

    def stage_index(self, run_time_s: float) -> int | None:
        if not self.steps:
            return None
        i = int(run_time_s // self.stage_s)
        return i if i < len(self.steps) else None

    def _warmup_s(self, stage: int) -> float:
        """Skip the ramp to the stage's user count plus a second to settle; never more than half the stage."""
        assert self.steps is not None
        before = self.steps[stage - 1] if stage else 0
        ramp = abs(self.steps[stage] - before) / self.spawn_rate
        return min(ramp + 1.0, self.stage_s / 2)

    def _stage_at(self, now: float) -> int | None:
        assert self.t0 is not None
        rel = now - self.t0
        stage = self.stage_index(rel)
        if stage is None or rel - stage * self.stage_s < self._warmup_s(stage):
            return None
        return stage

    def stages(self) -> list[dict[str, Any]]:
        if not self.steps:
            return []
        out = []
        for i, users in enumerate(self.steps):
            window = self.stage_s - self._warmup_s(i)
            samples = self.stage_samples.get(i, {})
            failures = self.stage_failures.get(i, Counter())
            endpoints = {
                name: figures_from_samples(times, failures[name], window) for name, times in sorted(samples.items())
            }
            all_times = [t for times in samples.values() for t in times]
            endpoints[AGGREGATED] = figures_from_samples(all_times, sum(failures.values()), window)
            out.append({"stage": i, "users": users, "window_s": window, "endpoints": endpoints})
        return out

    # -- the final JSON ---------------------------------------------------------------------------------------------

    def summary(self, environment: Any, meta: dict[str, Any]) -> dict[str, Any]:
        stats = environment.stats
        endpoints = {name: endpoint_figures(entry) for (name, _method), entry in sorted(stats.entries.items())}
        endpoints[AGGREGATED] = endpoint_figures(stats.total)
        errors = sorted(
            ({"name": e.name, "method": e.method, "error": str(e.error)[:300], "occurrences": e.occurrences}
             for e in stats.errors.values()),
            key=lambda e: -e["occurrences"],
        )[:20]
        n_5xx = sum(n for counts in self.status.values() for code, n in counts.items() if code.isdigit()
                    and int(code) >= 500)
        started = self.t0 or stats.start_time
        return {
            **meta,
            "started_at": started,
            "ended_at": time.time(),
            "duration_s": max(0.0, (stats.last_request_timestamp or started) - started),
            "endpoints": endpoints,
            "status_codes": {name: dict(c) for name, c in self.status.items()},
            "server_errors_5xx": n_5xx,
            "errors": errors,
            "results": {
                "entities_scored": self.results,
                "degraded": self.degraded,
                "degraded_share": self.degraded / self.results if self.results else 0.0,
                "degraded_reasons": dict(self.degraded_reasons),
                "decisions": {k: dict(v) for k, v in self.decisions.items()},
            },
            "first_degraded_at": self.first_degraded,
            "last_degraded_at": self.last_degraded,
            "transitions": self.transitions,
            "timeline": {str(k): dict(v) for k, v in sorted(self.timeline.items())},
            "stages": self.stages(),
            **self.extra,
        }


def write_json(path: str | Path, data: dict[str, Any]) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(p.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=_json_default, allow_nan=False), encoding="utf-8")
    tmp.replace(p)  # a reader never sees half a file


def _json_default(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return None if math.isnan(value) else float(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
