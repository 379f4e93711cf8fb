"""What the cross-entity features add: the aggregate models with and without them, on the generator, per scenario.

`python -m bench.cross_entity --users 3000 --days 6 --seed 11 --out reports/cross_entity.json`

Both arms use the same windows, split and models (the project's gradient boosting and ECOD on the aggregate features);
"without" holds the cross-entity columns at a constant (0) in training and test, which is what a model that never
had them sees. Entity-level figures (bootstrap intervals) come from seqguard.train.entity_metrics, as in the training
report.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from seqguard.crossentity import CROSS_FEATURE_NAMES, presence
from seqguard.features import FEATURE_NAMES
from seqguard.generator import GeneratorConfig, generate
from seqguard.scoring.detector import ECODDetector
from seqguard.scoring.entity import DEFAULT_AGGREGATION
from seqguard.train.components import fit_tabular
from seqguard.train.config import TrainConfig
from seqguard.train.dataset import build_windows, split_windows
from seqguard.train.entity_metrics import entity_report

CROSS = np.array([FEATURE_NAMES.index(n) for n in CROSS_FEATURE_NAMES])


def measure(users: int, days: int, seed: int) -> dict:
    frame = generate(GeneratorConfig(users=users, days=days, seed=seed)).events
    cfg = TrainConfig()
    ws = build_windows(frame, cfg.sequence, progress=True)
    split = split_windows(ws, cfg.split, cfg.seed)
    y = ws.y()
    without = ws.features.copy()
    without[:, CROSS] = 0.0
    sources: dict[str, np.ndarray] = {}
    for arm, x in (("with", ws.features), ("without", without)):
        trees = fit_tabular(x[split.train], y[split.train], cfg)
        sources[f"gradient_boosting_{arm}"] = trees.decision_function(x[split.test])
        ecod = ECODDetector().fit(x[split.train])
        sources[f"ecod_{arm}"] = ecod.score_samples(x[split.test])
    t = split.test
    report = entity_report(ws.entity[t], y[t], ws.scenario[t], sources, DEFAULT_AGGREGATION, seed=cfg.seed)
    return {"generator": {"users": users, "days": days, "seed": seed}, "windows": len(ws),
            "test_windows": len(t), "presence": presence(ws.columns), "entity": report}


def table(result: dict) -> str:
    scores = result["entity"]["scores"]
    scen = sorted(next(iter(scores.values()))["per_scenario"])
    lines = ["| scenario | GB without | GB with | ECOD without | ECOD with |", "|---|---|---|---|---|"]

    def cell(row: dict) -> str:
        lo, hi = row.get("pr_auc_ci") or (float("nan"), float("nan"))
        return f"{row['pr_auc']:.3f} [{lo:.3f}, {hi:.3f}]"

    for name, pick in [("all", lambda s: scores[s])] + [(sc, lambda s, sc=sc: scores[s]["per_scenario"][sc])
                                                         for sc in scen]:
        lines.append(f"| {name} | " + " | ".join(cell(pick(s)) for s in (
            "gradient_boosting_without", "gradient_boosting_with", "ecod_without", "ecod_with")) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=3000)
    ap.add_argument("--days", type=int, default=6)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--out", type=Path, default=Path("reports/cross_entity.json"))
    a = ap.parse_args()
    result = measure(a.users, a.days, a.seed)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1, default=float) + "\n")
    print(table(result))


if __name__ == "__main__":
    main()
