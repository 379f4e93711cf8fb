"""The sequence models, as Hugging Face-compatible classes that save with `save_pretrained` and export to ONNX.

- behaviour BERT: a stock `BertForSequenceClassification` over the behaviour vocabulary (Optimum exports it).
- sequence RNN: a GRU classifier with the same inputs and output (`input_ids`, `attention_mask`, `token_type_ids` ->
  `logits`), wrapped as a `PreTrainedModel` so it saves, reloads and exports like the BERT.
- sequence surprise: a causal (next-event) BERT started from the masked-token pretrained encoder, trained without
  labels; its graph turns next-token log-likelihoods into a per-window surprise score (see SequenceSurpriseModel).
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    BertLMHeadModel,
    PretrainedConfig,
    PreTrainedModel,
)
from transformers.modeling_outputs import SequenceClassifierOutput

from seqguard.config import SequenceConfig
from seqguard.features import PAD_ID, SPECIAL_TOKENS, TokenSpace


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
        padding_invariant: bool = False,
        **kwargs: object,
    ) -> None:
        kwargs.setdefault("num_labels", 2)
        super().__init__(pad_token_id=pad_token_id, **kwargs)
        self.vocab_size = vocab_size
        self.embedding_size = embedding_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.dropout = dropout
        # False only for checkpoints saved before it existed (their reverse direction was trained reading padding);
        # `rnn_config` sets it for every new model.
        self.padding_invariant = padding_invariant


def reverse_within_length(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Each row's first `length` steps in reverse order, padding left where it is ([B, L, D]). Its own inverse."""
    steps = torch.arange(x.shape[1], device=x.device).unsqueeze(0)
    n = lengths.unsqueeze(1)
    idx = torch.where(steps < n, n - 1 - steps, steps)
    return x.gather(1, idx.unsqueeze(-1).expand_as(x))


