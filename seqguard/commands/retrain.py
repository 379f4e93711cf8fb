"""`seqguard retrain`: a challenger checkpoint from new events + the outcomes collected since, with the champion's
training config (so both build windows alike and the service can shadow one with the other)."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path

from seqguard.cli import CliError
from seqguard.commands.arguments import (
    add_data,
    add_mapping,
    add_models,
    add_no_progress,
    add_out,
    add_outcome_arguments,
)
from seqguard.commands.compare import join_outcomes
from seqguard.commands.inputs import read_events_or_exit
from seqguard.train.openmp import quiet_openmp

RETRAIN_FILE = "retrain.json"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "retrain",
        help="train a challenger on new events labelled by the collected outcomes",
        description="Join the feedback store's outcomes to the events (entity by entity; outcomes by request_id "
        "through the score log), train with the champion's training config (or --config with the same sequence "
        "config) and write a challenger checkpoint, plus OUT/retrain.json saying what was joined.",
    )
    add_models(p, "the champion checkpoint")
    add_data(p, "events to train on (.csv, .parquet, .jsonl)")
    add_mapping(p)
    add_outcome_arguments(p)
    p.add_argument("--config", type=Path, help="training config YAML (default: the champion's)")
    add_out(p, "challenger checkpoint folder")
    add_no_progress(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    quiet_openmp()
    from seqguard.scoring.rules import RulesError
    from seqguard.train.checkpoint import CheckpointError, read_index
    from seqguard.train.config import ConfigError, TrainConfig, load_train_config
    from seqguard.train.dataset import DatasetError

    try:
        index = read_index(args.models)
        champion_cfg = TrainConfig.model_validate(index["train_config"])
        cfg = load_train_config(args.config) if args.config else champion_cfg
    except (CheckpointError, ConfigError) as e:
        raise CliError(str(e)) from None
    if cfg.sequence.config_hash() != champion_cfg.sequence.config_hash():
        raise CliError(f"--config: its sequence settings differ from the champion's ({args.models}); a challenger "
                       "must build the same windows to be compared and shadowed")
    if args.out.resolve() == args.models.resolve():
        raise CliError("--out must differ from --models (the champion stays as it is)")
    if args.feedback is None:
        raise CliError("--feedback is required: retraining without outcomes is `seqguard train`")
    frame = read_events_or_exit(args.data, args.mapping)
    frame, joined = join_outcomes(frame, args, cfg.sequence.entity_key)
    if not joined.get("entities_with_outcome_in_data"):
        print("warning: no outcome matches an entity of --data; the challenger learns from the data's own labels",
              file=sys.stderr)

    from seqguard.train.pipeline import train_checkpoint

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        out = train_checkpoint(frame, cfg, args.out, progress=not args.no_progress)
    except (DatasetError, CheckpointError, RulesError) as e:
        raise CliError(str(e)) from None
    new = read_index(out)
    info = {"champion": index.get("version"), "challenger": new["version"], "data": str(args.data),
            "feedback": str(args.feedback), "outcomes": joined}
    (out / RETRAIN_FILE).write_text(json.dumps(info, indent=1) + "\n")
    print(f"wrote challenger {out} ({new['version']}); champion {index.get('version')}")
    return 0
