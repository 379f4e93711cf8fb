"""manifest.json content for an exported repository (the model and its check live in seqguard.manifest).

The manifest is a function of the checkpoint, the flags and the build environment (library versions, the CPU
family the gates ran on, the core count behind the default thread setting), never of the clock: `created_at` is
the content's time (SOURCE_DATE_EPOCH, else the checkpoint's own `created`), and the ORT latencies the export
measures are printed, not written. The same checkpoint and flags therefore give a byte-identical repository,
manifest.json included (docs/reproducible_export.md).
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Mapping
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from seqguard.contracts import (
    DETECTOR_FILE,
    ENSEMBLE_FILE,
    ENSEMBLE_MODEL,
    MODEL_INPUTS,
    MODEL_OUTPUT,
    RULES_FILE,
    ensemble_output,
)
from seqguard.export.checkpoint import Checkpoint
from seqguard.manifest import TOKENIZER_FILES, ComponentEntry, ExportSettings, Manifest, TensorEntry, write_manifest
from seqguard.tokenizer import tokenizer_hash

VERSIONED = ("seqguard", "torch", "transformers", "optimum", "optimum-onnx", "onnx", "onnxruntime", "tritonclient",
             "nvidia-pytriton", "numpy")


def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def content_time(ckpt: Checkpoint, environ: Mapping[str, str] = os.environ) -> str:
    """`created_at`: SOURCE_DATE_EPOCH when set (the reproducible-builds convention: a release pins the time), else
    the checkpoint's `created` (the content's time, not the build's), else the mtime of its checkpoint.json.
    Raises ValueError naming the variable when SOURCE_DATE_EPOCH is not a whole number of seconds."""
    raw = environ.get("SOURCE_DATE_EPOCH")
    if raw is not None and raw.strip() != "":
        try:
            seconds = int(raw.strip())
            if seconds < 0:
                raise ValueError
            return datetime.fromtimestamp(seconds, UTC).strftime(TIME_FORMAT)
        except (ValueError, OverflowError, OSError):
            raise ValueError(f"SOURCE_DATE_EPOCH={raw!r}: must be a whole, non-negative number of seconds since "
                             "1970-01-01 UTC (e.g. `git log -1 --format=%ct`)") from None
    created = ckpt.index.get("created")
    if isinstance(created, str):
        try:
            stamp = datetime.fromisoformat(created)
            return (stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)).astimezone(UTC).strftime(TIME_FORMAT)
        except ValueError:
            pass  # a hand-written checkpoint.json: fall through to the file's own time
    mtime = (ckpt.root / "checkpoint.json").stat().st_mtime
    return datetime.fromtimestamp(int(mtime), UTC).strftime(TIME_FORMAT)


def _json_safe(obj: Any) -> Any:
    """NaN / inf are not JSON: the manifest carries null instead."""
    if isinstance(obj, float):
        return obj if obj == obj and abs(obj) != float("inf") else None
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    if hasattr(obj, "item"):  # numpy scalars
        return _json_safe(obj.item())
    return obj


def _thresholds(ensemble: dict[str, Any]) -> dict[str, dict[str, float]]:
    return {k: {d: float(t) for d, t in ensemble[k].get("thresholds", {}).items()}
            for k in ("main", "degraded") if isinstance(ensemble.get(k), dict)}


def build_manifest(repo: Path, ckpt: Checkpoint, opts: Any, settings: Any, flavor: str | None,
                   results: list[Any], created_at: str) -> Manifest:
    ensemble = json.loads((repo / ENSEMBLE_FILE).read_text())
    backend = "python" if opts.target == "cpu" else "onnxruntime"
    # The settings common to every model (per-model node counts live in the components).
    quant = next(({k: v for k, v in r.quantization.items() if k != "quantized_ops"} for r in results
                  if r.quantization), None)
    components = [
        ComponentEntry(
            name=r.name, kind=r.kind, triton_model=r.name, backend=backend, precision=r.precision,
            file=f"{r.name}/1/model.onnx", size_bytes=r.size_bytes, ensemble_output=ensemble_output(r.name),
            plan=r.plan, quantization=r.quantization, parity=_json_safe(r.parity),
            # Latency is a property of the machine and the moment: printed by the export, not pinned in the
            # repository. Only `--graph-opt timed` records the measurements that chose its graph.
            latency_ms=r.graph_timing or {},
        )
        for r in results
    ]
    manifest = Manifest(
        created_at=created_at,
        model_version=f"{ckpt.version}+{opts.target}.{opts.precision}",
        checkpoint_version=ckpt.version,
        sequence_config=ckpt.sequence_config.model_dump(mode="json"),
        sequence_config_hash=ckpt.sequence_config.config_hash(),
        tokenizer_hash=tokenizer_hash(repo),
        tokenizer_files=[f for f in TOKENIZER_FILES if (repo / f).is_file()],
        ensemble_file=ENSEMBLE_FILE,
        ensemble=ensemble,
        rules_file=RULES_FILE,
        rules=yaml.safe_load((repo / RULES_FILE).read_text()),
        unsupervised_file=DETECTOR_FILE,
        unsupervised=json.loads((repo / DETECTOR_FILE).read_text()),
        thresholds=_thresholds(ensemble),
        evaluation=_json_safe(ckpt.metrics),
        export=ExportSettings(
            target=opts.target, precision=opts.precision, cpu_flavor=flavor,
            int8_mode=("static" if opts.target == "gpu" else opts.int8_mode) if opts.precision == "int8" else None,
            quantization=quant, opset=opts.opset, graph_optimization={r.name: r.graph for r in results},
            max_batch_size=settings.max_batch_size, instances=settings.instances,
            intra_op_threads=settings.intra_op_threads if opts.target == "cpu" else None,
            preferred_batch_sizes=settings.preferred(), max_queue_delay_us=settings.max_queue_delay_us,
        ),
        versions=library_versions(),
        ensemble_model=ENSEMBLE_MODEL,
        inputs=[TensorEntry(name=s.name, datatype=s.triton_dtype, dims=list(s.dims)) for s in MODEL_INPUTS],
        output=TensorEntry(name=MODEL_OUTPUT.name, datatype=MODEL_OUTPUT.triton_dtype, dims=list(MODEL_OUTPUT.dims)),
        components=components,
    )
    return write_manifest(repo, manifest)
