"""Dataset I/O: CSV, Parquet and JSONL in and out, through an optional column mapping, with row-level errors.

Files are validated column-wise (fast on millions of rows) against the same limits as the pydantic `Event`; each bad
row is reported with its line number and the first reason it failed, and `on_error` decides whether the read skips
it or fails. Inside seqguard an events frame has the columns `EVENT_FIELDS` (+ label columns when present), `ts` as
float64 epoch seconds UTC, and rows in file order.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field, model_validator

from seqguard.configfile import load_model
from seqguard.events import (
    EPOCH_MS_THRESHOLD,
    EVENT_FIELDS,
    EVENT_TYPES,
    ID_FIELDS,
    ID_MAX_CHARS,
    OPTIONAL_FIELDS,
    PAYMENT_STATUSES,
    PRICE_MAX,
    QUANTITY_MAX,
    REQUIRED_FIELDS,
    TEXT_MAX_CHARS,
    TS_MAX,
    TS_MIN,
    clip_identifier,
)

LABEL_COLUMNS: tuple[str, ...] = ("is_anomaly", "scenario")
FORMATS = ("csv", "parquet", "jsonl")
Format = Literal["csv", "parquet", "jsonl"]
OnError = Literal["skip", "fail"]
MAX_REPORTED_ERRORS = 50


class DataError(ValueError):
    """A file or mapping that cannot be read; the message says which and why."""


class ColumnMapping(BaseModel):
    """How a foreign data set maps onto the Event model (YAML). See seqguard/data/taobao_userbehavior.yaml."""

    model_config = ConfigDict(extra="forbid")

    name: str = "custom"
    format: Format | None = Field(default=None, description="csv | parquet | jsonl; default: from the file suffix")
    header: bool = Field(default=True, description="CSV only: does the first line name the columns?")
    columns: list[str] | None = Field(default=None, description="column names for a header-less CSV, in order")
    delimiter: str = Field(default=",", min_length=1, max_length=1)
    fields: dict[str, str] = Field(default_factory=dict, description="event field -> source column")
    values: dict[str, dict[str, str]] = Field(
        default_factory=dict, description="event field -> {source value: event value}, e.g. pv: view"
    )
    constants: dict[str, str] = Field(default_factory=dict, description="event field -> a constant value")
    ts_unit: Literal["auto", "s", "ms"] = "auto"
    utc_offset_hours: float | None = Field(
        default=None, ge=-14, le=14, description="the data's local time zone, for hour-of-day features (None: UTC)")
    labels: dict[str, str] = Field(
        default_factory=dict, description="labels table columns by role, e.g. {entity_id: username, label: is_bad}")

    @model_validator(mode="after")
    def _check(self) -> ColumnMapping:
        known = set(EVENT_FIELDS) | set(LABEL_COLUMNS)
        for section, keys in (("fields", self.fields), ("values", self.values), ("constants", self.constants)):
            unknown = sorted(set(keys) - known)
            if unknown:
                raise ValueError(f"{section}: unknown event field(s) {unknown}; known: {sorted(known)}")
        bad_roles = sorted(set(self.labels) - {"entity_id", "label", "scenario"})
        if bad_roles:
            raise ValueError(f"labels: unknown role(s) {bad_roles}; known: entity_id, label, scenario")
        if not self.header and not self.columns:
            raise ValueError("columns: required when header is false (name the CSV columns in order)")
        return self


def load_mapping(path: str | Path) -> ColumnMapping:
    return load_model(path, ColumnMapping, "mapping file", DataError)


@dataclass
class RowError:
    line: int
    field: str
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.field}: {self.reason}"


@dataclass
class ReadReport:
    """What a read saw: rows read, kept and skipped, reasons counted, the first errors in full."""

    path: str
    rows_read: int = 0
    rows_ok: int = 0
    rows_skipped: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    errors: list[RowError] = field(default_factory=list)
    fixed: Counter[str] = field(default_factory=Counter)  # values kept after a stated repair (field: what was done)

    def summary(self) -> str:
        lines = [f"{self.path}: read {self.rows_read} rows, kept {self.rows_ok}, skipped {self.rows_skipped}"]
        for reason, n in self.reasons.most_common():
            lines.append(f"  {n:>8} x {reason}")
        for what, n in self.fixed.most_common():
            lines.append(f"  {n:>8} x kept, {what}")
        for err in self.errors[:10]:
            lines.append(f"  e.g. {err}")
        return "\n".join(lines)


class RowErrors(DataError):
    """Raised with on_error='fail': carries the report so callers can show every reason."""

    def __init__(self, report: ReadReport) -> None:
        first = report.errors[0] if report.errors else None
        super().__init__(f"{report.path}: {report.rows_skipped} bad row(s); first: {first}")
        self.report = report


def detect_format(path: Path, mapping: ColumnMapping | None = None) -> Format:
    if mapping and mapping.format:
        return mapping.format
    suffixes = [s.lower() for s in path.suffixes]
    for s in reversed(suffixes):
        if s in (".csv", ".tsv"):
            return "csv"
        if s in (".parquet", ".pq"):
            return "parquet"
        if s in (".jsonl", ".ndjson", ".json"):
            return "jsonl"
    raise DataError(f"{path}: cannot tell the format from the suffix; use .csv, .parquet or .jsonl (or a mapping)")


def read_events(
    path: str | Path, mapping: ColumnMapping | None = None, on_error: OnError = "skip"
) -> tuple[pd.DataFrame, ReadReport]:
    """Read an events file into a validated events frame and a report of what was skipped and why."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p} does not exist")
    if p.is_dir():
        raise DataError(f"{p} is a directory, expected an events file")
    fmt = detect_format(p, mapping)
    raw, line_of, parse_errors = _read_raw(p, fmt, mapping)
    frame = apply_column_mapping(raw, mapping, p)
    return validate_frame(frame, line_of, on_error, str(p), parse_errors)


