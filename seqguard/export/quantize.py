"""Reduced precision: int8 (calibrated static, or dynamic) for the CPU, static QDQ int8 for TensorRT, fp16.

The CPU default is the `portable` preset: static QDQ, activations u8 (asymmetric, calibrated ranges), weights s8
symmetric per channel with `reduce_range` (7-bit, in [-64, 64]). Why it holds on every x86 CPU with AVX2 and up:
ONNX Runtime's u8s8 kernels multiply on AVX2 with VPMADDUBSW, which adds two u8*s8 products into a saturating
int16; with |weights| <= 64 the pair is at most 2 * 255 * 64 = 32640 < 32767, so the AVX2 kernel computes the exact
integer result, the same one AVX-512 VNNI's VPDPBUSD (int32 accumulation) computes. The artefact therefore does not
depend on the CPU that built it, and neither do its scores; and static activation scales make a window's result
independent of the other rows of its batch (dynamic int8 takes one activation scale over the whole batch).

The other flavours are Optimum's `AutoQuantizationConfig` presets for one CPU family (avx2: u8 weights;
avx512_vnni and arm64: s8 weights without reduce_range, which can saturate on AVX2-only CPUs). They are used only
when named (`--cpu-flavor`); the manifest records the assumption, and the service warns when it serves on another
CPU. ORTQuantizer applies dynamic presets, except on a fused graph (ORTOptimizer level 2), where its shape inference
cannot type the fused ops' outputs; there the same settings go to onnxruntime's quantizer with `DefaultTensorType`
= float.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from seqguard.cpuinfo import CpuFlavor, detect_cpu_flavor

__all__ = ["CpuFlavor", "detect_cpu_flavor"]  # re-exported: export code and tests import them from here

PORTABLE = "portable"
CPU_FLAVORS: tuple[str, ...] = (PORTABLE, "avx2", "avx512_vnni", "arm64")
STATIC_OPS: tuple[str, ...] = ("MatMul",)
# int8 weights the AVX2 u8s8 kernel (VPMADDUBSW, int16 pair sums) multiplies exactly: 2 * 255 * 64 <= 32767.
AVX2_EXACT_WEIGHTS = (-64, 64)


def quantization_config(flavor: str, static: bool = False):  # -> optimum QuantizationConfig
    """Optimum's preset for the flavour: per-tensor weights for dynamic int8 (the configuration measured on this
    kind of machine, see the shared toolchain notes), per-channel for static."""
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    if flavor == "tensorrt":
        return AutoQuantizationConfig.tensorrt(per_channel=True)
    if flavor not in CPU_FLAVORS:
        raise ValueError(f"unknown CPU flavour {flavor!r}; one of {', '.join(CPU_FLAVORS)}")
    if flavor == PORTABLE:
        # s8 symmetric per-channel weights in 7 bits, u8 activations: exact on AVX2, AVX-512 (VNNI or not), ARM.
        config = AutoQuantizationConfig.avx512_vnni(is_static=static, per_channel=True)
        config.reduce_range = True
        return config
    return getattr(AutoQuantizationConfig, flavor)(is_static=static, per_channel=static)


def isa_assumptions(flavor: str, mode: str) -> dict[str, Any]:
    """What the int8 artefact assumes about the serving CPU, for the manifest and the service's start-up check."""
    if flavor == PORTABLE:
        return {"requires": "x86-64 with AVX2 (or arm64)", "exact_on": ["avx2", "avx512", "avx512_vnni", "arm64"],
                "weights_range": list(AVX2_EXACT_WEIGHTS), "built_on": detect_cpu_flavor(),
                "batch_independent": mode == "static",
                "why": "u8 activations x 7-bit s8 weights: no int16 saturation in AVX2's VPMADDUBSW, so every ISA "
                       "computes the exact integer products"}
    return {"requires": flavor, "exact_on": [flavor], "built_on": detect_cpu_flavor(),
            "batch_independent": mode == "static",
            "why": f"Optimum's {flavor} preset: tuned for that kernel family only (s8 weights without reduce_range "
                   "may saturate on AVX2-only CPUs)"}


def describe(config: Any, flavor: str, mode: str) -> dict[str, Any]:
    """The settings that matter, JSON-ready, for the manifest (the ISA assumptions included for CPU flavours)."""
    out = {
        "flavor": flavor,
        "mode": mode,
        "format": config.format.name,
        "weights_dtype": config.weights_dtype.name,
        "activations_dtype": config.activations_dtype.name,
        "per_channel": bool(config.per_channel),
        "reduce_range": bool(config.reduce_range),
        "weights_symmetric": bool(config.weights_symmetric),
        "activations_symmetric": bool(config.activations_symmetric),
    }
    if flavor in CPU_FLAVORS:
        out["isa"] = isa_assumptions(flavor, mode)
    return out


