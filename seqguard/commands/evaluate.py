"""`seqguard evaluate`: a checkpoint on labelled events -> report.md, metrics.json and PNG plots."""

from __future__ import annotations

import argparse

from seqguard.cli import CliError
from seqguard.commands.arguments import add_data, add_data_arguments, add_models, add_no_progress, add_on_error, add_out
from seqguard.commands.train import _ci, _f, quiet_openmp, read_labelled_events


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="evaluate a checkpoint on labelled events: report, metrics and plots",
        description="Score labelled events with a checkpoint (the same Scorer the service uses) and write "
        "OUT/report.md, OUT/metrics.json and PNG plots: ROC-AUC, PR-AUC, recall at 1 %% FPR and precision@k, "
        "overall and per scenario, at window and entity level (with bootstrap intervals), for every component "
        "(used by the ensemble or not), the ensemble and the baselines (rules only, isolation forest, gradient "
        "boosting), plus label-efficiency and held-out-scenario studies when training ran them.",
    )
    add_models(p, "checkpoint folder written by `seqguard train`")
    add_data(p, "labelled events file (an is_anomaly column, or --labels with an entity labels table)")
    add_data_arguments(p)
    add_out(p, "report folder (created if missing)")
    p.add_argument("--split", choices=("test", "all"), default="test",
                   help="score the checkpoint's test part of this data (its test days, or its test entities after an "
                   "entity split; default), or every window (new data)")
    p.add_argument("--level", choices=("entity", "window", "both"), default="both",
                   help="entity: one score per entity (the checkpoint's aggregation), window: per entity-day window, "
                   "both (default)")
    add_on_error(p)
    add_no_progress(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    quiet_openmp()
    from seqguard.scoring.rules import RulesError
    from seqguard.scoring.scorer import ScorerError
    from seqguard.train.checkpoint import CheckpointError, load_sequence_config, read_index

    try:
        read_index(args.models)  # a missing checkpoint is reported before a large file is read
        entity_key = load_sequence_config(args.models).entity_key
    except CheckpointError as e:
        raise CliError(str(e)) from None
    frame, _ = read_labelled_events(args, entity_key, "evaluate on")

    from seqguard.train.dataset import DatasetError
    from seqguard.train.evaluate import evaluate_checkpoint

    try:
        m = evaluate_checkpoint(args.models, frame, args.out, split=args.split, progress=not args.no_progress,
                                level=args.level)
    except (DatasetError, CheckpointError, ScorerError, RulesError) as e:
        raise CliError(str(e)) from None
    print(f"wrote {args.out / 'report.md'}")
    if args.level in ("window", "both"):
        print(f"window level ({m['windows']:,} {m['split']} windows, {m['anomalous']:,} anomalous):")
        for name, s in m["scores"].items():
            print(f"  {name:<20} PR-AUC {_f(s['pr_auc'])}  ROC-AUC {_f(s['roc_auc'])}  "
                  f"recall@1%FPR {_f(s['recall_at_0.01_fpr'])}")
    if args.level in ("entity", "both"):
        e = m["entity"]
        print(f"entity level ({e['aggregation']} over windows: {e['why']}; {e['entities']:,} entities, "
              f"{e['anomalous']:,} anomalous):")
        for name, s in e["scores"].items():
            print(f"  {name:<20} PR-AUC {_ci(s, 'pr_auc')}  ROC-AUC {_ci(s, 'roc_auc')}  "
                  f"recall@1%FPR {_ci(s, 'recall_at_0.01_fpr')}  recall@5%FPR {_ci(s, 'recall_at_0.05_fpr')}")
    if m["unused_components"]:
        print(f"  (not used by the served ensemble: {', '.join(m['unused_components'])})")
    for w in m["warnings"]:
        print(f"  warning: {w}")
    for d in m["degenerate"]:
        print(f"  degenerate: {d['source']} on {d['where']}: {d['detail']}")
    for t in m["targets"]:
        print(f"  [{'ok' if t['met'] else 'MISSED'}] {t['target']}: {_f(t['value'])}")
    return 0
