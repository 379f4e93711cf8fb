"""Per-entity sequences: grouping, ordering, windows, and the streaming state update.

Batch and streaming share `window_start` (which events a window keeps) and `EventColumns` (the columnar form every
token and feature is computed from), so a window built by appending events one at a time is exactly the window
built from the whole file.
"""

from __future__ import annotations

import bisect
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from seqguard.config import SequenceConfig
from seqguard.events import EVENT_FIELDS, EVENT_TYPES

# Event kinds: the event types, plus a failed payment attempt as a kind of its own (card testing lives there).
KINDS: tuple[str, ...] = (*EVENT_TYPES, "payment_failed")
KIND_INDEX = {k: i for i, k in enumerate(KINDS)}
PAYMENT_FAILED = KIND_INDEX["payment_failed"]
PAYMENT_ATTEMPT = KIND_INDEX["payment_attempt"]

Every = Literal["entity", "day", "event"]


@dataclass(frozen=True)
class EventColumns:
    """Events of one entity (or a whole frame) as aligned arrays, ordered by time."""

    ts: np.ndarray  # float64 epoch seconds UTC
    kind: np.ndarray  # int64 index into KINDS
    price: np.ndarray  # float64, NaN when absent
    item: np.ndarray  # object: str | None
    category: np.ndarray
    device: np.ndarray
    ip: np.ndarray
    country: np.ndarray
    coupon: np.ndarray
    text: np.ndarray

    def __len__(self) -> int:
        return len(self.ts)

    def slice(self, start: int, end: int) -> EventColumns:
        return EventColumns(**{k: getattr(self, k)[start:end] for k in self.__dataclass_fields__})


def kind_codes(event_type: Iterable[Any], payment_status: Iterable[Any]) -> np.ndarray:
    et = np.fromiter((KIND_INDEX[str(e)] for e in event_type), dtype=np.int64)
    failed = np.fromiter((s == "failed" for s in payment_status), dtype=bool, count=len(et))
    et[(et == PAYMENT_ATTEMPT) & failed] = PAYMENT_FAILED
    return et


def _obj(values: Any) -> np.ndarray:
    arr = np.asarray(values, dtype=object)
    out = arr.copy()
    out[pd.isna(arr)] = None
    return out


def columns_from_frame(frame: pd.DataFrame) -> EventColumns:
    """A canonical events frame (seqguard.io) to columns; the frame must already be in the wanted order."""
    return EventColumns(
        ts=frame["ts"].to_numpy(dtype=np.float64),
        kind=kind_codes(frame["event_type"].to_numpy(), frame["payment_status"].to_numpy()),
        price=pd.to_numeric(frame["price"], errors="coerce").to_numpy(dtype=np.float64),
        item=_obj(frame["item_id"].to_numpy()),
        category=_obj(frame["category_id"].to_numpy()),
        device=_obj(frame["device_id"].to_numpy()),
        ip=_obj(frame["ip"].to_numpy()),
        country=_obj(frame["country"].to_numpy()),
        coupon=_obj(frame["coupon_code"].to_numpy()),
        text=_obj(frame["text"].to_numpy()),
    )


def columns_from_records(records: list[dict[str, Any]]) -> EventColumns:
    """Stored event records (ts as epoch float, the Event fields) to columns, in the given order."""
    def col(name: str) -> np.ndarray:
        return np.array([r.get(name) for r in records], dtype=object)

    price = np.array([np.nan if r.get("price") is None else float(r["price"]) for r in records], dtype=np.float64)
    return EventColumns(
        ts=np.array([float(r["ts"]) for r in records], dtype=np.float64),
        kind=kind_codes([r["event_type"] for r in records], [r.get("payment_status") for r in records]),
        price=price,
        item=col("item_id"),
        category=col("category_id"),
        device=col("device_id"),
        ip=col("ip"),
        country=col("country"),
        coupon=col("coupon_code"),
        text=col("text"),
    )


def window_start(ts: np.ndarray, end: int, cfg: SequenceConfig) -> int:
    """First index of the window that ends at `end` (exclusive) over time-sorted `ts`."""
    start = max(0, end - cfg.max_events)
    if cfg.span_seconds is not None and end > 0:
        start = max(start, int(np.searchsorted(ts, ts[end - 1] - cfg.span_seconds, side="left")))
    return start


def category_bucket(category: Any, buckets: int) -> int:
    """Stable across processes and machines (unlike hash()): 0 = no category, 1..buckets otherwise."""
    if category is None:
        return 0
    return 1 + zlib.crc32(str(category).encode()) % buckets


# ---------------------------------------------------------------------------------------------------------------------
# Batch: a whole frame to entity windows


@dataclass(frozen=True)
class WindowIndex:
    """Where each window lies in the entity-sorted frame: rows [start, end)."""

    entity_id: np.ndarray  # object
    start: np.ndarray  # int64
    end: np.ndarray  # int64


def sort_for_sequences(frame: pd.DataFrame, cfg: SequenceConfig) -> pd.DataFrame:
    """Group by entity, order by time; ties keep file order. Rows without the entity key are dropped, as are
    repeated event_ids (the first occurrence wins, as in streaming)."""
    key = cfg.entity_key
    df = frame[frame[key].notna()]
    if "event_id" in df and df["event_id"].notna().any():
        dup = df["event_id"].notna() & df.duplicated(subset=[key, "event_id"], keep="first")
        df = df[~dup]
    df = df.assign(_order=np.arange(len(df)))
    return df.sort_values([key, "ts", "_order"], kind="stable").drop(columns="_order").reset_index(drop=True)


