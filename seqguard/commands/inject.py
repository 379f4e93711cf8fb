"""`seqguard inject`: a team's own traffic with labelled attack entities of the generator's scenarios mixed in."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from seqguard.cli import CliError
from seqguard.commands.arguments import add_format, add_mapping, add_out, add_seed, output_format
from seqguard.commands.generate import _prepare_out
from seqguard.generator import SCENARIOS
from seqguard.inject import InjectError, inject
from seqguard.io import DataError, load_mapping, read_events, write_events


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "inject",
        help="mix labelled attack entities into your own real traffic (recall on your data before you have labels)",
        description="Read your events, add attack entities of the chosen scenarios, timed and shaped from your "
        "traffic's own statistics, and write DIR/events.<ext> (per-event is_anomaly / scenario), DIR/labels.csv "
        "(entity_id,label,scenario; entity = user_id) and DIR/inject.json (what was injected, what was skipped "
        "and why). Scenarios that need event types your data lacks are skipped with a note.",
    )
    p.add_argument("--events", required=True, type=Path, help="events file (CSV / Parquet / JSONL)")
    add_mapping(p, "column mapping YAML for a foreign layout")
    p.add_argument("--scenarios", nargs="+", default=["all"],
                   help=f"scenarios to inject, space- or comma-separated, or 'all' (default): {', '.join(SCENARIOS)}")
    p.add_argument("--rate", type=float, default=0.02,
                   help="attackers as a share of the real entities (default 0.02)")
    add_seed(p, "random seed (default 0)")
    add_out(p, "output folder (created if missing)")
    add_format(p, "events file")
    p.set_defaults(func=run)


def _scenarios(values: list[str]) -> list[str]:
    names = [v.strip() for item in values for v in item.split(",") if v.strip()]
    if not names or names == ["all"]:
        return list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise CliError(f"--scenarios: unknown {', '.join(unknown)}; choose from {', '.join(SCENARIOS)} or all")
    return list(dict.fromkeys(names))


def run(args: argparse.Namespace) -> int:
    fmt = output_format(args.format)
    if not 0.0 < args.rate < 0.5:
        raise CliError(f"--rate must lie in (0, 0.5), got {args.rate}")
    if args.seed < 0:
        raise CliError(f"--seed must be >= 0, got {args.seed}")
    scenarios = _scenarios(args.scenarios)
    t0 = time.perf_counter()
    try:
        mapping = load_mapping(args.mapping) if args.mapping is not None else None
        frame, report = read_events(args.events, mapping)
    except DataError as e:
        raise CliError(f"--events: {e}") from None
    if report.rows_skipped:
        print(f"read {report.rows_ok:,} rows, skipped {report.rows_skipped:,}: "
              + "; ".join(f"{r} ({n})" for r, n in report.reasons.most_common(3)))
    _prepare_out(args.out)
    try:
        result = inject(frame, scenarios, rate=args.rate, seed=args.seed)
    except InjectError as e:
        raise CliError(str(e)) from None
    events_path, labels_path = args.out / f"events.{fmt}", args.out / "labels.csv"
    try:
        write_events(result.events, events_path)
        result.labels.to_csv(labels_path, index=False)
    except (OSError, DataError) as e:
        raise CliError(f"--out: cannot write to {args.out}: {e}") from None
    summary = {
        "events_file": str(args.events), "seed": args.seed, "rate": args.rate,
        "real_entities": int((result.labels["label"] == 0).sum() + result.injected["hosted"].sum()),
        "injected": {s: {k: int(v) for k, v in r.items()} for s, r in result.injected.to_dict("index").items()},
        "skipped": result.skipped, "notes": result.notes,
    }
    (args.out / "inject.json").write_text(json.dumps(summary, indent=2) + "\n")

    print(f"{'scenario':<18}{'entities':>9}{'hosted':>8}{'events':>8}")
    for name, r in result.injected.iterrows():
        print(f"{name:<18}{r['entities']:>9,}{r['hosted']:>8,}{r['events']:>8,}")
    for name, why in result.skipped.items():
        print(f"skipped {name}: {why}")
    for note in result.notes:
        print(f"note: {note}")
    print(f"wrote {events_path} ({len(result.events):,} events), {labels_path} "
          f"({int(result.labels['label'].sum()):,} of {len(result.labels):,} entities labelled 1), "
          f"{args.out / 'inject.json'}")
    print(f"elapsed {time.perf_counter() - t0:.1f} s")
    return 0
