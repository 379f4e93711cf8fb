"""The label-free sequence component `unsupervised_sequence`: how surprising a window is to a model of normal traffic.

The masked-token encoder sees both sides of a token, so it cannot say in one pass how likely each event was given
what came before. This stage therefore starts a causal BERT (SequenceSurpriseModel) from the masked-token pretrained
weights and trains it on next-token prediction over the same unlabeled training windows, for as many epochs as the
masked-token stage (more on small captures: at least MIN_STEPS steps). Then it measures the training windows'
surprise statistics (mean / max event NLL, the 99th percentile of event NLL that makes an event "improbable", the
share of improbable events, the share of repeated transitions) and writes them into the model's config, so the
exported graph computes the standardised score by itself: one forward pass per window, the same inputs and output as
every other served model.

Labels are never read here.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from seqguard.config import SequenceConfig
from seqguard.features import Encoded
from seqguard.scoring.ensemble import SURPRISE
from seqguard.train.bert import PretrainResult, make_config
from seqguard.train.config import BertTrainConfig
from seqguard.train.loop import bucket_batches, optimizer_step, predict_logits, tensors

NAME = SURPRISE
KIND = "surprise"
IMPROBABLE_QUANTILE = 0.99
STATS_WINDOWS = 4000  # training windows the statistics are measured on (a sample: quantiles settle well before)
# Small captures (a few thousand windows) give a handful of steps per epoch: too few for next-event statistics to
# mean anything. The stage runs at least this many steps (more epochs), up to MAX_EPOCHS.
MIN_STEPS = 150
MAX_EPOCHS = 4


@dataclass
class SurpriseResult:
    model: Any
    train_margins: np.ndarray  # the surprise z of the (sampled) training windows: the label-free reference
    reference_idx: np.ndarray  # those windows (sorted indices into the windows): other references use the same
    epochs: int
    steps: int
    final_loss: float | None
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"epochs": self.epochs, "steps": self.steps, "final_loss": self.final_loss,
                "seconds": round(self.seconds, 2),
                "reference_windows": len(self.train_margins)}


def new_surprise_model(seq_cfg: SequenceConfig, cfg: BertTrainConfig, pre: PretrainResult | None, seed: int) -> Any:
    import torch

    from seqguard.models import SequenceSurpriseConfig, SequenceSurpriseModel

    torch.manual_seed(seed)
    base = make_config(seq_cfg, cfg).to_dict()
    for k in ("model_type", "transformers_version", "architectures", "is_decoder"):
        base.pop(k, None)
    model = SequenceSurpriseModel(SequenceSurpriseConfig(**base))
    if pre is not None and pre.model is not None:
        # Same modules (bert.* encoder without pooler, cls.* prediction head): every weight carries over.
        missing, unexpected = model.load_state_dict(pre.model.state_dict(), strict=False)
        if unexpected or [k for k in missing if not k.startswith("bert.pooler")]:
            raise RuntimeError(f"pretrained weights do not fit the surprise model: {missing}, {unexpected}")
    return model


def _event_nlls(model: Any, encoded: list[Encoded], idx: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """The NLL of every scored event of the windows `idx`."""
    import torch

    lengths = np.fromiter((len(encoded[int(i)].input_ids) for i in idx), dtype=np.int64, count=len(idx))
    events: list[np.ndarray] = []
    model.eval()
    with torch.inference_mode():
        for b in bucket_batches(lengths, batch_size, None):
            t = tensors(encoded, idx[b])
            ev, scored = model.event_nll(t["input_ids"], t["attention_mask"])
            events.append(ev[scored].numpy())
    return np.concatenate(events) if events else np.zeros(0)


def train_surprise(pre: PretrainResult, encoded: list[Encoded], idx: np.ndarray, seq_cfg: SequenceConfig,
                   cfg: BertTrainConfig, seed: int, progress: bool = False) -> SurpriseResult | None:
    """Next-event training on the unlabeled windows `idx`, then the standardising statistics; None if skipped."""
    import torch
    from transformers import get_linear_schedule_with_warmup

    from seqguard.models import N_SURPRISE_STATS

    t0 = time.perf_counter()
    if cfg.pretrain_epochs == 0 or not len(idx):
        return None
    rng = np.random.default_rng(seed + 1)
    gen_idx = idx
    if cfg.pretrain_max_windows is not None and len(idx) > cfg.pretrain_max_windows:
        gen_idx = np.sort(rng.choice(idx, cfg.pretrain_max_windows, replace=False))
    model = new_surprise_model(seq_cfg, cfg, pre, seed)
    lengths = np.fromiter((len(encoded[int(i)].input_ids) for i in gen_idx), dtype=np.int64, count=len(gen_idx))
    per_epoch = math.ceil(len(gen_idx) / cfg.batch_size)
    epochs = max(cfg.pretrain_epochs, min(MAX_EPOCHS, math.ceil(MIN_STEPS / per_epoch)))
    total = epochs * per_epoch
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.pretrain_lr, weight_decay=cfg.weight_decay)
    sched = get_linear_schedule_with_warmup(opt, int(cfg.warmup_ratio * total), total)
    bar = tqdm(total=total, desc="surprise model (next event)", unit="step", disable=not progress, leave=False)
    model.train()
    steps, loss_avg = 0, None
    for _ in range(epochs):
        for b in bucket_batches(lengths, cfg.batch_size, rng):
            t = tensors(encoded, gen_idx[b])
            nll, valid = model.token_nll(t["input_ids"], t["attention_mask"])
            if not bool(valid.any()):
                continue
            loss = nll.sum() / valid.sum()
            optimizer_step(model, opt, sched, loss)
            steps += 1
            loss_avg = loss.item() if loss_avg is None else 0.98 * loss_avg + 0.02 * loss.item()
            bar.update(1)
            bar.set_postfix(nll=f"{loss_avg:.3f}")
    bar.close()
    model.eval()

    ref = idx if len(idx) <= STATS_WINDOWS else np.sort(rng.choice(idx, STATS_WINDOWS, replace=False))
    events = _event_nlls(model, encoded, ref)
    model.config.improbable_nll = float(np.quantile(events, IMPROBABLE_QUANTILE)) if len(events) else 8.0
    # With the threshold fixed, the per-window statistics (via the graph itself, mean 0 / scale 1 for now).
    model.config.stat_mean = [0.0] * N_SURPRISE_STATS
    model.config.stat_scale = [1.0] * N_SURPRISE_STATS
    stats = _window_stats(model, encoded, ref)
    mean = stats.mean(axis=0)
    scale = stats.std(axis=0)
    model.config.stat_mean = [float(v) for v in mean]
    model.config.stat_scale = [float(v) if v > 1e-9 else 1.0 for v in scale]
    margins = surprise_margin(predict_logits(model, encoded, ref))
    return SurpriseResult(model, margins, ref, epochs, steps, loss_avg, time.perf_counter() - t0)


def _window_stats(model: Any, encoded: list[Encoded], idx: np.ndarray, batch_size: int = 256) -> np.ndarray:
    import torch

    from seqguard.models import N_SURPRISE_STATS

    lengths = np.fromiter((len(encoded[int(i)].input_ids) for i in idx), dtype=np.int64, count=len(idx))
    out = np.zeros((len(idx), N_SURPRISE_STATS))
    with torch.inference_mode():
        for b in bucket_batches(lengths, batch_size, None):
            t = tensors(encoded, idx[b])
            out[b] = model.window_stats(t["input_ids"], t["attention_mask"])[0].numpy()
    return out


def surprise_margin(logits: np.ndarray) -> np.ndarray:
    """The surprise z from the model's [B, 2] output (the usual margin: logits[:, 1] - logits[:, 0])."""
    x = np.asarray(logits, dtype=np.float64)
    return x[:, 1] - x[:, 0]


def surprise_step(logits: np.ndarray) -> np.ndarray:
    """The index of the most surprising event in each window, carried in logits[:, 0] = -index."""
    return np.rint(-np.asarray(logits, dtype=np.float64)[:, 0]).astype(np.int64)
