"""Sustained throughput under the SLO: quoted from the load-test step when it left a result, else measured with a
short `seqguard loadtest --step` run (the load-test step's own tool), else reported as not available."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.common import log

CANDIDATES = ("reports/loadtest/capacity.json", "docs/loadtest/capacity.json", "docs/capacity.json")


def _quote(path: Path) -> dict[str, Any]:
    from seqguard.infra.loadtest.capacity import CapacityResult

    r = CapacityResult.load(path)
    best = r.stages[r.best_stage] if r.best_stage is not None else None
    return {"source": "quoted", "file": str(path), "measured_at": r.measured_at.isoformat(), "target": r.target,
            "slo_file": r.slo_file, "max_rps_meeting_slo": r.max_rps_meeting_slo, "p99_at_max_ms": r.p99_at_max_ms,
            "users_at_max": best.users if best else None,
            "stages": [{"users": s.users, "rps": s.rps, "p50_ms": s.p50_ms, "p99_ms": s.p99_ms,
                        "meets_slo": s.meets_slo} for s in r.stages]}


_HEADLINE = re.compile(r"Highest throughput meeting `?(?P<slo>[^`*:]+)`?:\s*(?P<rps>[0-9.]+)\s*requests/s per instance"
                       r"(?P<rest>[^\n]*(?:\n[^\n]+){0,2})")


def _quote_doc(path: Path) -> dict[str, Any] | None:
    """The capacity headline of the load-test step's write-up (docs/loadtest.md), with what it says about the
    model and the box the figure was taken on."""
    text = path.read_text()
    m = _HEADLINE.search(text)
    if m is None:
        return None
    p99 = re.search(r"p99 ([0-9.]+) ms", m.group("rest"))
    out: dict[str, Any] = {"source": "quoted", "file": str(path.relative_to(path.parents[1])),
                           "slo_file": m.group("slo").strip(),
                           "max_rps_meeting_slo": float(m.group("rps")),
                           "p99_at_max_ms": float(p99.group(1)) if p99 else None}
    for key, label in (("model_note", "Which model:"), ("box_note", "Which box:")):
        i = text.find(label)
        if i >= 0:
            paragraph = " ".join(text[i + len(label):].split("\n\n")[0].split()).strip("* ")
            out[key] = paragraph.split(". ")[0].rstrip(".") + "."  # its first sentence says which
    return out


def run(root: Path, repo: Path, out: Path, mode: str = "auto", steps: str = "10,40,80", duration: str = "60s",
        timeout_s: float = 180.0) -> dict[str, Any]:
    """mode: auto (quote, else measure when an SLO file exists), quote, measure, skip."""
    if mode == "skip":
        return {"source": "skipped", "reason": "--loadtest skip"}
    if mode in ("auto", "quote"):
        for rel in CANDIDATES:
            if (root / rel).is_file():
                try:
                    return _quote(root / rel)
                except Exception as e:
                    log(f"  {rel}: not a capacity result ({type(e).__name__}: {e})")
        doc = root / "docs/loadtest.md"
        if doc.is_file():
            quoted = _quote_doc(doc)
            if quoted is not None:
                return quoted
            log("  docs/loadtest.md has no capacity headline to quote")
        if mode == "quote":
            return {"source": "not available", "reason": f"none of {', '.join(CANDIDATES)} exists"}
    slo = root / "infra/slo.yaml"
    if not slo.is_file():
        return {"source": "not available",
                "reason": f"no capacity result ({', '.join(CANDIDATES)}) and no {slo.relative_to(root)} to run one"}
    dest = out / "loadtest"
    cmd = [str(Path(sys.executable).parent / "seqguard"), "loadtest", "--slo", str(slo), "--step", steps, "--duration",
           duration, "--start-service", "--repo", str(repo), "--out", str(dest)]
    log(f"  running: seqguard loadtest --step {steps} --duration {duration} (a short capacity step)")
    try:
        proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"source": "measured", "error": f"seqguard loadtest did not finish in {timeout_s:.0f}s",
                "command": "seqguard " + " ".join(cmd[1:])}
    result: dict[str, Any] = {"command": "seqguard " + " ".join(cmd[1:]), "exit_code": proc.returncode}
    if (dest / "capacity.json").is_file():
        result.update(_quote(dest / "capacity.json"))
        result["source"] = "measured here (short step run)"
    else:
        result.update(source="measured", error=(proc.stderr or proc.stdout)[-600:])
    json.dumps(result)  # fail here, not at the end, if something is not serialisable
    return result