def window_index(sorted_frame: pd.DataFrame, cfg: SequenceConfig, every: Every = "entity") -> WindowIndex:
    """Windows over an entity-sorted frame: the final window of each entity ("entity"), the window ending at each
    entity's last event of each UTC day ("day"), or the window ending at every event ("event")."""
    key = sorted_frame[cfg.entity_key].to_numpy(dtype=object)
    ts = sorted_frame["ts"].to_numpy(dtype=np.float64)
    n = len(ts)
    if n == 0:
        empty = np.zeros(0, dtype=np.int64)
        return WindowIndex(np.zeros(0, dtype=object), empty, empty)
    boundary = np.flatnonzero(key[1:] != key[:-1]) + 1
    group_start = np.concatenate([[0], boundary])
    group_end = np.concatenate([boundary, [n]])
    if every == "entity":
        ends = group_end
    elif every == "event":
        ends = np.arange(1, n + 1)
    else:
        day = np.floor(ts / 86400.0).astype(np.int64)
        last_of_day = np.ones(n, dtype=bool)
        last_of_day[:-1] = (day[1:] != day[:-1]) | (key[1:] != key[:-1])
        ends = np.flatnonzero(last_of_day) + 1
    owner = np.searchsorted(group_start, ends - 1, side="right") - 1
    starts = np.empty(len(ends), dtype=np.int64)
    for i, (g, e) in enumerate(zip(owner, ends, strict=True)):
        gs = int(group_start[g])
        starts[i] = gs + window_start(ts[gs:e], e - gs, cfg)
    return WindowIndex(entity_id=key[ends - 1], start=starts, end=ends.astype(np.int64))


def iter_windows(sorted_frame: pd.DataFrame, cfg: SequenceConfig, every: Every = "entity") -> Iterator[
    tuple[str, int, int, EventColumns]
]:
    cols = columns_from_frame(sorted_frame)
    idx = window_index(sorted_frame, cfg, every)
    for ent, s, e in zip(idx.entity_id, idx.start, idx.end, strict=True):
        yield str(ent), int(s), int(e), cols.slice(int(s), int(e))


# ---------------------------------------------------------------------------------------------------------------------
# Streaming: one entity's state, updated event by event

STATE_FIELDS: tuple[str, ...] = EVENT_FIELDS


@dataclass
class EntityState:
    """The window of one entity plus what idempotency needs. JSON-serialisable (Redis stores `to_dict()`)."""

    records: list[dict[str, Any]]
    seen_ids: list[str]
    next_seq: int = 0

    @classmethod
    def empty(cls) -> EntityState:
        return cls(records=[], seen_ids=[])

    def to_dict(self) -> dict[str, Any]:
        return {"records": self.records, "seen_ids": self.seen_ids, "next_seq": self.next_seq}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EntityState:
        return cls(records=list(d["records"]), seen_ids=list(d["seen_ids"]), next_seq=int(d["next_seq"]))


def event_record(event: Any) -> dict[str, Any]:
    """An Event (or its dict) to the stored record: plain JSON types, ts as epoch seconds."""
    # Attributes of a model directly: model_dump() would build (and copy) every field first, for each event.
    if hasattr(event, "model_dump"):
        def get(k: str) -> Any:
            return getattr(event, k, None)
    else:
        get = dict(event).get
    rec: dict[str, Any] = {}
    for k in STATE_FIELDS:
        v = get(k)
        if k == "ts":
            v = v.timestamp() if hasattr(v, "timestamp") else float(v)
        elif k == "event_type":
            v = getattr(v, "value", v)
        rec[k] = v
    return rec


def append_events(state: EntityState, events: Iterable[Any], cfg: SequenceConfig) -> tuple[EntityState, int]:
    """Add events in arrival order; returns the new state and how many were new (re-sent event_ids are ignored)."""
    records = list(state.records)
    seen = list(state.seen_ids)
    seen_set = set(seen)
    seq = state.next_seq
    added = 0
    keys = [(r["ts"], r["_seq"]) for r in records]
    times = [k[0] for k in keys]  # the keys' ts, kept in step with them (bisect = np.searchsorted on sorted ts)
    for ev in events:
        rec = event_record(ev)
        eid = rec.get("event_id")
        if eid is not None:
            if eid in seen_set:
                continue
            seen.append(eid)
            seen_set.add(eid)
        rec["_seq"] = seq
        pos = bisect.bisect_right(keys, (rec["ts"], seq))
        keys.insert(pos, (rec["ts"], seq))
        times.insert(pos, rec["ts"])
        records.insert(pos, rec)
        seq += 1
        added += 1
        # window_start without building an array per event: the same bounds, found with bisect on the list.
        start = max(0, len(keys) - cfg.max_events)
        if cfg.span_seconds is not None:
            start = max(start, bisect.bisect_left(times, times[-1] - cfg.span_seconds))
        if start:
            del records[:start]
            del keys[:start]
            del times[:start]
    # Remember enough ids to catch re-sends of anything still in (or just out of) the window.
    limit = 4 * cfg.max_events
    if len(seen) > limit:
        seen = seen[-limit:]
    return EntityState(records=records, seen_ids=seen, next_seq=seq), added


def state_columns(state: EntityState) -> EventColumns:
    return columns_from_records(state.records)
