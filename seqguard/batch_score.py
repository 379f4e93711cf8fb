"""Batch scoring: events -> windows -> the service's own scoring path -> one row per window or per entity.

This is the batch twin of the service's `/score`. Nothing here re-implements a step: windows come from
`seqguard.sequences` (the same code training uses; the service's streaming window is held equal to it by a property
test), tokens and features from `encode_window`, and the models and the ensemble run inside the service's own
`ScoringEngine`, built by `seqguard.service.runtime.build_engine` on the verified repository with the
embedded ONNX Runtime backend. The Spark job (seqguard.spark) calls `BatchScorer.score_frame` on each group, so both
engines share it.

Memory: `score_file` never holds more than one chunk of entities. A small input is scored in one piece; a larger
one is first spilled, row group by row group, into bucket files by a stable hash of the entity key (pass 1), and
each bucket is then scored on its own (pass 2). An entity lies in exactly one bucket, so no entity is ever split
across chunks, whatever the order of the input.

Batches: every window goes through the engine in an ONNX Runtime call of its own (the engine's batch size is set
to 1). Measured on a fp32 tiny repository, the same window scored in different batches moved the GRU component by
up to 5e-4 (the bidirectional GRU reads the padding that the batch's longest window dictates), and dynamically
quantized int8 models take one activation scale per batch. A window scored alone is a pure function of its events:
the answer does not depend on the file, its chunking, the engine (single process or Spark), and it is what the
service's `/score` answers for that window's events in a request of their own.
"""

from __future__ import annotations

import asyncio
import math
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from seqguard.config import SequenceConfig
from seqguard.contracts import CHECKPOINT_INDEX, MANIFEST_FILE
from seqguard.crossentity import CrossIndex, frame_cross_features, frame_updates
from seqguard.events import EVENT_FIELDS, ID_FIELDS
from seqguard.features import encode_window
from seqguard.io import (
    ColumnMapping,
    DataError,
    OnError,
    ReadReport,
    RowError,
    RowErrors,
    apply_column_mapping,
    detect_format,
    iter_jsonl,
    validate_frame,
)
from seqguard.scoring.entity import (
    DEFAULT_AGGREGATION,
    ENTITY_AGGREGATION_KEY,
    aggregate_entity_scores,
    check_aggregation,
)
from seqguard.scoring.scorer import DECISIONS
from seqguard.sequences import columns_from_frame, sort_for_sequences, window_index

Level = Literal["window", "entity"]
Every = Literal["day", "entity"]
EVERY_CHOICES: tuple[str, ...] = ("day", "entity")
LEVELS: tuple[str, ...] = ("window", "entity")
DEFAULT_CHUNK_ROWS = 1_000_000
MAX_BUCKETS = 512  # bucket files open at once while spilling
REASON_SEP = " | "
# Windows per engine call: well inside the engine's request timeout.
_ENGINE_CALL_WINDOWS = 2048


class BatchScoreError(ValueError):
    """Models, data or options that cannot be scored; the message says which and why."""


# ---------------------------------------------------------------------------------------------------------------------
# Models: the repository, verified, inside the service's own engine


@dataclass(frozen=True)
class Aggregation:
    method: str
    source: str  # where the method came from, said in the output and the log


def entity_aggregation(manifest: Any, override: str | None = None, ensemble: Any = None) -> Aggregation:
    """The entity aggregation: an explicit choice, else the trained one (the repository's ensemble, or its manifest),
    else the module default."""
    if override:
        return Aggregation(check_aggregation(override), "--aggregation")
    trained = getattr(ensemble, ENTITY_AGGREGATION_KEY, None)
    if trained:
        return Aggregation(check_aggregation(str(trained)), f"trained: ensemble.json {ENTITY_AGGREGATION_KEY}")
    for section in ("ensemble", "evaluation"):
        value = (getattr(manifest, section, None) or {}).get(ENTITY_AGGREGATION_KEY)
        if isinstance(value, dict):  # {"method": ..., ...} as a fitted choice may be recorded
            value = value.get("method")
        if value:
            return Aggregation(check_aggregation(str(value)), f"manifest {section}.{ENTITY_AGGREGATION_KEY}")
    return Aggregation(DEFAULT_AGGREGATION, "default (the repository records no trained choice)")


