"""`seqguard compare CHAMPION CHALLENGER --data RECENT`: both checkpoints on the same labelled data, one verdict."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from seqguard.cli import CliError
from seqguard.commands.arguments import add_data, add_mapping, add_out, add_outcome_arguments
from seqguard.commands.inputs import read_events_or_exit
from seqguard.train.openmp import quiet_openmp


def join_outcomes(frame: Any, args: argparse.Namespace, entity_key: str) -> tuple[Any, dict[str, Any]]:
    """Events labelled by the feedback store's outcomes (seqguard.feedback.apply_outcomes), with the join's counts."""
    from dataclasses import asdict

    from seqguard.feedback import FeedbackError, FeedbackStore, apply_outcomes, entity_outcomes
    from seqguard.service.observability import hash_id

    if args.feedback is None:
        return frame, {}
    if not args.feedback.is_file():
        raise CliError(f"--feedback: {args.feedback} does not exist")
    try:
        store = FeedbackStore(args.feedback)
        fb = store.frame()
        store.close()
    except FeedbackError as e:
        raise CliError(str(e)) from None
    log = None
    if args.log:
        from seqguard.drift import DriftError
        from seqguard.service.score_log import read_score_log

        try:
            log = read_score_log(args.log, role=None)
        except DriftError as e:
            raise CliError(f"--log: {e}") from None
    outcomes, report = entity_outcomes(fb, log)
    labelled, counts = apply_outcomes(frame, outcomes, entity_key, lambda e: hash_id(e, args.salt))
    info = {**asdict(report), **counts}
    print(f"outcomes: {report.feedback} record(s) -> {report.entities_labelled} entities "
          f"({report.fraud_entities} fraud; {report.unresolved} request id(s) unresolved); "
          f"{counts['entities_with_outcome_in_data']} of them in the data", file=sys.stderr)
    return labelled, info


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare",
        help="champion vs challenger on the same recent labelled data, entity level, with a verdict",
        description="Score the same events with both checkpoints, aggregate to entities (seqguard.scoring.entity), "
        "and decide: the challenger wins when its entity PR-AUC is higher by more than --min-gain and its entity "
        "recall at --fpr falls by at most --max-recall-drop. Writes OUT/compare.json (the evidence `seqguard "
        "deploy apply --promote` needs) and OUT/compare.md.",
    )
    p.add_argument("champion", type=Path, help="checkpoint folder serving now")
    p.add_argument("challenger", type=Path, help="checkpoint folder from `seqguard retrain`")
    add_data(p, "recent events (labelled by is_anomaly and/or outcomes)")
    add_mapping(p)
    add_outcome_arguments(p)
    add_out(p, "report folder (default reports/compare)", default=Path("reports/compare"))
    p.add_argument("--fpr", type=float, default=0.01, help="operating false-positive rate: 0.01 (default) or 0.05")
    p.add_argument("--min-gain", type=float, default=0.0, help="entity PR-AUC gain the challenger needs (default 0)")
    p.add_argument("--max-recall-drop", type=float, default=0.02, help="allowed fall of entity recall@FPR "
                   "(default 0.02)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    quiet_openmp()
    from seqguard.compare import compare_checkpoints, render_markdown
    from seqguard.scoring.scorer import ScorerError
    from seqguard.train.checkpoint import CheckpointError, load_sequence_config
    from seqguard.train.dataset import DatasetError
    from seqguard.train.entity_metrics import FPRS

    if args.fpr not in FPRS:
        raise CliError(f"--fpr must be one of {', '.join(map(str, FPRS))} (the entity report's operating points), "
                       f"got {args.fpr}")
    if args.max_recall_drop < 0:
        raise CliError(f"--max-recall-drop must be >= 0, got {args.max_recall_drop}")
    try:
        key = load_sequence_config(args.champion).entity_key
        load_sequence_config(args.challenger)
    except CheckpointError as e:
        raise CliError(str(e)) from None
    frame = read_events_or_exit(args.data, args.mapping)
    frame, joined = join_outcomes(frame, args, key)
    try:
        result = compare_checkpoints(args.champion, args.challenger, frame, args.fpr, args.min_gain,
                                     args.max_recall_drop)
    except (CheckpointError, DatasetError, ScorerError) as e:
        raise CliError(str(e)) from None
    if joined:
        result["data"]["outcomes"] = joined
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "compare.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out / "compare.md").write_text(render_markdown(result))
    print(f"{result['winner']} wins -> {args.out / 'compare.json'}")
    for r in result["reasons"]:
        print(f"  {r}")
    return 0
