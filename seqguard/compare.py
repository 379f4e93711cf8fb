"""Champion vs challenger on the same recent labelled data, at the entity level, with a verdict.

Both checkpoints score every window of the same events (each with its own SequenceConfig and `Scorer`, the
service's scoring function); window scores become entity scores through `seqguard.scoring.entity` (the one place
that aggregation lives) and entity labels are "any window anomalous". The verdict is the rule a risk team would
sign off: the challenger wins when its entity-level PR-AUC beats the champion's by at least `min_gain` AND its
recall at the operating false-positive rate does not fall by more than `max_recall_drop`. Everything that went
into the verdict is in the result, so `seqguard deploy apply --evidence` can record it.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from seqguard.scoring.entity import DEFAULT_AGGREGATION, aggregate_entity_labels, check_aggregation
from seqguard.scoring.scorer import Scorer
from seqguard.train.checkpoint import load_models, load_sequence_config, read_index
from seqguard.train.dataset import DatasetError, WindowSet, build_windows
from seqguard.train.entity_metrics import FPRS, entity_report
from seqguard.train.loop import predict_logits
from seqguard.train.metrics import clean, summary
from seqguard.train.scores import ENSEMBLE

COMPARE_FORMAT = "seqguard-compare-v1"


def window_scores(models_dir: str | Path, frame: pd.DataFrame, ws: WindowSet | None = None
                  ) -> tuple[WindowSet, np.ndarray, np.ndarray]:
    """(windows, ensemble score per window, decision per window) of a checkpoint on an events frame."""
    seq = load_sequence_config(models_dir)
    if ws is None or ws.cfg.config_hash() != seq.config_hash():
        ws = build_windows(frame, seq)
    scorer = Scorer.load(models_dir)
    models = load_models(models_dir)
    idx = np.arange(len(ws))
    logits = {n: predict_logits(models[n], ws.encoded, idx) for n in scorer.components} if scorer.components else None
    scores, decisions = [], []
    for i in range(0, len(ws), 4096):
        part = {k: v[i:i + 4096] for k, v in logits.items()} if logits is not None else None
        for d in scorer.score(part, ws.features[i:i + 4096]):
            scores.append(d.score)
            decisions.append(d.decision)
    return ws, np.asarray(scores), np.asarray(decisions, dtype=object)


def entity_aggregation(models_dir: str | Path) -> str:
    """The method the checkpoint's training chose (saved with its ensemble), as `seqguard evaluate` reads it."""
    return check_aggregation(Scorer.load(models_dir).ensemble.entity_aggregation or DEFAULT_AGGREGATION)


def _evaluate(models_dir: Path, frame: pd.DataFrame, ws: WindowSet | None, fpr: float
              ) -> tuple[WindowSet, dict[str, Any]]:
    ws, scores, decisions = window_scores(models_dir, frame, ws)
    if not ws.has_labels:
        raise DatasetError("compare needs labelled data (an is_anomaly column, or outcomes joined by retrain)")
    y = ws.y()
    method = entity_aggregation(models_dir)
    ey = aggregate_entity_labels(ws.entity, y).to_numpy()
    if not 0 < ey.sum() < len(ey):
        raise DatasetError(f"the data's {len(ey)} entities hold only one class ({int(ey.sum())} fraud); a comparison "
                           "needs both")
    # The entity-level report `seqguard evaluate` writes (bootstrap intervals, per scenario), for the ensemble.
    report = entity_report(ws.entity, y, ws.scenario, {ENSEMBLE: scores}, method, seed=0)
    out = {
        "version": read_index(models_dir).get("version"),
        "path": str(models_dir),
        "entity_aggregation": method,
        "entity": report["scores"][ENSEMBLE],
        "entity_warnings": report["warnings"],
        "window": summary(y, scores, fpr),
        "decisions": {d: float(np.mean(decisions == d)) for d in ("allow", "review", "block")},
    }
    return ws, out


