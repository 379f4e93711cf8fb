"""Analytic FLOP count of a BERT-family encoder classifier, per sequence of L tokens.

One multiply-accumulate = 2 FLOPs. Per layer (hidden h, intermediate i):
    Q, K, V and output projections   4 · L · h² · 2
    attention scores QKᵀ and A·V     2 · L² · h · 2      (over all heads together: heads · d_head = h)
    feed-forward up and down         2 · L · h · i · 2
plus the pooler (h² · 2, on [CLS] only) and the classifier (h · labels · 2). Embedding look-ups, layer norms,
softmax, GELU and residual adds are O(L · h) element-wise work without multiply-accumulates: they are left out
(under 1 % of the total at these shapes), so achieved FLOP/s is the GEMM work the model really needs.
"""

from __future__ import annotations

from typing import Any


def bert_flops(config: Any, seq_len: int) -> dict[str, float]:
    """FLOPs per sequence for a transformers BertConfig-like object, split by where they go."""
    h = int(config.hidden_size)
    i = int(config.intermediate_size)
    layers = int(config.num_hidden_layers)
    labels = int(getattr(config, "num_labels", 2) or 2)
    L = int(seq_len)
    projections = 4 * L * h * h * 2
    attention = 2 * L * L * h * 2
    ffn = 2 * L * h * i * 2
    per_layer = projections + attention + ffn
    head = h * h * 2 + h * labels * 2
    return {
        "seq_len": L,
        "per_layer": float(per_layer),
        "projections": float(layers * projections),
        "attention": float(layers * attention),
        "ffn": float(layers * ffn),
        "head": float(head),
        "total": float(layers * per_layer + head),
    }


def describe(config: Any, n_params: int | None = None) -> dict[str, Any]:
    """The shape-defining fields of a BERT config (and the model's parameter count, when given)."""
    out: dict[str, Any] = {
        "hidden": int(config.hidden_size),
        "layers": int(config.num_hidden_layers),
        "heads": int(config.num_attention_heads),
        "intermediate": int(config.intermediate_size),
        "vocab_size": int(config.vocab_size),
        "max_position_embeddings": int(config.max_position_embeddings),
    }
    if n_params is not None:
        out["params_millions"] = round(n_params / 1e6, 2)
    return out
