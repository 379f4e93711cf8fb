"""`make evaluate`: one command, one report (reports/suite/) on every evaluation set, with plots.

Per set: train a checkpoint with the shipped default config (its label-free parts give the `train --no-labels`
score: see label_free_scorer), then score the held-out test windows of the training split with the served score
(`Scorer`, as the service does), every component, and the baselines on the aggregate features (rules, isolation
forest, logistic regression, gradient boosting; fitted on the same training windows). Figures at window level and
at entity level (window scores averaged per entity with seqguard.scoring.entity; an entity is positive when any of
its windows is), each with a bootstrap 95 % interval. On the generator set it also draws the label-efficiency curve
(1, 5, 10, 25, 100 % of the training labels, BERT with and without masked-token pretraining).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from seqguard.evaluation.datasets import SETS, SHARED, EvalSet, SkipSet
from seqguard.scoring.ensemble import SURPRISE
from seqguard.scoring.entity import DEFAULT_AGGREGATION
from seqguard.train.entity_metrics import entity_report, paired_difference, unlabelled_aggregation
from seqguard.train.metrics import clean

FRACTIONS = [0.01, 0.05, 0.1, 0.25, 1.0]
STUDY_SET = "generator"  # the set the label-efficiency curve is drawn on (run last: the slowest stage)
BOOT = 200
SERVED, LABEL_FREE = "served", "label_free"
BASELINES = ("rules_only", "isolation_forest", "logistic_regression", "gradient_boosting")
METRICS = ("roc_auc", "pr_auc", "recall_at_0.01_fpr")
R1 = "recall_at_0.01_fpr"


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _train_cfg(ds: EvalSet, studies: bool, config: Path | None = None) -> Any:
    from seqguard.train.config import load_train_config

    cfg = load_train_config(config)
    seq = cfg.sequence.model_copy(update={"utc_offset_hours": ds.utc_offset_hours})
    update: dict[str, Any] = {"sequence": seq}
    if studies:
        update["studies"] = cfg.studies.model_copy(update={"label_fractions": FRACTIONS})
    if ds.entity_split and "mode" not in type(cfg.split).model_fields:
        raise SkipSet("needs an entity split (split.mode: entity), which this seqguard lacks; a time split would "
                      "leave its last days with one class")
    return cfg.model_copy(update=update)  # split.mode stays the default (auto), as for any user


def _logistic(train_x: np.ndarray, train_y: np.ndarray, seed: int) -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    # log1p: the aggregates are counts and rates with heavy tails.
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0, random_state=seed)).fit(
        np.log1p(np.maximum(train_x, 0)), train_y)


def run_set(ds: EvalSet, out: Path, studies: bool = False, config: Path | None = None,
            log: Any = _stderr) -> dict[str, Any]:
    from seqguard.scoring.scorer import Scorer
    from seqguard.train.checkpoint import load_models
    from seqguard.train.dataset import build_windows, split_windows
    from seqguard.train.loop import predict_logits
    from seqguard.train.pipeline import train_checkpoint
    from seqguard.train.scores import baseline_scores, fit_baselines, scorer_sources

    t0 = time.perf_counter()
    cfg = _train_cfg(ds, studies, config)
    out.mkdir(parents=True, exist_ok=True)
    quiet = lambda *_: None  # noqa: E731 - the suite prints its own progress lines
    log(f"[{ds.name}] training on {len(ds.frame):,} events")
    labelled = train_checkpoint(ds.frame, cfg, out / "models", progress=False, log=quiet)
    ws = build_windows(ds.frame, cfg.sequence)
    split = split_windows(ws, cfg.split, cfg.seed)
    y = ws.y()
    test, train = split.test, split.train
    scorer = Scorer.load(labelled)
    models = load_models(labelled)
    # Every served model, also one the chosen stacker left out: every component is reported.
    logits = {n: predict_logits(m, ws.encoded, test) for n, m in models.items()}
    got, _ = scorer_sources(scorer, logits, ws.features[test])
    sources: dict[str, np.ndarray] = {SERVED: got.pop("ensemble")}
    sources["served_without_sequence_models"] = got.pop("ensemble_degraded", sources[SERVED])
    sources.update({f"component:{k}": v for k, v in got.items()})
    free = label_free_scorer(scorer)
    if free is not None:
        sources[LABEL_FREE] = free.score_batch({SURPRISE: logits[SURPRISE]}, ws.features[test]).score
    sources["rules_only"] = sources.pop("component:rules_only")
    base = fit_baselines(ws.features[train], y[train], cfg.seed)
    sources.update(baseline_scores(base, ws.features[test]))
    if 0 < y[train].sum() < len(train):
        lr = _logistic(ws.features[train], y[train], cfg.seed)
        sources["logistic_regression"] = lr.predict_proba(np.log1p(np.maximum(ws.features[test], 0)))[:, 1]

    yt = y[test].astype(bool)
    method = scorer.ensemble.entity_aggregation or DEFAULT_AGGREGATION
    # seqguard.train.entity_metrics computes both levels: a window is an "entity" of one window for the window level.
    ent = entity_report(ws.entity[test], yt, ws.scenario[test], sources, method, BOOT, cfg.seed)
    win = entity_report(np.arange(len(test)).astype(str), yt, ws.scenario[test], sources, "max", BOOT, cfg.seed)
    result: dict[str, Any] = {"name": ds.name, "notes": ds.notes, "windows": win["scores"],
                              "entities": ent["scores"], "entity_aggregation": method,
                              "warnings": {"entities": ent["warnings"], "windows": win["warnings"]}}
    result["split"] = {"train": len(train), "test": len(test), "test_anomalous": int(yt.sum()),
                       "test_entities": ent["entities"], "test_anomalous_entities": ent["anomalous"],
                       "mode": split.mode, "why": split.why}
    if LABEL_FREE in sources and "isolation_forest" in sources:
        # What `train --no-labels` serves per entity: it has no labels to choose the aggregation on.
        free_method, _ = unlabelled_aggregation(cfg.ensemble.entity_aggregation)
        result["label_free_check"] = paired_difference(ws.entity[test], yt, sources[LABEL_FREE],
                                                       sources["isolation_forest"], free_method, BOOT, cfg.seed)
    if studies:
        result["label_efficiency"] = label_efficiency_study(ds, config, log)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    return result


def label_free_scorer(scorer: Any) -> Any:
    """What `train --no-labels` serves, from a labelled checkpoint's label-free parts.

    The detector, the isolation forest and the surprise model never read labels, and a labelled run trains them on
    the same windows with the same seed as a label-free run, so they are the very models `--no-labels` would train;
    only the combination differs. The label-free combination is rebuilt here (Ensemble.label_free, as training
    builds it, scored by the same Scorer), so the suite trains once per set; only its thresholds differ (the
    training windows' quantiles are not kept), never its score. tests/test_evaluation_suite.py holds it equal to a
    real `--no-labels` checkpoint.
    """
    from seqguard.scoring.ensemble import Ensemble
    from seqguard.scoring.scorer import Scorer

    ens = scorer.ensemble
    if SURPRISE not in ens.reference:
        return None
    free = Ensemble.label_free([SURPRISE], ens.rule_ids, ens.reference, ens.review_fpr, ens.block_fpr, ens.isolation)
    return Scorer(free, scorer.rules, scorer.detector)


def label_efficiency_study(ds: EvalSet, config: Path | None = None, log: Any = _stderr) -> dict[str, Any]:
    """BERT at 1..100 % of the training labels, from the masked-token pretrained encoder (pretrained again on the
    training windows, as `train` does: labels unread) or from scratch."""
    from seqguard.train.bert import pretrain
    from seqguard.train.dataset import build_windows, split_windows
    from seqguard.train.loop import setup_torch
    from seqguard.train.studies import label_efficiency

    cfg = _train_cfg(ds, True, config)
    setup_torch(cfg.seed, cfg.threads)
    ws = build_windows(ds.frame, cfg.sequence)
    split = split_windows(ws, cfg.split, cfg.seed)
    log(f"[{ds.name}] label efficiency: {len(FRACTIONS)} label fractions x with / without pretraining")
    pre = pretrain(ws.encoded, split.train, cfg.sequence, cfg.bert, cfg.seed)
    return label_efficiency(ws, split, cfg, pre.encoder_state(), None, progress=False)


# --------------------------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------------------------


def _f(v: Any) -> str:
    return "–" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.3f}"


def _cell(m: dict[str, Any], key: str) -> str:
    lo, hi = m.get(f"{key}_ci") or [None, None]
    return f"{_f(m.get(key))} [{_f(lo)}, {_f(hi)}]"


def _best_baseline(level: dict[str, Any]) -> str | None:
    have = [b for b in BASELINES if b in level]
    return max(have, key=lambda b: level[b]["pr_auc"] or 0.0) if have else None


def _checks(r: dict[str, Any]) -> list[str]:
    lines = []
    for level in ("entities", "windows"):
        lv = r[level]
        best = _best_baseline(lv)
        if best:
            s, b = lv[SERVED], lv[best]
            ok = s["pr_auc"] >= b["pr_auc"] or (s["pr_auc_ci"] or [0, 0])[1] >= (b["pr_auc_ci"] or [1, 1])[0]
            lines.append(f"- [{'ok' if ok else 'MISS'}] {'entity' if level == 'entities' else 'window'} level: "
                         f"served PR-AUC {_f(s['pr_auc'])} vs best baseline {best} {_f(b['pr_auc'])}"
                         + ("" if s["pr_auc"] >= b["pr_auc"] else " (intervals overlap)" if ok else ""))
    lf = r.get("label_free_check")
    if lf:
        lines.append(_label_free_line(lf))
    w = r["windows"]
    if "served_without_sequence_models" in w:
        d = w[SERVED]["pr_auc"] - w["served_without_sequence_models"]["pr_auc"]
        base = _f(w["served_without_sequence_models"]["pr_auc"])
        lines.append(f"- sequence models add {d:+.3f} window PR-AUC over the same ensemble on aggregates, rules and "
                     f"detector alone ({base} → {_f(w[SERVED]['pr_auc'])})")
    br = r["entities"].get(SERVED, {}).get("per_scenario", {}).get("brushing")
    if br and r["name"].startswith("taobao"):
        value = br.get(R1) if br.get(R1) is not None else br.get(f"{R1}_unquoted")
        ok = value is not None and value >= 0.7
        lines.append(f"- [{'ok' if ok else 'MISS'}] brushing entity recall@1%FPR {_f(value)} "
                     f"(target 0.7, {br['n_positive']} brushing entities"
                     + (", fewer than 100 normal entities: coarse)" if br.get(R1) is None else ")"))
    return lines


def _label_free_line(lf: dict[str, Any]) -> str:
    (free, forest), (free_roc, forest_roc) = lf["pr_auc"], lf["roc_auc"]
    lo, hi = lf["difference_ci"] or [float("nan")] * 2
    line = (f"- [{'ok' if free >= forest else 'MISS'}] label-free entity PR-AUC {_f(free)} vs isolation forest "
            f"{_f(forest)} ({lf['aggregation']} of the windows, as `train --no-labels` serves); paired difference "
            f"{lf['difference']:+.3f} [{lo:+.3f}, {hi:+.3f}]")
    free_ci, forest_ci = lf["roc_auc_ci"]
    if all(ci is not None and ci[0] <= 0.5 for ci in (free_ci, forest_ci)):
        line += (f"; neither ranks anomalous entities above normal ones beyond chance (entity ROC-AUC {_f(free_roc)} "
                 f"[{_f(free_ci[0])}, {_f(free_ci[1])}] and {_f(forest_roc)} [{_f(forest_ci[0])}, "
                 f"{_f(forest_ci[1])}]): no label-free signal on this set")
    return line


def write_report(out: Path, results: list[dict[str, Any]], skipped: dict[str, str], seconds: float,
                 config: Path | None = None) -> Path:
    plots = _plots(out, results)
    config_name = f"`{config}`" if config else "the shipped default config"
    lines = ["# seqguard evaluation suite", "",
             f"`make evaluate`, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {seconds / 60:.1f} min. "
             f"Each set: one checkpoint trained with {config_name}; `label_free` is what `train --no-labels` "
             "serves (the percentiles of the detector, the isolation forest and the surprise model, which never "
             "read labels, pooled as the mean of their -log tail shares -log(1 - p), floored at 1/1000 and "
             "divided by log 1000); "
             "figures on the held-out test windows of the training split; entity score = the aggregation of its test "
             "windows' scores that training chose on validation (seqguard.train.entity_metrics), except in the "
             "label-free check, which aggregates as `train --no-labels` does (it has no labels to choose on). "
             f"Intervals: bootstrap 95 % ({BOOT} resamples); a difference between two scores has a paired interval "
             "(the same resampled entities for both).", ""]
    for name, why in skipped.items():
        lines.append(f"- **{name}: skipped** — {why}")
    for r in results:
        lines += ["", f"## {r['name']}", ""]
        lines += [f"- {n}" for n in r["notes"]]
        sp = r["split"]
        lines.append(f"- test: {sp['test']:,} windows ({sp['test_anomalous']:,} anomalous), {sp['test_entities']:,} "
                     f"entities ({sp['test_anomalous_entities']:,} anomalous); split by {sp['mode']} ({sp['why']}); "
                     f"entity score = {r['entity_aggregation']} of its windows; {r['seconds']:.0f} s")
        lines += ["", *_checks(r), ""]
        for level in ("entities", "windows"):
            lines += [f"**{'entity' if level == 'entities' else 'window'} level**", "",
                      "| score | ROC-AUC | PR-AUC | recall@1%FPR |", "|---|---|---|---|"]
            for name, m in sorted(r[level].items(), key=lambda kv: -(kv[1]["pr_auc"] or 0)):
                lines.append(f"| {name} | {_cell(m, 'roc_auc')} | {_cell(m, 'pr_auc')} | "
                             f"{_cell(m, R1)} |")
            lines += [""] + [f"⚠ {w}" for w in r["warnings"][level]] + [""]
        per = {n: m.get("per_scenario", {}) for n, m in r["entities"].items()}
        names = [n for n in (SERVED, "served_without_sequence_models", LABEL_FREE, "gradient_boosting",
                             "isolation_forest") if n in per]
        scen = sorted({s for n in names for s in per[n]})
        if scen:
            lines += ["**entity recall at 1 % FPR per scenario** (– where fewer than 100 normal entities)", "",
                      "| scenario | n | " + " | ".join(names) + " |", "|---" * (len(names) + 2) + "|"]
            for s in scen:
                n = per[names[0]].get(s, {}).get("n_positive", 0)
                lines.append(f"| {s} | {n} | " + " | ".join(_f(per[x].get(s, {}).get(R1)) for x in names) + " |")
            lines.append("")
        if r["name"] in plots:
            lines += [f"![{r['name']}]({plots[r['name']]})", ""]
        if "label_efficiency" in r:
            lines += ["**label efficiency** (behaviour BERT alone, window level, test split)", "",
                      "| labels | pretrained PR-AUC | from scratch PR-AUC |", "|---|---|---|"]
            runs = r["label_efficiency"]["runs"]
            for frac in FRACTIONS:
                p = next((x for x in runs if x["fraction"] == frac and x["pretrained"]), {})
                s = next((x for x in runs if x["fraction"] == frac and not x["pretrained"]), {})
                lines.append(f"| {frac:.0%} ({p.get('train_anomalous', s.get('train_anomalous', '?'))} anomalous "
                             f"windows) | {_f(p.get('pr_auc'))} | {_f(s.get('pr_auc'))} |")
            if "label_efficiency" in plots:
                lines += ["", f"![label efficiency]({plots['label_efficiency']})"]
            lines.append("")
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _plots(out: Path, results: list[dict[str, Any]]) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made: dict[str, str] = {}
    for r in results:
        e = r["entities"]
        names = sorted(e, key=lambda n: -(e[n]["pr_auc"] or 0))
        vals = np.array([e[n]["pr_auc"] or 0 for n in names])
        ci = np.array([e[n]["pr_auc_ci"] or [e[n]["pr_auc"]] * 2 for n in names], dtype=float)
        fig, ax = plt.subplots(figsize=(8, 0.35 * len(names) + 1.2))
        colors = ["tab:red" if n in (SERVED, LABEL_FREE) else "tab:gray" if n in BASELINES else "tab:blue"
                  for n in names]
        ax.barh(names, vals, color=colors,
                xerr=np.abs(np.vstack([vals - ci[:, 0], ci[:, 1] - vals])), capsize=2)
        ax.invert_yaxis()
        ax.set_xlabel("entity-level PR-AUC (95 % bootstrap interval)")
        ax.set_title(r["name"])
        ax.set_xlim(0, 1)
        fig.tight_layout()
        fname = f"{r['name']}_entity_pr_auc.png"
        fig.savefig(out / fname, dpi=110)
        plt.close(fig)
        made[r["name"]] = fname
        if "label_efficiency" in r:
            runs = r["label_efficiency"]["runs"]
            fig, ax = plt.subplots(figsize=(6, 4))
            for pre, style in ((True, "o-"), (False, "s--")):
                pts = sorted((x["fraction"], x["pr_auc"]) for x in runs if x["pretrained"] == pre)
                if pts:
                    ax.plot([p[0] * 100 for p in pts], [p[1] for p in pts], style,
                            label="pretrained (masked tokens)" if pre else "from scratch")
            ax.set_xscale("log")
            ax.set_xlabel("% of training labels")
            ax.set_ylabel("window PR-AUC (test)")
            ax.set_title(f"label efficiency: {r['name']}")
            ax.legend()
            fig.tight_layout()
            fig.savefig(out / "label_efficiency.png", dpi=110)
            plt.close(fig)
            made["label_efficiency"] = "label_efficiency.png"
    return made


def run_suite(out: Path, only: list[str] | None = None, shared: Path = SHARED, config: Path | None = None,
              log: Any = _stderr) -> Path:
    from seqguard.train.dataset import DatasetError

    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    results: list[dict[str, Any]] = []
    skipped: dict[str, str] = {}
    built: dict[str, tuple[EvalSet, Path]] = {}

    def save() -> Path:
        (out / "results.json").write_text(json.dumps(clean({"results": results, "skipped": skipped}), indent=1))
        return write_report(out, results, skipped, time.perf_counter() - t0, config)

    names = only or list(SETS)
    for name in tqdm(names, desc="evaluation sets", unit="set"):
        try:
            ds = SETS[name](shared)
            built[name] = (ds, out / "runs" / ds.name)
            results.append(run_set(ds, built[name][1], config=config, log=log))
        except SkipSet as e:
            skipped[name] = str(e)
            log(f"[{name}] skipped: {e}")
            continue
        except DatasetError as e:  # a set the product cannot train on is a finding, not a crash
            skipped[name] = f"training failed: {e}"
            log(f"[{name}] training failed: {e}")
            continue
        save()  # a report after every set: the slow study below never holds the others back
    if STUDY_SET in built:
        ds, _ = built[STUDY_SET]
        study = label_efficiency_study(ds, config, log)
        next(r for r in results if r["name"] == ds.name)["label_efficiency"] = study
    return save()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m seqguard.evaluation.suite", description=__doc__)
    p.add_argument("--out", type=Path, default=Path("reports/suite"))
    p.add_argument("--sets", nargs="+", choices=list(SETS), help="only these sets (default: all)")
    p.add_argument("--config", type=Path, default=None, help="training config (default: the shipped default)")
    p.add_argument("--shared", type=Path, default=SHARED,
                   help=f"folder of the staged real data sets (default {SHARED}); absent sets are skipped")
    args = p.parse_args(argv)
    from seqguard.train.openmp import quiet_openmp

    quiet_openmp()
    path = run_suite(args.out, args.sets, args.shared, args.config)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
