"""`seqguard evaluate`: a checkpoint on labelled events -> report.md, metrics.json and PNG plots."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from seqguard.cli import CliError
from seqguard.commands.train import quiet_openmp


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="evaluate a checkpoint on labelled events: report, metrics and plots",
        description="Score labelled events with a checkpoint (the same Scorer the service uses) and write "
        "OUT/report.md, OUT/metrics.json and PNG plots: ROC-AUC, PR-AUC, recall at 1 %% FPR and precision@k, "
        "overall and per scenario, for every component, the ensemble and the baselines (rules only, isolation "
        "forest, gradient boosting), plus label-efficiency and held-out-scenario studies when training ran them.",
    )
    p.add_argument("--models", required=True, type=Path, help="checkpoint folder written by `seqguard train`")
    p.add_argument("--data", required=True, type=Path, help="labelled events file (needs an is_anomaly column)")
    p.add_argument("--mapping", type=Path, help="column-mapping YAML for a foreign layout")
    p.add_argument("--out", required=True, type=Path, help="report folder (created if missing)")
    p.add_argument("--split", choices=("test", "all"), default="test",
                   help="score the checkpoint's test days of this data (default), or every window (new data)")
    p.add_argument("--on-error", choices=("skip", "fail"), default="skip", help="what to do with malformed rows")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    quiet_openmp()
    from seqguard.io import DataError, RowErrors, load_mapping, read_events
    from seqguard.scoring.rules import RulesError
    from seqguard.scoring.scorer import ScorerError
    from seqguard.train.checkpoint import CheckpointError, read_index

    try:
        read_index(args.models)  # a missing checkpoint is reported before a large file is read
        mapping = load_mapping(args.mapping) if args.mapping else None
        frame, report = read_events(args.data, mapping, on_error=args.on_error)
    except RowErrors as e:
        print(e.report.summary(), file=sys.stderr)
        raise CliError(f"{e.report.rows_skipped} malformed row(s) and --on-error fail") from None
    except (CheckpointError, DataError) as e:
        raise CliError(str(e)) from None
    print(report.summary(), file=sys.stderr)
    if report.rows_ok == 0:
        raise CliError(f"{args.data}: no usable rows to evaluate on")

    from seqguard.train.dataset import DatasetError
    from seqguard.train.evaluate import evaluate_checkpoint

    try:
        m = evaluate_checkpoint(args.models, frame, args.out, split=args.split, progress=not args.no_progress)
    except (DatasetError, CheckpointError, ScorerError, RulesError) as e:
        raise CliError(str(e)) from None
    ens = m["scores"]["ensemble"]
    print(f"wrote {args.out / 'report.md'}: ensemble PR-AUC {ens['pr_auc']:.3f}, recall@1%FPR "
          f"{ens['recall_at_0.01_fpr']:.3f} on {m['windows']:,} {m['split']} windows")
    for t in m["targets"]:
        print(f"  [{'ok' if t['met'] else 'MISSED'}] {t['target']}: {t['value']}")
    return 0