def _read_raw(p: Path, fmt: Format, mapping: ColumnMapping | None) -> tuple[pd.DataFrame, np.ndarray, list[RowError]]:
    """The file as strings/values, the source line number of each row, and rows that could not even be parsed."""
    if fmt == "parquet":
        try:
            df = pq.read_table(p).to_pandas()
        except (pa.ArrowInvalid, OSError) as e:
            raise DataError(f"{p}: not a readable Parquet file: {e}") from None
        return df, np.arange(1, len(df) + 1), []
    if fmt == "jsonl":
        return _read_jsonl(p)
    header = mapping.header if mapping else True
    names = mapping.columns if mapping and mapping.columns else None
    sep = mapping.delimiter if mapping else ","
    try:
        df = pd.read_csv(
            p,
            header=0 if header else None,
            names=names,
            sep=sep,
            dtype=str,
            keep_default_na=False,
            na_values=[""],
            on_bad_lines="warn",
            engine="c",
        )
    except pd.errors.EmptyDataError:
        raise DataError(f"{p}: the file is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise DataError(f"{p}: not a readable CSV file: {e}") from None
    if header and names is None:
        df.columns = [str(c).strip() for c in df.columns]
    first_line = 2 if header else 1
    lines = np.arange(first_line, first_line + len(df))
    if len(df) and _ends_without_newline(p) and df.iloc[-1].isna().any():
        # A dump cut off mid-row: report it as what it is rather than as a missing field.
        n_fields = int(df.iloc[-1].notna().sum())
        err = RowError(int(lines[-1]), "(line)", f"truncated line: {n_fields} of {df.shape[1]} fields")
        return df.iloc[:-1], lines[:-1], [err]
    return df, lines, []


def _ends_without_newline(p: Path) -> bool:
    with p.open("rb") as f:
        f.seek(0, 2)
        if f.tell() == 0:
            return False
        f.seek(-1, 2)
        return f.read(1) not in (b"\n", b"\r")


def iter_jsonl(p: Path) -> Iterator[tuple[int, dict[str, Any] | None, str | None]]:
    """(line number, object, None) per JSON-object line, or (line number, None, reason) for a line that is not one;
    blank lines are skipped. The one JSONL parser: whole-file reads and the chunked batch scorer both use it."""
    with p.open("r", encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, start=1):
            text = line.strip()
            if not text:
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as e:
                yield n, None, f"invalid JSON ({e.msg})"
                continue
            if isinstance(obj, dict):
                yield n, obj, None
            else:
                yield n, None, "expected a JSON object"


def _read_jsonl(p: Path) -> tuple[pd.DataFrame, np.ndarray, list[RowError]]:
    rows: list[dict[str, Any]] = []
    lines: list[int] = []
    errors: list[RowError] = []
    for n, obj, reason in iter_jsonl(p):
        if obj is None:
            errors.append(RowError(n, "(line)", reason or "unreadable line"))
            continue
        rows.append(obj)
        lines.append(n)
    return pd.DataFrame(rows), np.asarray(lines, dtype=np.int64), errors


def apply_column_mapping(raw: pd.DataFrame, mapping: ColumnMapping | None, p: Path) -> pd.DataFrame:
    """The raw columns as event fields under `mapping`: its columns, value tables, constants and ts unit (none: as is).

    Shared by `read_events`, the chunked batch reader (seqguard.batch_score) and, step for step, the Spark job."""
    if mapping is None:
        return raw
    out = pd.DataFrame(index=raw.index)
    for fname, col in mapping.fields.items():
        if col not in raw.columns:
            raise DataError(f"{p}: mapping '{mapping.name}' maps {fname} from column {col!r}, which the file lacks")
        out[fname] = raw[col]
    for fname, table in mapping.values.items():
        if fname in out:
            src = out[fname].astype("string")
            out[fname] = src.map(lambda v, t=table: t.get(v, v) if v is not pd.NA else None).astype(object)
    for fname, value in mapping.constants.items():
        out[fname] = value
    if mapping.ts_unit != "auto" and "ts" in out:
        numeric = pd.to_numeric(out["ts"], errors="coerce")
        out["ts"] = numeric * (1000.0 if mapping.ts_unit == "s" else 1.0) / 1000.0
        out["ts_unit_fixed"] = True
    return out


def normalize_ids(s: pd.Series) -> tuple[pd.Series, int]:
    """Identifiers as seqguard keeps them: strings (see _as_str_or_none), over-long ones clipped to head + hash
    (seqguard.events.clip_identifier). Returns the column and how many values were clipped."""
    col = _as_str_or_none(s)
    too_long = col.map(lambda v: v is not None and len(v) > ID_MAX_CHARS).to_numpy(dtype=bool)
    if too_long.any():
        col = col.copy()
        col[too_long] = [clip_identifier(v) for v in col[too_long]]
    return col, int(too_long.sum())


def _as_str_or_none(s: pd.Series) -> pd.Series:
    """IDs as strings; integral floats (1234.0 from a numeric column) without the '.0'."""
    if pd.api.types.is_float_dtype(s):
        vals = s.to_numpy()
        out = np.empty(len(vals), dtype=object)
        finite = np.isfinite(vals)
        integral = finite & (np.floor(vals) == vals)
        out[:] = None
        out[integral] = vals[integral].astype(np.int64).astype(str)
        out[finite & ~integral] = vals[finite & ~integral].astype(str)
        return pd.Series(out, index=s.index, dtype=object)
    if pd.api.types.is_integer_dtype(s) or pd.api.types.is_bool_dtype(s):
        return s.astype(str).astype(object)
    st = s.astype("string").str.strip()
    st = st.mask(st == "")
    return st.astype(object).where(st.notna(), None)


_OFFSET_RE = re.compile(r"(?:[zZ]|[+-]\d{2}(?::?\d{2})?)$")


def parse_ts_column(s: pd.Series, unit_fixed: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Timestamps to float epoch seconds UTC, and a reason per row (empty string when fine)."""
    n = len(s)
    out = np.full(n, np.nan)
    reason = np.full(n, "", dtype=object)
    if pd.api.types.is_datetime64_any_dtype(s):
        if getattr(s.dt, "tz", None) is None:
            reason[:] = "timestamp column has no time zone"
        else:
            out = s.dt.tz_convert("UTC").astype("int64").to_numpy() / 1e9
            out[s.isna().to_numpy()] = np.nan
            reason[s.isna().to_numpy()] = "missing"
        return _check_ts_bounds(out, reason)
    missing = s.isna().to_numpy()
    numeric = pd.to_numeric(s, errors="coerce").to_numpy(dtype=float)
    is_num = ~np.isnan(numeric)
    if unit_fixed:
        out[is_num] = numeric[is_num]
    else:
        ms = is_num & (np.abs(numeric) >= EPOCH_MS_THRESHOLD)
        out[is_num] = numeric[is_num]
        out[ms] = numeric[ms] / 1000.0
    text_idx = np.flatnonzero(~is_num & ~missing)
    if len(text_idx):
        texts = s.iloc[text_idx].astype(str).str.strip()
        has_offset = texts.str.contains(_OFFSET_RE).to_numpy()
        parsed = pd.to_datetime(texts.where(has_offset), format="ISO8601", utc=True, errors="coerce")
        ok = parsed.notna().to_numpy()
        vals = np.full(len(text_idx), np.nan)
        if ok.any():
            vals[ok] = parsed[ok].astype("int64").to_numpy() / 1e9
        out[text_idx] = vals
        bad_reason = np.where(has_offset, "cannot parse as ISO 8601 or epoch time", "ISO timestamp has no UTC offset")
        reason[text_idx[~ok]] = bad_reason[~ok]
    reason[missing] = "missing"
    return _check_ts_bounds(out, reason)


def _check_ts_bounds(out: np.ndarray, reason: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = TS_MIN.timestamp(), TS_MAX.timestamp()
    finite = np.isfinite(out)
    oob = finite & ((out < lo) | (out >= hi))
    reason[oob & (reason == "")] = f"outside {TS_MIN.year}..{TS_MAX.year}"
    out[oob] = np.nan
    return out, reason


def validate_frame(
    frame: pd.DataFrame,
    line_of: np.ndarray | None = None,
    on_error: OnError = "skip",
    path: str = "<frame>",
    parse_errors: list[RowError] | None = None,
) -> tuple[pd.DataFrame, ReadReport]:
    """Check every row against the Event limits; return the canonical frame of good rows and the report."""
    n = len(frame)
    line_of = np.arange(1, n + 1) if line_of is None else line_of
    report = ReadReport(path=path, rows_read=n + len(parse_errors or []))
    first_reason = np.full(n, "", dtype=object)
    first_field = np.full(n, "", dtype=object)

    def flag(mask: np.ndarray, fname: str, why: str | np.ndarray) -> None:
        new = mask & (first_reason == "")
        if isinstance(why, np.ndarray):
            first_reason[new] = why[new]
        else:
            first_reason[new] = why
        first_field[new] = fname

    out = pd.DataFrame(index=frame.index)
    for fname in REQUIRED_FIELDS:
        if fname not in frame.columns:
            raise DataError(f"{path}: required column {fname!r} is missing (columns: {list(frame.columns)[:20]})")

    for fname in ID_FIELDS:
        if fname in frame.columns:
            col, clipped = normalize_ids(frame[fname])
            if clipped:
                report.fixed[f"{fname}: longer than {ID_MAX_CHARS} characters, clipped to head + hash"] += clipped
        else:
            col = pd.Series(np.full(n, None, dtype=object), index=frame.index)
        out[fname] = col
    flag(out["user_id"].isna().to_numpy(), "user_id", "missing")

    ts, ts_reason = parse_ts_column(frame["ts"], unit_fixed=bool(frame.get("ts_unit_fixed", pd.Series([False])).any()))
    flag(ts_reason != "", "ts", ts_reason)
    out["ts"] = ts

    et = frame["event_type"].astype(object).where(frame["event_type"].notna(), None)
    et = et.map(lambda v: v.strip().lower() if isinstance(v, str) else v)
    flag(et.isna().to_numpy(), "event_type", "missing")
    unknown = et.notna().to_numpy() & ~et.isin(EVENT_TYPES).to_numpy()
    flag(unknown, "event_type", "unknown event type")
    out["event_type"] = et

    if "price" in frame.columns:
        price = pd.to_numeric(frame["price"], errors="coerce").to_numpy(dtype=float)
        given = frame["price"].notna().to_numpy()
        flag(given & np.isnan(price), "price", "not a number")
        flag(given & ~np.isnan(price) & ((price < 0) | (price > PRICE_MAX) | ~np.isfinite(price)), "price",
             f"outside 0..{PRICE_MAX:g}")
        out["price"] = price
    else:
        out["price"] = np.nan
    if "quantity" in frame.columns:
        q = pd.to_numeric(frame["quantity"], errors="coerce")
        given = frame["quantity"].notna().to_numpy()
        qv = q.to_numpy(dtype=float)
        flag(given & np.isnan(qv), "quantity", "not a number")
        bad = given & ~np.isnan(qv) & ((qv < 1) | (qv > QUANTITY_MAX) | (np.floor(qv) != qv))
        flag(bad, "quantity", f"not an integer in 1..{QUANTITY_MAX}")
        out["quantity"] = pd.array(np.where(np.isnan(qv) | bad, np.nan, qv), dtype="Float64").astype("Int64")
    else:
        out["quantity"] = pd.array([pd.NA] * n, dtype="Int64")
    if "payment_status" in frame.columns:
        ps = frame["payment_status"].astype(object).where(frame["payment_status"].notna(), None)
        ps = ps.map(lambda v: str(v).strip().lower() if v is not None else None)
        flag(ps.notna().to_numpy() & ~ps.isin(PAYMENT_STATUSES).to_numpy(), "payment_status",
             "must be success or failed")
        out["payment_status"] = ps
    else:
        out["payment_status"] = None
    if "text" in frame.columns:
        tx = frame["text"].astype(object).where(frame["text"].notna(), None)
        tx = tx.map(lambda v: str(v) if v is not None else None)
        flag(tx.map(lambda v: v is not None and len(v) > TEXT_MAX_CHARS).to_numpy(dtype=bool), "text",
             f"longer than {TEXT_MAX_CHARS} characters")
        out["text"] = tx
    else:
        out["text"] = None

    for lab in LABEL_COLUMNS:
        if lab in frame.columns:
            out[lab] = frame[lab].to_numpy()
    if "is_anomaly" in out:
        out["is_anomaly"] = out["is_anomaly"].map(_to_bool).astype(bool)

    bad = first_reason != ""
    errors = list(parse_errors or [])
    for i in np.flatnonzero(bad):
        errors.append(RowError(int(line_of[i]), str(first_field[i]), str(first_reason[i])))
    errors.sort(key=lambda e: e.line)
    report.rows_skipped = len(errors)
    report.rows_ok = int(n - bad.sum())
    report.reasons = Counter(f"{e.field}: {e.reason}" for e in errors)
    report.errors = errors[:MAX_REPORTED_ERRORS]
    if errors and on_error == "fail":
        raise RowErrors(report)
    cols = list(EVENT_FIELDS) + [c for c in LABEL_COLUMNS if c in out.columns]
    good = out.loc[~bad, cols].reset_index(drop=True)
    return good, report


def _to_bool(v: Any) -> bool:
    if isinstance(v, str):
        return v.strip().lower() in ("1", "true", "yes", "y", "t")
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return False
    return bool(v)


def iso_utc(ts: np.ndarray) -> list[str]:
    dt = pd.to_datetime(np.round(ts * 1000).astype(np.int64), unit="ms", utc=True)
    return [d.isoformat(timespec="milliseconds") for d in dt]


def write_events(frame: pd.DataFrame, path: str | Path, fmt: Format | None = None) -> Path:
    """Write an events frame (ts as epoch seconds) as CSV / JSONL (ISO 8601 UTC) or Parquet (timestamp[ms, UTC])."""
    p = Path(path)
    fmt = fmt or detect_format(p)
    p.parent.mkdir(parents=True, exist_ok=True)
    df = frame.copy()
    if "ts" in df and pd.api.types.is_float_dtype(df["ts"]):
        if fmt == "parquet":
            df["ts"] = pd.to_datetime(np.round(df["ts"].to_numpy() * 1000).astype(np.int64), unit="ms", utc=True)
        else:
            df["ts"] = iso_utc(df["ts"].to_numpy())
    if fmt == "parquet":
        df.to_parquet(p, index=False)
    elif fmt == "csv":
        df.to_csv(p, index=False)
    else:
        with p.open("w", encoding="utf-8") as f:
            for rec in df.to_dict(orient="records"):
                clean = {k: _json_value(v) for k, v in rec.items()}
                f.write(json.dumps({k: v for k, v in clean.items() if v is not None}, ensure_ascii=False) + "\n")
    return p


def _json_value(v: Any) -> Any:
    if v is None or v is pd.NA:
        return None
    if isinstance(v, float) and np.isnan(v):
        return None
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    if isinstance(v, np.bool_):
        return bool(v)
    return v


def events_to_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Validated Event dicts (Event.model_dump) to a canonical events frame, without re-validating."""
    rows = []
    for r in records:
        row = {k: r.get(k) for k in EVENT_FIELDS}
        ts = row["ts"]
        row["ts"] = ts.timestamp() if hasattr(ts, "timestamp") else float(ts)
        et = row["event_type"]
        row["event_type"] = getattr(et, "value", et)
        rows.append(row)
    df = pd.DataFrame(rows, columns=list(EVENT_FIELDS))
    df["ts"] = df["ts"].astype(float)
    df["price"] = pd.to_numeric(df["price"], errors="coerce").astype(float)
    df["quantity"] = pd.array(df["quantity"].tolist(), dtype="Int64")
    for c in OPTIONAL_FIELDS:
        if df[c].dtype == object:
            df[c] = df[c].where(df[c].notna(), None)
    return df
