"""The Spark plan behind `seqguard score --engine spark` and `seqguard.spark.score` (see the package docstring)."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa

from seqguard.batch_score import BatchScoreError, BatchScorer, check_repository
from seqguard.events import EVENT_FIELDS, ID_FIELDS
from seqguard.io import LABEL_COLUMNS, ColumnMapping

ROW_ERRORS_FILE = "_row_errors.json"
_BATCH_ROWS_BITS = 20  # a row key is (first row index of its Arrow batch << 20) + position among the kept rows


class SparkUnavailable(RuntimeError):
    """pyspark or Java is missing; the message says how to get them."""


def _pyspark():
    try:
        import pyspark  # noqa: F401
    except ImportError:
        raise SparkUnavailable("--engine spark needs pyspark: pip install 'seqguard[spark]' (pyspark 4.3)") from None
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        raise SparkUnavailable("Spark needs Java 17 or newer and none was found (no `java` on PATH, no JAVA_HOME): "
                               "apt-get install default-jdk-headless, or `make setup`, which installs it")


def get_session(master: str | None = None, app: str = "seqguard-score", conf: dict[str, str] | None = None):
    """A SparkSession; the master comes from spark-submit when it set one, else `master`, else local[*]."""
    _pyspark()
    from pyspark import SparkConf
    from pyspark.sql import SparkSession

    # Python workers must be this interpreter (the one with seqguard and its pins), not whatever `python3` is.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(app)
    if master or not SparkConf().contains("spark.master"):
        builder = builder.master(master or "local[*]")
    # Parquet written by pandas carries nanosecond timestamps, which Spark reads only as int64.
    defaults = {"spark.sql.execution.arrow.pyspark.enabled": "true", "spark.sql.legacy.parquet.nanosAsLong": "true",
                "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS"}
    for k, v in {**defaults, **(conf or {})}.items():
        builder = builder.config(k, v)
    return builder.getOrCreate()


# ---------------------------------------------------------------------------------------------------------------------
# Reading: the mapping as Spark column expressions


def _format(path: str, mapping: ColumnMapping | None) -> str:
    if mapping and mapping.format:
        return mapping.format
    low = path.lower().rstrip("/")
    for suffixes, fmt in (((".csv", ".tsv"), "csv"), ((".jsonl", ".ndjson", ".json"), "jsonl")):
        if any(s in low for s in suffixes):
            return fmt
    return "parquet"  # folders of partitioned Parquet (the common case on a cluster) carry no suffix


def read_events(spark: Any, path: str, mapping: ColumnMapping | None = None):
    """Raw events as a DataFrame with the event columns (through the mapping) plus `_file` and `_idx`, the row's
    file and its position there (file order decides ties, as in the single-process reader)."""
    from pyspark.sql import functions as F

    fmt = _format(path, mapping)
    if fmt == "parquet":
        raw = spark.read.parquet(path)
        idx = F.col("_metadata.row_index")
    elif fmt == "csv":
        reader = spark.read.option("header", mapping.header if mapping else True)
        reader = reader.option("sep", mapping.delimiter if mapping else ",")
        if mapping and mapping.columns:
            reader = reader.schema(", ".join(f"`{c}` string" for c in mapping.columns))
        else:
            reader = reader.option("inferSchema", False)
        raw = reader.csv(path)
        idx = F.monotonically_increasing_id()
    else:
        raw = spark.read.json(path)
        idx = F.monotonically_increasing_id()
    raw = raw.select("*", F.col("_metadata.file_path").alias("_file"), idx.alias("_idx"))
    return apply_mapping(raw, mapping, _nanos_columns(path) if fmt == "parquet" else set())


def _nanos_columns(path: str) -> set[str] | None:
    """Columns stored as TIMESTAMP(NANOS) (what pandas writes), which Spark reads as plain int64; None when the
    files cannot be inspected from the driver (remote storage)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from seqguard.batch_score import input_files

    try:
        schema = pq.read_schema(input_files(path)[0])
    except Exception:
        return None
    return {f.name for f in schema if pa.types.is_timestamp(f.type) and f.type.unit == "ns"}