def check_repository(models: Path) -> None:
    if not models.exists():
        raise BatchScoreError(f"--models {models}: does not exist")
    if not models.is_dir():
        raise BatchScoreError(f"--models {models}: not a folder (expected a repository written by `seqguard export`)")
    if not (models / MANIFEST_FILE).is_file():
        if (models / CHECKPOINT_INDEX).is_file():
            raise BatchScoreError(
                f"--models {models} is a checkpoint folder (written by `seqguard train`), not a model repository: "
                f"run `seqguard export --models {models} --out REPO` first and pass --models REPO, so scores come "
                "from the very files the service serves")
        raise BatchScoreError(f"--models {models}: no {MANIFEST_FILE} (not a repository written by `seqguard export`)")


class BatchScorer:
    """The service's scoring engine on one repository, driven synchronously, plus the batch output layout."""

    def __init__(self, models: str | Path, every: Every = "day", level: Level = "window",
                 aggregation: str | None = None, threads: int = 0) -> None:
        from seqguard.manifest import ManifestError, verify_repository
        from seqguard.scoring.scorer import ScorerError
        from seqguard.service.runtime import RepositoryError, build_engine
        from seqguard.service.settings import ServiceSettings

        if every not in EVERY_CHOICES:
            raise BatchScoreError(f"every: {every!r} is not one of {', '.join(EVERY_CHOICES)}")
        if level not in LEVELS:
            raise BatchScoreError(f"level: {level!r} is not one of {', '.join(LEVELS)}")
        self.models = Path(models)
        check_repository(self.models)
        try:
            self.manifest = verify_repository(self.models)
            # The service's settings for a batch job: in-process ORT, one window per backend call (see the module
            # docstring), no batching wait, and a backend failure is an error, never a silently degraded score.
            settings = ServiceSettings(repo=self.models, backend="embedded", intra_op_threads=threads,
                                       max_batch=1, max_wait_ms=0.0, max_queue=1 << 30, request_timeout_ms=120_000.0,
                                       failure_policy="fail_closed", state="memory", state_max_entities=1)
            self.engine = build_engine(settings)
        except (ManifestError, RepositoryError, ScorerError) as e:
            raise BatchScoreError(f"--models {self.models}: {e}") from None
        try:
            self.aggregation = entity_aggregation(self.manifest, aggregation, self.engine.scorer.ensemble)
        except ValueError as e:
            raise BatchScoreError(str(e)) from None
        self.cfg: SequenceConfig = self.engine.cfg
        self.every: Every = every
        self.level: Level = level
        self.scorer = self.engine.scorer
        # The component score columns are whatever the Scorer reports (asked once on a blank window), so a new
        # component shows up as a column without a change here; Spark needs them before any row is scored.
        from seqguard.features import FEATURE_NAMES

        probe = self.scorer.score({c: np.zeros((1, 2), dtype=np.float32) for c in self.scorer.components},
                                  np.zeros((1, len(FEATURE_NAMES)), dtype=np.float32))
        self.component_names = list(probe[0].component_scores)
        self._loop = asyncio.new_event_loop()

    @property
    def model_version(self) -> str:
        return self.engine.model_version

    def close(self) -> None:
        self._loop.run_until_complete(self.engine.close())
        self._loop.close()

    # -- output layout ------------------------------------------------------------------------------------------

    def output_schema(self, labels: bool = False) -> pa.Schema:
        ts = pa.timestamp("ms", tz="UTC")
        comps = [(f"score_{c}", pa.float64()) for c in self.component_names]
        if self.level == "window":
            fields = [("entity_id", pa.string()), ("window_date", pa.string()), ("window_start", ts),
                      ("window_end", ts), ("n_events", pa.int64()), ("score", pa.float64()),
                      ("decision", pa.string()), *comps, ("rules_fired", pa.string()), ("reasons", pa.string()),
                      ("degraded", pa.bool_()), ("model_version", pa.string())]
        else:
            fields = [("entity_id", pa.string()), ("first_window_end", ts), ("last_window_end", ts),
                      ("n_windows", pa.int64()), ("score", pa.float64()), ("decision", pa.string()),
                      ("aggregation", pa.string()), ("max_window_score", pa.float64()),
                      ("max_window_decision", pa.string()), *comps, ("reasons", pa.string()),
                      ("degraded", pa.bool_()), ("model_version", pa.string())]
        if labels:
            fields += [("label", pa.int64()), ("scenario", pa.string())]
        return pa.schema(fields)

    # -- scoring one chunk (every entity complete) ---------------------------------------------------------------

    def score_frame(self, frame: pd.DataFrame, progress: Callable[[int], Any] | None = None,
                    cross_index: CrossIndex | None = None) -> pd.DataFrame:
        """A validated events frame in file order, holding every event of its entities -> output rows.
        `progress(n)` is called as windows are scored. `cross_index`: the cross-entity index of the whole input when
        the frame is one bucket of it (else built from the frame)."""
        from seqguard.service.engine import RequestError, Window

        labelled = "is_anomaly" in frame.columns
        schema = self.output_schema(labelled)
        ordered = sort_for_sequences(frame, self.cfg)
        if len(ordered) == 0:
            return schema.empty_table().to_pandas()
        idx = window_index(ordered, self.cfg, self.every)
        cols = columns_from_frame(ordered)
        cross = frame_cross_features(ordered[self.cfg.entity_key].to_numpy(dtype=object), cols, idx.start, idx.end,
                                     cross_index)
        windows = [Window(str(ent), encode_window(cols.slice(int(s), int(e)), self.cfg, cross[i]), int(e - s))
                   for i, (ent, s, e) in enumerate(zip(idx.entity_id, idx.start, idx.end, strict=True))]
        results: list[dict[str, Any]] = []
        try:
            for group in self._engine_calls(windows):
                results += self._loop.run_until_complete(self.engine.score(group))
                if progress is not None:
                    progress(len(group))
        except RequestError as e:
            raise BatchScoreError(f"scoring failed: {e.message}") from None
        start_ts, end_ts = cols.ts[idx.start], cols.ts[idx.end - 1]
        out = pd.DataFrame({
            "entity_id": [r["entity_id"] for r in results],
            "window_start": _utc(start_ts),
            "window_end": _utc(end_ts),
            "n_events": np.array([r["n_events"] for r in results], dtype=np.int64),
            "score": np.array([r["score"] for r in results], dtype=np.float64),
            "decision": [r["decision"] for r in results],
        })
        for c in self.component_names:
            out[f"score_{c}"] = np.array([r["component_scores"].get(c, np.nan) for r in results], dtype=np.float64)
        out["rules_fired"] = [",".join(x["id"] for x in r["rules_fired"]) for r in results]
        out["reasons"] = [REASON_SEP.join(r["reasons"]) for r in results]
        out["degraded"] = np.array([bool(r["degraded"]) for r in results])
        out["model_version"] = self.model_version
        if labelled:
            # A window is anomalous when any event inside it is (the rule training and evaluation use).
            anomalous = ordered["is_anomaly"].to_numpy(dtype=bool)
            csum = np.concatenate([[0], np.cumsum(anomalous)])
            out["label"] = ((csum[idx.end] - csum[idx.start]) > 0).astype(np.int64)
            scen = (ordered["scenario"].astype(object).where(ordered["scenario"].notna(), None).to_numpy()
                    if "scenario" in ordered else np.full(len(ordered), None, dtype=object))
            out["scenario"] = [_window_scenario(scen[s:e], anomalous[s:e])
                               for s, e in zip(idx.start, idx.end, strict=True)]
        if self.level == "entity":
            out = self.entity_rows(out)
        else:
            out.insert(1, "window_date", _utc(end_ts).strftime("%Y-%m-%d"))
        return out[schema.names]

    def _engine_calls(self, windows: list[Any]) -> Iterator[list[Any]]:
        """Windows in groups per engine call; the engine scores each window in a backend call of its own."""
        for i in range(0, len(windows), _ENGINE_CALL_WINDOWS):
            yield windows[i:i + _ENGINE_CALL_WINDOWS]

    def entity_rows(self, windows: pd.DataFrame) -> pd.DataFrame:
        """Window rows -> one row per entity, aggregated with `self.aggregation` (seqguard.scoring.entity)."""
        method = self.aggregation.method
        ent = windows["entity_id"].to_numpy(dtype=object)
        agg = aggregate_entity_scores(ent, windows["score"], method)
        g = windows.groupby("entity_id", sort=False)
        top = windows.loc[g["score"].idxmax().reindex(agg["entity_id"]).to_numpy()]
        rank = windows["decision"].map({d: i for i, d in enumerate(DECISIONS)})
        thresholds = self.scorer.thresholds
        score = agg["score"].to_numpy()
        decision = np.where(score >= thresholds["block"], "block",
                            np.where(score >= thresholds["review"], "review", "allow"))
        out = pd.DataFrame({
            "entity_id": agg["entity_id"].to_numpy(),
            "first_window_end": g["window_end"].min().reindex(agg["entity_id"]).to_numpy(),
            "last_window_end": g["window_end"].max().reindex(agg["entity_id"]).to_numpy(),
            "n_windows": agg["n_windows"].to_numpy(dtype=np.int64),
            "score": score,
            "decision": decision,
            "aggregation": method,
            "max_window_score": top["score"].to_numpy(),
            "max_window_decision": [DECISIONS[int(r)] for r in
                                    rank.groupby(windows["entity_id"], sort=False).max().reindex(agg["entity_id"])],
        })
        for c in self.component_names:
            out[f"score_{c}"] = aggregate_entity_scores(ent, windows[f"score_{c}"], method)["score"].to_numpy()
        out["reasons"] = top["reasons"].to_numpy()
        out["degraded"] = g["degraded"].any().reindex(agg["entity_id"]).to_numpy()
        out["model_version"] = self.model_version
        if "label" in windows:
            out["label"] = g["label"].max().reindex(agg["entity_id"]).to_numpy(dtype=np.int64)
            pos = windows[windows["label"] == 1]
            scen = pos.groupby("entity_id", sort=False)["scenario"].agg(_most_common)
            out["scenario"] = [scen.get(e, "normal") if lab else "normal"
                               for e, lab in zip(out["entity_id"], out["label"], strict=True)]
        return out


