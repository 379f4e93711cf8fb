"""`seqguard score`: an events file to score rows (per window or per entity), through the service's scoring path."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from seqguard.cli import CliError
from seqguard.commands.arguments import (
    add_data,
    add_labels,
    add_mapping,
    add_models,
    add_no_progress,
    add_on_error,
    add_out,
)
from seqguard.commands.inputs import data_errors


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "score",
        help="score an events file with a model repository: one row per window or per entity",
        description="Build windows from an events file (CSV / Parquet / JSONL, a folder or a glob of them, "
        "optionally through a column mapping) and score them exactly as the service does: the repository's ONNX "
        "files in process (manifest verified), the service's engine and Scorer. Writes entity_id, window end, "
        "score, decision, component scores and reasons to OUT (.parquet or .csv). Files larger than memory are "
        "spilled to entity-hash buckets first, so no entity is ever split. --engine spark runs the same code on "
        "Apache Spark and writes partitioned Parquet into the folder OUT.",
    )
    add_models(p, "model repository written by `seqguard export` (holds manifest.json)")
    add_data(p, "events file, folder or glob (.csv, .parquet, .jsonl)", type=None)
    add_mapping(p)
    add_labels(p, "entity labels table (entity_id,label[,scenario]; CSV or Parquet): adds label and scenario "
               "columns for later evaluation (docs/spark.md)",
               "with --labels: entities absent from the table count as normal (default) or are left out")
    add_out(p, "output file (.parquet or .csv); with --engine spark a folder of partitioned Parquet")
    p.add_argument("--level", choices=("window", "entity"), default="window",
                   help="one row per window (default) or per entity (window scores aggregated)")
    p.add_argument("--every", choices=("day", "entity"), default="day",
                   help="windows: ending at each entity's last event of every UTC day (default, as training and "
                   "evaluation build them) or only each entity's latest window (what /score answers)")
    p.add_argument("--aggregation", choices=("max", "mean", "median"),
                   help="entity level: how window scores combine (default: the trained choice in the manifest, "
                   "else mean)")
    p.add_argument("--engine", choices=("local", "spark"), default="local",
                   help="local: this process (default); spark: Apache Spark (pip install 'seqguard[spark]')")
    p.add_argument("--master", default=None,
                   help="spark master: local[2], yarn, spark://host:7077 (default: spark-submit's, else local[*])")
    p.add_argument("--chunk-rows", type=int, default=None,
                   help="rows read per chunk (default 1,000,000): bounds memory; larger inputs are bucketed by entity")
    p.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads (default 0: all cores)")
    add_on_error(p)
    add_no_progress(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from seqguard.commands.train import quiet_openmp

    quiet_openmp()
    from seqguard.batch_score import DEFAULT_CHUNK_ROWS, BatchScoreError, BatchScorer, input_files, score_file
    from seqguard.io import load_mapping

    if args.chunk_rows is not None and args.chunk_rows < 1:
        raise CliError(f"--chunk-rows: must be at least 1, got {args.chunk_rows}")
    if args.threads < 0:
        raise CliError(f"--threads: must be 0 (all cores) or more, got {args.threads}")
    if args.master and args.engine != "spark":
        raise CliError("--master: only with --engine spark")
    with data_errors(BatchScoreError):
        mapping = load_mapping(args.mapping) if args.mapping else None
        input_files(args.data)  # a missing input is reported before the models load
        labels = _load_labels(args.labels) if args.labels else None
        if args.engine == "spark":
            return _run_spark(args, mapping, labels)
        if args.out.suffix.lower() not in (".parquet", ".pq", ".csv"):
            raise CliError(f"--out {args.out}: use a .parquet or .csv file name")
        scorer = BatchScorer(args.models, every=args.every, level=args.level, aggregation=args.aggregation,
                             threads=args.threads)
    print(f"scoring with {args.models} (model {scorer.model_version}, windows every {args.every}, "
          f"{args.level} rows)", file=sys.stderr)
    labeller = None
    if labels is not None:
        from seqguard.batch_score import EntityLabeller

        labeller = EntityLabeller(labels, scorer.cfg.entity_key, args.unlabelled)
    try:
        with data_errors(BatchScoreError):
            summary = score_file(scorer, args.data, args.out, mapping, on_error=args.on_error,
                                 chunk_rows=args.chunk_rows or DEFAULT_CHUNK_ROWS, progress=not args.no_progress,
                                 on_labels=labeller)
            if labeller is not None:
                print(labeller.finish(), file=sys.stderr)
    except ValueError as e:  # labels problems found while joining (no entity matches the table)
        args.out.unlink(missing_ok=True)
        raise CliError(str(e)) from None
    finally:
        scorer.close()
    print(summary.read_report.summary(), file=sys.stderr)
    if summary.rows_ok == 0:
        args.out.unlink(missing_ok=True)
        raise CliError(f"{args.data}: no usable rows to score")
    agg = f"; entity scores: {summary.aggregation.method} of window scores ({summary.aggregation.source})" \
        if summary.aggregation else ""
    print(f"wrote {args.out}: {summary.rows_out:,} {args.level} rows for {summary.entities:,} entities from "
          f"{summary.rows_ok:,} events in {summary.seconds:.1f}s ({summary.rows_ok / max(summary.seconds, 1e-9):,.0f} "
          f"events/s; {summary.buckets} bucket(s)){agg}")
    return 0


def _load_labels(path: Path):  # -> pd.DataFrame
    try:
        from seqguard.labels import LabelsError, load_labels
    except ImportError:  # pragma: no cover - seqguard.labels ships with the own-data work
        raise CliError("--labels needs seqguard.labels, which this installation lacks") from None
    try:
        return load_labels(path)
    except LabelsError as e:
        raise CliError(str(e)) from None


def _run_spark(args: argparse.Namespace, mapping, labels) -> int:
    from seqguard.batch_score import BatchScoreError
    from seqguard.io import DataError

    try:
        from seqguard.spark import SparkUnavailable, score_path
    except ImportError as e:
        raise CliError(f"--engine spark needs pyspark: pip install 'seqguard[spark]' ({e})") from None
    try:
        summary = score_path(args.data, args.models, args.out, mapping=mapping, labels=labels,
                             unlabelled=args.unlabelled, level=args.level, every=args.every,
                             aggregation=args.aggregation, master=args.master, threads=args.threads)
    except SparkUnavailable as e:
        raise CliError(str(e)) from None
    except (BatchScoreError, DataError, ValueError) as e:  # ValueError: labels that match no scored entity
        if Path(args.out).is_dir() and not str(args.out).startswith(("s3:", "gs:", "hdfs:")):
            import shutil

            shutil.rmtree(args.out, ignore_errors=True)
        raise CliError(str(e)) from None
    print(summary, file=sys.stderr)
    return 0
