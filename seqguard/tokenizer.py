"""The behaviour vocabulary as a Hugging Face tokenizer, so it loads with `AutoTokenizer` and travels with a model.

Ids are assigned by `TokenSpace.vocabulary()` order, the same arithmetic `features.event_token_ids` uses, so
tokenizing a window's token text gives exactly the ids `encode_window` computes (a test holds them together).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from seqguard.config import SequenceConfig
from seqguard.features import SPECIAL_TOKENS, TokenSpace


def build_tokenizer(cfg: SequenceConfig) -> PreTrainedTokenizerFast:
    vocab = {w: i for i, w in enumerate(TokenSpace.of(cfg).vocabulary())}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=cfg.max_len,
        model_input_names=["input_ids", "attention_mask", "token_type_ids"],
    )


def ids_to_text(input_ids: np.ndarray, cfg: SequenceConfig) -> str:
    """The whitespace-separated token text of a window's ids, without [CLS]/[SEP] (the tokenizer adds them)."""
    words = TokenSpace.of(cfg).vocabulary()
    return " ".join(words[int(i)] for i in input_ids if words[int(i)] not in SPECIAL_TOKENS)


def tokenizer_hash(path: str | Path) -> str:
    """sha256 of the saved tokenizer.json: what the manifest pins."""
    return hashlib.sha256((Path(path) / "tokenizer.json").read_bytes()).hexdigest()
