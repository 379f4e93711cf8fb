"""Fault run: under load, stop the service's Triton for a few seconds, start it again, and see what clients saw.

The service (backend=triton) must keep answering: degraded (rules + unsupervised) while Triton is gone, never a 5xx,
and healthy again soon after Triton is back. The locustfile records when answers flipped between degraded and
healthy; this module knows when Triton stopped and was ready again, and puts the two together.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seqguard.infra.loadtest.collect import write_json
from seqguard.infra.loadtest.processes import ServiceProcess, start_triton
from seqguard.infra.loadtest.runner import start_locust, verdict_json
from seqguard.infra.loadtest.settings import LoadSettings
from seqguard.infra.loadtest.slo import SLO, evaluate


@dataclass
class FaultOptions:
    repo: Path
    out: Path
    users: int
    spawn_rate: float
    duration_s: float
    fault_at_s: float
    outage_s: float = 3.0
    max_recovery_s: float = 15.0
    service_env: dict[str, str] = field(default_factory=dict)

    def check(self) -> None:
        """The run must hold the fault, Triton's restart (a few seconds) and some healthy time after it."""
        needed = self.fault_at_s + self.outage_s + 10.0
        if self.duration_s < needed:
            raise ValueError(f"a fault at {self.fault_at_s:g}s with a {self.outage_s:g}s outage needs a run of at "
                             f"least {needed:g}s (got {self.duration_s:g}s)")


@dataclass
class FaultTimes:
    stop_at: float
    stopped_at: float
    restart_at: float
    ready_at: float


def analyse(stats: dict[str, Any], times: FaultTimes, max_recovery_s: float) -> dict[str, Any]:
    """Recovery = the last flip back to healthy answers after the stop, measured from Triton being ready again."""
    flips = [(float(t), bool(d)) for t, d in stats.get("transitions") or [] if float(t) >= times.stop_at]
    degraded_seen = any(d for _, d in flips)
    final_healthy = not flips or not flips[-1][1]
    recovered_at = flips[-1][0] if degraded_seen and final_healthy else None
    problems = []
    n5xx = int(stats.get("server_errors_5xx") or 0)
    if n5xx:
        problems.append(f"{n5xx} answers were 5xx (allowed 0)")
    if not degraded_seen:
        problems.append("no degraded answer was seen after Triton stopped: the fault did not reach the clients "
                        "(is the service's backend triton, and was there traffic?)")
    elif recovered_at is None:
        problems.append("answers were still degraded when the run ended: the service did not recover")
    recovery_s = None if recovered_at is None else max(0.0, recovered_at - times.ready_at)
    if recovery_s is not None and recovery_s > max_recovery_s:
        problems.append(f"recovery took {recovery_s:.1f}s after Triton was ready (allowed ≤ {max_recovery_s:g}s)")
    results = stats.get("results") or {}
    return {
        "triton_stop_requested_at": times.stop_at,
        "triton_stopped_s": round(times.stopped_at - times.stop_at, 3),
        "outage_s": round(times.ready_at - times.stop_at, 3),
        "triton_restart_s": round(times.ready_at - times.restart_at, 3),
        "first_degraded_after_stop_s": next((round(t - times.stop_at, 3) for t, d in flips if d), None),
        "recovered_after_ready_s": None if recovery_s is None else round(recovery_s, 3),
        "disruption_s": None if recovered_at is None else round(recovered_at - times.stop_at, 3),
        "server_errors_5xx": n5xx,
        "failures": int((stats["endpoints"].get("Aggregated") or {}).get("failures") or 0),
        "degraded_share": results.get("degraded_share"),
        "degraded_reasons": results.get("degraded_reasons"),
        "problems": problems,
        "passed": not problems,
    }


def run_fault(opts: FaultOptions, settings: LoadSettings, slo: SLO | None, slo_source: str | None,
              log: Callable[[str], None] = print) -> dict[str, Any]:
    opts.check()
    logs = opts.out / "logs"
    triton = start_triton(opts.repo)
    service = None
    try:
        assert triton.urls is not None
        log(f"fault: tritonserver ready on {triton.urls.grpc} (pid {triton.pid})")
        env = {"SEQGUARD_BACKEND": "triton", "SEQGUARD_TRITON_URL": triton.urls.grpc, **opts.service_env}
        service = ServiceProcess(opts.repo, logs, env=env).start()
        log(f"fault: service ready on {service.url} (backend=triton); load for {opts.duration_s:g}s, Triton "
            f"stops at {opts.fault_at_s:g}s for {opts.outage_s:g}s")
        handle = start_locust(service.url, opts.out, settings, opts.users, opts.spawn_rate, opts.duration_s)
        try:
            time.sleep(opts.fault_at_s)
            stop_at = time.time()
            triton.stop()
            stopped_at = time.time()
            time.sleep(max(0.0, opts.outage_s - (stopped_at - stop_at)))
            restart_at = time.time()
            triton.start()
            ready_at = time.time()
        except BaseException:
            handle.stop()
            raise
        log(f"fault: Triton stopped for {ready_at - stop_at:.1f}s (restart took {ready_at - restart_at:.1f}s)")
        stats = handle.wait()
    finally:
        if service is not None:
            service.stop()
        triton.stop()
    fault = analyse(stats, FaultTimes(stop_at, stopped_at, restart_at, ready_at), opts.max_recovery_s)
    stats["fault"] = fault
    if slo is not None:
        # Latency is expected to suffer while the backend is down; errors are not.
        verdict = evaluate(slo, stats["endpoints"], stats["expected_endpoints"], check_throughput=False,
                           check_latency=False)
        stats["slo"] = verdict_json(verdict, slo_source)
        stats["fault"]["problems"] += [str(v) for v in verdict.violations]
        stats["fault"]["passed"] = not stats["fault"]["problems"]
    write_json(handle.paths.json, stats)
    return stats


def fault_table(fault: dict[str, Any]) -> str:
    rows = [
        ("Triton down (stop requested -> ready again)", f"{fault['outage_s']:.1f} s"),
        ("first degraded answer after the stop", _s(fault["first_degraded_after_stop_s"])),
        ("healthy again after Triton was ready", _s(fault["recovered_after_ready_s"])),
        ("clients saw disruption for", _s(fault["disruption_s"])),
        ("5xx answers", str(fault["server_errors_5xx"])),
        ("failed requests", str(fault["failures"])),
        ("degraded share of scored entities", f"{(fault['degraded_share'] or 0) * 100:.1f} %"),
    ]
    w = max(len(k) for k, _ in rows)
    lines = [f"{k.ljust(w)}  {v}" for k, v in rows]
    lines.append(f"{'verdict'.ljust(w)}  {'ok' if fault['passed'] else 'FAIL'}")
    return "\n".join(lines)


def _s(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f} s"
