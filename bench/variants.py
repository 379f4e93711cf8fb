"""The precision / graph variants of one model, built with the export code itself (never a re-implementation):
seqguard.export.onnx_export.export_bert (Optimum), optimize_bert (ORTOptimizer level 2), seqguard.export.quantize's
dynamic int8 (with the DefaultTensorType fix on fused graphs) and calibrated static int8."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import file_size, log


@dataclass
class Variant:
    name: str
    label: str
    runtime: str  # torch | onnxruntime
    precision: str  # fp32 | int8
    graph: str  # eager | plain | fused
    path: Path | None = None
    size_bytes: int | None = None
    build_s: float = 0.0
    quantization: dict[str, Any] | None = None
    error: str | None = None

    def summary(self) -> dict[str, Any]:
        return {"label": self.label, "runtime": self.runtime, "precision": self.precision, "graph": self.graph,
                "file": self.path.name if self.path else None, "size_bytes": self.size_bytes,
                "build_s": round(self.build_s, 2), "quantization": self.quantization, "error": self.error}


ORDER = ("torch_fp32", "ort_fp32", "ort_fp32_fused", "ort_int8_dynamic", "ort_int8_dynamic_fused", "ort_int8_static")
LABELS = {
    "torch_fp32": "PyTorch eager fp32",
    "ort_fp32": "ORT fp32",
    "ort_fp32_fused": "ORT fp32 fused",
    "ort_int8_dynamic": "ORT int8 dynamic",
    "ort_int8_dynamic_fused": "ORT int8 dynamic fused",
    "ort_int8_static": "ORT int8 static",
}


def _build(variant: Variant, make: Callable[[], tuple[Path, dict[str, Any] | None]]) -> Variant:
    t0 = time.perf_counter()
    try:
        path, quant = make()
        variant.path, variant.quantization = path, quant
        variant.size_bytes = file_size(path)
    except Exception as e:  # one variant failing must not cost the others their figures
        variant.error = f"{type(e).__name__}: {str(e)[:300]}"
        log(f"    {variant.name}: FAILED to build: {variant.error}")
    variant.build_s = time.perf_counter() - t0
    return variant


def build_variants(model_dir: Path, work: Path, flavor: str, calibration: list[dict[str, np.ndarray]] | None,
                   include_static: bool = True) -> dict[str, Variant]:
    from seqguard.export.onnx_export import export_bert, optimize_bert
    from seqguard.export.quantize import quantize_dynamic_int8, quantize_static_int8, quantized_ops

    def v(name: str, runtime: str, precision: str, graph: str) -> Variant:
        return Variant(name, LABELS[name], runtime, precision, graph)

    out: dict[str, Variant] = {"torch_fp32": v("torch_fp32", "torch", "fp32", "eager")}
    raw = _build(v("ort_fp32", "onnxruntime", "fp32", "plain"), lambda: (export_bert(model_dir, work / "onnx"), None))
    out["ort_fp32"] = raw
    if raw.path is None:
        return out
    fused = _build(v("ort_fp32_fused", "onnxruntime", "fp32", "fused"),
                   lambda: (optimize_bert(raw.path, work / "fused"), None))  # type: ignore[arg-type]
    out["ort_fp32_fused"] = fused

    def dynamic(src: Path, dst: Path) -> tuple[Path, dict[str, Any]]:
        settings = quantize_dynamic_int8(src, dst, flavor)
        return dst, {**settings, "quantized_ops": quantized_ops(dst)}

    out["ort_int8_dynamic"] = _build(v("ort_int8_dynamic", "onnxruntime", "int8", "plain"),
                                     lambda: dynamic(raw.path, work / "int8" / "dynamic.onnx"))  # type: ignore[arg-type]
    if fused.path is not None:
        out["ort_int8_dynamic_fused"] = _build(
            v("ort_int8_dynamic_fused", "onnxruntime", "int8", "fused"),
            lambda: dynamic(fused.path, work / "int8" / "dynamic_fused.onnx"))  # type: ignore[arg-type]
    if include_static and calibration:
        def static() -> tuple[Path, dict[str, Any]]:
            dst = work / "int8" / "static.onnx"
            # Static QDQ on the plain graph, as the export does: calibration cannot type the fused contrib ops.
            settings = quantize_static_int8(raw.path, dst, flavor, calibration)  # type: ignore[arg-type]
            return dst, {**settings, "quantized_ops": quantized_ops(dst)}

        out["ort_int8_static"] = _build(v("ort_int8_static", "onnxruntime", "int8", "plain"), static)
    return out
