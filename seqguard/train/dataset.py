"""Labelled windows from an events frame, and the honest split.

One window per entity-day: the window that ends at the entity's last event of each UTC day
(`window_index(..., every="day")`), encoded with the one `encode_window` every stage uses. A window is anomalous when
any event inside it is labelled `is_anomaly`; its scenario is the most frequent attack scenario among those events.

Two splits (`split.mode`). `time` is chronological (by the UTC day the window ends on): train on the earliest days,
validate on the next `val_days`, test on the last `test_days`; a seeded share of entities is kept out of training
*and* validation entirely, so the test split holds both seen and never-seen entities (reported separately).
`entity` assigns whole entities to train / validation / test by a seeded hash, stratified by the entity label, so it
works on a capture of any length (a 2-hour one). `auto` uses time when the days allow it and both validation and
test then hold enough anomalous windows, else entity, and says why. `check_split` then refuses, before any model is
trained, a split whose validation or test holds one class only.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from seqguard.config import SequenceConfig
from seqguard.crossentity import frame_cross_features
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
    # Cross-entity features from the whole frame, each window as of its own last event (no look-ahead).
    cross = frame_cross_features(ordered[cfg.entity_key].to_numpy(dtype=object), cols, idx.start, idx.end)
    encoded = [encode_window(cols.slice(int(s), int(e)), cfg, cross[i])
               for i, (s, e) in enumerate(tqdm(list(zip(idx.start, idx.end, strict=True)), desc="windows",
                                               unit="win", disable=not progress, leave=False))]
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
    mode: str = "time"  # "time" or "entity": what was used
    why: str = ""  # why this mode (auto says which it chose and why)

    def describe(self, ws: WindowSet) -> dict[str, object]:
        out: dict[str, object] = {"mode": self.mode, "why": self.why}
        for name in ("train", "val", "test"):
            idx = getattr(self, name)
            d: dict[str, object] = {"windows": len(idx), "entities": len(np.unique(ws.entity[idx])),
                                    "days": self.days[name]}
            if ws.labels is not None:
                d["anomalous"] = int(ws.labels[idx].sum())
                d["anomalous_entities"] = len(np.unique(ws.entity[idx][ws.labels[idx]]))
            out[name] = d
        out["test_unseen_entities_windows"] = int(self.unseen[self.test].sum())
        return out


def _entity_hash(entity: np.ndarray, seed: int) -> np.ndarray:
    # A stable hash (not Python's salted hash()) so the same entities land in the same part on every run and machine.
    salt = f"{seed}:".encode()
    return np.fromiter((zlib.crc32(salt + str(e).encode()) for e in entity), dtype=np.int64, count=len(entity))


def _unseen(entity: np.ndarray, share: float, seed: int) -> np.ndarray:
    return (_entity_hash(entity, seed) % 10_000) < round(share * 10_000)


def entity_labels(ws: WindowSet) -> tuple[np.ndarray, np.ndarray]:
    """Distinct entities (sorted) and, with labels, whether any of an entity's windows is anomalous."""
    ents, inv = np.unique(ws.entity.astype(str), return_inverse=True)
    pos = np.zeros(len(ents), dtype=bool)
    if ws.labels is not None:
        np.logical_or.at(pos, inv, ws.labels)
    return ents, pos


def time_split(ws: WindowSet, cfg: SplitConfig, seed: int) -> Split:
    days = np.unique(ws.day)
    need = cfg.val_days + cfg.test_days + 1
    if len(days) < need:
        raise DatasetError(f"the data spans {len(days)} day(s); the time split needs at least {need} "
                           f"(split.val_days={cfg.val_days}, split.test_days={cfg.test_days}, and 1 to train on); "
                           "use split.mode: entity (or auto) for a shorter capture")
    test_days = days[-cfg.test_days:]
    val_days = days[-(cfg.test_days + cfg.val_days):-cfg.test_days]
    train_days = days[:-(cfg.test_days + cfg.val_days)]
    unseen = _unseen(ws.entity, cfg.unseen_entity_share, seed)
    train = np.flatnonzero(np.isin(ws.day, train_days) & ~unseen)
    val = np.flatnonzero(np.isin(ws.day, val_days) & ~unseen)
    test = np.flatnonzero(np.isin(ws.day, test_days))
    return Split(train, val, test, unseen, {"train": train_days.tolist(), "val": val_days.tolist(),
                                            "test": test_days.tolist()}, "time")