def data_fingerprint(frame: pd.DataFrame) -> str:
    h = hashlib.sha256(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return h.hexdigest()[:16]


def compare_checkpoints(champion: str | Path, challenger: str | Path, frame: pd.DataFrame, fpr: float = 0.01,
                        min_gain: float = 0.0, max_recall_drop: float = 0.02) -> dict[str, Any]:
    if fpr not in FPRS:
        raise ValueError(f"fpr must be one of {FPRS} (the operating points of the entity report), got {fpr}")
    champion, challenger = Path(champion), Path(challenger)
    ws, champ = _evaluate(champion, frame, None, fpr)
    _, chall = _evaluate(challenger, frame, ws, fpr)
    key = f"recall_at_{fpr:g}_fpr"
    if champ["entity"][key] is None or chall["entity"][key] is None:
        raise DatasetError(f"entity recall at {fpr:g} FPR is not quoted on this data ("
                           + "; ".join(champ["entity_warnings"]) + "); use --fpr 0.05 or more recent data")
    gain = chall["entity"]["pr_auc"] - champ["entity"]["pr_auc"]
    recall_change = chall["entity"][key] - champ["entity"][key]
    reasons = [f"entity PR-AUC {champ['entity']['pr_auc']:.4f} -> {chall['entity']['pr_auc']:.4f} "
               f"({gain:+.4f}; needs > {min_gain:+.4f})",
               f"entity recall at {fpr:.0%} FPR {champ['entity'][key]:.4f} -> {chall['entity'][key]:.4f} "
               f"({recall_change:+.4f}; may fall by at most {max_recall_drop:.4f})"]
    wins = gain > min_gain and recall_change >= -max_recall_drop
    return clean({
        "format": COMPARE_FORMAT,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "winner": "challenger" if wins else "champion",
        "challenger_wins": wins,
        "reasons": reasons,
        "rule": {"metric": "entity pr_auc", "min_gain": min_gain, "guard": f"entity {key}",
                 "max_recall_drop": max_recall_drop, "fpr": fpr},
        "data": {"events": len(frame), "windows": len(ws), "entities": len(np.unique(ws.entity)),
                 "fingerprint": data_fingerprint(frame)},
        "champion": champ,
        "challenger": chall,
    })


def render_markdown(result: dict[str, Any]) -> str:
    key = f"recall_at_{result['rule']['fpr']:g}_fpr"
    lines = [f"# Champion vs challenger: **{result['winner']} wins**", "",
             f"Data: {result['data']['events']:,} events, {result['data']['entities']:,} entities, "
             f"{result['data']['windows']:,} windows (fingerprint `{result['data']['fingerprint']}`).", "",
             "| | version | entity PR-AUC [95 % CI] | entity ROC-AUC | entity recall@FPR | window PR-AUC | "
             "review+block share |",
             "|---|---|---|---|---|---|---|"]
    for role in ("champion", "challenger"):
        r = result[role]
        ci = r["entity"].get("pr_auc_ci") or [None, None]
        lines.append(f"| {role} | `{r['version']}` | {_f(r['entity']['pr_auc'])} [{_f(ci[0])}, {_f(ci[1])}] | "
                     f"{_f(r['entity']['roc_auc'])} | "
                     f"{_f(r['entity'][key])} | {_f(r['window']['pr_auc'])} | "
                     f"{r['decisions']['review'] + r['decisions']['block']:.3f} |")
    lines += ["", "Why:", *[f"- {x}" for x in result["reasons"]], ""]
    return "\n".join(lines)


def _f(v: float | None) -> str:
    return "–" if v is None else f"{v:.4f}"


def load_compare(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{p}: cannot read a compare result: {e}") from None
    if not isinstance(data, dict) or data.get("format") != COMPARE_FORMAT:
        raise ValueError(f"{p}: not a `seqguard compare` result (format {COMPARE_FORMAT!r} expected)")
    return data