def _utc(epoch_seconds: np.ndarray) -> pd.DatetimeIndex:
    return pd.to_datetime(np.round(np.asarray(epoch_seconds) * 1000).astype(np.int64), unit="ms", utc=True)


def _window_scenario(scen: np.ndarray, anomalous: np.ndarray) -> str:
    if not anomalous.any():
        return "normal"
    named = [str(s) for s in scen[anomalous] if s is not None]
    return _most_common(named) if named else "anomaly"


def _most_common(values: Any) -> str:
    vals = [str(v) for v in values if v is not None]
    if not vals:
        return "anomaly"
    counts = Counter(vals)
    best = max(counts.values())
    return min(v for v, n in counts.items() if n == best)  # ties broken by name: independent of row order


# ---------------------------------------------------------------------------------------------------------------------
# Reading an events file in chunks (through the mapping, validated exactly as `read_events` validates)

# A fixed Arrow schema for spilled events, so chunks whose optional columns happen to be empty still concatenate.
_SPILL_TYPES: dict[str, pa.DataType] = {
    **{f: pa.string() for f in ID_FIELDS},
    "ts": pa.float64(), "event_type": pa.string(), "price": pa.float64(), "quantity": pa.int64(),
    "payment_status": pa.string(), "text": pa.string(), "is_anomaly": pa.bool_(), "scenario": pa.string(),
}


