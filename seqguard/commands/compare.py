"""`seqguard compare CHAMPION CHALLENGER --data RECENT`: both checkpoints on the same labelled data, one verdict."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from seqguard.cli import CliError
from seqguard.train.openmp import quiet_openmp


def read_events_or_exit(path: Path, mapping: Path | None = None, on_error: str = "skip") -> Any:
    """An events file as a frame; every problem a user can fix as a CliError (shared by compare and retrain)."""
    from seqguard.io import DataError, RowErrors, load_mapping, read_events

    try:
        frame, report = read_events(path, load_mapping(mapping) if mapping else None, on_error=on_error)
    except RowErrors as e:
        print(e.report.summary(), file=sys.stderr)
        raise CliError(f"{e.report.rows_skipped} malformed row(s) and --on-error fail") from None
    except DataError as e:
        raise CliError(str(e)) from None
    print(report.summary(), file=sys.stderr)
    if report.rows_ok == 0:
        raise CliError(f"{path}: no usable rows")
    return frame


def outcome_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--feedback", type=Path, help="feedback store (SQLite) whose outcomes label the data's entities")
    p.add_argument("--log", help="score log, to resolve outcomes given by request_id (folder or s3://...)")
    p.add_argument("--salt", default="seqguard", help="the service's SEQGUARD_LOG_SALT (score-log entity hashes)")


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
    p.add_argument("--data", required=True, type=Path, help="recent events (labelled by is_anomaly and/or outcomes)")
    p.add_argument("--mapping", type=Path, help="column-mapping YAML for a foreign layout")
    outcome_args(p)
    p.add_argument("--out", type=Path, default=Path("reports/compare"), help="report folder (default reports/compare)")
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
