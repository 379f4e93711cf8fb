"""Which int8 kernel family this CPU has, in seqguard's terms (shared by export, which records it, and the service,
which compares the CPU it serves on with the one an int8 repository assumed)."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Literal

CpuFlavor = Literal["avx2", "avx512_vnni", "arm64"]


def detect_cpu_flavor(cpuinfo: str | None = None, machine: str | None = None) -> CpuFlavor:
    """The best int8 kernel family this machine has: arm64, avx512_vnni (AVX-512 with VNNI) or avx2."""
    machine = (machine or platform.machine()).lower()
    if machine in ("aarch64", "arm64"):
        return "arm64"
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
            break
    if {"avx512f", "avx512_vnni"} <= flags:
        return "avx512_vnni"
    return "avx2"
