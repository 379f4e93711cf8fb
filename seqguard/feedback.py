"""Outcomes: what happened to the entities seqguard scored (chargebacks, confirmed fraud, analyst verdicts).

One record shape (`Feedback`) for `POST /feedback` and `seqguard feedback import`, one store, one join into labels.

The store is SQLite, on purpose: a commit is durable (journaled, fsynced) before the API answers; idempotency is the
primary key on the feedback id (`INSERT ... ON CONFLICT DO NOTHING`, atomic across threads and processes, no scan);
the service writes while `seqguard retrain` reads (WAL mode); and it is in the standard library. An append-only
Parquet or JSONL folder would need a read of everything written so far to tell a retry from a new record.

A record without a feedback id gets one derived from its content, so a client that retries the same outcome
stores it once. The same id with a different content is a conflict (409), never a silent overwrite.
"""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from seqguard.events import clip_identifier

Outcome = Literal["chargeback", "confirmed_fraud", "false_positive", "reviewed_ok"]
OUTCOMES: tuple[str, ...] = ("chargeback", "confirmed_fraud", "false_positive", "reviewed_ok")
FRAUD_OUTCOMES = frozenset({"chargeback", "confirmed_fraud"})
MAX_FUTURE_SKEW = timedelta(minutes=5)
_ID = r"^[A-Za-z0-9._:@/-]{1,128}$"


class FeedbackError(ValueError):
    """Feedback that cannot be stored; `details` lists {field, reason}."""

    def __init__(self, message: str, details: list[dict[str, str]] | None = None, status: int = 422) -> None:
        super().__init__(message)
        self.details = details or []
        self.status = status


