"""The SLO file and its evaluation: per endpoint (a locust request name) latency percentiles, error rate, throughput.

    description: realistic SLO for one 2-core box
    endpoints:
      /events:    {p50_ms: 60, p95_ms: 200, p99_ms: 400, max_error_rate: 0.001, min_rps: 5}
      Aggregated: {max_error_rate: 0.001}      # locust's total over every endpoint

`evaluate` returns every violation, not the first: a gate that stops at one threshold hides the others.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from seqguard.configfile import load_model
from seqguard.infra.loadtest.collect import AGGREGATED

LATENCY_KEYS = ("p50_ms", "p95_ms", "p99_ms")


class SLOError(ValueError):
    """The SLO file cannot be used; the message names the file, the key and the reason."""


class EndpointSLO(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    p50_ms: float | None = Field(None, gt=0, description="median latency, milliseconds")
    p95_ms: float | None = Field(None, gt=0)
    p99_ms: float | None = Field(None, gt=0)
    max_error_rate: float | None = Field(None, ge=0, le=1, description="failed requests / requests")
    min_rps: float | None = Field(None, ge=0, description="requests per second over the whole run")

    @model_validator(mode="after")
    def _check(self) -> EndpointSLO:
        if all(getattr(self, k) is None for k in type(self).model_fields):
            raise ValueError(f"sets no threshold; give at least one of {', '.join(type(self).model_fields)}")
        set_ = [(k, getattr(self, k)) for k in LATENCY_KEYS if getattr(self, k) is not None]
        for (k1, v1), (k2, v2) in itertools.pairwise(set_):
            if v1 > v2:
                raise ValueError(f"{k1} ({v1:g}) must not exceed {k2} ({v2:g})")
        return self


class SLO(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1] = 1
    description: str = ""
    endpoints: dict[str, EndpointSLO] = Field(min_length=1, description="locust request name -> thresholds")


def load_slo(path: str | Path) -> SLO:
    return load_model(path, SLO, "SLO file", SLOError)


@dataclass(frozen=True)
class Check:
    endpoint: str
    metric: str  # p50_ms | p95_ms | p99_ms | error_rate | rps | requests
    measured: float | None
    allowed: float | None
    ok: bool

    def __str__(self) -> str:
        if self.metric == "requests":
            return f"{self.endpoint}: no requests were measured"
        op = "≥" if self.metric == "rps" else "≤"
        return f"{self.endpoint} {self.metric} {_fmt(self.metric, self.measured)} (allowed {op} " \
               f"{_fmt(self.metric, self.allowed)})"


@dataclass
class Verdict:
    checks: list[Check] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # SLO endpoints this run does not exercise

    @property
    def violations(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    @property
    def passed(self) -> bool:
        return not self.violations


def evaluate(slo: SLO, measured: Mapping[str, Mapping[str, Any]], expected: Iterable[str],
             check_throughput: bool = True, check_latency: bool = True) -> Verdict:
    """Every threshold of every SLO endpoint this run exercises (`expected`, plus Aggregated).

    An expected endpoint without a single request is a violation (a broken locustfile must not pass the gate).
    `check_throughput=False` leaves min_rps out: a step run's low stages cannot reach it by design.
    `check_latency=False` leaves the percentiles out: a fault run is slow on purpose while the backend is down.
    """
    wanted = {*expected, AGGREGATED}
    verdict = Verdict()
    for name, limits in slo.endpoints.items():
        if name not in wanted:
            verdict.skipped.append(name)
            continue
        m = measured.get(name) or {}
        if not m.get("requests"):
            verdict.checks.append(Check(name, "requests", 0, None, False))
            continue
        for key in LATENCY_KEYS if check_latency else ():
            allowed = getattr(limits, key)
            if allowed is not None:
                value = m.get(key)
                verdict.checks.append(Check(name, key, value, allowed, value is not None and value <= allowed))
        if limits.max_error_rate is not None:
            value = float(m.get("error_rate") or 0.0)
            verdict.checks.append(Check(name, "error_rate", value, limits.max_error_rate,
                                        value <= limits.max_error_rate))
        if limits.min_rps is not None and check_throughput:
            value = float(m.get("rps") or 0.0)
            verdict.checks.append(Check(name, "rps", value, limits.min_rps, value >= limits.min_rps))
    return verdict


def _fmt(metric: str, value: float | None) -> str:
    if value is None:
        return "-"
    if metric == "error_rate":
        return f"{value * 100:.2f}%"
    if metric == "rps":
        return f"{value:.1f} rps"
    if metric.endswith("_ms"):
        return f"{value:.1f} ms" if value >= 1 else f"{value:g} ms"  # an impossible 0.001 ms must not read 0.0
    return f"{value:g}"


def table(verdict: Verdict, measured: Mapping[str, Mapping[str, Any]]) -> str:
    """Measured vs allowed, one row per threshold, then every endpoint's figures for context."""
    rows = [("endpoint", "metric", "measured", "allowed", "result")]
    for c in verdict.checks:
        op = "≥ " if c.metric == "rps" else "≤ "
        rows.append((c.endpoint, c.metric, _fmt(c.metric, c.measured) if c.metric != "requests" else "0",
                     op + _fmt(c.metric, c.allowed) if c.allowed is not None else "> 0", "ok" if c.ok else "FAIL"))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    if verdict.skipped:
        lines.append(f"(not exercised by this run: {', '.join(verdict.skipped)})")
    lines.append("")
    lines.append(figures_table(measured))
    return "\n".join(lines)


def figures_table(measured: Mapping[str, Mapping[str, Any]]) -> str:
    head = ("endpoint", "requests", "fail", "rps", "p50 ms", "p95 ms", "p99 ms", "max ms")
    rows = [head]
    for name, m in measured.items():
        def f(key: str, m: Mapping[str, Any] = m) -> str:
            v = m.get(key)
            return "-" if v is None else f"{v:.1f}"

        rows.append((name, str(m.get("requests", 0)), str(m.get("failures", 0)), f("rps"), f("p50_ms"),
                     f("p95_ms"), f("p99_ms"), f("max_ms")))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
             for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
