"""`seqguard train`: an events file to a checkpoint folder (models, detector, rules, ensemble, metrics)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

from seqguard.cli import CliError


def quiet_openmp() -> None:
    """Before torch loads: idle OpenMP threads sleep instead of spinning. On a shared 2-core machine a spinning
    thread waits on descheduled peers at every parallel region and a training step gets ~6x slower (measured here
    against one competing 2-thread process); sleeping costs little on an idle machine. A user's setting wins."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train the sequence models, detector and ensemble into a checkpoint folder",
        description="Build entity-day windows from an events file, split them by time, pretrain the behaviour BERT "
        "on unlabeled windows, fine-tune it and the sequence RNN and fit boosted trees on the aggregate features "
        "(when the data has an is_anomaly column), fit the unsupervised detector and the ensemble, and write a "
        "checkpoint folder for `seqguard export` / `evaluate`. Without labels (or with --no-labels) it serves the "
        "detector and the label-free next-event surprise model (unsupervised_sequence), averaged.",
    )
    p.add_argument("--data", required=True, type=Path, help="events file (.csv, .parquet, .jsonl)")
    p.add_argument("--mapping", type=Path, help="column-mapping YAML for a foreign layout")
    p.add_argument("--config", type=Path, help="training config YAML (default: seqguard/data/train_default.yaml)")
    p.add_argument("--out", required=True, type=Path, help="checkpoint folder to write (replaced if it holds one)")
    p.add_argument("--with-text-model", action="store_true",
                   help="also fine-tune the MiniLM text model on serialised windows (slow on CPU; evaluated only)")
    p.add_argument("--studies", action="store_true",
                   help="also run the label-efficiency and held-out-scenario studies (extra training runs)")
    p.add_argument("--no-labels", action="store_true",
                   help="train and serve without labels even if the data has some: the detector and the label-free "
                   "sequence surprise model (unsupervised_sequence), averaged")
    p.add_argument("--on-error", choices=("skip", "fail"), default="skip", help="what to do with malformed rows")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    quiet_openmp()
    from seqguard.io import DataError, RowErrors, load_mapping, read_events
    from seqguard.scoring.rules import RulesError
    from seqguard.train.checkpoint import CheckpointError
    from seqguard.train.config import ConfigError, load_train_config
    from seqguard.train.dataset import DatasetError

    t0 = time.perf_counter()
    try:
        cfg = load_train_config(args.config)
        if cfg.rules is not None:
            from seqguard.scoring.rules import load_rules

            load_rules(cfg.rules)  # fail before reading a large file
        mapping = load_mapping(args.mapping) if args.mapping else None
        frame, report = read_events(args.data, mapping, on_error=args.on_error)
    except RowErrors as e:
        print(e.report.summary(), file=sys.stderr)
        raise CliError(f"{e.report.rows_skipped} malformed row(s) and --on-error fail") from None
    except (ConfigError, RulesError, DataError) as e:
        raise CliError(str(e)) from None
    print(report.summary(), file=sys.stderr)
    if report.rows_ok == 0:
        raise CliError(f"{args.data}: no usable rows to train on")
    if args.no_labels:
        from seqguard.io import LABEL_COLUMNS

        dropped = [c for c in LABEL_COLUMNS if c in frame.columns]
        frame = frame.drop(columns=dropped)
        print(f"--no-labels: training label-free{' (ignoring ' + ', '.join(dropped) + ')' if dropped else ''}",
              file=sys.stderr)

    from seqguard.train.pipeline import train_checkpoint

    # SIGTERM (make interrupted, a CI timeout) as an exception, so the staging folder is removed on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    print(f"training '{cfg.name}' into {args.out}", file=sys.stderr)
    try:
        out = train_checkpoint(frame, cfg, args.out, progress=not args.no_progress,
                               with_text_model=args.with_text_model, studies=args.studies)
    except (DatasetError, CheckpointError, RulesError) as e:
        raise CliError(str(e)) from None
    print(summary(out, time.perf_counter() - t0))
    return 0


def summary(folder: Path, seconds: float) -> str:
    from seqguard.contracts import CHECKPOINT_INDEX, METRICS_FILE

    index = json.loads((folder / CHECKPOINT_INDEX).read_text())
    m = json.loads((folder / METRICS_FILE).read_text())
    lines = [f"wrote {folder} ({index['version']}) in {seconds:.0f} s"]
    sp = m["split"]
    lines.append("  windows: " + ", ".join(
        f"{k} {v['windows']:,}" + (f" ({v['anomalous']:,} anomalous)" if "anomalous" in v else "")
        for k, v in sp.items() if isinstance(v, dict)))
    if m.get("parameters"):
        lines.append("  models: " + ", ".join(f"{k} {v:,} params / {m['sizes_mb'].get(k, 0):.1f} MB"
                                            for k, v in m["parameters"].items()))
    else:
        lines.append("  models: none: pretrained encoder, detector and rules only")
    for split in ("validation", "test"):
        if split in m:
            lines.append(f"  {split}:")
            for name, s in m[split].items():
                lines.append(f"    {name:<20} PR-AUC {_f(s['pr_auc'])}  ROC-AUC {_f(s['roc_auc'])}  "
                             f"recall@1%FPR {_f(s['recall_at_0.01_fpr'])}")
    lines.append("  timings (s): " + ", ".join(f"{k} {v:.0f}" for k, v in m["timings_s"].items()))
    return "\n".join(lines)


def _f(v: float | None) -> str:
    return "  –  " if v is None else f"{v:.3f}"