def input_files(data: str | Path) -> list[Path]:
    """A file, a folder of files (e.g. a partitioned Parquet dataset), or a glob, in sorted path order."""
    p = Path(data)
    if p.is_file():
        return [p]
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.is_file() and not f.name.startswith(("_", ".")))
        if not files:
            raise BatchScoreError(f"--data {p}: the folder holds no files")
        return files
    if any(ch in str(data) for ch in "*?["):
        base = Path(p.anchor) if p.is_absolute() else Path()
        pattern = str(p.relative_to(p.anchor)) if p.is_absolute() else str(p)
        files = sorted(f for f in base.glob(pattern) if f.is_file())
        if not files:
            raise BatchScoreError(f"--data {data}: no file matches")
        return files
    raise BatchScoreError(f"--data {p}: does not exist")


def _raw_chunks(path: Path, fmt: str, mapping: ColumnMapping | None,
                chunk_rows: int) -> Iterator[tuple[pd.DataFrame, np.ndarray, list[RowError]]]:
    """The file in chunks of at most `chunk_rows` rows: the raw rows, the file line of each (Parquet: row number) and
    the lines that could not be parsed. JSONL numbers come from the parser, so blank and bad lines do not shift the
    rows after them; CSV rows are numbered by position after the header, as `read_events` numbers them."""
    if fmt == "parquet":
        row = 1
        try:
            pf = pq.ParquetFile(path)
            for batch in pf.iter_batches(batch_size=chunk_rows):
                yield batch.to_pandas(), np.arange(row, row + batch.num_rows), []
                row += batch.num_rows
        except (pa.ArrowInvalid, OSError) as e:
            raise DataError(f"{path}: not a readable Parquet file: {e}") from None
        return
    if fmt == "jsonl":
        rows: list[dict[str, Any]] = []
        lines: list[int] = []
        errors: list[RowError] = []
        for n, obj, reason in iter_jsonl(path):
            if obj is None:
                errors.append(RowError(n, "(line)", reason or "unreadable line"))
                continue
            # A full chunk goes out when the next good row comes, so that trailing bad lines join the last chunk
            # instead of making a chunk of no rows (which a mapping could not map).
            if len(rows) >= chunk_rows:
                yield pd.DataFrame(rows), np.asarray(lines, dtype=np.int64), errors
                rows, lines, errors = [], [], []
            rows.append(obj)
            lines.append(n)
        if rows or errors:
            yield pd.DataFrame(rows), np.asarray(lines, dtype=np.int64), errors
        return
    header = mapping.header if mapping else True
    names = mapping.columns if mapping and mapping.columns else None
    line = 2 if header else 1
    try:
        reader = pd.read_csv(path, header=0 if header else None, names=names,
                             sep=mapping.delimiter if mapping else ",", dtype=str, keep_default_na=False,
                             na_values=[""], on_bad_lines="warn", engine="c", chunksize=chunk_rows)
        for chunk in reader:
            if header and names is None:
                chunk.columns = [str(c).strip() for c in chunk.columns]
            yield chunk, np.arange(line, line + len(chunk)), []
            line += len(chunk)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not a readable CSV file: {e}") from None


