"""`seqguard sequences`: an events file to one row per window — tokens and aggregate features."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from seqguard.cli import CliError
from seqguard.commands.arguments import add_mapping, add_on_error, add_out
from seqguard.commands.inputs import data_errors, read_events_reported
from seqguard.config import ENTITY_KEYS, SequenceConfig
from seqguard.features import FEATURE_NAMES, encode_window
from seqguard.io import load_mapping
from seqguard.sequences import iter_windows, sort_for_sequences


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sequences",
        help="build per-entity windows (tokens + aggregate features) from an events file",
        description="Read events (CSV / Parquet / JSONL, optionally through a column mapping), group them by entity, "
        "and write one row per window: entity, time range, token ids and aggregate features.",
    )
    p.add_argument("--events", required=True, type=Path, help="events file (.csv, .parquet, .jsonl)")
    add_mapping(p)
    p.add_argument("--key", choices=ENTITY_KEYS, default="user_id", help="entity key (default: user_id)")
    p.add_argument("--every", choices=("entity", "day", "event"), default="entity",
                   help="one window per entity (its latest), per entity-day, or ending at every event")
    p.add_argument("--max-events", type=int, default=None, help="last-N events per window (default 63)")
    p.add_argument("--span-hours", type=float, default=None, help="keep events within this span of the newest")
    p.add_argument("--utc-offset-hours", type=float, default=None, help="shop local time for hour buckets")
    add_on_error(p)
    add_out(p, "output file (.parquet, .csv or .jsonl)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    overrides: dict[str, object] = {"entity_key": args.key}
    if args.max_events is not None:
        overrides["max_events"] = args.max_events
    if args.span_hours is not None:
        overrides["span_seconds"] = args.span_hours * 3600.0
    if args.utc_offset_hours is not None:
        overrides["utc_offset_hours"] = args.utc_offset_hours
    try:
        cfg = SequenceConfig(**overrides)
    except ValueError as e:
        raise CliError(f"invalid sequence settings: {e}") from None
    suffix = args.out.suffix.lower()
    if suffix not in (".parquet", ".csv", ".jsonl"):
        raise CliError(f"--out: unsupported suffix {suffix!r}; use .parquet, .csv or .jsonl")
    t0 = time.perf_counter()
    with data_errors():
        mapping = load_mapping(args.mapping) if args.mapping else None
    frame, _ = read_events_reported(args.events, mapping, args.on_error)
    ordered = sort_for_sequences(frame, cfg)
    rows = []
    for entity, start, end, cols in iter_windows(ordered, cfg, args.every):
        enc = encode_window(cols, cfg)
        row: dict[str, object] = {
            "entity_id": entity,
            "start_ts": float(cols.ts[0]),
            "end_ts": float(cols.ts[-1]),
            "n_events": end - start,
            "input_ids": enc.input_ids.tolist(),
        }
        row.update(zip(FEATURE_NAMES, enc.features.astype(float).tolist(), strict=True))
        if "is_anomaly" in ordered.columns:
            labels = ordered["is_anomaly"].to_numpy()[start:end]
            row["is_anomaly"] = bool(np.any(labels))
        rows.append(row)
    out = pd.DataFrame(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".parquet":
        out.to_parquet(args.out, index=False)
    elif suffix == ".csv":
        out.assign(input_ids=out["input_ids"].map(lambda x: " ".join(map(str, x)))).to_csv(args.out, index=False)
    else:
        out.to_json(args.out, orient="records", lines=True)
    print(f"wrote {len(out)} windows of {ordered[cfg.entity_key].nunique()} entities to {args.out} "
          f"in {time.perf_counter() - t0:.1f}s")
    return 0