class SequenceRNNForSequenceClassification(PreTrainedModel):
    """A bidirectional GRU; masked mean + max pooling over valid positions; a linear head to two logits.

    Padding invariance (`config.padding_invariant`): a stock bidirectional GRU's reverse direction starts at the
    last *padded* position, so a window's logits change with the length it is padded to, i.e. with whatever else
    shares its batch. Here each layer runs two unidirectional GRUs; the reverse one reads the window reversed within
    its own length (valid steps first, padding after), so no valid output ever depends on a padding step. Both are
    plain ONNX (GatherElements + GRU), unlike pack_padded_sequence, which does not export with dynamic shapes.
    """

    config_class = SequenceRNNConfig
    base_model_prefix = "rnn"
    main_input_name = "input_ids"

    def __init__(self, config: SequenceRNNConfig) -> None:
        super().__init__(config)
        self.embed = nn.Embedding(config.vocab_size, config.embedding_size, padding_idx=config.pad_token_id)
        self.padding_invariant = bool(getattr(config, "padding_invariant", False))
        if self.padding_invariant:
            sizes = [config.embedding_size] + [2 * config.hidden_size] * (config.num_layers - 1)
            self.forward_layers = nn.ModuleList(nn.GRU(n, config.hidden_size, batch_first=True) for n in sizes)
            self.reverse_layers = nn.ModuleList(nn.GRU(n, config.hidden_size, batch_first=True) for n in sizes)
        else:
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
        if self.padding_invariant:
            out = self._bidirectional(x, attention_mask.sum(1))
        else:
            out, _ = self.gru(x)
        m = attention_mask.unsqueeze(-1).to(out.dtype)
        mean = (out * m).sum(1) / m.sum(1).clamp(min=1.0)
        mx = out.masked_fill(m == 0, -1e4).max(1).values
        logits = self.head(self.drop(torch.cat([mean, mx], dim=-1)))
        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(logits, labels)
        return SequenceClassifierOutput(loss=loss, logits=logits)

    def _bidirectional(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        h = x
        for i, (fwd, rev) in enumerate(zip(self.forward_layers, self.reverse_layers, strict=True)):
            if i:
                h = nn.functional.dropout(h, self.config.dropout, self.training)
            f, _ = fwd(h)
            r, _ = rev(reverse_within_length(h, lengths))
            h = torch.cat([f, reverse_within_length(r, lengths)], dim=-1)
        return h


def rnn_config(seq_cfg: SequenceConfig, embedding: int = 64, hidden: int = 128, layers: int = 1) -> SequenceRNNConfig:
    return SequenceRNNConfig(
        vocab_size=TokenSpace.of(seq_cfg).vocab_size, embedding_size=embedding, hidden_size=hidden, num_layers=layers,
        padding_invariant=True,
    )


N_SURPRISE_STATS = 4  # mean NLL, max NLL, share of improbable events, share of repeated transitions


class SequenceSurpriseConfig(BertConfig):
    """A causal BERT's config plus the training-traffic statistics that turn its likelihoods into a score."""

    model_type = "seqguard_surprise"

    def __init__(self, stat_mean: list[float] | None = None, stat_scale: list[float] | None = None,
                 stat_weights: list[float] | None = None, improbable_nll: float = 8.0, **kwargs: object) -> None:
        kwargs["is_decoder"] = True
        super().__init__(**kwargs)
        self.stat_mean = list(stat_mean or [0.0] * N_SURPRISE_STATS)
        self.stat_scale = list(stat_scale or [1.0] * N_SURPRISE_STATS)
        # Two halves of equal weight. Too surprising: the mean NLL (the window's average log-likelihood) leads (on
        # generated traffic it alone ranked attacks best: window ROC-AUC 0.90 vs 0.80 for the max and 0.73 for the
        # improbable share), the other two add the single wild step that a long ordinary window would average away.
        # Too regular: the share of repeated transitions, because a bot repeating one step is *predictable* (low
        # NLL) and the likelihood half alone ranks it as normal. Models saved with the first three statistics only
        # keep scoring with those (forward reads as many statistics as the config holds).
        self.stat_weights = list(stat_weights or [0.4, 0.2, 0.2, 0.4])
        self.improbable_nll = float(improbable_nll)


class SequenceSurpriseModel(BertLMHeadModel):
    """Label-free: how surprising is each event given the ones before it, under a model of normal traffic.

    Windows are [CLS] what_1 ctx_1 what_2 ctx_2 ... [SEP] (seqguard.features): an event's negative log-likelihood is
    that of its what token (kind, price, category) plus its context token (gap, hour, novelty flags), each predicted
    from everything before it. The first event is not scored (nothing before it in the window). Per window:
    mean and max event NLL, the share of improbable events (NLL above the training traffic's 99th percentile) and the
    share of repeated transitions (an event whose (previous event, event) token pair already occurred earlier in the
    window: what a bot repeating one step does), each standardised on training windows; the surprise z is their
    weighted sum (config.stat_weights).

    The output keeps the contract's two-class `logits` [B, 2] so every backend serves it unchanged: it is
    [-p, z - p], where p is the (0-based) index of the most surprising event, so the usual margin
    logits[:, 1] - logits[:, 0] is z and the reason ("unusual step ...") can still name the step.
    """

    config_class = SequenceSurpriseConfig

    def token_nll(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token NLL [B, L] of token t given tokens < t (0 at position 0) and whether it is an event token."""
        out = super().forward(input_ids=input_ids, attention_mask=attention_mask)
        logp = torch.log_softmax(out.logits[:, :-1].float(), dim=-1)
        nll = -torch.gather(logp, 2, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)
        nll = nn.functional.pad(nll, (1, 0))
        valid = (attention_mask > 0) & (input_ids >= len(SPECIAL_TOKENS))
        return nll * valid.to(nll.dtype), valid

    def event_nll(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-event NLL [B, E] (what + context token) and which events are scored (not the first, not padding)."""
        nll, valid = self.token_nll(input_ids, attention_mask)
        body = nll[:, 1:]
        vbody = valid[:, 1:].to(nll.dtype)
        odd = body.shape[1] % 2
        body = nn.functional.pad(body, (0, odd))
        vbody = nn.functional.pad(vbody, (0, odd))
        ev = body.reshape(body.shape[0], -1, 2).sum(-1)
        scored = vbody.reshape(vbody.shape[0], -1, 2)[:, :, 0] > 0  # the what token is a real event
        first = torch.zeros_like(scored)
        first[:, 0] = True
        return ev, scored & ~first

    def window_stats(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, 4] (mean NLL, max NLL, share improbable, share repeated) and the most surprising event's index [B]."""
        ev, scored = self.event_nll(input_ids, attention_mask)
        w = scored.to(ev.dtype)
        n = w.sum(1).clamp(min=1.0)
        mean = (ev * w).sum(1) / n
        mx, pos = (ev * w).max(1)
        share = ((ev > self.config.improbable_nll).to(ev.dtype) * w).sum(1) / n
        repeated = (repeated_transitions(input_ids).to(ev.dtype) * w).sum(1) / n
        return torch.stack([mean, mx, share, repeated], dim=1), pos

    def forward(  # type: ignore[override]
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **_: object,
    ) -> SequenceClassifierOutput:
        if attention_mask is None:
            attention_mask = (input_ids != self.config.pad_token_id).long()
        if token_type_ids is not None:
            input_ids = input_ids + token_type_ids * 0  # keeps the contract's input in the exported graph
        stats, pos = self.window_stats(input_ids, attention_mask)
        stats = stats[:, : len(self.config.stat_mean)]
        mean = torch.tensor(self.config.stat_mean, dtype=stats.dtype, device=stats.device)
        scale = torch.tensor(self.config.stat_scale, dtype=stats.dtype, device=stats.device)
        weights = torch.tensor(self.config.stat_weights, dtype=stats.dtype, device=stats.device)
        z = ((stats - mean) / scale * weights).sum(1)
        p = pos.to(z.dtype)
        return SequenceClassifierOutput(logits=torch.stack([-p, z - p], dim=1))


def repeated_transitions(input_ids: torch.Tensor) -> torch.Tensor:
    """[B, E] per event slot (as event_nll lays them out): its (previous event, event) tokens, what + context of
    both, equal those of an earlier slot. All pairs at once ([B, E, E], E <= 64) with plain tensor ops and no size
    taken from Python, so the exported graph computes it for any batch and length."""
    body = input_ids[:, 1:]
    body = nn.functional.pad(body, (0, body.shape[1] % 2))
    events = body.reshape(body.shape[0], -1, 2)
    key = torch.cat([nn.functional.pad(events, (0, 0, 1, 0))[:, :-1], events], dim=2)  # [B, E, 4]
    same = (key[:, :, None, :] == key[:, None, :, :]).to(torch.float32).sum(-1) > 3.5
    slot = torch.ones_like(events[:, :, 0]).cumsum(1)  # 1..E
    earlier = slot[:, :, None] > slot[:, None, :]
    return (same & earlier).to(torch.float32).amax(-1) > 0


# Registered so `AutoModelForSequenceClassification.from_pretrained` loads a saved RNN / surprise model too.
def _register() -> None:
    from transformers import AutoConfig, AutoModelForSequenceClassification

    AutoConfig.register(SequenceRNNConfig.model_type, SequenceRNNConfig, exist_ok=True)
    AutoModelForSequenceClassification.register(SequenceRNNConfig, SequenceRNNForSequenceClassification, exist_ok=True)
    AutoConfig.register(SequenceSurpriseConfig.model_type, SequenceSurpriseConfig, exist_ok=True)
    AutoModelForSequenceClassification.register(SequenceSurpriseConfig, SequenceSurpriseModel, exist_ok=True)


_register()