@dataclass
class ReadTotals:
    """The row report of a chunked read, merged over chunks and files."""

    reports: list[ReadReport] = field(default_factory=list)

    @property
    def rows_read(self) -> int:
        return sum(r.rows_read for r in self.reports)

    @property
    def rows_ok(self) -> int:
        return sum(r.rows_ok for r in self.reports)

    def merged(self, path: str) -> ReadReport:
        out = ReadReport(path=path)
        for r in self.reports:
            out.rows_read += r.rows_read
            out.rows_ok += r.rows_ok
            out.rows_skipped += r.rows_skipped
            out.reasons.update(r.reasons)
            out.errors += r.errors[: max(0, 50 - len(out.errors))]
        return out


def read_chunks(data: str | Path, mapping: ColumnMapping | None = None, on_error: OnError = "skip",
                chunk_rows: int = DEFAULT_CHUNK_ROWS, totals: ReadTotals | None = None) -> Iterator[pd.DataFrame]:
    """Validated events frames of at most `chunk_rows` rows, in file order (files in sorted path order)."""
    totals = totals if totals is not None else ReadTotals()
    for path in input_files(data):
        fmt = detect_format(path, mapping)
        for raw, lines, parse_errors in _raw_chunks(path, fmt, mapping, chunk_rows):
            frame = apply_column_mapping(raw, mapping, path)
            good, report = validate_frame(frame, lines, "skip", str(path), parse_errors)
            totals.reports.append(report)
            if on_error == "fail" and report.rows_skipped:
                raise RowErrors(report)
            yield good


