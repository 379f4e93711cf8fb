"""The sequence RNN (a bidirectional GRU classifier from seqguard.models), trained on the same tensors as the BERT."""

from __future__ import annotations

from typing import Any

import numpy as np

from seqguard.config import SequenceConfig
from seqguard.features import Encoded
from seqguard.models import SequenceRNNForSequenceClassification, rnn_config
from seqguard.train.config import RnnTrainConfig
from seqguard.train.loop import FitResult, fit_classifier


def new_rnn(seq_cfg: SequenceConfig, cfg: RnnTrainConfig, seed: int) -> Any:
    import torch

    torch.manual_seed(seed)
    config = rnn_config(seq_cfg, embedding=cfg.embedding, hidden=cfg.hidden, layers=cfg.layers)
    config.id2label = {0: "normal", 1: "anomaly"}
    config.label2id = {"normal": 0, "anomaly": 1}
    return SequenceRNNForSequenceClassification(config)


def train_rnn(model: Any, encoded: list[Encoded], y: np.ndarray, train_idx: np.ndarray, val_idx: np.ndarray,
              cfg: RnnTrainConfig, pos_weight: float | str, seed: int, progress: bool = False) -> FitResult:
    return fit_classifier(model, encoded, y, train_idx, val_idx, cfg, pos_weight, seed, "rnn", progress)
