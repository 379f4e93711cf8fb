"""One way to run a server as a child: free loopback ports, its own process group, a parent-death signal,
a readiness probe, and a stop by PID.

The parent-death signal (Linux `prctl(PR_SET_PDEATHSIG)`) makes the kernel send SIGTERM to the child when the
parent dies, even by SIGKILL, so no tritonserver or `bentoml serve` outlives the process that started it. The
kernel ties it to the *thread* that forked: start long-lived children from a thread that lives as long as they
should (the main thread, or an executor thread), or pass `die_with_parent=False`.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

_PR_SET_PDEATHSIG = 1
# Loaded in the parent: the child runs nothing between fork and exec that could take a lock.
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


class ProcessError(RuntimeError):
    """The child exited before it was ready, or was not ready in time; the message carries its log tail."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def http_status(url: str, timeout: float = 1.0) -> int | None:
    """The HTTP status of a GET (4xx/5xx included), None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)
    except (OSError, ValueError):
        return None


def http_ok(url: str, timeout: float = 1.0) -> bool:
    status = http_status(url, timeout)
    return status is not None and 200 <= status < 300


def tcp_open(port: int, host: str = "127.0.0.1") -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def _die_with_parent(parent: int) -> Callable[[], None]:
    def arm() -> None:
        if _LIBC is not None:
            _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the signal was armed
            os._exit(1)

    return arm


class ChildProcess:
    """`cmd` in its own process group (so its children go down with it), output in `log_path`.

    `term_group`: SIGTERM goes to the whole group (a supervisor such as bentoml's) rather than to the leader only
    (tritonserver stops its python-backend stubs itself). Whatever is left after `stop` is killed by group.
    `reap_children`: also stop descendants that moved to process groups of their own (bentoml's workers; needs
    psutil)."""

    def __init__(
        self,
        cmd: Sequence[str],
        log_path: str | Path,
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | Path | None = None,
        term_group: bool = True,
        reap_children: bool = False,
        die_with_parent: bool = True,
    ) -> None:
        self.cmd = [str(c) for c in cmd]
        self.log_path = Path(log_path)
        self.env = dict(os.environ if env is None else env)
        self.cwd = str(cwd) if cwd is not None else None
        self.term_group = term_group
        self.reap_children = reap_children
        self.die_with_parent = die_with_parent
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode if self.proc else None

    def start(self) -> ChildProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            self.cmd, stdout=self._log, stderr=subprocess.STDOUT, env=self.env, cwd=self.cwd,
            start_new_session=True,
            preexec_fn=_die_with_parent(os.getpid()) if self.die_with_parent else None,
        )
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, probe: Callable[[], bool], timeout: float = 60.0, *,
                   failed: Callable[[], bool] | None = None, what: str | None = None) -> None:
        """Poll `probe` until it holds; stop the child and raise ProcessError when it exits, when `failed()`
        says it cannot become ready, or after `timeout` seconds."""
        name = what or Path(self.cmd[0]).name
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                code = self.returncode
                tail = self.log_tail()
                self.stop()
                raise ProcessError(f"{name} exited with {code} before it was ready (log {self.log_path}):\n{tail}")
            if probe():
                return
            if failed is not None and failed():
                tail = self.log_tail()
                self.stop()
                raise ProcessError(f"{name} failed to start (log {self.log_path}):\n{tail}")
            time.sleep(0.2)
        tail = self.log_tail()
        self.stop()
        raise ProcessError(f"{name} not ready after {timeout:.0f}s (log {self.log_path}):\n{tail}")

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM by PID (or to its group), SIGKILL to the group after `timeout`; returns the exit code."""
        if self.proc is not None:
            pid = self.proc.pid
            if self.proc.poll() is None:
                children = _descendants(pid) if self.reap_children else []
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    (os.killpg if self.term_group else os.kill)(pid, signal.SIGTERM)
                try:
                    self.proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(pid, signal.SIGKILL)
                    self.proc.wait(timeout=5)
                _reap(children)
            # Grandchildren that outlived the leader (it was killed) still sit in its process group.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        if self._log is not None:
            self._log.close()
            self._log = None
        return self.returncode

    def __enter__(self) -> ChildProcess:
        return self if self.proc is not None else self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


def _descendants(pid: int) -> list[Any]:
    import psutil

    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def _reap(children: list[Any], timeout: float = 10.0) -> None:
    """Descendants the leader did not take down are stopped by PID (psutil checks the PID was not reused)."""
    if not children:
        return
    import psutil

    _gone, alive = psutil.wait_procs(children, timeout=timeout)
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.kill()
