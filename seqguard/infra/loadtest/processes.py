"""Servers a load run starts for itself (`--start-service`, `--fault`): on free loopback ports, stopped by PID.

Both are `seqguard.processes` children: their own process group, a parent-death signal, a stop by PID.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from seqguard.processes.supervisor import ChildProcess, ProcessError, free_port, http_status
from seqguard.processes.tritonserver import TritonProcess

REPO_ROOT = Path(__file__).resolve().parents[3]
_STARTUP_FAILED = "Application startup failed"


class ServiceProcess:
    """`bentoml serve service.service:Seqguard` on 127.0.0.1 in its own process group, output in a log file."""

    def __init__(self, repo: Path | None, log_dir: Path, env: dict[str, str] | None = None,
                 port: int | None = None) -> None:
        self.repo = Path(repo).resolve() if repo is not None else None
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
        repo_env = {"SEQGUARD_REPO": str(self.repo)} if self.repo is not None else {}
        self.env = {**{k: v for k, v in defaults.items() if k not in os.environ}, **repo_env, **(env or {})}
        self.child: ChildProcess | None = None

    @property
    def proc(self) -> subprocess.Popen[bytes] | None:
        return self.child.proc if self.child else None

    @property
    def pid(self) -> int | None:
        return self.child.pid if self.child else None

    def start(self, timeout: float = 120.0, ready_path: str = "/readyz") -> ServiceProcess:
        bentoml = str(Path(sys.executable).parent / "bentoml")
        # bentoml's workers run in process groups of their own: they are reaped by PID when the supervisor stops.
        self.child = ChildProcess(
            [bentoml, "serve", "service.service:Seqguard", "--host", "127.0.0.1", "--port", str(self.port)],
            self.log_path, env={**os.environ, **self.env}, cwd=REPO_ROOT, reap_children=True,
        ).start()
        try:
            self.child.wait_ready(
                lambda: http_status(self.url + ready_path) == 200, timeout,
                # bentoml's supervisor outlives a worker that failed to start; waiting on would only time out.
                failed=lambda: _STARTUP_FAILED in self.log_tail(200), what="the service",
            )
        except ProcessError as e:
            raise RuntimeError(str(e)) from None
        return self

    def log_tail(self, n: int = 30) -> str:
        return self.child.log_tail(n) if self.child else ""

    def alive(self) -> bool:
        return self.child is not None and self.child.alive()

    def stop(self, timeout: float = 15.0) -> None:
        if self.child is not None:
            self.child.stop(timeout)

    def __enter__(self) -> ServiceProcess:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def start_service(log_dir: Path, env: dict[str, str], port: int | None = None,
                  timeout: float = 90.0) -> tuple[ServiceProcess, str]:
    """A ready `bentoml serve` with `env` on top of the defaults (SEQGUARD_REPO among them); the process and its
    base URL. For the benchmarks and the tests, which set everything they depend on in `env`."""
    defaults = {"BENTOML_HOME": str(log_dir / "bentoml_home"), "BENTOML_DO_NOT_TRACK": "true", "HF_HUB_OFFLINE": "1",
                "SEQGUARD_INTRA_OP_THREADS": "1"}
    server = ServiceProcess(None, log_dir, env={**defaults, **env}, port=port).start(timeout=timeout)
    return server, server.url


def start_triton(repo: Path) -> TritonProcess:
    """A tritonserver on fixed free ports, so a restart (the fault run) comes back where clients point."""
    # A short exit timeout: the service keeps its gRPC channel open, which would hold a SIGTERM for seconds.
    return TritonProcess(repo, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(),
                         exit_timeout_s=2).start()
