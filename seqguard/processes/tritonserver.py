"""The standalone `tritonserver` of the nvidia-pytriton wheel as a child process (python backend only, CPU).

The wheel ships Triton 2.51 with the python backend, but not laid out as a backend directory, and its binary needs
the base interpreter's libpython plus the wheel's bundled libraries. `TritonProcess` assembles that: a throw-away
backend folder (`python/` = backend library + utils + the stub for this Python), LD_LIBRARY_PATH, PATH with this
environment's `bin` first (the stub ignores PYTHONPATH and finds the environment through `python3` on PATH), free
ports, a readiness wait and a stop by PID. The service's local-Triton backend, the load tests and the benchmarks
all start Triton through this class.

    with TritonProcess("triton_repo") as triton:
        client = tritonclient.grpc.InferenceServerClient(triton.urls.grpc)

The process itself is a `ChildProcess` (seqguard.processes.supervisor): its own process group, a parent-death
signal, a stop by PID.

Command line: `python -m seqguard.processes.tritonserver --repo triton_repo` (runs until Ctrl-C / SIGTERM).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from seqguard.processes.supervisor import ChildProcess, free_port

_PY_TAG = f"{sys.version_info.major}.{sys.version_info.minor}"


class TritonError(RuntimeError):
    """tritonserver could not be found, did not start, or died; the message carries the log tail."""


@dataclass(frozen=True)
class TritonInstall:
    """Where the pieces of the wheel's Triton lie."""

    binary: Path
    backend_lib: Path  # libtriton_python.so
    backend_utils: Path  # triton_python_backend_utils.py
    stub: Path  # triton_python_backend_stub built for this Python
    libs: Path  # nvidia_pytriton.libs (libtritonserver and friends)

    @classmethod
    def locate(cls) -> TritonInstall:
        try:
            import pytriton
        except ImportError as e:
            raise TritonError("nvidia-pytriton is not installed: no tritonserver binary to run") from e
        root = Path(pytriton.__file__).resolve().parent / "tritonserver"
        site = root.parents[1]
        install = cls(
            binary=root / "bin" / "tritonserver",
            backend_lib=root / "backends" / "python" / "libtriton_python.so",
            backend_utils=root / "backends" / "python" / "triton_python_backend_utils.py",
            stub=root / "python_backend_stubs" / _PY_TAG / "triton_python_backend_stub",
            libs=site / "nvidia_pytriton.libs",
        )
        parts = (install.binary, install.backend_lib, install.backend_utils, install.stub, install.libs)
        missing = [str(p) for p in parts if not p.exists()]
        if missing:
            raise TritonError(f"the nvidia-pytriton wheel lacks: {', '.join(missing)}")
        return install


@dataclass(frozen=True)
class TritonUrls:
    """Addresses as tritonclient wants them: host:port, no scheme."""

    http: str
    grpc: str
    metrics: str

    @property
    def metrics_url(self) -> str:
        return f"http://{self.metrics}/metrics"


def _libpython_dir() -> str:
    # In a venv, LIBDIR still names the base interpreter's lib folder, which holds libpython3.x.so.1.0.
    return str(sysconfig.get_config_var("LIBDIR") or Path(sys.base_prefix) / "lib")


