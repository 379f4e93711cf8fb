"""A native TensorRT engine (model.plan) for the gpu target, built only where `tensorrt` imports and a GPU is present.

The engine has one optimisation profile over batch 1..max_batch and sequence length 1..max_len for all three inputs.
Engines are tied to the GPU model and TensorRT version they were built with, so the manifest records both and the
portable onnxruntime_onnx model (TensorRT accelerator) stays the ensemble's default.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

from seqguard.contracts import MODEL_INPUTS


def gpu_count() -> int:
    """CUDA devices visible to the driver (0 without a driver): no torch / CUDA toolkit needed."""
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return 0
    count = ctypes.c_int(0)
    if cuda.cuInit(0) != 0 or cuda.cuDeviceGetCount(ctypes.byref(count)) != 0:
        return 0
    return int(count.value)


def unavailable_reason() -> str | None:
    """None when an engine can be built here, else why not."""
    try:
        import tensorrt  # noqa: F401  # type: ignore[import-not-found]
    except ImportError:
        return "tensorrt is not installed"
    if gpu_count() == 0:
        return "no GPU"
    return None


def build_plan(onnx_path: Path, plan_path: Path, precision: str, max_batch: int, max_len: int, opt_batch: int,
               workspace_bytes: int = 1 << 30) -> dict[str, str]:
    """Build and serialise the engine; returns what the manifest records about it."""
    import tensorrt as trt  # type: ignore[import-not-found]

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT >= 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    elif precision == "int8":
        # The ONNX is QDQ (explicit quantization): the scales come from the graph, no calibrator needed.
        config.set_flag(trt.BuilderFlag.INT8)
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    for spec in MODEL_INPUTS:
        profile.set_shape(spec.name, (1, 1), (opt_batch, min(64, max_len)), (max_batch, max_len))
    config.add_optimization_profile(profile)
    engine = builder.build_serialized_network(network, config)
    if engine is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path}")
    plan_path.parent.mkdir(parents=True, exist_ok=True)
    plan_path.write_bytes(bytes(engine))
    name = ctypes.create_string_buffer(256)
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
        dev = ctypes.c_int(0)
        cuda.cuDeviceGet(ctypes.byref(dev), 0)
        cuda.cuDeviceGetName(name, 256, dev)
    except OSError:
        pass
    return {"tensorrt": trt.__version__, "gpu": name.value.decode(errors="replace"), "precision": precision}
