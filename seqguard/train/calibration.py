"""calibration.npz: a small set of *validation* windows (never test) that export uses for parity gates and int8
calibration, and that anyone can use to check a reloaded checkpoint scores exactly as it did when saved.

Format (numpy .npz, no pickles: `np.load(path)` with the default allow_pickle=False works):

    input_ids        int64   [N, L]  pad_batch of the windows (L = longest, rounded up to a multiple of 8; PAD = 0)
    attention_mask   int64   [N, L]
    token_type_ids   int64   [N, L]  zeros
    features         float32 [N, F]  aggregate features (F = len(feature_names))
    labels           int64   [N]     1 anomalous, 0 normal, -1 unlabeled
    scenario         <U      [N]     "normal", the attack scenario, or "unlabeled"
    feature_names    <U      [F]
    components       <U      [C]     the served models, in ensemble order
    logits__<name>   float32 [N, 2]  the saved model's torch logits (eval mode) on exactly these padded tensors
    score            float64 [N]     Scorer(folder).score(logits, features) scores (the main stacker)
    decision         int64   [N]     0 allow, 1 review, 2 block
    degraded_score   float64 [N]     Scorer(folder).score(None, features) scores (the degraded stacker)

The windows are drawn (seeded) from the validation split: up to a quarter anomalous, the rest normal, in window
order, so int8 calibration sees both classes and the parity gate checks the scores that matter.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from seqguard.features import FEATURE_NAMES, pad_batch
from seqguard.scoring.scorer import Scorer
from seqguard.train.dataset import WindowSet

CALIBRATION_FILE = "calibration.npz"
LOGITS_PREFIX = "logits__"


def choose_windows(ws: WindowSet, val_idx: np.ndarray, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed + 17)
    if ws.labels is None:
        return np.sort(rng.choice(val_idx, min(n, len(val_idx)), replace=False))
    pos = val_idx[ws.labels[val_idx]]
    neg = val_idx[~ws.labels[val_idx]]
    k_pos = min(len(pos), n // 4)
    k_neg = min(len(neg), n - k_pos)
    return np.sort(np.concatenate([rng.choice(pos, k_pos, replace=False), rng.choice(neg, k_neg, replace=False)]))


def torch_logits(model: Any, batch: dict[str, np.ndarray], chunk: int = 64) -> np.ndarray:
    import torch

    out = []
    with torch.inference_mode():
        for i in range(0, len(batch["input_ids"]), chunk):
            t = {k: torch.from_numpy(v[i:i + chunk]) for k, v in batch.items()}
            out.append(model(**t).logits.float().numpy())
    return np.concatenate(out) if out else np.zeros((0, 2), dtype=np.float32)


def write_calibration(path: Path, ws: WindowSet, idx: np.ndarray, models: dict[str, Any], scorer: Scorer) -> Path:
    batch = pad_batch([ws.encoded[int(i)] for i in idx])
    feats = ws.features[idx]
    logits = {name: torch_logits(models[name], batch) for name in scorer.components}
    main = scorer.score_batch(logits, feats)
    degraded = scorer.score_batch(None, feats)
    labels = ws.y(idx) if ws.labels is not None else np.full(len(idx), -1, dtype=np.int64)
    arrays: dict[str, np.ndarray] = {
        **batch,
        "features": feats.astype(np.float32),
        "labels": labels.astype(np.int64),
        "scenario": np.asarray(ws.scenario[idx], dtype=str),
        "feature_names": np.asarray(FEATURE_NAMES, dtype=str),
        "components": np.asarray(scorer.components, dtype=str),
        "score": main.score,
        "decision": main.rank,
        "degraded_score": degraded.score,
    }
    for name, value in logits.items():
        arrays[LOGITS_PREFIX + name] = value
    np.savez_compressed(path, **arrays)
    return path


def read_calibration(path: str | Path) -> dict[str, np.ndarray]:
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def calibration_logits(data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {str(c): data[LOGITS_PREFIX + str(c)] for c in data["components"]}