# ---------------------------------------------------------------------------------------------------------------------
# The whole file: one chunk when it fits, else spill to entity-hash buckets and score bucket by bucket


def entity_bucket(entity: pd.Series, buckets: int) -> np.ndarray:
    """A stable bucket per entity id (the same on every run and machine; pandas' fixed-key SipHash)."""
    h = pd.util.hash_pandas_object(entity.astype(str), index=False).to_numpy()
    return (h % np.uint64(buckets)).astype(np.int64)


def _estimate_rows(files: list[Path], mapping: ColumnMapping | None) -> int:
    total = 0
    for f in files:
        if detect_format(f, mapping) == "parquet":
            try:
                total += pq.ParquetFile(f).metadata.num_rows
                continue
            except Exception:
                pass
        size = f.stat().st_size
        with f.open("rb") as fh:
            head = fh.read(1 << 20)
        total += int(size / max(1.0, len(head) / max(1, head.count(b"\n"))))
    return total


def _to_spill_table(frame: pd.DataFrame, row0: int) -> pa.Table:
    cols = {}
    for name in (*EVENT_FIELDS, "is_anomaly", "scenario"):
        if name not in frame.columns:
            continue
        values = frame[name]
        if name == "quantity":
            values = values.astype("Int64")
        elif name == "scenario":  # passed through as the file had it: text it, keep the gaps
            values = values.astype(object).where(values.isna(), values.astype(str))
        cols[name] = pa.array(values, type=_SPILL_TYPES[name], from_pandas=True)
    cols["_row"] = pa.array(np.arange(row0, row0 + len(frame), dtype=np.int64))
    return pa.table(cols)


@dataclass
class ScoreSummary:
    rows_read: int
    rows_ok: int
    rows_out: int
    entities: int
    buckets: int
    seconds: float
    read_report: ReadReport
    aggregation: Aggregation | None = None


class OutputWriter:
    """Parquet or CSV by the suffix, written incrementally (one chunk's rows at a time)."""

    def __init__(self, path: Path, schema_for: Callable[[bool], pa.Schema]) -> None:
        suffix = path.suffix.lower()
        if suffix not in (".parquet", ".pq", ".csv"):
            raise BatchScoreError(f"--out {path}: use a .parquet or .csv file name")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.schema_for = schema_for
        self.schema: pa.Schema | None = None
        self.csv = suffix == ".csv"
        self.tmp = path.with_name(f".{path.name}.partial")
        self._writer: Any = None
        self.rows = 0

    def write(self, frame: pd.DataFrame) -> None:
        if self.schema is None:  # label columns are there when the first chunk has labels
            self.schema = self.schema_for("label" in frame.columns)
        for name in self.schema.names:
            if name not in frame.columns:  # a later file without the label columns of the first
                frame = frame.assign(**{name: None})
        table = pa.Table.from_pandas(frame[self.schema.names], schema=self.schema, preserve_index=False)
        if self._writer is None:
            if self.csv:
                import pyarrow.csv as pacsv

                self._writer = pacsv.CSVWriter(str(self.tmp), self.schema)
            else:
                self._writer = pq.ParquetWriter(str(self.tmp), self.schema)
        self._writer.write_table(table)
        self.rows += len(frame)

    def close(self) -> None:
        if self._writer is None:  # no rows at all: still a valid, empty file with the columns
            self.write(self.schema_for(False).empty_table().to_pandas())
        self._writer.close()
        self.tmp.replace(self.path)  # a half-written output never carries the final name

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self.tmp.unlink(missing_ok=True)