def entity_split(ws: WindowSet, cfg: SplitConfig, seed: int) -> Split:
    """Entities, not days: each entity's windows all go to one part. Stratified by the entity label: positives and
    negatives are each ordered by a seeded hash and cut at the same shares, so every part holds both classes
    whenever there are at least three entities of each."""
    ents, pos = entity_labels(ws)
    part = np.zeros(len(ents), dtype=np.int64)  # 0 train, 1 val, 2 test
    h = _entity_hash(ents, seed)
    for cls in (False, True):
        members = np.flatnonzero(pos == cls)
        order = members[np.argsort(h[members], kind="stable")]
        n = len(order)
        n_test = round(cfg.test_share * n)
        n_val = round(cfg.val_share * n)
        if n >= 3:  # keep one entity in each part before rounding takes it away
            n_test, n_val = max(n_test, 1), max(n_val, 1)
            n_test = min(n_test, n - 2)
            n_val = min(n_val, n - n_test - 1)
        part[order[:n_test]] = 2
        part[order[n_test:n_test + n_val]] = 1
    of_window = part[np.searchsorted(ents, ws.entity.astype(str))]
    days = {name: np.unique(ws.day[of_window == k]).tolist() for k, name in enumerate(("train", "val", "test"))}
    return Split(np.flatnonzero(of_window == 0), np.flatnonzero(of_window == 1), np.flatnonzero(of_window == 2),
                 of_window == 2, days, "entity")


def _class_problem(ws: WindowSet, sp: Split, min_positives: int) -> str | None:
    """Why a split cannot train and judge a supervised model (None when it can)."""
    if ws.labels is None:
        return None
    for name in ("train", "val", "test"):
        idx = getattr(sp, name)
        n_pos = int(ws.labels[idx].sum())
        label = {"val": "validation"}.get(name, name)
        if not len(idx):
            return f"{label} holds no window"
        if n_pos < min_positives or n_pos == len(idx):
            return f"{label} holds {n_pos} anomalous of {len(idx)} windows"
    return None


def split_windows(ws: WindowSet, cfg: SplitConfig, seed: int) -> Split:
    """The split `cfg.mode` asks for; auto picks time or entity and records why (Split.why)."""
    if cfg.mode == "time":
        return replace(time_split(ws, cfg, seed), why="split.mode: time")
    if cfg.mode == "entity":
        return replace(entity_split(ws, cfg, seed), why="split.mode: entity")
    days = np.unique(ws.day)
    need = cfg.val_days + cfg.test_days + 1
    if len(days) < need:
        why = f"auto: {len(days)} day(s) of data, the time split needs {need}; split by entity"
        return replace(entity_split(ws, cfg, seed), why=why)
    sp = time_split(ws, cfg, seed)
    problem = _class_problem(ws, sp, cfg.min_positives)
    if problem is None:
        return replace(sp, why=f"auto: {len(days)} days of data, and the last {cfg.val_days + cfg.test_days} days "
                               f"hold at least {cfg.min_positives} anomalous windows in validation and in test; "
                               "split by time")
    return replace(entity_split(ws, cfg, seed),
                   why=f"auto: by time, {problem} (fewer than split.min_positives={cfg.min_positives}, or one class "
                       "only); split by entity")


MIN_POSITIVE_ENTITIES = 3  # one per part: train, validation, test


def check_split(ws: WindowSet, sp: Split) -> None:
    """Before any model is trained: with labels, every part must hold both classes. Names the fix."""
    if ws.labels is None:
        return
    _, pos = entity_labels(ws)
    if not pos.any():
        raise DatasetError("the labels hold no anomalous window: nothing to learn from. Check the label column / "
                           "--labels file, or train without labels (drop the is_anomaly column) for the label-free "
                           "detector")
    if pos.all():
        raise DatasetError("every entity is labelled anomalous: there is no normal traffic to learn from. Check "
                           "the labels, or use --unlabelled normal so entities without a label count as normal")
    problem = _class_problem(ws, sp, 1)
    if problem is None:
        return
    if sp.mode == "time":
        fix = ("use split.mode: entity (a label-stratified split of entities) or split.mode: auto, or move the "
               "split with split.val_days / split.test_days")
    else:
        fix = (f"the entity split needs at least {MIN_POSITIVE_ENTITIES} anomalous and {MIN_POSITIVE_ENTITIES} "
               f"normal entities (this data has {int(pos.sum())} and {int((~pos).sum())}); label more entities")
    raise DatasetError(f"{sp.mode} split: {problem}, so a supervised model could not be trained and judged; {fix}")
