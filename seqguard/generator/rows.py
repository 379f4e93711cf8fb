"""The session table and the row blocks that point into it; timestamps from grouped cumulative gaps."""

from __future__ import annotations

from typing import Any

import numpy as np


class _Sessions:
    """The session table: each session belongs to one user, one device/ip/country and one label."""

    COLS = ("user", "start", "device", "ip", "country", "label")

    def __init__(self) -> None:
        self.parts: list[dict[str, np.ndarray]] = []
        self.n = 0

    def add(self, user: np.ndarray, start: np.ndarray, device: np.ndarray, ip: np.ndarray, country: np.ndarray,
            label: int | np.ndarray) -> np.ndarray:
        k = len(user)
        part = {"user": user, "start": start, "device": device, "ip": ip, "country": country,
                "label": np.broadcast_to(np.asarray(label, dtype=np.int8), (k,))}
        self.parts.append({c: np.asarray(v) for c, v in part.items()})
        ids = np.arange(self.n, self.n + k)
        self.n += k
        return ids

    def table(self) -> dict[str, np.ndarray]:
        return {c: np.concatenate([p[c] for p in self.parts]) for c in self.COLS}


_ROW_DEFAULTS: dict[str, tuple[Any, Any]] = {
    "item": (-1, np.int64),
    "price": (np.nan, np.float64),
    "qty": (0, np.int32),
    "pay": (0, np.int8),  # 0 none, 1 success, 2 failed
    "coupon": (-1, np.int32),
    "text": (-1, np.int32),
}


class _Rows:
    """Row blocks: the session each row belongs to, its order key within the session and the gap before it."""

    def __init__(self) -> None:
        self.parts: list[dict[str, np.ndarray]] = []

    def add(self, sess: np.ndarray, key: Any, etype: int | np.ndarray, gap: Any, **cols: Any) -> None:
        k = len(sess)
        if k == 0:
            return
        part = {
            "sess": np.asarray(sess, dtype=np.int64),
            "key": np.broadcast_to(np.asarray(key, dtype=np.float64), (k,)),
            "etype": np.broadcast_to(np.asarray(etype, dtype=np.int8), (k,)),
            "gap": np.broadcast_to(np.asarray(gap, dtype=np.float64), (k,)),
        }
        for name, (default, dtype) in _ROW_DEFAULTS.items():
            part[name] = np.broadcast_to(np.asarray(cols.pop(name, default), dtype=dtype), (k,))
        if cols:
            raise TypeError(f"unknown row columns {sorted(cols)}")
        self.parts.append(part)

    def concat(self) -> dict[str, np.ndarray]:
        names = ["sess", "key", "etype", "gap", *_ROW_DEFAULTS]
        return {c: np.concatenate([p[c] for p in self.parts]) for c in names}


def _timestamps(rows: dict[str, np.ndarray], start: np.ndarray) -> dict[str, np.ndarray]:
    """Sort rows by (session, key) and give each one its session start plus the gaps before it (first row: 0)."""
    order = np.lexsort((rows["key"], rows["sess"]))
    rows = {c: v[order] for c, v in rows.items()}
    sess = rows["sess"]
    first = np.r_[True, sess[1:] != sess[:-1]]
    gap = np.where(first, 0.0, rows["gap"])
    cs = np.cumsum(gap)
    group_start = np.flatnonzero(first)
    offset = cs - cs[group_start][np.cumsum(first) - 1]
    rows["ts"] = start[sess] + offset
    return rows

