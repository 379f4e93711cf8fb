"""`seqguard drift`'s report: live windows (from the score log) against the checkpoint's drift reference.

    drift.json       PSI per feature and for the score (seqguard.drift.psi: the function the service's gauges use),
                     the verdict against the threshold, score histograms, decision rates, and Evidently's own
                     per-column drift values for comparison
    drift.html       the same as a page (PSI table, score histogram plot, decision rates), linking to
    evidently.html   Evidently's DataDriftPreset report over the reference sample and the live rows (distributions
                     per column); Evidently bins differently, so its PSI values are shown, never alerted on
"""

from __future__ import annotations

import base64
import html
import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from seqguard.drift import PSI_ALERT, PSI_WARN, SCORE, SCORE_HIST_EDGES, DriftError, DriftReference, reference_frame


def build_drift_result(ref: DriftReference, features: np.ndarray, scores: np.ndarray, decisions: np.ndarray,
                       threshold: float = PSI_ALERT, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    if not len(scores):
        raise DriftError("no live windows to compare (empty score log, or nothing after --since)")
    table = ref.psi_table(features, scores)
    feature_psi = {k: round(v, 6) for k, v in table.items() if k != SCORE}
    live_hist = np.histogram(np.clip(scores, 0, 1), bins=SCORE_HIST_EDGES)[0] / len(scores)
    dec = pd.Series(np.asarray(decisions, dtype=object))
    drifted = sorted((k for k, v in feature_psi.items() if v > threshold), key=lambda k: -feature_psi[k])
    return {
        "format": "seqguard-drift-report-v1",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        **(meta or {}),
        "live_windows": len(scores),
        "reference_windows": ref.windows,
        "threshold": threshold,
        "warn_threshold": PSI_WARN,
        "score_psi": round(table[SCORE], 6),
        "feature_psi": dict(sorted(feature_psi.items(), key=lambda kv: -kv[1])),
        "max_feature_psi": max(feature_psi.values()),
        "drifted_features": drifted,
        "alert": bool(drifted) or table[SCORE] > threshold,
        "decision_rates": {"reference": ref.decision_rates,
                           "live": {d: float((dec == d).mean()) for d in ("allow", "review", "block")}},
        "score_hist": {"edges": list(SCORE_HIST_EDGES), "reference": ref.score_hist,
                       "live": [float(x) for x in live_hist]},
    }


def evidently_report(ref_sample: pd.DataFrame, live: pd.DataFrame, out: Path, threshold: float) -> dict[str, float]:
    """Evidently's data-drift report (HTML) and its per-column values. Columns constant in both are left out
    (Evidently cannot bin them)."""
    from evidently import Report
    from evidently.presets import DataDriftPreset

    cols = [c for c in ref_sample.columns if c != "decision" and c in live
            and (ref_sample[c].nunique() > 1 or live[c].nunique() > 1)]
    snap = Report([DataDriftPreset(method="psi", threshold=threshold)]).run(
        current_data=live[cols].reset_index(drop=True), reference_data=ref_sample[cols].reset_index(drop=True))
    snap.save_html(str(out))
    values: dict[str, float] = {}
    for m in snap.dict().get("metrics", []):
        col = m.get("config", {}).get("column")
        if col is not None and isinstance(m.get("value"), int | float):
            values[col] = round(float(m["value"]), 6)
    return values


def write_drift_report(out_dir: str | Path, ref: DriftReference, ref_sample: pd.DataFrame | None,
                       features: np.ndarray, scores: np.ndarray, decisions: np.ndarray,
                       threshold: float = PSI_ALERT, meta: dict[str, Any] | None = None,
                       with_evidently: bool = True) -> dict[str, Any]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result = build_drift_result(ref, features, scores, decisions, threshold, meta)
    if with_evidently and ref_sample is not None:
        live = reference_frame(features, scores, decisions)
        result["evidently_psi"] = evidently_report(ref_sample, live, out / "evidently.html", threshold)
        result["evidently_html"] = "evidently.html"
    (out / "drift.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / "drift.html").write_text(_html(result))
    return result


def _plot(result: dict[str, Any]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    edges = np.asarray(result["score_hist"]["edges"])
    mid, width = (edges[:-1] + edges[1:]) / 2, np.diff(edges)
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.bar(mid - width / 4, result["score_hist"]["reference"], width / 2, label="reference (validation)")
    ax.bar(mid + width / 4, result["score_hist"]["live"], width / 2, label="live (score log)")
    ax.set_xlabel("ensemble score")
    ax.set_ylabel("share of windows")
    ax.set_title(f"score PSI {result['score_psi']:.3f}")
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _html(result: dict[str, Any]) -> str:
    t = result["threshold"]

    def row(name: str, v: float) -> str:
        state = "alert" if v > t else "warn" if v > result["warn_threshold"] else "ok"
        return f"<tr class={state}><td>{html.escape(name)}</td><td>{v:.4f}</td><td>{state}</td></tr>"

    rates = result["decision_rates"]
    rate_rows = "".join(f"<tr><td>{d}</td><td>{rates['reference'].get(d, 0):.3%}</td><td>{rates['live'][d]:.3%}"
                        "</td></tr>" for d in ("allow", "review", "block"))
    verdict = "DRIFT: act on it" if result["alert"] else "no drift above the threshold"
    link = (f'<p>Per-column distributions: <a href="{result["evidently_html"]}">Evidently report</a> '
            "(its own binning; the gauges and the alert use the PSI above).</p>") if "evidently_html" in result else ""
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>seqguard drift</title><style>
body{{font-family:sans-serif;max-width:60em;margin:2em auto}} td,th{{padding:2px 10px;text-align:left}}
tr.alert{{background:#fcc}} tr.warn{{background:#ffd}}</style></head><body>
<h1>seqguard drift: {verdict}</h1>
<p>{result['live_windows']:,} live windows vs {result['reference_windows']:,} reference windows;
threshold PSI &gt; {t} (warn &gt; {result['warn_threshold']}). Created {result['created']}.</p>
<h2>Score</h2><img src="data:image/png;base64,{_plot(result)}" alt="score histograms">
<table><tr><th></th><th>PSI</th><th></th></tr>{row('score', result['score_psi'])}</table>
<h2>Decision rates</h2><table><tr><th>decision</th><th>reference</th><th>live</th></tr>{rate_rows}</table>
<h2>PSI per feature</h2>{link}<table><tr><th>feature</th><th>PSI</th><th></th></tr>
{''.join(row(k, v) for k, v in result['feature_psi'].items())}</table></body></html>
"""
