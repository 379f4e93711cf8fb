"""Realistic windows: the generator's traffic cut into windows by seqguard.sequences and encoded by
seqguard.features.encode_window, the one encoder training, export, the service and the load tests share."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from seqguard.config import SequenceConfig
from seqguard.features import Encoded, encode_window
from seqguard.sequences import EventColumns, iter_windows, sort_for_sequences


@dataclass
class WindowSet:
    cfg: SequenceConfig
    columns: list[EventColumns]
    encoded: list[Encoded]
    encode_s: float  # wall time of encode_window over all windows: the featurisation both pipelines need

    def __len__(self) -> int:
        return len(self.encoded)

    @property
    def lengths(self) -> np.ndarray:
        return np.array([len(e.input_ids) for e in self.encoded], dtype=np.int64)

    def length_stats(self) -> dict[str, float]:
        n = self.lengths
        pct = np.percentile(n, [5, 25, 50, 75, 95, 99])
        return {"windows": len(n), "mean": float(n.mean()), "max": int(n.max()),
                **{f"p{p}": float(v) for p, v in zip((5, 25, 50, 75, 95, 99), pct, strict=True)}}


def generate_windows(cfg: SequenceConfig, users: int = 2000, days: int = 3, seed: int = 11, every: str = "day",
                     limit: int | None = None) -> WindowSet:
    """Windows ending at each user's last event of each day (every="day"): many windows from a few thousand users,
    with the length mix of real traffic (mostly short windows, a tail at the max_events cap)."""
    from seqguard.generator import GeneratorConfig, generate

    events = generate(GeneratorConfig(users=users, days=days, seed=seed)).events
    frame = sort_for_sequences(events, cfg)
    columns = [cols for _, _, _, cols in iter_windows(frame, cfg, every)]  # type: ignore[arg-type]
    if limit is not None and len(columns) > limit:
        # A seeded sample, not the first N: the frame is sorted by entity, and a prefix would be a few users' windows.
        keep = np.sort(np.random.default_rng(seed).choice(len(columns), size=limit, replace=False))
        columns = [columns[i] for i in keep]
    # Arrival order, as a stream would present them: shuffled, so neither pipeline gets pre-sorted lengths for free.
    order = np.random.default_rng(seed + 1).permutation(len(columns))
    columns = [columns[i] for i in order]
    t0 = time.perf_counter()
    encoded = [encode_window(c, cfg) for c in columns]
    return WindowSet(cfg, columns, encoded, time.perf_counter() - t0)