def _quiet() -> None:
    for name in ("optimum", "root", "onnxruntime"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _is_fused(onnx_path: Path) -> bool:
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    return any(n.domain == "com.microsoft" for n in model.graph.node)


def quantize_dynamic_int8(src: Path, dst: Path, flavor: str) -> dict[str, Any]:
    """Dynamic int8 of `src` into the file `dst`; returns the settings used."""
    _quiet()
    config = quantization_config(flavor, static=False)
    dst.parent.mkdir(parents=True, exist_ok=True)
    if _is_fused(src):
        import onnx
        from onnxruntime.quantization import quantize_dynamic

        quantize_dynamic(
            src, dst, per_channel=config.per_channel, reduce_range=config.reduce_range,
            weight_type=config.weights_dtype, op_types_to_quantize=list(config.operators_to_quantize),
            extra_options={"WeightSymmetric": config.weights_symmetric,
                           "ActivationSymmetric": config.activations_symmetric,
                           "DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    else:
        from optimum.onnxruntime import ORTQuantizer

        work = dst.parent / f".{dst.stem}_ortq"
        quantizer = ORTQuantizer.from_pretrained(src.parent, file_name=src.name)
        quantizer.quantize(save_dir=work, quantization_config=config, file_suffix="quantized")
        (work / f"{src.stem}_quantized.onnx").replace(dst)
        _rmtree(work)
    return describe(config, flavor, "dynamic")


@dataclass
class _Reader:
    """Calibration batches as ORT's CalibrationDataReader wants them (get_next -> feed dict or None)."""

    batches: list[dict[str, np.ndarray]]
    i: int = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.i >= len(self.batches):
            return None
        self.i += 1
        return self.batches[self.i - 1]

    def rewind(self) -> None:
        self.i = 0


def quantize_static_int8(src: Path, dst: Path, flavor: str, calibration: Iterable[dict[str, np.ndarray]]) -> dict[
    str, Any
]:
    """Static (QDQ) int8 with activation ranges calibrated (min-max) on encoded windows; flavour "tensorrt" gives
    TensorRT's symmetric per-channel preset. Only the encoder's MatMuls are quantized; the pooler / classifier
    Gemms, residual adds, layer norms and gathers stay float. Measured on a 2-layer, 128-wide BERT from the default
    config: with the preset's full operator list the int8 margins correlated 0.76 with fp32, with MatMul + Gemm
    still 0.76, with MatMul only 0.98 (dynamic int8, which never quantizes Gemm: 0.95). Returns the settings used."""
    _quiet()
    from onnxruntime.quantization import CalibrationMethod, quantize_static

    config = quantization_config(flavor, static=True)
    dst.parent.mkdir(parents=True, exist_ok=True)
    reader = _Reader(list(calibration))
    quantize_static(
        str(src), str(dst), reader, quant_format=config.format, op_types_to_quantize=list(STATIC_OPS),
        per_channel=config.per_channel, reduce_range=config.reduce_range, activation_type=config.activations_dtype,
        weight_type=config.weights_dtype, calibrate_method=CalibrationMethod.MinMax,
        extra_options={"WeightSymmetric": config.weights_symmetric,
                       "ActivationSymmetric": config.activations_symmetric,
                       "AddQDQPairToWeight": config.qdq_add_pair_to_weight,
                       "DedicatedQDQPair": config.qdq_dedicated_pair},
    )
    settings = describe(config, flavor, "static")
    settings["calibration_batches"] = len(reader.batches)
    settings["operators"] = list(STATIC_OPS)
    return settings


INTEGER_OPS = frozenset({"MatMulInteger", "DynamicQuantizeMatMul", "QAttention", "QLinearMatMul", "QGemm",
                         "DynamicQuantizeLSTM", "ConvInteger", "QLinearConv", "DequantizeLinear"})


def int8_weight_range(path: Path) -> tuple[int, int] | None:
    """(min, max) over the graph's int8 weight initializers (None when it has none): the portable preset keeps them
    in AVX2_EXACT_WEIGHTS."""
    import onnx
    from onnx import numpy_helper

    lo, hi = None, None
    for init in onnx.load(str(path), load_external_data=False).graph.initializer:
        if init.data_type == onnx.TensorProto.INT8:
            w = numpy_helper.to_array(init)
            if w.size:
                lo = int(w.min()) if lo is None else min(lo, int(w.min()))
                hi = int(w.max()) if hi is None else max(hi, int(w.max()))
    return None if lo is None else (lo, hi)


def quantized_ops(path: Path) -> dict[str, int]:
    """How many integer / dequantize nodes the graph has, by op type: proof of what int8 actually covers (a graph
    with none of its operators quantizable, like a GRU model under MatMul-only static quantization, has zero)."""
    import onnx

    counts: dict[str, int] = {}
    for node in onnx.load(str(path), load_external_data=False).graph.node:
        if node.op_type in INTEGER_OPS:
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return dict(sorted(counts.items()))


def convert_fp16(src: Path, dst: Path) -> dict[str, Any]:
    """fp16 weights and activations with fp32 kept at the graph's edges (logits stay FP32, as the contract says).
    onnxconverter-common if installed, else the copy of its converter that ships with onnxruntime."""
    import onnx

    try:
        from onnxconverter_common.float16 import convert_float_to_float16  # type: ignore[import-not-found]

        tool = "onnxconverter_common"
    except ImportError:
        from onnxruntime.transformers.float16 import convert_float_to_float16

        tool = "onnxruntime.transformers.float16"
    model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    dst.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(dst))
    return {"tool": tool, "keep_io_types": True}


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