def score_file(scorer: BatchScorer, data: str | Path, out: str | Path, mapping: ColumnMapping | None = None,
               labels: pd.DataFrame | None = None, on_error: OnError = "skip",
               chunk_rows: int = DEFAULT_CHUNK_ROWS, progress: bool = True,
               on_labels: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
               tmp_dir: str | Path | None = None) -> ScoreSummary:
    """Score an events file (or folder / glob of files) into `out` (.parquet or .csv)."""
    import time

    t0 = time.perf_counter()
    files = input_files(data)
    if chunk_rows < 1:
        raise BatchScoreError(f"chunk_rows: must be at least 1, got {chunk_rows}")
    totals = ReadTotals()
    key = scorer.cfg.entity_key
    writer = OutputWriter(Path(out), scorer.output_schema)
    entities = 0
    estimate = _estimate_rows(files, mapping)
    bar = tqdm(total=estimate or None, desc="read", unit="row", unit_scale=True, disable=not progress, leave=False)
    chunks = read_chunks(data, mapping, on_error, chunk_rows, totals)

    wbar = tqdm(desc="score", unit="win", unit_scale=True, disable=not progress, leave=False)

    def finish(frame: pd.DataFrame, cross_index: CrossIndex | None = None) -> None:
        nonlocal entities
        rows = scorer.score_frame(frame, wbar.update, cross_index)
        if on_labels is not None:
            rows = on_labels(rows)
        entities += int(rows["entity_id"].nunique())
        writer.write(rows)

    try:
        first = next(chunks, None)
        second = next(chunks, None) if first is not None else None
        n_buckets = 1
        if first is not None and second is None:
            bar.update(len(first))
            bar.close()
            finish(first)
        elif first is not None:
            # Pass 1: spill rows to buckets by entity. Buckets sized for about half a chunk each on the estimate
            # (at most MAX_BUCKETS open files; beyond that, buckets grow past a chunk: raise --chunk-rows).
            n_buckets = min(MAX_BUCKETS, max(2, math.ceil(2 * max(estimate, 1) / chunk_rows)))
            with tempfile.TemporaryDirectory(prefix="seqguard-score-", dir=tmp_dir) as tmp:
                writers: dict[int, pq.ParquetWriter] = {}
                # Cross-entity features must see every bucket's devices and IPs: their index is built in pass 1
                # over the whole input (first-seen minima, so chunk order does not matter), held in memory.
                cross_index = CrossIndex()
                schema: pa.Schema | None = None
                row0 = 0
                for chunk in _chain(first, second, chunks):
                    bar.update(len(chunk))
                    chunk = chunk[chunk[key].notna()]
                    cross_index.add_all(frame_updates(chunk[key].to_numpy(dtype=object), columns_from_frame(chunk)))
                    table = _to_spill_table(chunk, row0)
                    row0 += len(chunk)
                    if schema is None:
                        schema = table.schema
                    elif table.schema != schema:
                        table = table.cast(schema)
                    buckets = entity_bucket(chunk[key], n_buckets)
                    order = np.argsort(buckets, kind="stable")
                    sorted_b = buckets[order]
                    cuts = np.flatnonzero(np.diff(sorted_b)) + 1
                    for part in np.split(order, cuts):
                        if not len(part):
                            continue
                        b = int(buckets[part[0]])
                        if b not in writers:
                            writers[b] = pq.ParquetWriter(str(Path(tmp) / f"b{b:05d}.parquet"), schema)
                        writers[b].write_table(table.take(pa.array(part)))
                for w in writers.values():
                    w.close()
                bar.close()
                # Pass 2: one bucket at a time; every entity is whole inside its bucket.
                for b in tqdm(sorted(writers), desc="buckets", unit="bucket", disable=not progress, leave=False,
                              position=1):
                    frame = pq.read_table(Path(tmp) / f"b{b:05d}.parquet").to_pandas()
                    frame = frame.sort_values("_row", kind="stable").drop(columns="_row").reset_index(drop=True)
                    finish(frame, cross_index)
        else:
            bar.close()
        wbar.close()
        writer.close()
    except BaseException:
        wbar.close()
        writer.abort()
        raise
    read = totals.merged(str(data))
    return ScoreSummary(read.rows_read, read.rows_ok, writer.rows, entities, n_buckets,
                        time.perf_counter() - t0, read,
                        scorer.aggregation if scorer.level == "entity" else None)