class TritonProcess:
    """One tritonserver child process serving `repo` on 127.0.0.1 (ports 0 = pick free ones)."""

    def __init__(
        self,
        repo: str | Path,
        *,
        host: str = "127.0.0.1",
        http_port: int = 0,
        grpc_port: int = 0,
        metrics_port: int = 0,
        env_prefix: str | Path | None = None,
        log_path: str | Path | None = None,
        log_verbose: int = 0,
        exit_timeout_s: int = 5,
        extra_args: list[str] | None = None,
    ) -> None:
        self.repo = Path(repo).resolve()
        self.host = host
        self._ports = (http_port, grpc_port, metrics_port)
        self.env_prefix = Path(env_prefix or sys.prefix)
        # Without a log_path, each start logs into its own fresh work folder.
        self._log_arg = Path(log_path) if log_path else None
        self.log_path: Path | None = self._log_arg
        self.log_verbose = log_verbose
        # Triton waits this long on shutdown for clients to hang up; a kept-alive client connection would otherwise
        # hold a SIGTERM for Triton's default 30 s.
        self.exit_timeout_s = exit_timeout_s
        self.extra_args = list(extra_args or [])
        self.child: ChildProcess | None = None
        self.urls: TritonUrls | None = None
        self._workdir: Path | None = None

    # -- lifecycle ---------------------------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self.child.pid if self.child else None

    @property
    def proc(self) -> subprocess.Popen[bytes] | None:
        return self.child.proc if self.child else None

    def start(self, timeout: float = 90.0) -> TritonProcess:
        """Start (or restart, after the process died) and wait until every model is ready."""
        if self.alive():
            return self
        if self.child is not None:
            self.stop()  # a previous run that died: reap it and clear its temporary folder
            self.child = None
        if not (self.repo / "").is_dir():
            raise TritonError(f"model repository not found: {self.repo}")
        install = TritonInstall.locate()
        self._workdir = Path(tempfile.mkdtemp(prefix="seqguard-triton-"))
        backends = self._backend_dir(install, self._workdir)
        http, grpc, metrics = (p or free_port(self.host) for p in self._ports)
        self.urls = TritonUrls(f"{self.host}:{http}", f"{self.host}:{grpc}", f"{self.host}:{metrics}")
        cmd = [
            str(install.binary),
            f"--model-repository={self.repo}",
            f"--backend-directory={backends}",
            f"--http-address={self.host}", f"--http-port={http}",
            f"--grpc-address={self.host}", f"--grpc-port={grpc}",
            f"--metrics-address={self.host}", f"--metrics-port={metrics}",
            "--allow-metrics=true",
            f"--log-verbose={self.log_verbose}",
            f"--exit-timeout-secs={self.exit_timeout_s}",
            *self.extra_args,
        ]
        env = dict(os.environ)
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            p for p in (_libpython_dir(), str(install.libs), env.get("LD_LIBRARY_PATH", "")) if p
        )
        env["PATH"] = os.pathsep.join((str(self.env_prefix / "bin"), env.get("PATH", "")))
        log = self._log_arg or self._workdir / "tritonserver.log"
        self.log_path = log
        # SIGTERM to the server alone: it unloads its models and stops the python-backend stubs itself; the stubs
        # share its process group, so whatever is left is killed with the group.
        self.child = ChildProcess(cmd, log, env=env, cwd=self._workdir, term_group=False).start()
        try:
            self.wait_ready(timeout)
        except TritonError as e:
            self.stop(keep_log=True)
            raise TritonError(f"{e}\n(full log: {self.log_path})") from None
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                code = self.child.returncode if self.child else None
                raise TritonError(f"tritonserver exited with {code} before it was ready:\n{self.log_errors()}")
            if self.ready():
                return
            time.sleep(0.2)
        raise TritonError(f"tritonserver not ready after {timeout:.0f}s:\n{self.log_errors()}")

    def ready(self) -> bool:
        """Server up and every model loaded (Triton's strict readiness)."""
        if self.urls is None or not self.alive():
            return False
        try:
            with urllib.request.urlopen(f"http://{self.urls.http}/v2/health/ready", timeout=1.0) as r:
                return r.status == 200
        except OSError:
            return False

    def alive(self) -> bool:
        return self.child is not None and self.child.alive()

    def stop(self, timeout: float | None = None, keep_log: bool = False) -> int | None:
        """SIGTERM by PID (Triton unloads its models and stops the stubs), SIGKILL to its group if it hangs.
        Returns the exit code; a log in the temporary folder is kept (moved to the temp dir) when `keep_log`."""
        code: int | None = None
        if self.child is not None:
            code = self.child.stop(timeout if timeout is not None else self.exit_timeout_s + 15)
        if self._workdir is not None:
            if keep_log and self.log_path and self.log_path.parent == self._workdir:
                kept = Path(tempfile.gettempdir()) / f"seqguard-tritonserver-{self.pid or 0}.log"
                with contextlib.suppress(OSError):
                    shutil.move(str(self.log_path), kept)
                    self.log_path = kept
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
        return code

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path:
            return ""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def log_errors(self, tail: int = 15) -> str:
        """Triton's error lines (model load failures name the model and the cause) and then the last lines."""
        if not self.log_path:
            return ""
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        # E-lines, minus the GPU-less machine's CUDA/NVML noise.
        errors = [ln for ln in lines if ln.startswith("E") and "Cuda" not in ln and "CUDA" not in ln]
        last = [ln for ln in lines[-tail:] if not ln.startswith(("+-", "| "))]
        return "\n".join([*errors, "...", *last] if errors else last)

    def __enter__(self) -> TritonProcess:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    # -- internals ---------------------------------------------------------------------------------------------

    @staticmethod
    def _backend_dir(install: TritonInstall, workdir: Path) -> Path:
        root = workdir / "backends"
        py = root / "python"
        py.mkdir(parents=True)
        for src in (install.backend_lib, install.backend_utils, install.stub):
            dst = py / src.name
            try:
                dst.symlink_to(src)
            except OSError:
                shutil.copy2(src, dst)
        return root


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m seqguard.processes.tritonserver",
                                     description="Serve a model repository with the wheel's standalone tritonserver.")
    parser.add_argument("--repo", type=Path, default=Path("triton_repo"), help="model repository (default triton_repo)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--http-port", type=int, default=8000)
    parser.add_argument("--grpc-port", type=int, default=8001)
    parser.add_argument("--metrics-port", type=int, default=8002)
    parser.add_argument("--no-verify", action="store_true", help="skip the manifest check of the repository")
    parser.add_argument("--log-verbose", type=int, default=0)
    args = parser.parse_args(argv)
    if not args.no_verify:
        from seqguard.manifest import ManifestError, verify_repository

        try:
            verify_repository(args.repo)
        except ManifestError as e:
            print(f"seqguard.processes.tritonserver: error: {e}", file=sys.stderr)
            return 2
    triton = TritonProcess(args.repo, host=args.host, http_port=args.http_port, grpc_port=args.grpc_port,
                           metrics_port=args.metrics_port, log_verbose=args.log_verbose)
    stopping = False

    def _stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        triton.start()
    except TritonError as e:
        print(f"seqguard.processes.tritonserver: error: {e}", file=sys.stderr)
        return 1
    assert triton.urls is not None
    print(f"tritonserver pid {triton.pid} ready: http {triton.urls.http}  grpc {triton.urls.grpc}  "
          f"metrics {triton.urls.metrics_url}  (log {triton.log_path})", flush=True)
    try:
        while not stopping and triton.alive():
            time.sleep(0.5)
    finally:
        died = not triton.alive()
        code = triton.stop()
    if died and not stopping:
        print(f"seqguard.processes.tritonserver: tritonserver exited with {code}:\n{triton.log_tail()}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
