"""SequenceConfig: how events become windows and tokens. Saved with every model; its hash travels in the manifest."""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

ENTITY_KEYS = ("user_id", "device_id", "ip", "session_id")


def _increasing(name: str, values: tuple[float, ...]) -> None:
    if any(b <= a for a, b in itertools.pairwise(values)):
        raise ValueError(f"{name} must be strictly increasing, got {list(values)}")


class SequenceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    entity_key: Literal["user_id", "device_id", "ip", "session_id"] = "user_id"
    max_events: int = Field(63, ge=1, le=255, description="last-N events kept per entity window")
    span_seconds: float | None = Field(
        86400.0, gt=0, description="keep only events within this span of the newest; None keeps by count only"
    )
    gap_edges: tuple[float, ...] = Field((2.0, 10.0, 60.0, 300.0, 1800.0, 10800.0), min_length=1)
    price_edges: tuple[float, ...] = Field((20.0, 100.0, 500.0), min_length=1)
    category_buckets: int = Field(8, ge=1, le=256)
    hour_edges: tuple[int, ...] = Field((6, 12, 18), min_length=1, description="local hour-of-day bucket edges")
    utc_offset_hours: float = Field(0.0, ge=-14, le=14, description="the shop's local time, for hour buckets")
    night_hours: tuple[int, int] = (0, 6)

    @model_validator(mode="after")
    def _check(self) -> SequenceConfig:
        _increasing("gap_edges", self.gap_edges)
        _increasing("price_edges", self.price_edges)
        _increasing("hour_edges", tuple(float(h) for h in self.hour_edges))
        if not all(0 < h < 24 for h in self.hour_edges):
            raise ValueError("hour_edges must lie in 1..23")
        return self

    @property
    def max_len(self) -> int:
        """Token positions: [CLS] + two tokens per event + [SEP]."""
        return 2 * self.max_events + 2

    def config_hash(self) -> str:
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> SequenceConfig:
        return cls.model_validate_json(Path(path).read_text())
