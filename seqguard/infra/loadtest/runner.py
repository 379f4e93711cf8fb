"""Runs locust headless as a subprocess, reads the stats its locustfile wrote when it quit, and applies the SLO.

The locust process is a `seqguard.processes` child (its own session, a parent-death signal) stopped by PID (SIGTERM,
then SIGKILL) when it overruns its bounded duration. The figures come from the locustfile's quitting listener
(locust's final stats); the CSV and HTML reports are locust's own and land next to the JSON.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seqguard.infra.loadtest.collect import write_json
from seqguard.infra.loadtest.settings import LoadSettings
from seqguard.infra.loadtest.slo import SLO, Verdict, evaluate
from seqguard.processes.supervisor import ChildProcess

LOCUSTFILE = Path(__file__).resolve().with_name("locustfile.py")
REPO_ROOT = LOCUSTFILE.parents[3]
# Locust's start (payload building) and shutdown on top of the run time, before the run counts as hung.
STARTUP_ALLOWANCE_S = 90.0
_DURATION = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s?)?\s*$")


class RunError(RuntimeError):
    """Locust did not produce stats (it crashed, hung, or could not load the locustfile)."""


def parse_duration(text: str) -> float:
    """'60s', '2m', '1m30s', '90' (seconds) -> seconds."""
    m = _DURATION.match(text or "")
    if not m or not any(m.groups()):
        raise ValueError(f"{text!r} is not a duration (e.g. 30s, 2m, 1m30s)")
    h, mnt, s = (float(g) if g else 0.0 for g in m.groups())
    seconds = h * 3600 + mnt * 60 + s
    if seconds <= 0:
        raise ValueError(f"{text!r}: a duration must be positive")
    return seconds


@dataclass
class RunPaths:
    out: Path
    name: str = "loadtest"

    @property
    def csv_prefix(self) -> Path:
        return self.out / self.name

    @property
    def html(self) -> Path:
        return self.out / f"{self.name}.html"

    @property
    def json(self) -> Path:
        return self.out / f"{self.name}.json"

    @property
    def log(self) -> Path:
        return self.out / f"{self.name}.locust.log"


@dataclass
class LocustRun:
    """A started locust subprocess; `wait()` returns its stats."""

    child: ChildProcess
    paths: RunPaths
    deadline: float
    started: float = field(default_factory=time.monotonic)

    @property
    def proc(self) -> subprocess.Popen[bytes]:
        assert self.child.proc is not None
        return self.child.proc

    def wait(self) -> dict[str, Any]:
        try:
            self.proc.wait(timeout=max(1.0, self.deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.stop()
            raise RunError(f"locust overran its time limit and was stopped (log: {self.paths.log})") from None
        except BaseException:
            self.stop()
            raise
        self.stop()  # closes the log; the group's stragglers go too
        if not self.paths.json.is_file():
            raise RunError(f"locust exited with {self.proc.returncode} without writing stats:\n{self.log_tail()}")
        return json.loads(self.paths.json.read_text(encoding="utf-8"))

    def stop(self) -> None:
        self.child.stop(timeout=15)

    def log_tail(self, n: int = 25) -> str:
        return self.child.log_tail(n)


def locust_command(host: str, paths: RunPaths, settings: LoadSettings, users: int, spawn_rate: float,
                   duration_s: float) -> list[str]:
    cmd = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--host", host,
           "--csv", str(paths.csv_prefix), "--html", str(paths.html), "--only-summary", "--loglevel", "WARNING",
           # Users stop at their next wait; a request in flight gets this long to finish rather than being cut
           # off and counted as a failure.
           "--stop-timeout", "10"]
    if not settings.steps:  # a step run's shape sets users and time itself
        cmd += ["-u", str(users), "-r", f"{spawn_rate:g}", "-t", f"{max(1, round(duration_s))}s"]
    return cmd


def start_locust(host: str, out: Path, settings: LoadSettings, users: int, spawn_rate: float,
                 duration_s: float, name: str = "loadtest") -> LocustRun:
    paths = RunPaths(out, name)
    out.mkdir(parents=True, exist_ok=True)
    for stale in (paths.json, paths.html):
        stale.unlink(missing_ok=True)
    settings = settings.model_copy(update={"stats_out": str(paths.json)})
    env = {**os.environ, **settings.to_env(),
           "PYTHONPATH": os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)}
    total_s = settings.stage_s * len(settings.steps) if settings.steps else duration_s
    child = ChildProcess(locust_command(host, paths, settings, users, spawn_rate, duration_s), paths.log, env=env,
                         cwd=REPO_ROOT).start()
    return LocustRun(child, paths, deadline=time.monotonic() + total_s + STARTUP_ALLOWANCE_S)


@dataclass
class RunResult:
    stats: dict[str, Any]
    verdict: Verdict | None
    paths: RunPaths


def run(host: str, out: Path, settings: LoadSettings, users: int, spawn_rate: float, duration_s: float,
        slo: SLO | None, slo_source: str | None = None) -> RunResult:
    """One bounded run; the SLO (if any) is applied and recorded in the JSON report."""
    handle = start_locust(host, out, settings, users, spawn_rate, duration_s)
    stats = handle.wait()
    verdict = None
    if slo is not None and not settings.steps:
        verdict = evaluate(slo, stats["endpoints"], stats["expected_endpoints"])
        stats["slo"] = verdict_json(verdict, slo_source)
        write_json(handle.paths.json, stats)
    return RunResult(stats, verdict, handle.paths)


def verdict_json(verdict: Verdict, source: str | None) -> dict[str, Any]:
    return {
        "file": source,
        "passed": verdict.passed,
        "checks": [{"endpoint": c.endpoint, "metric": c.metric, "measured": c.measured, "allowed": c.allowed,
                    "ok": c.ok} for c in verdict.checks],
        "violations": [str(c) for c in verdict.violations],
        "not_exercised": verdict.skipped,
    }
