"""Container flavours: `bentoml build` (offline) for CPU and GPU, and the GPU entrypoint's supervision, run for real.

Building the images needs a Docker engine, which this machine lacks; the generated Dockerfiles are checked instead.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import REPO, ServerProcess, free_port, http_ok, tcp_open

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def _context(tmp: Path, repo: Path) -> Path:
    ctx = tmp / "ctx"
    ctx.mkdir()
    for name in ("service", "seqguard"):
        shutil.copytree(REPO / name, ctx / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("bentofile.yaml", "bentofile.gpu.yaml", "README.md"):
        shutil.copy(REPO / name, ctx / name)
    shutil.copytree(REPO / "infra/container", ctx / "infra/container")
    shutil.copytree(repo, ctx / "triton_repo")
    return ctx


def _build(ctx: Path, home: Path, bentofile: str) -> Path:
    env = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "true"}
    out = subprocess.run([str(BIN / "bentoml"), "build", "-f", bentofile, "."], cwd=ctx, env=env,
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr
    name = "seqguard-gpu" if "gpu" in bentofile else "seqguard"
    return next(p for p in (home / "bentos" / name).iterdir() if p.name != "latest")


def test_cpu_and_gpu_bentos_build_offline(tiny_repo: Path, tmp_path: Path) -> None:
    ctx = _context(tmp_path, tiny_repo)
    cpu = _build(ctx, tmp_path / "home", "bentofile.yaml")
    dockerfile = (cpu / "env/docker/Dockerfile").read_text()
    assert "FROM python:3.11-slim" in dockerfile
    assert "ENV SEQGUARD_PORT=$SEQGUARD_PORT" in dockerfile and "ARG SEQGUARD_PORT=8080" in dockerfile
    reqs = (cpu / "env/python/requirements.txt").read_text()
    assert "onnxruntime" in reqs and "torch" not in reqs  # the CPU image stays slim: no training stack
    assert (cpu / "src/triton_repo/manifest.json").is_file()
    # The packaged repository still verifies: nothing was dropped or altered on the way into the bento.
    from seqguard.manifest import verify_repository

    verify_repository(cpu / "src/triton_repo")

    gpu = _build(ctx, tmp_path / "home", "bentofile.gpu.yaml")
    dockerfile = (gpu / "env/docker/Dockerfile").read_text()
    assert "FROM nvcr.io/nvidia/tritonserver" in dockerfile
    assert 'ENTRYPOINT [ "/home/bentoml/bento/src/infra/container/entrypoint-gpu.sh" ]' in dockerfile
    assert (gpu / "src/infra/container/entrypoint-gpu.sh").is_file()


def test_the_service_imports_no_training_stack(tiny_repo: Path) -> None:
    code = ("import sys, service.service; "
            "print(sorted(m for m in ('torch', 'transformers', 'optimum', 'sklearn') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "SEQGUARD_REPO": str(tiny_repo)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_gpu_entrypoint_supervises_triton_and_the_bento(tiny_repo: Path, tmp_path: Path) -> None:
    """The same script as in the GPU image, with the wheel's tritonserver standing in for the image's."""
    http, grpc, metrics, port = free_port(), free_port(), free_port(), free_port()
    env = {
        "SEQGUARD_REPO": str(tiny_repo),
        "TRITON_GRPC_PORT": str(grpc),
        "TRITON_CMD": f"{sys.executable} -m seqguard.processes.tritonserver --repo {tiny_repo} --http-port {http} "
                      f"--grpc-port {grpc} --metrics-port {metrics}",
        "BENTO_CMD": f"{BIN / 'bentoml'} serve service.service:Seqguard --host 127.0.0.1 --port {port}",
        "BENTOML_HOME": str(tmp_path / "home"),
        "BENTOML_DO_NOT_TRACK": "true",
        "PATH": f"{BIN}:{os.environ['PATH']}",
    }
    proc = ServerProcess([str(REPO / "infra/container/entrypoint-gpu.sh"), "serve"], tmp_path / "entry.log", env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        # /ping is the bento's readiness: true only once Triton serves every model.
        proc.wait_ready(lambda: http_ok(url + "/ping"), timeout=150)
        import json
        import urllib.request

        body = json.dumps({"events": [{"user_id": "g1", "ts": time.time() - 60, "event_type": "login"}]}).encode()
        req = urllib.request.Request(url + "/invocations", data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            result = json.loads(r.read())["results"][0]
        assert result["degraded"] is False and result["entity_id"] == "g1"
        # Triton goes away: the entrypoint stops the bento too and exits non-zero, for the platform to replace it.
        wrapper = subprocess.run(["pgrep", "-f", f"seqguard.processes.tritonserver --repo {tiny_repo}"],
                                 capture_output=True, text=True).stdout.split()
        assert wrapper
        os.kill(int(wrapper[0]), signal.SIGTERM)
        code = proc.proc.wait(timeout=60)
        assert code != 0
        assert not tcp_open(port), "the bento outlived tritonserver"
        assert "a supervised process exited" in proc.log_tail()
    finally:
        proc.stop()
