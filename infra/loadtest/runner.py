"""Runs locust headless as a subprocess, reads the stats its locustfile wrote when it quit, and applies the SLO.

The locust process is started in its own session and stopped by PID (SIGTERM, then SIGKILL) when it overruns its
bounded duration. The figures come from the locustfile's quitting listener (locust's final stats); the CSV and HTML
reports are locust's own and land next to the JSON.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from infra.loadtest.collect import write_json
from infra.loadtest.settings import LoadSettings
from infra.loadtest.slo import SLO, Verdict, evaluate

LOCUSTFILE = Path(__file__).resolve().with_name("locustfile.py")
REPO_ROOT = LOCUSTFILE.parents[2]
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

    proc: subprocess.Popen[bytes]
    paths: RunPaths
    deadline: float
    log_file: IO[bytes]
    started: float = field(default_factory=time.monotonic)

    def wait(self) -> dict[str, Any]:
        try:
            self.proc.wait(timeout=max(1.0, self.deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.stop()
            raise RunError(f"locust overran its time limit and was stopped (log: {self.paths.log})") from None
        except BaseException:
            self.stop()
            raise
        finally:
            self.log_file.close()
        if not self.paths.json.is_file():
            raise RunError(f"locust exited with {self.proc.returncode} without writing stats:\n{self.log_tail()}")
        return json.loads(self.paths.json.read_text(encoding="utf-8"))

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        self.log_file.close()

    def log_tail(self, n: int = 25) -> str:
        try:
            return "\n".join(self.paths.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


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
    log = open(paths.log, "wb")  # noqa: SIM115 - closed by LocustRun.wait()
    proc = subprocess.Popen(locust_command(host, paths, settings, users, spawn_rate, duration_s), stdout=log,
                            stderr=subprocess.STDOUT, env=env, cwd=str(REPO_ROOT), start_new_session=True)
    return LocustRun(proc, paths, deadline=time.monotonic() + total_s + STARTUP_ALLOWANCE_S, log_file=log)


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
