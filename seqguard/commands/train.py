"""`seqguard train`: an events file to a checkpoint folder (models, detector, rules, ensemble, metrics)."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from seqguard.cli import CliError
from seqguard.commands.arguments import add_data, add_data_arguments, add_no_progress, add_on_error, add_out
from seqguard.commands.inputs import data_errors, read_events_reported
from seqguard.train.openmp import quiet_openmp


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train the sequence models, detector and ensemble into a checkpoint folder",
        description="Build entity-day windows from an events file (labels per event, or per entity with --labels), "
        "split them by time or by entity (split.mode, default auto), pretrain the behaviour BERT "
        "on unlabeled windows, fine-tune it and the sequence RNN and fit boosted trees on the aggregate features "
        "(when the data has an is_anomaly column), fit the unsupervised detector and the ensemble, and write a "
        "checkpoint folder for `seqguard export` / `evaluate`. Without labels (or with --no-labels) it serves the "
        "detector and the label-free next-event surprise model (unsupervised_sequence), averaged.",
    )
    add_data(p, "events file (.csv, .parquet, .jsonl)")
    add_data_arguments(p)
    p.add_argument("--config", type=Path, help="training config YAML, merged onto seqguard/data/train_default.yaml "
                   "(a file that sets one key changes that key only)")
    add_out(p, "checkpoint folder to write (replaced if it holds one)")
    p.add_argument("--with-text-model", action="store_true",
                   help="also fine-tune the MiniLM text model on serialised windows (slow on CPU; evaluated only)")
    p.add_argument("--studies", action="store_true",
                   help="also run the label-efficiency and held-out-scenario studies (extra training runs)")
    p.add_argument("--no-labels", action="store_true",
                   help="train and serve without labels even if the data has some: the detector and the label-free "
                   "sequence surprise model (unsupervised_sequence), averaged")
    add_on_error(p)
    add_no_progress(p)
    p.set_defaults(func=run)


def read_labelled_events(args: argparse.Namespace, entity_key: str, what: str) -> tuple[Any, dict[str, Any]]:
    """The events (through the mapping) with the labels table joined when given; prints both reports.
    Returns (frame, notes: what the read and the join did, for metrics). Raises CliError with the reason."""
    from seqguard.io import load_mapping
    from seqguard.labels import LabelsError, join_labels, load_labels

    with data_errors(LabelsError):
        mapping = load_mapping(args.mapping) if args.mapping else None
        labels = load_labels(args.labels, mapping.labels if mapping else None) if args.labels else None
    frame, report = read_events_reported(args.data, mapping, args.on_error, what)
    notes: dict[str, Any] = {"rows_read": report.rows_read, "rows_skipped": report.rows_skipped,
                             "values_fixed": dict(report.fixed)}
    if labels is not None:
        try:
            frame, joined = join_labels(frame, labels, entity_key, args.unlabelled)
        except LabelsError as e:
            raise CliError(str(e)) from None
        print(joined.summary(), file=sys.stderr)
        notes["labels"] = {"file": str(args.labels), **joined.to_dict()}
    return frame, notes


def run(args: argparse.Namespace) -> int:
    quiet_openmp()
    from seqguard.io import DataError, load_mapping
    from seqguard.scoring.rules import RulesError
    from seqguard.train.checkpoint import CheckpointError
    from seqguard.train.config import ConfigError, parse_train_config, read_settings, resolve_time_zone
    from seqguard.train.dataset import DatasetError

    t0 = time.perf_counter()
    try:
        settings = read_settings(args.config)
        cfg = parse_train_config(settings, str(args.config or "the default config"),
                                 args.config.parent if args.config else None)
        if cfg.rules is not None:
            from seqguard.scoring.rules import load_rules

            load_rules(cfg.rules)  # fail before reading a large file
        mapping = load_mapping(args.mapping) if args.mapping else None
    except (ConfigError, RulesError, DataError) as e:
        raise CliError(str(e)) from None
    cfg, tz_note = resolve_time_zone(cfg, settings, mapping.utc_offset_hours if mapping else None,
                                     mapping.name if mapping else None)
    print(f"effective config (shipped default + {args.config or 'no overrides'}):\n"
          + yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False, width=120).rstrip(), file=sys.stderr)
    print(tz_note, file=sys.stderr)
    frame, notes = read_labelled_events(args, cfg.sequence.entity_key, "train on")
    notes["time_zone"] = tz_note
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
                               with_text_model=args.with_text_model, studies=args.studies, data_notes=notes)
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
    lines.append(f"  split: {sp.get('mode', 'time')} ({sp.get('why', '')})")
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
    ent = m.get("test_entity")
    if ent:
        lines.append(f"  test, entity level ({ent['aggregation']} over windows; {ent['entities']:,} entities, "
                     f"{ent['anomalous']:,} anomalous):")
        for name, s in ent["scores"].items():
            lines.append(f"    {name:<20} PR-AUC {_ci(s, 'pr_auc')}  ROC-AUC {_ci(s, 'roc_auc')}  "
                         f"recall@1%FPR {_ci(s, 'recall_at_0.01_fpr')}  recall@5%FPR {_ci(s, 'recall_at_0.05_fpr')}")
    for w in m.get("warnings", []):
        lines.append(f"  warning: {w}")
    for d in m.get("degenerate", []):
        lines.append(f"  degenerate: {d['source']} on {d['where']}: {d['detail']}")
    lines.append("  timings (s): " + ", ".join(f"{k} {v:.0f}" for k, v in m["timings_s"].items()))
    return "\n".join(lines)


def _ci(s: dict[str, Any], key: str) -> str:
    ci = s.get(f"{key}_ci")
    return _f(s.get(key)) + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def _f(v: float | None) -> str:
    return "  –  " if v is None else f"{v:.3f}"