def apply_mapping(raw: Any, mapping: ColumnMapping | None, nanos: set[str] | None = None):
    """`ColumnMapping` as column expressions: renames, value tables, constants and the timestamp unit."""
    from pyspark.sql import functions as F

    known = (*EVENT_FIELDS, *LABEL_COLUMNS)
    if mapping is None:
        cols = {c: F.col(f"`{c}`") for c in raw.columns if c in known}
    else:
        missing = [src for src in mapping.fields.values() if src not in raw.columns]
        if missing:
            raise BatchScoreError(f"mapping '{mapping.name}' names column(s) {missing}, which the data lacks "
                                  f"(columns: {raw.columns[:20]})")
        cols = {f: F.col(f"`{src}`") for f, src in mapping.fields.items()}
        for f, table in mapping.values.items():
            if f in cols and table:
                lookup = F.create_map(*[F.lit(x) for kv in table.items() for x in kv])
                as_text = cols[f].cast("string")
                cols[f] = F.coalesce(lookup[as_text], as_text)
        for f, value in mapping.constants.items():
            cols[f] = F.lit(value)
        if mapping.ts_unit != "auto" and "ts" in cols:
            # The arithmetic of seqguard.io.apply_column_mapping, step for step, so both engines get the same doubles.
            cols["ts"] = cols["ts"].cast("double") * (1000.0 if mapping.ts_unit == "s" else 1.0) / 1000.0
            cols["ts_unit_fixed"] = F.lit(True)
    src = mapping.fields.get("ts", "ts") if mapping is not None else "ts"
    if "ts" in cols and src in raw.columns and (mapping is None or mapping.ts_unit == "auto"):
        cols["ts"] = _epoch_seconds(cols["ts"], raw.schema[src].dataType, None if nanos is None else src in nanos)
    return raw.select(*[c.alias(name) for name, c in cols.items()], "_file", "_idx")


