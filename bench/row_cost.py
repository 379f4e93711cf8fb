"""What the served models cost per window on one core: each component of a repository at the padded lengths the
service uses and a few batch sizes, with ONNX Runtime configured as the embedded backend (one intra-op thread, no
spinning). It is the floor under any `/events` request: BENCHMARKS.md compares it with the trivial endpoint's.

    python -m bench.row_cost --repo triton_repo [--lengths 16 32 64] [--batches 1 2 8 32] [--out row_cost.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import ort_session
from seqguard.features import CLS_ID, MASK_ID, SEP_ID
from seqguard.manifest import Manifest


def measure(repo: Path, lengths: list[int], batches: list[int], budget_s: float = 0.3) -> dict[str, Any]:
    """{component: {"L<len>": {"B<batch>": {"call_ms", "row_ms"}}}}, best of three timed blocks per cell."""
    rng = np.random.default_rng(0)
    out: dict[str, Any] = {}
    for comp in Manifest.load(repo).components:
        session = ort_session(repo / comp.file, threads=1)
        names = {i.name for i in session.get_inputs()}
        cells: dict[str, Any] = {}
        for length in lengths:
            for batch in batches:
                ids = rng.integers(MASK_ID + 1, 200, size=(batch, length)).astype(np.int64)
                ids[:, 0], ids[:, -1] = CLS_ID, SEP_ID
                feed = {k: v for k, v in {"input_ids": ids, "attention_mask": np.ones_like(ids),
                                          "token_type_ids": np.zeros_like(ids)}.items() if k in names}
                for _ in range(5):
                    session.run(None, feed)
                best = float("inf")
                for _ in range(3):
                    n, t0 = 0, time.perf_counter()
                    while time.perf_counter() - t0 < budget_s / 3 or n < 5:
                        session.run(None, feed)
                        n += 1
                    best = min(best, (time.perf_counter() - t0) / n)
                cells.setdefault(f"L{length}", {})[f"B{batch}"] = {"call_ms": best * 1e3,
                                                                   "row_ms": best * 1e3 / batch}
        out[comp.name] = cells
    return out


def table(res: dict[str, Any]) -> str:
    comps = list(res)
    first = res[comps[0]]
    lines = ["| length | batch | " + " | ".join(f"{c} ms/row" for c in comps) + " | all models ms/row |",
             "|---|---|" + "---|" * (len(comps) + 1)]
    for lk, per_batch in first.items():
        for bk in per_batch:
            rows = [res[c][lk][bk]["row_ms"] for c in comps]
            lines.append(f"| {lk[1:]} | {bk[1:]} | " + " | ".join(f"{r:.3f}" for r in rows) + f" | {sum(rows):.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.row_cost", description=__doc__.split("\n\n")[0])
    p.add_argument("--repo", type=Path, default=Path("triton_repo"))
    p.add_argument("--lengths", type=int, nargs="+", default=[16, 32, 64])
    p.add_argument("--batches", type=int, nargs="+", default=[1, 2, 8, 32])
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    res = measure(args.repo, args.lengths, args.batches)
    print(table(res))
    if args.out:
        args.out.write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
