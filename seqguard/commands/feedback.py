"""`seqguard feedback import FILE`: outcomes from a CSV / Parquet / JSONL file into the feedback store."""

from __future__ import annotations

import argparse
from pathlib import Path

from seqguard.cli import CliError
from seqguard.commands.arguments import add_on_error


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "feedback",
        help="import outcomes (chargebacks, confirmed fraud, analyst verdicts) into the feedback store",
        description="Outcomes for scored entities, the same records POST /feedback takes: feedback_id (optional, "
        "the idempotency key), entity_id or request_id, label (optional, must agree with outcome), outcome "
        "(chargeback | confirmed_fraud | false_positive | reviewed_ok), source, ts.",
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    imp = actions.add_parser("import", help="validate a file's rows and store the valid ones (idempotent)")
    imp.add_argument("file", type=Path, help=".csv, .parquet or .jsonl with the columns above")
    imp.add_argument("--store", required=True, type=Path, help="feedback store (SQLite file; the service's "
                     "SEQGUARD_FEEDBACK_PATH)")
    add_on_error(imp, "skip rejected rows (default) or store nothing when any row is rejected")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from seqguard.feedback import FeedbackError, FeedbackStore, import_frame, read_feedback_file

    try:
        frame = read_feedback_file(args.file)
        store = FeedbackStore(args.store)
        try:
            if args.on_error == "fail":
                check = import_frame(store, frame, dry_run=True)
                if check.errors:
                    print(check.summary())
                    raise CliError(f"{len({e['row'] for e in check.errors})} rejected row(s) and --on-error fail: "
                                   "nothing was stored")
            report = import_frame(store, frame)
            total = store.count()
        finally:
            store.close()
    except FeedbackError as e:
        raise CliError(str(e)) from None
    print(report.summary())
    print(f"{args.store}: {total} outcome(s) in the store")
    return 0
