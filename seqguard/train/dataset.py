"""Labelled windows from an events frame, and the honest split.

One window per entity-day: the window that ends at the entity's last event of each UTC day
(`window_index(..., every="day")`), encoded with the one `encode_window` every stage uses. A window is anomalous when
any event inside it is labelled `is_anomaly`; its scenario is the most frequent attack scenario among those events.

The split is chronological (by the UTC day the window ends on): train on the earliest days, validate on the next
`val_days`, test on the last `test_days`. A seeded share of entities is kept out of training *and* validation
entirely, so the test split holds both seen and never-seen entities (reported separately).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from seqguard.config import SequenceConfig
from seqguard.features import Encoded, encode_window, serialize_text
from seqguard.sequences import EventColumns, columns_from_frame, sort_for_sequences, window_index
from seqguard.train.config import SplitConfig

NORMAL = "normal"


class DatasetError(ValueError):
    """Data that cannot be trained or evaluated on; the message says why."""


@dataclass
class WindowSet:
    encoded: list[Encoded]
    features: np.ndarray  # float32 [N, F]
    labels: np.ndarray | None  # bool [N], None without an is_anomaly column
    scenario: np.ndarray  # object [N]: "normal", the attack scenario ("anomaly" if unnamed), or "unlabeled"
    entity: np.ndarray  # object [N]
    day: np.ndarray  # int64 [N]: UTC day number of the window's last event
    start: np.ndarray  # int64 [N]: rows [start, end) of `columns`
    end: np.ndarray
    columns: EventColumns  # the entity-sorted frame as columns (for the text path)
    cfg: SequenceConfig

    def __len__(self) -> int:
        return len(self.encoded)

    @property
    def has_labels(self) -> bool:
        return self.labels is not None

    def y(self, idx: np.ndarray | None = None) -> np.ndarray:
        if self.labels is None:
            raise DatasetError("these windows have no labels")
        y = self.labels.astype(np.int64)
        return y if idx is None else y[idx]

    def lengths(self) -> np.ndarray:
        return np.fromiter((len(e.input_ids) for e in self.encoded), dtype=np.int64, count=len(self.encoded))

    def texts(self, idx: np.ndarray, max_events: int | None = None) -> list[str]:
        return [serialize_text(self.columns.slice(int(self.start[i]), int(self.end[i])), self.cfg, max_events)
                for i in idx]


def build_windows(frame: pd.DataFrame, cfg: SequenceConfig, progress: bool = False) -> WindowSet:
    if len(frame) == 0:
        raise DatasetError("the data has no rows")
    ordered = sort_for_sequences(frame, cfg)
    if len(ordered) == 0:
        raise DatasetError(f"no rows have the entity key {cfg.entity_key!r}")
    idx = window_index(ordered, cfg, every="day")
    cols = columns_from_frame(ordered)
    encoded = [encode_window(cols.slice(int(s), int(e)), cfg)
               for s, e in tqdm(list(zip(idx.start, idx.end, strict=True)), desc="windows", unit="win",
                                disable=not progress, leave=False)]
    labels = None
    scenario = np.full(len(encoded), "unlabeled", dtype=object)
    if "is_anomaly" in ordered:
        anomalous = ordered["is_anomaly"].to_numpy(dtype=bool)
        scen = ordered["scenario"].astype(str).to_numpy(dtype=object) if "scenario" in ordered else None
        # Any anomalous event in [start, end): via a cumulative count, no Python loop over windows.
        csum = np.concatenate([[0], np.cumsum(anomalous)])
        labels = (csum[idx.end] - csum[idx.start]) > 0
        scenario[:] = NORMAL
        for i in np.flatnonzero(labels):
            if scen is None:
                scenario[i] = "anomaly"
                continue
            s, e = int(idx.start[i]), int(idx.end[i])
            values, counts = np.unique(scen[s:e][anomalous[s:e]].astype(str), return_counts=True)
            scenario[i] = values[np.argmax(counts)]
    day = np.floor(cols.ts[idx.end - 1] / 86400.0).astype(np.int64)
    return WindowSet(encoded, np.stack([e.features for e in encoded]), labels, scenario,
                     idx.entity_id.astype(object), day, idx.start, idx.end, cols, cfg)


@dataclass(frozen=True)
class Split:
    train: np.ndarray  # int64 window indices
    val: np.ndarray
    test: np.ndarray
    unseen: np.ndarray  # bool [N]: the entity is kept out of train and validation
    days: dict[str, list[int]]  # split name -> UTC day numbers

    def describe(self, ws: WindowSet) -> dict[str, object]:
        out: dict[str, object] = {}
        for name in ("train", "val", "test"):
            idx = getattr(self, name)
            d: dict[str, object] = {"windows": len(idx), "days": self.days[name]}
            if ws.labels is not None:
                d["anomalous"] = int(ws.labels[idx].sum())
            out[name] = d
        out["test_unseen_entities_windows"] = int(self.unseen[self.test].sum())
        return out


def _unseen(entity: np.ndarray, share: float, seed: int) -> np.ndarray:
    # A stable hash (not Python's salted hash()) so the same entities are held out on every run and machine.
    salt = f"{seed}:".encode()
    h = np.fromiter((zlib.crc32(salt + str(e).encode()) for e in entity), dtype=np.int64, count=len(entity))
    return (h % 10_000) < round(share * 10_000)


def split_windows(ws: WindowSet, cfg: SplitConfig, seed: int) -> Split:
    days = np.unique(ws.day)
    need = cfg.val_days + cfg.test_days + 1
    if len(days) < need:
        raise DatasetError(f"the data spans {len(days)} day(s); the split needs at least {need} "
                           f"(split.val_days={cfg.val_days}, split.test_days={cfg.test_days}, and 1 to train on)")
    test_days = days[-cfg.test_days:]
    val_days = days[-(cfg.test_days + cfg.val_days):-cfg.test_days]
    train_days = days[:-(cfg.test_days + cfg.val_days)]
    unseen = _unseen(ws.entity, cfg.unseen_entity_share, seed)
    train = np.flatnonzero(np.isin(ws.day, train_days) & ~unseen)
    val = np.flatnonzero(np.isin(ws.day, val_days) & ~unseen)
    test = np.flatnonzero(np.isin(ws.day, test_days))
    return Split(train, val, test, unseen, {"train": train_days.tolist(), "val": val_days.tolist(),
                                            "test": test_days.tolist()})
