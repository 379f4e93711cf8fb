"""The machine the figures were taken on: CPU model and SIMD flags as /proc/cpuinfo reports them, cores, versions."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.common import load_average

# The flags that decide which GEMM kernels run: fp32 (AVX2 / AVX-512 FMA) and int8 (VNNI, AMX).
SIMD_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni",
              "avx512_bf16", "amx_int8", "amx_bf16")
PACKAGES = ("torch", "transformers", "optimum", "optimum-onnx", "onnx", "onnxruntime", "numpy", "tritonclient",
            "nvidia-pytriton", "bentoml", "locust")


def _cpuinfo() -> tuple[dict[str, str], set[str], int]:
    """(first processor's identity fields, its flags, logical processor count)."""
    ident: dict[str, str] = {}
    flags: set[str] = set()
    count = 0
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return ident, flags, count
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "processor":
            count += 1
        elif key in ("vendor_id", "model name", "cpu family", "model", "stepping", "cpu MHz") and key not in ident:
            ident[key] = value.strip()
        elif key == "flags" and not flags:
            flags = set(value.split())
    return ident, flags, count


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    ident, flags, logical = _cpuinfo()
    from seqguard.export.quantize import detect_cpu_flavor

    info: dict[str, Any] = {
        "cpu_model": ident.get("model name") or platform.processor() or "unknown",
        "cpu_id": ident,
        "logical_cpus": logical or os.cpu_count(),
        "os_cpu_count": os.cpu_count(),
        "affinity_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "simd": {f: f in flags for f in SIMD_FLAGS},
        "int8_kernel_family": detect_cpu_flavor(),  # what seqguard export picks for its int8 config here
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {p: _version(p) for p in PACKAGES},
        "load_average_at_start": load_average(),
        "memory_gib": _memory_gib(),
    }
    try:
        import torch

        info["torch_config"] = {"mkldnn": bool(torch.backends.mkldnn.is_available()),
                                "cpu_capability": torch.backends.cpu.get_cpu_capability()}
    except Exception:  # informative only
        pass
    return info


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None
