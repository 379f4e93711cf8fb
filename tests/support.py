"""Helpers for tests that run real servers: free ports, start with a readiness probe, stop by PID."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_ok(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return 200 <= r.status < 300
    except Exception:
        return False


def tcp_open(port: int, host: str = "127.0.0.1") -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


class ServerProcess:
    """A child process in its own process group, with its output in a log file for failure messages."""

    def __init__(self, cmd: Sequence[str], log_path: Path, env: dict[str, str] | None = None, cwd: Path | None = None):
        self.cmd = list(cmd)
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            self.cmd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=str(cwd or REPO),
            start_new_session=True,
        )
        self.pid = self.proc.pid

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def wait_ready(self, probe: Callable[[], bool], timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.cmd[0]} exited with {self.proc.returncode}:\n{self.log_tail()}")
            if probe():
                return
            time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"{self.cmd[0]} not ready after {timeout}s:\n{self.log_tail()}")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        self._log.close()


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
    ServerProcess, str
]:
    """A real `bentoml serve` of seqguard's service on a free port; returns the process and its base URL."""
    import sys

    port = port or free_port()
    bentoml = str(Path(sys.executable).parent / "bentoml")
    full_env = {
        "BENTOML_HOME": str(log_dir / "bentoml_home"),
        "BENTOML_DO_NOT_TRACK": "true",
        "HF_HUB_OFFLINE": "1",
        "SEQGUARD_INTRA_OP_THREADS": "1",
        "SEQGUARD_DRAIN_S": "0",  # tests stop servers often; the drain itself is tested with its own setting
        **env,
    }
    server = ServerProcess(
        [bentoml, "serve", "service.service:Seqguard", "--host", "127.0.0.1", "--port", str(port)],
        log_dir / f"bentoml-{port}.log",
        env=full_env,
    )
    url = f"http://127.0.0.1:{port}"
    server.wait_ready(lambda: http_ok(url + "/readyz"), timeout=timeout)
    return server, url
