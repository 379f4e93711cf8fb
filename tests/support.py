"""Helpers for tests that run real servers: free ports, start with a readiness probe, stop by PID.

The process plumbing is seqguard's own (seqguard.processes.supervisor; the service through the load tests'
ServiceProcess): the tests start servers exactly as the product does.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from seqguard.infra.loadtest.processes import ServiceProcess
from seqguard.infra.loadtest.processes import start_service as _start_service
from seqguard.processes.supervisor import ChildProcess, free_port, http_ok, tcp_open

REPO = Path(__file__).resolve().parents[1]

__all__ = ["REPO", "ServerProcess", "free_port", "http_ok", "running", "start_service", "tcp_open"]


class ServerProcess(ChildProcess):
    """A child started at once, in its own process group, output in a log file for failure messages."""

    def __init__(self, cmd: Sequence[str], log_path: Path, env: dict[str, str] | None = None, cwd: Path | None = None):
        super().__init__(cmd, log_path, env={**os.environ, **(env or {})}, cwd=cwd or REPO)
        self.start()


@contextlib.contextmanager
def running(
    cmd: Sequence[str],
    log_path: Path,
    probe: Callable[[], bool],
    timeout: float = 60.0,
    env: dict[str, str] | None = None,
) -> Iterator[ServerProcess]:
    server = ServerProcess(cmd, log_path, env=env)
    try:
        server.wait_ready(probe, timeout=timeout)
        yield server
    finally:
        server.stop()


def start_service(log_dir: Path, env: dict[str, str], port: int | None = None, timeout: float = 90.0) -> tuple[
    ServiceProcess, str
]:
    """A real `bentoml serve` of seqguard's service on a free port; returns the process and its base URL."""
    # Tests stop servers often; the drain itself is tested with its own setting.
    return _start_service(log_dir, {"SEQGUARD_DRAIN_S": "0", **env}, port=port, timeout=timeout)
