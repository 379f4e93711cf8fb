"""The shared torch training loop: determinism, length-bucketed dynamic batches, weighted loss, early stopping.

Every torch-based stage (BERT pretraining and fine-tuning, the RNN, the studies) goes through here, so they share one
definition of "seeded and deterministic": `torch.manual_seed` per stage, `use_deterministic_algorithms(True)`, a
fixed intra-op thread count, and batch order drawn from a numpy Generator seeded by the stage, never from global state.
"""

from __future__ import annotations

import copy
import itertools
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

from seqguard.features import Encoded, pad_batch
from seqguard.train.config import LoopConfig
from seqguard.train.metrics import pr_auc

if TYPE_CHECKING:
    import torch

BUCKET_BATCHES = 50  # batches per length-sorted chunk: short sequences batch together, order stays random


def setup_torch(seed: int, threads: int) -> None:
    import torch

    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)


def bucket_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator | None) -> list[np.ndarray]:
    """Index batches of similar lengths (less padding); shuffled when an rng is given, length-sorted otherwise."""
    n = len(lengths)
    if rng is None:
        order = np.argsort(lengths, kind="stable")
        return [order[i:i + batch_size] for i in range(0, n, batch_size)]
    order = rng.permutation(n)
    chunk = batch_size * BUCKET_BATCHES
    batches: list[np.ndarray] = []
    for c in range(0, n, chunk):
        part = order[c:c + chunk]
        part = part[np.argsort(lengths[part], kind="stable")]
        batches.extend(part[i:i + batch_size] for i in range(0, len(part), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def tensors(encoded: list[Encoded], idx: np.ndarray) -> dict[str, torch.Tensor]:
    import torch

    return {k: torch.from_numpy(v) for k, v in pad_batch([encoded[int(i)] for i in idx]).items()}


def predict_logits(model: Any, encoded: list[Encoded], idx: np.ndarray | None = None,
                   batch_size: int = 256) -> np.ndarray:
    """float32 [len(idx), 2] logits in idx order (eval mode; batches sorted by length for speed)."""
    import torch

    idx = np.arange(len(encoded)) if idx is None else np.asarray(idx)
    out = np.zeros((len(idx), 2), dtype=np.float32)
    if not len(idx):
        return out
    lengths = np.fromiter((len(encoded[int(i)].input_ids) for i in idx), dtype=np.int64, count=len(idx))
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for b in bucket_batches(lengths, batch_size, None):
            out[b] = model(**tensors(encoded, idx[b])).logits.float().numpy()
    model.train(was_training)
    return out


def optimizer_step(model: Any, opt: Any, sched: Any, loss: torch.Tensor) -> None:
    """One update as every training loop here takes it: gradients clipped to norm 1 (small models on few, skewed
    batches spike), then the optimiser and the schedule advance together."""
    import torch

    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    sched.step()


def positive_weight(y: np.ndarray, spec: float | str) -> float:
    pos = max(int(y.sum()), 1)
    neg = max(len(y) - pos, 1)
    if spec == "sqrt":
        return float(math.sqrt(neg / pos))
    if spec == "balanced":
        return float(neg / pos)
    return float(spec)


@dataclass
class FitResult:
    best_round: int  # an epoch, unless min_steps stretched training (then total steps / cfg.epochs)
    best_val_pr_auc: float | None
    rounds_run: int
    steps: int
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def fit_classifier(
    model: Any,
    encoded: list[Encoded],
    y: np.ndarray,
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    cfg: LoopConfig,
    pos_weight: float | str,
    seed: int,
    desc: str,
    progress: bool = False,
) -> FitResult:
    """Fine-tune a sequence classifier in place; the best round by validation PR-AUC is restored at the end."""
    import torch
    from transformers import get_linear_schedule_with_warmup

    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    if cfg.max_train_windows is not None and len(train_idx) > cfg.max_train_windows:
        train_idx = np.sort(rng.choice(train_idx, cfg.max_train_windows, replace=False))
    y_t = torch.from_numpy(y.astype(np.int64))
    weight = torch.tensor([1.0, positive_weight(y[train_idx], pos_weight)], dtype=torch.float32)
    lengths = np.fromiter((len(encoded[int(i)].input_ids) for i in train_idx), dtype=np.int64, count=len(train_idx))
    n_batches = math.ceil(len(train_idx) / cfg.batch_size)
    epochs = max(cfg.epochs, math.ceil(cfg.min_steps / max(n_batches, 1)))
    total = epochs * n_batches
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = get_linear_schedule_with_warmup(opt, int(cfg.warmup_ratio * total), total)
    loss_fn = torch.nn.CrossEntropyLoss(weight=weight)
    val_has_both = 0 < int(y[val_idx].sum()) < len(val_idx)
    best: tuple[float, int, dict[str, torch.Tensor]] | None = None
    history: list[dict[str, float]] = []
    stale = 0
    steps = 0
    bar = tqdm(total=total, desc=desc, unit="step", disable=not progress, leave=False)
    # Validate once per "round": an epoch, or (when min_steps stretches a small training set over many epochs)
    # total / cfg.epochs steps, so a 1 % label run is not dominated by validation passes.
    eval_every = max(n_batches, math.ceil(total / cfg.epochs))
    rounds = math.ceil(total / eval_every)
    batches = (b for _ in range(epochs) for b in bucket_batches(lengths, cfg.batch_size, rng))
    model.train()
    for rnd in range(1, rounds + 1):
        running, count = 0.0, 0
        for b in itertools.islice(batches, eval_every):
            idx = train_idx[b]
            out = model(**tensors(encoded, idx))
            loss = loss_fn(out.logits, y_t[idx])
            optimizer_step(model, opt, sched, loss)
            steps += 1
            count += 1
            running += loss.item()
            bar.update(1)
        logits = predict_logits(model, encoded, val_idx)
        # Without both classes in validation there is nothing to rank: fall back to the negated validation loss.
        metric = (pr_auc(y[val_idx], logits[:, 1] - logits[:, 0]) if val_has_both
                  else -float(loss_fn(torch.from_numpy(logits), y_t[val_idx])))
        history.append({"round": rnd, "steps": steps, "train_loss": running / max(count, 1), "val_metric": metric})
        bar.set_postfix(loss=f"{running / max(count, 1):.4f}", val=f"{metric:.4f}")
        if best is None or metric > best[0]:
            best = (metric, rnd, copy.deepcopy(model.state_dict()))
            stale = 0
        else:
            stale += 1
            if stale > cfg.patience:
                break
    bar.close()
    assert best is not None
    model.load_state_dict(best[2])
    model.eval()
    return FitResult(best[1], best[0] if val_has_both else None, len(history), steps, time.perf_counter() - t0,
                     history)
