"""The hardware limit, measured rather than taken from a data sheet: the best fp32 GEMM rate torch reaches here with
the benchmark's thread count, and, for context, the int8 GEMM rate of ONNX Runtime's own integer kernel (the one
dynamic-int8 models run: MatMulInteger, u8 activations x s8 weights)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import THREADS, ort_session, set_threads


def fp32_gemm_peak(n: int = 2048, repeats: int = 7) -> dict[str, Any]:
    """Best of `repeats` torch.matmul n x n x n (2 n^3 FLOPs each): the fp32 roof the models are measured against."""
    import torch

    set_threads(THREADS)
    a = torch.randn(n, n, dtype=torch.float32)
    b = torch.randn(n, n, dtype=torch.float32)
    out = torch.empty(n, n, dtype=torch.float32)
    torch.matmul(a, b, out=out)  # first call pays the allocator and the kernel choice
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.matmul(a, b, out=out)
        times.append(time.perf_counter() - t0)
    flops = 2.0 * n**3
    return {"n": n, "repeats": repeats, "threads": THREADS, "best_s": min(times), "median_s": float(np.median(times)),
            "gflops": flops / min(times) / 1e9, "gflops_median": flops / float(np.median(times)) / 1e9}


def int8_gemm_rate(n: int = 2048, repeats: int = 7) -> dict[str, Any]:
    """Best-of rate of ONNX Runtime's MatMulInteger on n x n x n (u8 x s8 -> s32), counted as 2 n^3 ops like the
    fp32 GEMM, so the two are directly comparable ("effective FLOP/s")."""
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node("MatMulInteger", ["A", "B"], ["Y"])
    graph = helper.make_graph(
        [node], "int8_gemm",
        [helper.make_tensor_value_info("A", TensorProto.UINT8, [n, n]),
         helper.make_tensor_value_info("B", TensorProto.INT8, [n, n])],
        [helper.make_tensor_value_info("Y", TensorProto.INT32, [n, n])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    rng = np.random.default_rng(0)
    feed = {"A": rng.integers(0, 255, (n, n), dtype=np.uint8), "B": rng.integers(-127, 127, (n, n), dtype=np.int8)}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "int8_gemm.onnx"
        onnx.save(model, str(path))
        session = ort_session(path)
        session.run(None, feed)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            session.run(None, feed)
            times.append(time.perf_counter() - t0)
    ops = 2.0 * n**3
    return {"n": n, "repeats": repeats, "threads": THREADS, "kernel": "onnxruntime MatMulInteger u8 x s8",
            "best_s": min(times), "gops": ops / min(times) / 1e9}


def measure(n: int = 2048, repeats: int = 7) -> dict[str, Any]:
    fp32 = fp32_gemm_peak(n, repeats)
    out: dict[str, Any] = {"fp32_gemm": fp32, "fp32_peak_gflops": fp32["gflops"]}
    try:
        int8 = int8_gemm_rate(n, repeats)
        out["int8_gemm"] = int8
        out["int8_over_fp32_gemm"] = int8["gops"] / fp32["gflops"]
    except Exception as e:  # context only; the fp32 peak is what the targets use
        out["int8_gemm"] = {"error": f"{type(e).__name__}: {e}"}
    return out
