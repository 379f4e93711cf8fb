"""Servers a load run starts for itself (`--start-service`, `--fault`): on free loopback ports, stopped by PID."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from seqguard.tritonserver import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
_STARTUP_FAILED = "Application startup failed"


def http_status(url: str, timeout: float = 1.0) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)
    except OSError:
        return None


class ServiceProcess:
    """`bentoml serve service.service:Seqguard` on 127.0.0.1 in its own process group, output in a log file."""

    def __init__(self, repo: Path, log_dir: Path, env: dict[str, str] | None = None, port: int | None = None) -> None:
        self.repo = Path(repo).resolve()
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"service-{self.port}.log"
        defaults = {
            "BENTOML_HOME": str(log_dir / "bentoml_home"),
            "BENTOML_DO_NOT_TRACK": "true",
            "HF_HUB_OFFLINE": "1",
            # One ONNX Runtime thread: the load generator needs the other core of a small box. The caller's
            # environment wins, so a measurement can try other settings.
            "SEQGUARD_INTRA_OP_THREADS": "1",
        }
        self.env = {**{k: v for k, v in defaults.items() if k not in os.environ}, "SEQGUARD_REPO": str(self.repo),
                    **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 120.0, ready_path: str = "/readyz") -> ServiceProcess:
        bentoml = str(Path(sys.executable).parent / "bentoml")
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [bentoml, "serve", "service.service:Seqguard", "--host", "127.0.0.1", "--port", str(self.port)],
            stdout=self._log, stderr=subprocess.STDOUT, env={**os.environ, **self.env}, cwd=str(REPO_ROOT),
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self.log_tail()
                self.stop()
                raise RuntimeError(f"the service exited with {self.proc.returncode} while starting:\n{tail}")
            if http_status(self.url + ready_path) == 200:
                return self
            if _STARTUP_FAILED in self.log_tail(200):
                # bentoml's supervisor outlives a worker that failed to start; waiting on would only time out.
                tail = self.log_tail()
                self.stop()
                raise RuntimeError(f"the service failed to start (log {self.log_path}):\n{tail}")
            time.sleep(0.3)
        tail = self.log_tail()
        self.stop()
        raise RuntimeError(f"the service was not ready after {timeout:.0f}s (log {self.log_path}):\n{tail}")

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            # bentoml's workers run in process groups of their own: note their PIDs before the supervisor goes.
            children = _children(self.proc.pid)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
            _reap(children)
        if getattr(self, "_log", None) is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> ServiceProcess:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def _children(pid: int) -> list[Any]:
    import psutil

    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def _reap(children: list[Any], timeout: float = 10.0) -> None:
    """Children the supervisor did not take down with it are stopped by PID (psutil checks the PID was not reused)."""
    import psutil

    _gone, alive = psutil.wait_procs(children, timeout=timeout)
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.kill()


def start_triton(repo: Path):
    """A tritonserver on fixed free ports, so a restart (the fault run) comes back where clients point."""
    from seqguard.tritonserver import TritonProcess

    # A short exit timeout: the service keeps its gRPC channel open, which would hold a SIGTERM for seconds.
    return TritonProcess(repo, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(),
                         exit_timeout_s=2).start()
