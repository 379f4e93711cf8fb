"""The checkpoint folder as export sees it: which models to serve, the calibration windows, the scorer.

Reading goes through the training side's own helpers (seqguard.train.checkpoint / .calibration), so the folder's
layout is defined in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from seqguard.config import SequenceConfig
from seqguard.contracts import (
    DETECTOR_FILE,
    ENSEMBLE_FILE,
    METRICS_FILE,
    RULES_FILE,
    SEQUENCE_CONFIG_FILE,
    TOKENIZER_DIR,
)
from seqguard.features import Encoded, pad_batch
from seqguard.train.calibration import CALIBRATION_FILE, calibration_logits, read_calibration
from seqguard.train.checkpoint import SERVED_KINDS, CheckpointError, load_sequence_config, read_index

INPUT_KEYS = ("input_ids", "attention_mask", "token_type_ids")


@dataclass(frozen=True)
class ModelEntry:
    name: str
    kind: str
    path: Path


@dataclass
class Calibration:
    """Validation windows (never test) with what training computed on them."""

    inputs: dict[str, np.ndarray]  # padded [N, L] int64, as training padded them
    labels: np.ndarray  # int64 [N]: 1 anomalous, 0 normal, -1 unlabeled
    features: np.ndarray  # float32 [N, F]
    saved_logits: dict[str, np.ndarray] = field(default_factory=dict)  # torch logits at save time

    def __len__(self) -> int:
        return len(self.labels)

    def chunks(self, size: int = 64) -> list[dict[str, np.ndarray]]:
        """The padded tensors in row order, `size` rows at a time (every runtime sees exactly the same tensors)."""
        n = len(self)
        return [{k: np.ascontiguousarray(v[i:i + size]) for k, v in self.inputs.items()} for i in range(0, n, size)]

    def windows(self) -> list[Encoded]:
        """Each row without its padding: the windows as encode_window produced them."""
        ids, types, mask = (self.inputs[k] for k in ("input_ids", "token_type_ids", "attention_mask"))
        lengths = mask.sum(axis=1)
        empty = np.zeros(0, dtype=np.float32)
        return [Encoded(ids[i, :n].copy(), types[i, :n].copy(), empty) for i, n in enumerate(lengths)]

    def repadded(self, rows: list[int]) -> dict[str, np.ndarray]:
        """Rows re-padded to their own longest window (how the service pads a batch): for latency figures."""
        windows = self.windows()
        return pad_batch([windows[i % len(windows)] for i in rows])


@dataclass
class Checkpoint:
    root: Path
    version: str
    index: dict[str, Any]
    models: list[ModelEntry]  # the served ones (bert / rnn), in index order
    sequence_config: SequenceConfig

    @classmethod
    def open(cls, root: str | Path) -> Checkpoint:
        root = Path(root)
        index = read_index(root)  # CheckpointError names the folder / file
        models = []
        for m in index.get("models", []):
            if m.get("kind") not in SERVED_KINDS:
                continue  # e.g. the text model: evaluated, never served
            path = root / m["path"]
            if not (path / "config.json").is_file():
                raise CheckpointError(f"model folder {path} (model {m['name']!r}) is missing or has no config.json")
            models.append(ModelEntry(m["name"], m["kind"], path))
        if not models:
            raise CheckpointError(f"{root / 'checkpoint.json'} lists no servable models (kinds "
                                  f"{', '.join(SERVED_KINDS)}); was it trained without labels?")
        for rel in (SEQUENCE_CONFIG_FILE, f"{TOKENIZER_DIR}/tokenizer.json", ENSEMBLE_FILE, RULES_FILE, DETECTOR_FILE,
                    CALIBRATION_FILE):
            if not (root / rel).is_file():
                raise CheckpointError(f"{root / rel} is missing (incomplete checkpoint)")
        version = str(index.get("version") or index.get("created") or "unversioned")
        return cls(root, version, index, models, load_sequence_config(root))

    @property
    def tokenizer_dir(self) -> Path:
        return self.root / TOKENIZER_DIR

    @property
    def metrics(self) -> dict[str, Any]:
        import json

        path = self.root / METRICS_FILE
        return json.loads(path.read_text()) if path.is_file() else {}

    def calibration(self) -> Calibration:
        data = read_calibration(self.root / CALIBRATION_FILE)
        missing = [k for k in INPUT_KEYS if k not in data]
        if missing:
            raise CheckpointError(f"{self.root / CALIBRATION_FILE} lacks {', '.join(missing)}")
        n = len(data["input_ids"])
        if n == 0:
            raise CheckpointError(f"{self.root / CALIBRATION_FILE} holds no windows")
        labels = data.get("labels", np.full(n, -1, dtype=np.int64)).astype(np.int64)
        features = data["features"].astype(np.float32) if "features" in data else np.zeros((n, 0), np.float32)
        saved = calibration_logits(data) if "components" in data else {}
        return Calibration({k: data[k].astype(np.int64) for k in INPUT_KEYS}, labels, features, saved)

    def scorer(self) -> Any | None:
        """The checkpoint's Scorer (ensemble + rules + detector), or None when it cannot be loaded."""
        from seqguard.scoring.scorer import Scorer, ScorerError

        try:
            return Scorer.load(self.root)
        except (ScorerError, ValueError, KeyError, OSError):
            return None
