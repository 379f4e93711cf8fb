"""The sequence models, as Hugging Face-compatible classes that save with `save_pretrained` and export to ONNX.

- behaviour BERT: a stock `BertForSequenceClassification` over the behaviour vocabulary (Optimum exports it).
- sequence RNN: a GRU classifier with the same inputs and output (`input_ids`, `attention_mask`, `token_type_ids` ->
  `logits`), wrapped as a `PreTrainedModel` so it saves, reloads and exports like the BERT.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import BertConfig, BertForSequenceClassification, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from seqguard.config import SequenceConfig
from seqguard.features import PAD_ID, TokenSpace


def bert_config(
    seq_cfg: SequenceConfig,
    hidden: int = 256,
    layers: int = 4,
    heads: int = 4,
    intermediate: int | None = None,
    dropout: float = 0.1,
) -> BertConfig:
    return BertConfig(
        vocab_size=TokenSpace.of(seq_cfg).vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=intermediate or 4 * hidden,
        max_position_embeddings=seq_cfg.max_len,
        type_vocab_size=1,
        pad_token_id=PAD_ID,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
        num_labels=2,
        id2label={0: "normal", 1: "anomaly"},
        label2id={"normal": 0, "anomaly": 1},
    )


def new_bert(config: BertConfig) -> BertForSequenceClassification:
    return BertForSequenceClassification(config)


class SequenceRNNConfig(PretrainedConfig):
    model_type = "seqguard_rnn"

    def __init__(
        self,
        vocab_size: int = 1237,
        embedding_size: int = 64,
        hidden_size: int = 128,
        num_layers: int = 1,
        dropout: float = 0.1,
        pad_token_id: int = PAD_ID,
        **kwargs: object,
    ) -> None:
        kwargs.setdefault("num_labels", 2)
        super().__init__(pad_token_id=pad_token_id, **kwargs)
        self.vocab_size = vocab_size
        self.embedding_size = embedding_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.dropout = dropout


class SequenceRNNForSequenceClassification(PreTrainedModel):
    """A bidirectional GRU; masked mean + max pooling over valid positions; a linear head to two logits."""

    config_class = SequenceRNNConfig
    base_model_prefix = "rnn"
    main_input_name = "input_ids"

    def __init__(self, config: SequenceRNNConfig) -> None:
        super().__init__(config)
        self.embed = nn.Embedding(config.vocab_size, config.embedding_size, padding_idx=config.pad_token_id)
        self.gru = nn.GRU(
            config.embedding_size,
            config.hidden_size,
            num_layers=config.num_layers,
            batch_first=True,
            bidirectional=True,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
        )
        self.drop = nn.Dropout(config.dropout)
        self.head = nn.Linear(4 * config.hidden_size, config.num_labels)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.05)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,  # accepted so every model shares one input signature
        labels: torch.Tensor | None = None,
        **_: object,
    ) -> SequenceClassifierOutput:
        if attention_mask is None:
            attention_mask = (input_ids != self.config.pad_token_id).long()
        if token_type_ids is not None:
            # Keeps the input in the exported graph (ONNX drops unused inputs); adds exactly zero.
            input_ids = input_ids + token_type_ids * 0
        x = self.embed(input_ids)
        # No pack_padded_sequence: it does not export to ONNX with dynamic shapes; padding is masked in pooling.
        out, _ = self.gru(x)
        m = attention_mask.unsqueeze(-1).to(out.dtype)
        mean = (out * m).sum(1) / m.sum(1).clamp(min=1.0)
        mx = out.masked_fill(m == 0, -1e4).max(1).values
        logits = self.head(self.drop(torch.cat([mean, mx], dim=-1)))
        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(logits, labels)
        return SequenceClassifierOutput(loss=loss, logits=logits)


def rnn_config(seq_cfg: SequenceConfig, embedding: int = 64, hidden: int = 128, layers: int = 1) -> SequenceRNNConfig:
    return SequenceRNNConfig(
        vocab_size=TokenSpace.of(seq_cfg).vocab_size, embedding_size=embedding, hidden_size=hidden, num_layers=layers
    )


# Registered so `AutoModelForSequenceClassification.from_pretrained` loads a saved RNN too.
def _register() -> None:
    from transformers import AutoConfig, AutoModelForSequenceClassification

    AutoConfig.register(SequenceRNNConfig.model_type, SequenceRNNConfig, exist_ok=True)
    AutoModelForSequenceClassification.register(SequenceRNNConfig, SequenceRNNForSequenceClassification, exist_ok=True)


_register()