class Feedback(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    feedback_id: str | None = Field(None, pattern=_ID, description="idempotency key; derived from the content if "
                                                                   "absent")
    entity_id: str | None = Field(None, min_length=1, max_length=4096,
                                  description="the scored entity (raw id; over-long ids are clipped as the API and "
                                              "files clip them, so feedback joins the scores)")
    request_id: str | None = Field(None, pattern=r"^[A-Za-z0-9._:-]{1,64}$",
                                   description="the request whose single scored entity this is about")
    label: bool | None = Field(None, description="true = fraud; derived from outcome if absent, must agree if given")
    outcome: Outcome
    source: str = Field(min_length=1, max_length=64, description="who reported it: chargebacks, review-queue, ...")
    ts: datetime = Field(description="when the outcome became known (ISO 8601 or epoch seconds)")

    @field_validator("entity_id")
    @classmethod
    def _entity_id(cls, v: str | None) -> str | None:
        # The API and the file readers store an over-long id as head + hash; the same here or nothing would join.
        return clip_identifier(v) if v else v

    @field_validator("ts")
    @classmethod
    def _ts(cls, v: datetime) -> datetime:
        v = v if v.tzinfo else v.replace(tzinfo=UTC)
        if v > datetime.now(UTC) + MAX_FUTURE_SKEW:
            raise ValueError("is in the future")
        return v.astimezone(UTC)

    @model_validator(mode="after")
    def _check(self) -> Feedback:
        if not self.entity_id and not self.request_id:
            raise ValueError("entity_id or request_id: one of them is required")
        fraud = self.outcome in FRAUD_OUTCOMES
        if self.label is not None and self.label != fraud:
            raise ValueError(f"label: {str(self.label).lower()} contradicts outcome {self.outcome!r} "
                             f"(which means label {str(fraud).lower()})")
        return self

    @property
    def is_fraud(self) -> bool:
        return self.outcome in FRAUD_OUTCOMES

    def content(self) -> dict[str, Any]:
        d = self.model_dump(mode="json", exclude={"feedback_id"})
        d["label"] = self.is_fraud
        return d

    @property
    def id(self) -> str:
        if self.feedback_id:
            return self.feedback_id
        canon = json.dumps(self.content(), sort_keys=True, separators=(",", ":"))
        return "fb-" + hashlib.sha256(canon.encode()).hexdigest()[:24]


def validation_details(e: ValidationError, prefix: str = "") -> list[dict[str, str]]:
    out = []
    for err in e.errors():
        loc = ".".join(str(p) for p in err["loc"])
        reason = str(err["ctx"]["error"]) if err["type"] == "value_error" and "ctx" in err else err["msg"]
        # model-level checks name their field in the message ("label: ..."); lift it into `field`
        if not loc and ": " in reason:
            loc, reason = reason.split(": ", 1)
        out.append({"field": prefix + (loc or "(body)"), "reason": reason})
    return out


def parse_feedback(data: Any) -> Feedback:
    if not isinstance(data, dict):
        raise FeedbackError("feedback must be a JSON object", [{"field": "(body)", "reason": "not an object"}])
    try:
        return Feedback.model_validate(data)
    except ValidationError as e:
        raise FeedbackError("feedback rejected", validation_details(e)) from None


@dataclass
class StoreResult:
    feedback_id: str
    stored: bool  # False: the same record was already there (a retry)


class FeedbackStore:
    SCHEMA = """CREATE TABLE IF NOT EXISTS feedback (
        feedback_id TEXT PRIMARY KEY, entity_id TEXT, request_id TEXT, label INTEGER NOT NULL,
        outcome TEXT NOT NULL, source TEXT NOT NULL, ts TEXT NOT NULL, received TEXT NOT NULL, content TEXT NOT NULL)"""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.exists() and self.path.is_dir():
            raise FeedbackError(f"feedback store {self.path} is a folder; give a file path (e.g. feedback.sqlite)")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(str(self.path), check_same_thread=False, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(self.SCHEMA)
            self._db.commit()
        except sqlite3.DatabaseError as e:
            raise FeedbackError(f"feedback store {self.path}: {e}") from None

    def add(self, fb: Feedback) -> StoreResult:
        fid = fb.id
        content = json.dumps(fb.content(), sort_keys=True, separators=(",", ":"))
        row = (fid, fb.entity_id, fb.request_id, int(fb.is_fraud), fb.outcome, fb.source,
               fb.ts.isoformat(), datetime.now(UTC).isoformat(timespec="seconds"), content)
        with self._lock, self._db:
            cur = self._db.execute("INSERT INTO feedback VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT(feedback_id) "
                                   "DO NOTHING", row)
            if cur.rowcount == 1:
                return StoreResult(fid, True)
            (existing,) = self._db.execute("SELECT content FROM feedback WHERE feedback_id = ?", (fid,)).fetchone()
        if existing != content:
            raise FeedbackError(f"feedback_id {fid!r} is already stored with a different content",
                                [{"field": "feedback_id", "reason": "already used for a different record"}], 409)
        return StoreResult(fid, False)

    def frame(self) -> pd.DataFrame:
        with self._lock:
            frame = pd.read_sql_query("SELECT feedback_id, entity_id, request_id, label, outcome, source, ts, "
                                      "received FROM feedback ORDER BY ts, feedback_id", self._db)
        frame["ts"] = pd.to_datetime(frame["ts"], utc=True, format="ISO8601")
        frame["label"] = frame["label"].astype(bool)
        return frame

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM feedback").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()


# ---------------------------------------------------------------------------------------------------------------
# Files: seqguard feedback import


@dataclass
class ImportReport:
    rows: int = 0
    stored: int = 0
    duplicates: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)  # {row, field, reason}

    def summary(self) -> str:
        lines = [f"{self.rows} row(s): {self.stored} stored, {self.duplicates} already there, "
                 f"{len({e['row'] for e in self.errors})} rejected"]
        lines += [f"  row {e['row']}: {e['field']}: {e['reason']}" for e in self.errors[:20]]
        if len(self.errors) > 20:
            lines.append(f"  ... and {len(self.errors) - 20} more")
        return "\n".join(lines)


def read_feedback_file(path: str | Path) -> pd.DataFrame:
    p = Path(path)
    if not p.is_file():
        raise FeedbackError(f"{p}: no such file")
    suffix = p.suffix.lower()
    try:
        if suffix == ".csv":
            return pd.read_csv(p, dtype=str, keep_default_na=False)
        if suffix == ".parquet":
            return pd.read_parquet(p)
        if suffix in (".jsonl", ".json"):
            return pd.read_json(p, lines=suffix == ".jsonl", dtype=False)
    except (ValueError, OSError) as e:
        raise FeedbackError(f"{p}: cannot read it as {suffix[1:]}: {e}") from None
    raise FeedbackError(f"{p}: unknown format {suffix or '(no suffix)'} (use .csv, .parquet or .jsonl)")


def _clean(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NaT:
        return None
    if isinstance(value, str) and value.strip() == "":
        return None
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    return value


def import_frame(store: FeedbackStore, frame: pd.DataFrame, dry_run: bool = False) -> ImportReport:
    """Validate every row (row numbers are 1-based data rows), store the valid ones."""
    report = ImportReport(rows=len(frame))
    known = set(Feedback.model_fields)
    unknown = [c for c in frame.columns if c not in known]
    if unknown:
        raise FeedbackError(f"unknown column(s) {unknown}; allowed: {', '.join(Feedback.model_fields)}")
    for i, rec in enumerate(frame.to_dict("records"), start=1):
        data = {k: _clean(v) for k, v in rec.items()}
        data = {k: v for k, v in data.items() if v is not None}
        try:
            fb = Feedback.model_validate(data)
        except ValidationError as e:
            report.errors += [{"row": i, **d} for d in validation_details(e)]
            continue
        if dry_run:
            continue
        try:
            res = store.add(fb)
        except FeedbackError as e:
            report.errors += [{"row": i, **d} for d in e.details]
            continue
        if res.stored:
            report.stored += 1
        else:
            report.duplicates += 1
    return report


# ---------------------------------------------------------------------------------------------------------------
# Outcomes -> entity labels (for retraining)


@dataclass
class JoinReport:
    feedback: int
    by_entity: int
    by_request: int
    unresolved: int  # request ids the score log cannot map to exactly one entity
    entities_labelled: int
    fraud_entities: int


def entity_outcomes(feedback: pd.DataFrame, score_log: pd.DataFrame | None = None) -> tuple[pd.DataFrame, JoinReport]:
    """One row per entity with its latest outcome: columns key ('id:<raw>' or 'hash:<salted hash>'), label, outcome.

    Feedback by request id is resolved through the score log's (request_id -> entity_hash) rows, and only when that
    request scored exactly one entity: outcomes about a batch of entities cannot say which one they mean.
    """
    rows = []
    by_entity = by_request = unresolved = 0
    req_map: dict[str, str] = {}
    if score_log is not None and len(score_log):
        per_req = score_log.groupby("request_id")["entity_hash"].agg(lambda s: sorted(set(s)))
        req_map = {r: e[0] for r, e in per_req.items() if len(e) == 1}
    for rec in feedback.itertuples(index=False):
        if isinstance(rec.entity_id, str) and rec.entity_id:
            rows.append(("id:" + rec.entity_id, rec.label, rec.outcome, rec.ts))
            by_entity += 1
        elif rec.request_id in req_map:
            rows.append(("hash:" + req_map[rec.request_id], rec.label, rec.outcome, rec.ts))
            by_request += 1
        else:
            unresolved += 1
    frame = pd.DataFrame(rows, columns=["key", "label", "outcome", "ts"])
    latest = frame.sort_values("ts").groupby("key", sort=False).tail(1).reset_index(drop=True)
    report = JoinReport(len(feedback), by_entity, by_request, unresolved, len(latest), int(latest["label"].sum()))
    return latest[["key", "label", "outcome"]], report


def apply_outcomes(events: pd.DataFrame, outcomes: pd.DataFrame, entity_key: str,
                   hasher: Callable[[str], str | None] | None = None) -> tuple[pd.DataFrame, dict[str, int]]:
    """Events with `is_anomaly` set from the outcomes, entity by entity.

    An entity with an outcome gets it on all its events (an outcome is about the entity: a chargeback does not say
    which window was the bad one); the others keep the data's own is_anomaly, or count as normal when the data has
    none (the usual reading of chargeback data: no chargeback, no known fraud). This overlays a few entities on the
    data's own per-event labels, where `seqguard.labels.join_labels` replaces every label by a table's.
    """
    from seqguard.labels import ANOMALY, NORMAL

    out = events.copy()
    ids = out[entity_key].astype(str)
    label_by_key = dict(zip(outcomes["key"], outcomes["label"].astype(bool), strict=True))
    by_id = ids.map(lambda e: label_by_key.get("id:" + e))
    if hasher is not None and any(k.startswith("hash:") for k in label_by_key):
        hashed = {e: label_by_key.get(f"hash:{hasher(e)}") for e in ids.unique()}
        by_id = by_id.where(by_id.notna(), ids.map(hashed))
    had = "is_anomaly" in out
    base = out["is_anomaly"].astype(bool) if had else pd.Series(False, index=out.index)
    out["is_anomaly"] = by_id.where(by_id.notna(), base).astype(bool)
    if "scenario" in out:
        # an outcome overrides the generator's scenario name: fraud without a named scenario reads "anomaly"
        changed = by_id.notna()
        out.loc[changed & out["is_anomaly"] & (out["scenario"].astype(str) == NORMAL), "scenario"] = ANOMALY
        out.loc[changed & ~out["is_anomaly"], "scenario"] = NORMAL
    labelled_entities = ids[by_id.notna()].nunique()
    return out, {"entities_with_outcome_in_data": int(labelled_entities),
                 "fraud_entities_in_data": int(ids[by_id.eq(True)].nunique()),
                 "data_had_labels": int(had)}