def _epoch_seconds(col: Any, dtype: Any, nanos: bool | None = None):
    """Timestamp columns as float epoch seconds, computed as pandas computes them in `seqguard.io` (int64
    nanoseconds / 1e9), so both engines see bit-identical times. Spark hands pandas UDFs session-local naive
    datetimes, which `validate_frame` would rightly refuse; nanosecond Parquet timestamps arrive as int64."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    if isinstance(dtype, T.TimestampType | T.TimestampNTZType):
        return (F.unix_micros(col) * 1000).cast("double") / 1e9
    if isinstance(dtype, T.LongType) and nanos:  # spark.sql.legacy.parquet.nanosAsLong: TIMESTAMP(NANOS) as int64
        return col.cast("double") / 1e9
    if isinstance(dtype, T.LongType) and nanos is None:
        # Files not inspectable from here: an int64 of 1e17 or more can only be nanoseconds of 2000..2100.
        return F.when(F.abs(col) >= 1e17, col.cast("double") / 1e9).otherwise(col)
    return col


# ---------------------------------------------------------------------------------------------------------------------
# Validation: the same `validate_frame`, inside mapInPandas; errors counted per reason


def _event_schema(labels: bool) -> str:
    types = {**{f: "string" for f in ID_FIELDS}, "ts": "double", "event_type": "string", "price": "double",
             "quantity": "bigint", "payment_status": "string", "text": "string"}
    cols = [f"`{f}` {types[f]}" for f in EVENT_FIELDS]
    if labels:
        cols += ["`is_anomaly` boolean", "`scenario` string"]
    return ", ".join([*cols, "`_file` string", "`_row` bigint"])


class _CounterParam:
    """An accumulator of Counters (row errors per reason, rows read / kept)."""

    def zero(self, value: Counter) -> Counter:
        return Counter()

    def addInPlace(self, a: Counter, b: Counter) -> Counter:
        a.update(b)
        return a


def validate(df: Any, errors: Any = None):
    """Validated events: the rows `seqguard.io.read_events` would keep, with `_file` and `_row` (file order)."""
    import numpy as np

    from seqguard.io import validate_frame

    labels = "is_anomaly" in df.columns
    columns = [*EVENT_FIELDS, *(LABEL_COLUMNS if labels else ()), "_file", "_row"]

    def run(batches):
        for pdf in batches:
            for file, part in pdf.groupby("_file", sort=False):
                frame = part.drop(columns=["_file", "_idx"]).reset_index(drop=True)
                first = int(part["_idx"].iloc[0])
                good, report = validate_frame(frame, np.arange(first, first + len(part)) + 1, "skip", str(file))
                if errors is not None:
                    errors.add(Counter({**{f"error: {k}": v for k, v in report.reasons.items()},
                                        "rows_read": report.rows_read, "rows_ok": report.rows_ok}))
                if labels and "scenario" not in good:
                    good["scenario"] = None
                good["_file"] = file
                good["_row"] = (first << _BATCH_ROWS_BITS) + np.arange(len(good), dtype=np.int64)
                yield good[columns]

    return df.mapInPandas(run, _event_schema(labels))


# ---------------------------------------------------------------------------------------------------------------------
# Windows and scores


def _arrow_to_spark(schema: pa.Schema) -> str:
    names = {pa.string(): "string", pa.float64(): "double", pa.int64(): "bigint", pa.bool_(): "boolean"}
    cols = []
    for f in schema:
        t = "timestamp" if pa.types.is_timestamp(f.type) else names[f.type]
        cols.append(f"`{f.name}` {t}")
    return ", ".join(cols)


_SCORERS: dict[tuple, BatchScorer] = {}


def _scorer(repo: str, every: str, level: str, aggregation: str | None, threads: int) -> BatchScorer:
    """One engine per Python worker and settings: the ONNX files load (and the manifest is verified) once."""
    key = (repo, every, level, aggregation, threads)
    if key not in _SCORERS:
        _SCORERS[key] = BatchScorer(repo, every=every, level=level, aggregation=aggregation,  # type: ignore[arg-type]
                                    threads=threads)
    return _SCORERS[key]


def score(df: Any, models: str | Path, level: str = "window", every: str = "day", aggregation: str | None = None,
          buckets: int | None = None, threads: int = 1, errors: Any = None):
    """Score an events DataFrame (the event columns; ts as timestamp, epoch or ISO text) with a model repository.

    Returns a DataFrame with the columns of the single-process `seqguard score` output. `models` is a local folder
    on the driver; it is shipped to the executors with `SparkContext.addFile` and verified there on load.
    """
    from pyspark import SparkFiles
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    spark = df.sparkSession
    models = Path(models)
    check_repository(models)
    driver = BatchScorer(models, every=every, level=level, aggregation=aggregation, threads=1)  # type: ignore[arg-type]
    cfg = driver.cfg
    labels = "is_anomaly" in df.columns
    schema = _arrow_to_spark(driver.output_schema(labels))
    driver.close()
    if "_file" not in df.columns:
        df = df.select("*", F.lit("").alias("_file"), F.monotonically_increasing_id().alias("_idx"))
    events = validate(df, errors)
    key = cfg.entity_key
    events = events.filter(F.col(key).isNotNull())
    # Repeated (entity, event_id): the first in file order wins, as in `sort_for_sequences`. Rows without an
    # event_id get a unique stand-in, so they neither collide nor gather in one group.
    eid = F.coalesce(F.col("event_id"), F.concat(F.lit("\u0000"), F.col("_file"), F.lit(":"),
                                                  F.col("_row").cast("string")))
    first = Window.partitionBy(key, "_eid").orderBy("_file", "_row")
    events = events.withColumn("_eid", eid).withColumn("_n", F.row_number().over(first)).filter("_n = 1")
    # Only the last max_events events of each entity-day (every=day) or entity (every=entity) can be in a window;
    # Spark applies this row_number limit partly before the shuffle (its window group limit).
    part = [F.col(key)] + ([F.floor(F.col("ts") / 86400.0)] if every == "day" else [])
    last = Window.partitionBy(*part).orderBy(F.col("ts").desc(), F.col("_file").desc(), F.col("_row").desc())
    events = events.withColumn("_k", F.row_number().over(last)).filter(F.col("_k") <= cfg.max_events)
    n = buckets or int(spark.conf.get("spark.sql.shuffle.partitions", "200"))
    events = events.withColumn("_bucket", F.pmod(F.xxhash64(F.col(key)), F.lit(n))).drop("_eid", "_n", "_k")
    spark.sparkContext.addFile(str(models.resolve()), recursive=True)
    name = models.resolve().name

    def run(pdf):
        scorer = _scorer(SparkFiles.get(name), every, level, aggregation, threads)
        pdf = pdf.sort_values(["_file", "_row"], kind="stable").drop(columns=["_file", "_row", "_bucket"])
        return scorer.score_frame(pdf.reset_index(drop=True))

    return events.groupBy("_bucket").applyInPandas(run, schema)


def score_path(data: str, models: str | Path, out: str | Path, mapping: ColumnMapping | None = None,
               labels: Any = None, unlabelled: str = "normal", level: str = "window", every: str = "day",
               aggregation: str | None = None, master: str | None = None, threads: int = 1,
               buckets: int | None = None, spark: Any = None) -> str:
    """`seqguard score --engine spark`: read, score, write partitioned Parquet to `out` and the row errors to
    `out/_row_errors.json`; returns a summary line."""
    t0 = time.perf_counter()
    check_repository(Path(models))
    spark = spark or get_session(master)
    # UTC-adjusted timestamps, as the single-process output has them (Spark's default INT96 reads back naive).
    spark.conf.set("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
    errors = spark.sparkContext.accumulator(Counter(), _CounterParam())
    df = read_events(spark, str(data), mapping)
    rows = score(df, models, level=level, every=every, aggregation=aggregation, buckets=buckets,
                 threads=threads or 1, errors=errors)
    if labels is not None:
        rows = _join_labels(spark, rows, labels, unlabelled)
    writer = rows.write.mode("overwrite")
    if level == "window":
        writer = writer.partitionBy("window_date")
    writer.parquet(str(out))
    label_line = _label_report(spark, str(out), labels, unlabelled) if labels is not None else None
    counts = Counter(errors.value)
    reasons = {k.removeprefix("error: "): v for k, v in counts.most_common() if k.startswith("error: ")}
    report = {"rows_read": counts["rows_read"], "rows_ok": counts["rows_ok"],
              "rows_skipped": counts["rows_read"] - counts["rows_ok"], "reasons": reasons}
    if not str(out).startswith(("s3:", "s3a:", "gs:", "abfs:", "hdfs:", "dbfs:")):
        Path(out, ROW_ERRORS_FILE).write_text(json.dumps(report, indent=1) + "\n")
    lines = [f"{data}: read {report['rows_read']} rows, kept {report['rows_ok']}, skipped {report['rows_skipped']}"]
    lines += [f"  {n:>8} x {r}" for r, n in reasons.items()]
    if label_line:
        lines.append(label_line)
    lines.append(f"wrote {out} ({level} rows, partitioned Parquet) in {time.perf_counter() - t0:.1f}s with Spark "
                 f"{spark.version} ({spark.sparkContext.master})")
    return "\n".join(lines)


def _join_labels(spark: Any, rows: Any, labels: Any, unlabelled: str):
    """Entity labels onto score rows (an entity's label marks all its windows), as `seqguard.labels` defines it."""
    from pyspark.sql import functions as F

    from seqguard.labels import ANOMALY, NORMAL

    table = spark.createDataFrame(labels[["entity_id", "label", "scenario"]].astype(
        {"entity_id": str, "label": "int64", "scenario": object}).rename(
        columns={"label": "_label", "scenario": "_scenario"}))
    how = "inner" if unlabelled == "exclude" else "left"
    joined = rows.drop("label", "scenario").join(F.broadcast(table), "entity_id", how)
    positive = F.coalesce(F.col("_label"), F.lit(0)) == 1
    return joined.withColumn("label", positive.cast("bigint")).withColumn(
        "scenario", F.when(positive, F.coalesce(F.col("_scenario"), F.lit(ANOMALY))).otherwise(F.lit(NORMAL))
    ).drop("_label", "_scenario")


def _label_report(spark: Any, out: str, labels: Any, unlabelled: str) -> str:
    """The join counts, read back from the written output (cheap: one column); no matching entity at all is an
    error, as in `seqguard.labels.join_labels`."""
    from pyspark.sql import functions as F

    from seqguard.labels import LabelsError

    ids = spark.read.parquet(out).select("entity_id").distinct()
    table = spark.createDataFrame(labels[["entity_id", "label"]].astype({"entity_id": str, "label": "int64"}))
    scored = ids.count()
    counts = {r["label"]: r["count"] for r in ids.join(F.broadcast(table), "entity_id").groupBy("label").count()
              .collect()}
    matched = sum(counts.values())
    if matched == 0:
        raise LabelsError(f"no entity of the labels table occurs in the events: 0 of {len(labels):,} labelled ids "
                          f"match the {scored:,} scored entities; check the id column and the mapping's entity key")
    without = f"{scored - matched:,} scored entities without a label (treated as normal)" \
        if unlabelled == "normal" else "scored entities without a label left out"
    return (f"labels: {counts.get(1, 0):,} positive and {counts.get(0, 0):,} negative entities matched; "
            f"{len(labels) - matched:,} labelled entities absent from the events; {without}")
