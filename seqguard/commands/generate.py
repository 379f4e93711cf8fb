"""`seqguard generate`: labeled synthetic traffic (normal shoppers + seven attack scenarios) to events/users files."""

from __future__ import annotations

import argparse
import os
import time
from datetime import datetime
from pathlib import Path

from pydantic import ValidationError

from seqguard.cli import CliError
from seqguard.commands.arguments import add_format, add_out, add_seed, output_format
from seqguard.configfile import field_errors
from seqguard.generator import LABELS, SCENARIOS, GeneratedData, GeneratorConfig, generate
from seqguard.io import DataError, write_events


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "generate",
        help="generate labeled synthetic e-commerce traffic (normal + attack scenarios)",
        description="Generate realistic normal shopping sessions plus labeled attack scenarios "
        f"({', '.join(SCENARIOS)}) and write DIR/events.<ext> and DIR/users.<ext>.",
    )
    p.add_argument("--users", type=int, default=10_000, help="number of user accounts (default 10000)")
    p.add_argument("--days", type=int, default=7, help="length of the period in days (default 7)")
    add_seed(p, "random seed; the same seed gives the same data (default 0)")
    p.add_argument("--start", default=None, help="period start, ISO 8601 with offset (default 2026-10-05T00:00:00Z)")
    add_out(p, "output folder (created if missing)")
    add_format(p, "file")
    p.set_defaults(func=run)


def _config(args: argparse.Namespace) -> GeneratorConfig:
    if args.users <= 0:
        raise CliError(f"--users must be a positive number, got {args.users}")
    if args.days <= 0:
        raise CliError(f"--days must be a positive number, got {args.days}")
    if args.seed < 0:
        raise CliError(f"--seed must be >= 0, got {args.seed}")
    values: dict[str, object] = {"users": args.users, "days": args.days, "seed": args.seed}
    if args.start is not None:
        try:
            values["start"] = datetime.fromisoformat(args.start.replace("Z", "+00:00"))
        except ValueError:
            raise CliError(f"--start: cannot parse {args.start!r} as ISO 8601 (e.g. 2026-10-05T00:00:00Z)") from None
    try:
        return GeneratorConfig.model_validate(values)
    except ValidationError as e:
        first = field_errors(e)[0]
        raise CliError(f"--{first['field']}: {first['reason']}") from None


def _prepare_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise CliError(f"--out: {out} exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CliError(f"--out: cannot create {out}: {e.strerror or e}") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise CliError(f"--out: {out} is not writable")


def _write(data: GeneratedData, out: Path, fmt: str) -> tuple[Path, Path]:
    events_path, users_path = out / f"events.{fmt}", out / f"users.{fmt}"
    try:
        write_events(data.events, events_path)
        if fmt == "parquet":
            data.users.to_parquet(users_path, index=False)
        elif fmt == "csv":
            data.users.to_csv(users_path, index=False)
        else:
            data.users.to_json(users_path, orient="records", lines=True)
    except (OSError, DataError) as e:
        raise CliError(f"--out: cannot write to {out}: {e}") from None
    return events_path, users_path


def run(args: argparse.Namespace) -> int:
    fmt = output_format(args.format)
    cfg = _config(args)
    _prepare_out(args.out)
    t0 = time.perf_counter()
    data = generate(cfg)
    t_gen = time.perf_counter() - t0
    events_path, users_path = _write(data, args.out, fmt)
    elapsed = time.perf_counter() - t0

    summary = data.summary()
    print(f"{'label':<18}{'users':>8}{'events':>11}")
    for label in LABELS:
        r = summary.loc[label]
        print(f"{label:<18}{r['users']:>8,}{r['events']:>11,}")
    anomalous = int(data.events["is_anomaly"].sum())
    print(f"{'total':<18}{len(data.users):>8,}{len(data.events):>11,}  ({anomalous:,} attack events, "
          f"{100 * anomalous / max(1, len(data.events)):.1f} %)")
    print(f"wrote {events_path} and {users_path}")
    print(f"elapsed {elapsed:.1f} s (generate {t_gen:.1f} s, write {elapsed - t_gen:.1f} s)")
    return 0