def _chain(*parts: Any) -> Iterator[pd.DataFrame]:
    for p in parts:
        if isinstance(p, pd.DataFrame):
            yield p
        elif p is not None:
            yield from p



class EntityLabeller:
    """Adds `label` / `scenario` from an entity labels table (seqguard.labels) to score rows, chunk by chunk.

    An entity's label marks all its windows, as `join_labels` marks all its events. The table is joined on the
    output rows (every chunk holds whole entities); the join report, and its error when no entity matches, come
    from `join_labels` itself over the scored entity ids at the end.
    """

    def __init__(self, labels: pd.DataFrame, entity_key: str, unlabelled: str = "normal") -> None:
        from seqguard.labels import ANOMALY, NORMAL, UNLABELLED_CHOICES

        if unlabelled not in UNLABELLED_CHOICES:
            raise BatchScoreError(f"unlabelled: {unlabelled!r} is not one of {', '.join(UNLABELLED_CHOICES)}")
        self.labels = labels
        self.by_id = labels.set_index("entity_id")
        self.entity_key = entity_key
        self.unlabelled = unlabelled
        self.anomaly, self.normal = ANOMALY, NORMAL
        self.seen: set[str] = set()

    def __call__(self, rows: pd.DataFrame) -> pd.DataFrame:
        ids = rows["entity_id"]
        self.seen.update(ids.unique().tolist())
        present = ids.isin(self.by_id.index).to_numpy(dtype=bool)
        label = self.by_id["label"].reindex(ids.to_numpy()).to_numpy()
        scen = self.by_id["scenario"].reindex(ids.to_numpy()).to_numpy(dtype=object)
        positive = np.where(present, label, 0).astype(bool)
        out = rows.assign(label=positive.astype(np.int64),
                          scenario=np.where(positive, np.where(pd.isna(scen), self.anomaly, scen), self.normal))
        if self.unlabelled == "exclude":
            out = out.loc[present].reset_index(drop=True)
        return out

    def finish(self) -> str:
        """The join report over every scored entity; raises LabelsError when none of them is in the table."""
        from seqguard.labels import join_labels

        ids = pd.DataFrame({self.entity_key: sorted(self.seen)})
        _, report = join_labels(ids, self.labels, self.entity_key, self.unlabelled)
        return (f"labels: {report.positive_entities:,} positive and {report.negative_entities:,} negative entities "
                f"matched; {report.labelled_absent_from_events:,} labelled entities absent from the events; "
                f"{report.event_entities_without_label:,} scored entities without a label "
                f"({'treated as normal' if self.unlabelled == 'normal' else 'left out'})")
