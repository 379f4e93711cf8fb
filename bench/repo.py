"""Which CPU Triton repository the Triton and service levels use, and its twin without dynamic batching.

In order: the project's triton_repo/ (what `make model` exports), else an export of models/ (the trained
checkpoint), else a checkpoint trained here with the tiny config and exported as tests/conftest.py does (fp32: a
16-wide toy model is too small for int8 to keep its ranking). The twin is a copy whose models' config.pbtxt has
its dynamic_batching block removed through Triton's own ModelConfig protobuf, re-pinned with write_manifest.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from bench.common import log


def describe(repo: Path) -> dict[str, Any]:
    from seqguard.manifest import verify_repository

    m = verify_repository(repo)
    return {"path": str(repo), "model_version": m.model_version, "checkpoint_version": m.checkpoint_version,
            "precision": m.export.precision, "graph_optimization": m.export.graph_optimization,
            "components": [{"name": c.name, "kind": c.kind, "precision": c.precision, "size_bytes": c.size_bytes}
                           for c in m.components],
            "max_batch_size": m.export.max_batch_size, "preferred_batch_sizes": m.export.preferred_batch_sizes,
            "max_queue_delay_us": m.export.max_queue_delay_us, "intra_op_threads": m.export.intra_op_threads,
            "max_len": m.sequence_config_model().max_len}


def resolve(project_repo: Path, models: Path, work: Path) -> tuple[Path, str]:
    """(repository, how it was obtained)."""
    if (project_repo / "manifest.json").is_file():
        return project_repo, f"the project's {project_repo}"
    from seqguard.export.pipeline import ExportOptions, run_export

    quiet = lambda *_: None  # noqa: E731 - the export's own progress lines would drown the benchmark's
    out = work / "triton_repo"
    if (models / "checkpoint.json").is_file():
        for precision in ("int8", "fp32"):
            try:
                log(f"  exporting {models} ({precision}) -> {out}")
                run_export(ExportOptions(models=models, out=out, target="cpu", precision=precision), log=quiet)
                return out, f"exported here from {models} ({precision})"
            except Exception as e:  # an int8 parity gate failure: fall back to fp32, say so
                log(f"  export {precision} failed: {type(e).__name__}: {str(e)[:200]}")
    from seqguard.generator import GeneratorConfig, generate
    from seqguard.train.config import TINY_CONFIG, load_train_config
    from seqguard.train.pipeline import train_checkpoint

    log("  no triton_repo/ and no models/: training the tiny checkpoint (tests/conftest.py's recipe)")
    events = generate(GeneratorConfig(users=800, days=4, seed=3)).events
    ckpt = train_checkpoint(events, load_train_config(TINY_CONFIG), work / "tiny_models", progress=False,
                            log=quiet)
    run_export(ExportOptions(models=ckpt, out=out, target="cpu", precision="fp32"), log=quiet)
    return out, "tiny checkpoint trained here (train_tiny.yaml), exported fp32: Triton/service figures are overhead"


def strip_dynamic_batching(text: str) -> str:
    """config.pbtxt text without its dynamic_batching block (parsed and re-rendered as Triton's ModelConfig)."""
    from seqguard.export.triton_repo import render, validate_config

    cfg = validate_config(text)
    cfg.ClearField("dynamic_batching")
    return render(cfg)


def without_dynamic_batching(repo: Path, dst: Path) -> Path:
    """A copy of `repo` whose models run with Triton's default scheduler (one request per execution)."""
    from seqguard.export.triton_repo import CONFIG_FILE
    from seqguard.manifest import Manifest, verify_repository, write_manifest

    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(repo, dst, ignore=shutil.ignore_patterns("__pycache__"))
    for config in sorted(dst.glob(f"*/{CONFIG_FILE}")):
        text = config.read_text()
        stripped = strip_dynamic_batching(text)
        if stripped != text:
            config.write_text(stripped)
    write_manifest(dst, Manifest.load(dst))
    verify_repository(dst)  # the copy must pass the same check the service and tritonserver launcher run
    return dst
