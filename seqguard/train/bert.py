"""The behaviour BERT: masked-token pretraining on unlabeled windows, then fine-tuning as a classifier.

Stage 1 trains `BertForMaskedLM` on training-split windows without looking at labels (BERT's 80/10/10 masking of
15 % of the event tokens, by `DataCollatorForLanguageModeling` on the behaviour tokenizer). Stage 2 builds
`BertForSequenceClassification` with the same config, loads the pretrained encoder (`bert.*` weights; the pooler and
the head start fresh) and fine-tunes it with the shared loop (weighted loss, early stopping on validation PR-AUC).
Both use the stock Hugging Face classes, so the result saves with `save_pretrained` and exports with Optimum.
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
from seqguard.models import bert_config
from seqguard.train.config import BertTrainConfig
from seqguard.train.loop import FitResult, bucket_batches, fit_classifier, optimizer_step, tensors


def make_config(seq_cfg: SequenceConfig, cfg: BertTrainConfig) -> Any:
    return bert_config(seq_cfg, hidden=cfg.hidden, layers=cfg.layers, heads=cfg.heads,
                       intermediate=cfg.intermediate, dropout=cfg.dropout)


def mlm_collator(seq_cfg: SequenceConfig, mask_prob: float, seed: int) -> Any:
    """Hugging Face's `DataCollatorForLanguageModeling` on the behaviour tokenizer: BERT's 80/10/10 masking of
    `mask_prob` of the tokens, never a special one ([PAD], [CLS], [SEP], [MASK], [UNK]: the tokenizer's own), seeded."""
    import torch
    from transformers import DataCollatorForLanguageModeling

    from seqguard.tokenizer import build_tokenizer

    collator = DataCollatorForLanguageModeling(build_tokenizer(seq_cfg), mlm=True, mlm_probability=mask_prob,
                                               return_tensors="pt")
    # `torch_mask_tokens` draws from `collator.generator`. The collator's own `seed` only makes one inside `__call__`
    # (which would pad again), and refuses to in a child process that is not a DataLoader worker.
    collator.generator = torch.Generator().manual_seed(seed)
    return collator


def mask_batch(collator: Any, input_ids: Any) -> tuple[Any, Any]:
    """(masked inputs, labels with -100 where nothing is predicted) for an already padded batch of windows."""
    import torch

    special = torch.isin(input_ids, torch.tensor(collator.tokenizer.all_special_ids, dtype=input_ids.dtype))
    return collator.torch_mask_tokens(input_ids.clone(), special_tokens_mask=special)


@dataclass
class PretrainResult:
    model: Any  # the BertForMaskedLM; None when the stage is skipped
    epochs: int
    steps: int
    windows: int
    final_loss: float | None
    seconds: float

    def encoder_state(self) -> dict[str, Any] | None:
        """The encoder's weights (`bert.*` without the prefix) for a classifier to start from."""
        return None if self.model is None else self.model.bert.state_dict()

    def to_dict(self) -> dict[str, Any]:
        return {"epochs": self.epochs, "steps": self.steps, "windows": self.windows, "final_loss": self.final_loss,
                "seconds": self.seconds}


def pretrain(encoded: list[Encoded], idx: np.ndarray, seq_cfg: SequenceConfig, cfg: BertTrainConfig, seed: int,
             progress: bool = False) -> PretrainResult:
    """Masked-token pretraining on the windows `idx` (labels are never read here)."""
    import torch
    from transformers import BertForMaskedLM, get_linear_schedule_with_warmup

    t0 = time.perf_counter()
    if cfg.pretrain_epochs == 0 or not len(idx):
        return PretrainResult(None, 0, 0, 0, None, 0.0)
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    if cfg.pretrain_max_windows is not None and len(idx) > cfg.pretrain_max_windows:
        idx = np.sort(rng.choice(idx, cfg.pretrain_max_windows, replace=False))
    config = make_config(seq_cfg, cfg)
    model = BertForMaskedLM(config)
    collator = mlm_collator(seq_cfg, cfg.mask_prob, seed)
    lengths = np.fromiter((len(encoded[int(i)].input_ids) for i in idx), dtype=np.int64, count=len(idx))
    n_batches = math.ceil(len(idx) / cfg.batch_size)
    total = cfg.pretrain_epochs * n_batches
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.pretrain_lr, weight_decay=cfg.weight_decay)
    sched = get_linear_schedule_with_warmup(opt, int(cfg.warmup_ratio * total), total)
    bar = tqdm(total=total, desc="bert pretrain (masked tokens)", unit="step", disable=not progress, leave=False)
    model.train()
    steps = 0
    loss_avg = None
    for _ in range(cfg.pretrain_epochs):
        for b in bucket_batches(lengths, cfg.batch_size, rng):
            batch = tensors(encoded, idx[b])
            inputs, labels = mask_batch(collator, batch["input_ids"])
            if not bool((labels != -100).any()):
                continue
            # The prediction head (hidden -> vocabulary) runs on the masked positions only: the loss is the same as
            # BertForMaskedLM(labels=...) computes, at about a third less compute per step.
            hidden = model.bert(input_ids=inputs, attention_mask=batch["attention_mask"],
                                token_type_ids=batch["token_type_ids"]).last_hidden_state
            chosen = labels != -100
            loss_t = torch.nn.functional.cross_entropy(model.cls(hidden[chosen]), labels[chosen])
            optimizer_step(model, opt, sched, loss_t)
            steps += 1
            loss = loss_t.item()
            loss_avg = loss if loss_avg is None else 0.98 * loss_avg + 0.02 * loss
            bar.update(1)
            bar.set_postfix(mlm_loss=f"{loss_avg:.3f}")
    bar.close()
    model.eval()
    return PretrainResult(model, cfg.pretrain_epochs, steps, len(idx), loss_avg,
                          time.perf_counter() - t0)


def new_classifier(seq_cfg: SequenceConfig, cfg: BertTrainConfig, encoder_state: dict[str, Any] | None,
                   seed: int) -> Any:
    """A fresh BertForSequenceClassification, with the pretrained encoder loaded when given."""
    import torch
    from transformers import BertForSequenceClassification

    torch.manual_seed(seed)
    model = BertForSequenceClassification(make_config(seq_cfg, cfg))
    if encoder_state is not None:
        missing, unexpected = model.bert.load_state_dict(encoder_state, strict=False)
        # The MLM model has no pooler; everything else must match exactly.
        if unexpected or any(not k.startswith("pooler.") for k in missing):
            raise RuntimeError(f"pretrained encoder does not fit: missing {missing}, unexpected {unexpected}")
    return model


def finetune(model: Any, encoded: list[Encoded], y: np.ndarray, train_idx: np.ndarray, val_idx: np.ndarray,
             cfg: BertTrainConfig, pos_weight: float | str, seed: int, progress: bool = False,
             desc: str = "bert fine-tune") -> FitResult:
    return fit_classifier(model, encoded, y, train_idx, val_idx, cfg, pos_weight, seed, desc, progress)
