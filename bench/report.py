"""Markdown tables from a bench JSON: what BENCHMARKS.md shows, and what `make bench` prints at the end.

    python -m bench.report docs/bench/latest.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from bench.variants import LABELS, ORDER


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _f(x: Any, fmt: str = ".2f") -> str:
    return "–" if x is None else format(x, fmt)


def targets(res: dict[str, Any]) -> str:
    rows = []
    for t in res.get("targets", []):
        unit = t["unit"]
        measured = "–" if t["measured"] is None else f"{t['measured']:.2f} {unit}"
        rows.append([t["target"], f"{t['comparison']} {t['threshold']:g} {unit}", measured,
                     f"**{t['status']}**", t.get("detail", "")])
    return _table(["target", "threshold", "measured", "status", "detail"], rows)


def model(m: dict[str, Any], accuracy: dict[str, Any] | None = None) -> str:
    rows = []
    acc = (accuracy or {}).get("variants", {}) if (accuracy or {}).get("meaningful") else {}
    for v in ORDER:
        cells = [LABELS[v]]
        present = False
        for r in m.get("batches", {}).values():
            row = r.get(v)
            if row is None:
                cells += ["–", "–"]
                continue
            present = True
            cells.append(f"{row['throughput_per_s']:.0f} (x{row['speedup_vs_torch']:.2f})")
            cells.append(f"{row['p50_ms']:.2f} / {row['p99_ms']:.2f}")
        if not present:
            continue
        b32 = m["batches"].get("32", {}).get(v, {})
        frac, roof = b32.get("peak_fraction"), b32.get("roof_fraction")
        cells.append(f"{_f(b32.get('gflops'), '.1f')} ({_f(100 * roof if roof else None, '.0f')} % / "
                     f"{_f(100 * frac if frac else None, '.0f')} %)")
        size = m["variants"].get(v, {}).get("size_bytes")
        cells.append("–" if size is None else f"{size / 1e6:.1f}")
        if acc:
            cells.append(_f(acc.get(v, {}).get("roc_auc"), ".4f"))
        rows.append(cells)
    header = ["variant"]
    for b in m.get("batches", {}):
        header += [f"b{b} seq/s (vs eager)", f"b{b} p50 / p99 ms"]
    header += ["b32 GFLOP/s (% of same-round GEMM / % of peak)", "MB"]
    if acc:
        header.append("ROC-AUC")
    return _table(header, rows)


def system(s: dict[str, Any]) -> str:
    rows = [[r["label"], f"{r['sequences_per_s']:.0f}", f"x{r['speedup_vs_seeds']:.2f}", f"{r['seconds']:.2f}"]
            for r in s.get("pipelines", {}).values()]
    return _table(["pipeline", "sequences/s", "vs seeds", "best pass s"], rows)


def triton(t: dict[str, Any]) -> str:
    rows = []
    for key in ("dynamic_batching", "no_dynamic_batching"):
        for level, r in t.get(key, {}).items():
            batches = ", ".join(f"{m} {b:.1f}" for m, b in r.get("avg_executed_batch", {}).items())
            rows.append([key.replace("_", " "), level, f"{r['throughput_per_s']:.0f}", _f(r.get("p50_ms")),
                         _f(r.get("p99_ms")), batches, str(r.get("errors", 0))])
    return _table(["scheduler", "load", "req/s", "p50 ms", "p99 ms", "avg executed batch", "errors"], rows)


def service(s: dict[str, Any]) -> str:
    rows = [["raw embedded backend (in process, same window)", _f(s["raw_backend"]["p50_ms"]),
             _f(s["raw_backend"]["p99_ms"])],
            ["ScoringEngine in process (windowing, batcher, scorer)", _f(s["engine_in_process"]["p50_ms"]),
             _f(s["engine_in_process"]["p99_ms"])],
            ["same engine, ORT sessions without spin-waiting (experiment, not served)",
             _f((s.get("engine_in_process_ort_no_spinning") or {}).get("p50_ms")),
             _f((s.get("engine_in_process_ort_no_spinning") or {}).get("p99_ms"))],
            ["POST /score through bentoml serve", _f(s["http_score"]["p50_ms"]), _f(s["http_score"]["p99_ms"])],
            ["**service overhead** (/score − raw backend)", f"**{_f(s['overhead_ms_p50'])}**",
             _f(s["overhead_ms_p99"])]]
    table = _table(["path (batch 1, one entity)", "p50 ms", "p99 ms"], rows)
    steps = _table(["step, timed alone", "p50 ms"],
                   [[k, _f(v)] for k, v in (s.get("breakdown_p50_ms") or {}).items()])
    return table + "\n\n" + steps


def loadtest(lt: dict[str, Any]) -> str:
    if lt.get("max_rps_meeting_slo") is None:
        return f"{lt.get('source')}: {lt.get('reason') or lt.get('error') or 'no figure'}"
    head = (f"{lt['source']} ({lt.get('command') or lt.get('file')}): highest throughput meeting "
            f"{lt.get('slo_file')}: **{lt['max_rps_meeting_slo']:.1f} requests/s per instance** "
            f"(p99 {_f(lt.get('p99_at_max_ms'), '.0f')} ms)")
    if lt.get("model_note"):
        head += f". Which model, as the source says: {lt['model_note']}"
    if not lt.get("stages"):
        return head
    rows = [[str(s["users"]), f"{s['rps']:.1f}", _f(s["p50_ms"], ".0f"), _f(s["p99_ms"], ".0f"),
             "yes" if s["meets_slo"] else "no"] for s in lt["stages"]]
    return head + "\n\n" + _table(["users", "rps", "p50 ms", "p99 ms", "meets SLO"], rows)


def render(res: dict[str, Any]) -> str:
    parts = ["### Targets", targets(res)]
    for name, m in res.get("models", {}).items():
        if isinstance(m, dict) and m.get("batches"):
            acc = res.get("accuracy") if name == "behaviour_bert" else None
            parts += [f"### Model level: {m['label']} (seq {m['seq_len']}; {m['origin']})", model(m, acc)]
    if isinstance(res.get("system"), dict) and res["system"].get("pipelines"):
        parts += ["### System level", system(res["system"])]
    if isinstance(res.get("triton"), dict) and res["triton"].get("dynamic_batching"):
        parts += ["### Triton", triton(res["triton"])]
    if isinstance(res.get("service"), dict) and res["service"].get("http_score"):
        parts += ["### Service", service(res["service"])]
    lt = res.get("loadtest")
    if isinstance(lt, dict):
        parts += ["### Sustained throughput under the SLO (load test)", loadtest(lt)]
    return "\n\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    path = Path(args[0] if args else "docs/bench/latest.json")
    print(render(json.loads(path.read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
