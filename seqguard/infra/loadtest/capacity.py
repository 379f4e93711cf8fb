"""Capacity: a step run's stages -> the highest throughput that still meets the SLO -> autoscaling knobs.

`analyse` judges each stage against the SLO's latency and error thresholds (not min_rps: a stage with few users
cannot reach it by design) and keeps the curve; `plot` draws it; `plan` turns the result into the
`seqguard.infra.deploy.capacity_plan.CapacityPlan` that `seqguard deploy --capacity FILE` reads, through the one
formula that model declares (`CapacityPlan.from_measurement`).
"""

from __future__ import annotations

import os
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from seqguard.configfile import field_errors
from seqguard.infra.loadtest.collect import AGGREGATED
from seqguard.infra.loadtest.slo import SLO, evaluate


class CapacityError(ValueError):
    pass


class Stage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    users: int
    window_s: float
    rps: float
    error_rate: float
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    meets_slo: bool
    violations: list[str]
    endpoints: dict[str, dict[str, Any]]


class CapacityResult(BaseModel):
    """What a step run measured. `max_rps_meeting_slo` is per instance: one service process on this machine."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = 1
    kind: str = Field("seqguard-capacity-result", pattern="^seqguard-capacity-result$")
    measured_at: datetime
    host: str
    target: str
    slo_file: str | None
    machine: dict[str, Any]
    stages: list[Stage]
    best_stage: int | None = Field(None, description="index of the highest-throughput stage meeting the SLO")
    max_rps_meeting_slo: float | None
    p99_at_max_ms: float | None
    notes: list[str] = Field(default_factory=list)

    @classmethod
    def load(cls, path: str | Path) -> CapacityResult:
        p = Path(path)
        try:
            return cls.model_validate_json(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise CapacityError(f"capacity result {p} does not exist") from None
        except ValidationError as e:
            first = field_errors(e)[0]
            raise CapacityError(f"{p} is not a capacity result written by `seqguard loadtest --step` "
                                f"({first['field']}: {first['reason']})") from None

    def write(self, path: str | Path) -> None:
        Path(path).write_text(self.model_dump_json(indent=2) + "\n", encoding="utf-8")


def machine_info() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "platform": platform.platform(), "processor": platform.processor() or None,
            "python": platform.python_version()}


def analyse(stats: dict[str, Any], slo: SLO, slo_file: str | None = None, notes: list[str] | None = None) -> (
    CapacityResult
):
    stages = []
    for raw in stats.get("stages") or []:
        verdict = evaluate(slo, raw["endpoints"], stats["expected_endpoints"], check_throughput=False)
        total = raw["endpoints"].get(AGGREGATED, {})
        stages.append(Stage(
            users=raw["users"], window_s=raw["window_s"], rps=float(total.get("rps") or 0.0),
            error_rate=float(total.get("error_rate") or 0.0), p50_ms=total.get("p50_ms"), p95_ms=total.get("p95_ms"),
            p99_ms=total.get("p99_ms"), meets_slo=verdict.passed, violations=[str(v) for v in verdict.violations],
            endpoints=raw["endpoints"],
        ))
    if not stages:
        raise CapacityError("the run has no stages (was it started with --step?)")
    passing = [i for i, s in enumerate(stages) if s.meets_slo]
    best = max(passing, key=lambda i: stages[i].rps) if passing else None
    return CapacityResult(
        measured_at=datetime.now(UTC), host=str(stats.get("host")), target=str(stats.get("mode")),
        slo_file=slo_file, machine=machine_info(), stages=stages, best_stage=best,
        max_rps_meeting_slo=stages[best].rps if best is not None else None,
        p99_at_max_ms=stages[best].p99_ms if best is not None else None,
        notes=list(notes or []),
    )


def stage_table(result: CapacityResult) -> str:
    rows = [("users", "rps", "err %", "p50 ms", "p95 ms", "p99 ms", "SLO")]
    for i, s in enumerate(result.stages):
        mark = "ok" if s.meets_slo else "FAIL"
        if i == result.best_stage:
            mark += "  <- max"
        rows.append((str(s.users), f"{s.rps:.1f}", f"{s.error_rate * 100:.2f}", *(
            "-" if v is None else f"{v:.0f}" for v in (s.p50_ms, s.p95_ms, s.p99_ms)), mark))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.rjust(w) if i < 6 else c for i, (c, w) in enumerate(zip(r, widths, strict=True)))
             for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def plot(result: CapacityResult, png: str | Path, slo: SLO | None = None) -> Path:
    """Throughput and p99 against users; failed stages in red; the SLO's aggregate p99 as a line when it has one."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    users = [s.users for s in result.stages]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    colors = ["tab:green" if s.meets_slo else "tab:red" for s in result.stages]
    ax1.plot(users, [s.rps for s in result.stages], color="tab:blue", zorder=1)
    ax1.scatter(users, [s.rps for s in result.stages], c=colors, zorder=2)
    if result.max_rps_meeting_slo is not None:
        ax1.axhline(result.max_rps_meeting_slo, ls="--", color="gray")
        ax1.annotate(f"max meeting SLO: {result.max_rps_meeting_slo:.1f} rps",
                     (users[0], result.max_rps_meeting_slo), textcoords="offset points", xytext=(0, 5))
    ax1.set(xlabel="users", ylabel="requests / s", title="throughput")
    names = sorted({n for s in result.stages for n in s.endpoints} - {AGGREGATED}) or [AGGREGATED]
    for i, name in enumerate(names):
        color = f"C{i + 1}"
        p99 = [(s.endpoints.get(name) or {}).get("p99_ms") for s in result.stages]
        p99 = [float("nan") if v is None else v for v in p99]
        ax2.plot(users, p99, color=color, zorder=1, label=f"{name} p99")
        ax2.scatter(users, p99, c=colors, zorder=2)
        limit = slo.endpoints.get(name) if slo else None
        if limit is not None and limit.p99_ms is not None:
            ax2.axhline(limit.p99_ms, ls="--", color=color, label=f"{name} SLO p99")
    ax2.legend(fontsize="small")
    ax2.set(xlabel="users", ylabel="ms", title="p99 latency per endpoint")
    fig.suptitle(f"seqguard capacity, {result.target} ({result.machine.get('cpus')} CPUs, load generator on the "
                 "same machine)")
    fig.tight_layout()
    out = Path(png)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plan(result: CapacityResult, target_rps: float, headroom: float = 0.3, burst_factor: float = 2.0,
         instance_type: str | None = None, source: str | None = None):
    """Autoscaling knobs for `target_rps`, keeping `headroom` (a share of the measured maximum) in reserve.

    `headroom` here is the spare share (0.3 = run instances at 70 % of what they sustained within the SLO);
    CapacityPlan records the used share (its `headroom` field, 0.7), as its own formula defines it.
    """
    from seqguard.infra.deploy.capacity_plan import CapacityPlan

    if not 0 <= headroom < 1:
        raise CapacityError(f"headroom must lie in [0, 1) (got {headroom:g}): it is the share kept in reserve")
    if target_rps < 0:
        raise CapacityError(f"target rps must not be negative (got {target_rps:g})")
    if result.max_rps_meeting_slo is None or result.max_rps_meeting_slo <= 0:
        raise CapacityError("no stage of the step run met the SLO, so there is no measured capacity to plan "
                            "from; re-run with fewer users in the first stages, or check the service")
    try:
        return CapacityPlan.from_measurement(
            result.max_rps_meeting_slo,
            target_rps,
            headroom=1.0 - headroom,
            burst_factor=burst_factor,
            instance_type=instance_type,
            p99_latency_ms=result.p99_at_max_ms,
            generated_at=datetime.now(UTC),
            source=source,
        )
    except ValidationError as e:
        problems = "; ".join(f"{x['field']}: {x['reason']}" for x in field_errors(e))
        raise CapacityError(f"the measurement gives no valid plan ({problems})") from None
