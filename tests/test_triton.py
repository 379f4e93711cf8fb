"""The exported cpu repository in a REAL tritonserver (the nvidia-pytriton wheel's binary, python backend).

Every model must load READY, and the ensemble's outputs over HTTP and gRPC must equal in-process ONNX Runtime on the
same inputs. The server is started by the test through seqguard.processes.tritonserver and stopped by PID.
"""

from __future__ import annotations

import os
import re
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from seqguard.contracts import ENSEMBLE_MODEL, MODEL_INPUTS, ensemble_output, infer_inputs
from tests.support import ServerProcess, free_port, http_ok
from tests.test_export import MODELS, exported, trained_checkpoint

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return exported(tmp_path_factory, "cpu", "int8")[0]


@pytest.fixture(scope="module")
def triton(repo: Path) -> Iterator[object]:
    from seqguard.processes.tritonserver import TritonProcess

    server = TritonProcess(repo)
    server.start(timeout=120)
    yield server
    pid = server.pid
    assert server.stop() == 0, server.log_tail()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # gone, not a zombie: stop() reaped it


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    """Calibration windows of different lengths, padded to the longest as the service pads a batch."""
    from seqguard.export.checkpoint import Checkpoint

    calib = Checkpoint.open(trained_checkpoint(tmp_path_factory)).calibration()
    lengths = calib.inputs["attention_mask"].sum(axis=1)
    rows = [int(i) for i in np.unique(lengths, return_index=True)[1][:7]]  # one window per distinct length
    feed = calib.repadded(rows)
    assert len(set(feed["attention_mask"].sum(axis=1))) >= 3
    return feed


def reference(repo: Path, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    from seqguard.export.parity import ort_session

    return {m: ort_session(repo / m / "1" / "model.onnx").run(["logits"], feed)[0] for m in MODELS}


def test_models_ready(triton: object) -> None:
    import tritonclient.http as http

    client = http.InferenceServerClient(triton.urls.http)  # type: ignore[attr-defined]
    try:
        index = {m["name"]: m.get("state") for m in client.get_model_repository_index()}
        assert index == {m: "READY" for m in [*MODELS, ENSEMBLE_MODEL]}
        for m in [*MODELS, ENSEMBLE_MODEL]:
            assert client.is_model_ready(m)
    finally:
        client.close()


def test_ensemble_over_http(triton: object, repo: Path, batch: dict[str, np.ndarray]) -> None:
    import tritonclient.http as http

    client = http.InferenceServerClient(triton.urls.http)  # type: ignore[attr-defined]
    try:
        result = client.infer(ENSEMBLE_MODEL, infer_inputs(batch, http, binary_data=True))
        for m, ref in reference(repo, batch).items():
            np.testing.assert_allclose(result.as_numpy(ensemble_output(m)), ref, atol=1e-5, rtol=0)
    finally:
        client.close()


def test_ensemble_over_grpc(triton: object, repo: Path, batch: dict[str, np.ndarray]) -> None:
    import tritonclient.grpc as grpc

    client = grpc.InferenceServerClient(triton.urls.grpc)  # type: ignore[attr-defined]
    try:
        result = client.infer(ENSEMBLE_MODEL, infer_inputs(batch, grpc))
        for m, ref in reference(repo, batch).items():
            np.testing.assert_allclose(result.as_numpy(ensemble_output(m)), ref, atol=1e-5, rtol=0)
    finally:
        client.close()


def test_concurrent_requests_of_different_lengths(triton: object, repo: Path, batch: dict[str, np.ndarray]) -> None:
    """Single-window requests at their own lengths, in flight together so the dynamic batcher can group them: each
    answer must be that window's own (the python model runs same-length requests together, never pads across)."""
    import tritonclient.http as http

    client = http.InferenceServerClient(triton.urls.http, concurrency=8)  # type: ignore[attr-defined]
    try:
        n = batch["attention_mask"].sum(axis=1)
        feeds = [{k: v[i:i + 1, :n[i]] for k, v in batch.items()} for i in range(len(n))]
        pending = []
        for feed in feeds:
            pending.append(client.async_infer(ENSEMBLE_MODEL, infer_inputs(feed, http)))
        for feed, req in zip(feeds, pending, strict=True):
            result = req.get_result()
            for m, ref in reference(repo, feed).items():
                np.testing.assert_allclose(result.as_numpy(ensemble_output(m)), ref, atol=1e-5, rtol=0)
    finally:
        client.close()


def test_bad_request_is_rejected_not_fatal(triton: object) -> None:
    import tritonclient.http as http
    from tritonclient.utils import InferenceServerException

    client = http.InferenceServerClient(triton.urls.http)  # type: ignore[attr-defined]
    try:
        # An id outside the vocabulary.
        feed = {spec.name: np.full((1, 8), 10**9 if spec.name == "input_ids" else 1) for spec in MODEL_INPUTS}
        inputs = infer_inputs(feed, http)
        with pytest.raises(InferenceServerException):
            client.infer(MODELS[0], inputs)
        assert client.is_server_ready()
    finally:
        client.close()


def test_module_entry_point(repo: Path, tmp_path: Path) -> None:
    """`python -m seqguard.processes.tritonserver --repo ...` verifies the manifest, serves, and stops cleanly on
    SIGTERM."""
    http_port = free_port()
    server = ServerProcess(
        [sys.executable, "-m", "seqguard.processes.tritonserver", "--repo", str(repo), "--http-port", str(http_port),
         "--grpc-port", str(free_port()), "--metrics-port", str(free_port())],
        tmp_path / "entry.log",
    )
    try:
        server.wait_ready(lambda: http_ok(f"http://127.0.0.1:{http_port}/v2/health/ready"), timeout=120)
        os.kill(server.pid, signal.SIGTERM)
        assert server.proc.wait(timeout=30) == 0, server.log_tail()
        assert re.search(r"tritonserver pid \d+ ready", server.log_path.read_text())
    finally:
        server.stop()


def test_start_failure_names_the_model(repo: Path, tmp_path: Path) -> None:
    import shutil

    from seqguard.processes.tritonserver import TritonError, TritonProcess

    broken = tmp_path / "repo"
    shutil.copytree(repo, broken)
    (broken / MODELS[1] / "1" / "model.onnx").write_bytes(b"not an onnx file")
    with pytest.raises(TritonError) as e:
        TritonProcess(broken, log_path=tmp_path / "triton.log").start(timeout=120)
    assert MODELS[1] in str(e.value)


def test_restart_after_crash(repo: Path, tmp_path: Path) -> None:
    """start() on a TritonProcess whose server died brings it back (the service's local-Triton backend relies on
    this), and the dead server's python-backend stubs do not outlive it."""
    import time

    from seqguard.processes.tritonserver import TritonProcess

    server = TritonProcess(repo, log_path=tmp_path / "triton.log")
    server.start(timeout=120)
    try:
        first = server.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        server.proc.wait(timeout=10)  # type: ignore[union-attr]
        assert not server.ready()
        server.start(timeout=120)
        assert server.pid != first and server.ready()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.killpg(first, 0)
            except ProcessLookupError:
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"processes of the killed server's group {first} are still alive")
    finally:
        assert server.stop() == 0, server.log_tail()
