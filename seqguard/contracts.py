"""The few contracts between stages, declared once: tensor names and shapes, checkpoint and repository layout.

Export writes config.pbtxt from these specs and every backend feeds / reads tensors by these names, so a rename
here is the only rename there is.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TensorSpec:
    name: str
    triton_dtype: str  # Triton's spelling: INT64, FP32, FP16
    numpy_dtype: str
    dims: tuple[int, ...]  # without the batch dimension; -1 = dynamic


# Every sequence model takes the same three tensors [batch, seq] and returns two-class logits [batch, 2].
MODEL_INPUTS: tuple[TensorSpec, ...] = (
    TensorSpec("input_ids", "INT64", "int64", (-1,)),
    TensorSpec("attention_mask", "INT64", "int64", (-1,)),
    TensorSpec("token_type_ids", "INT64", "int64", (-1,)),
)
MODEL_OUTPUT = TensorSpec("logits", "FP32", "float32", (2,))
ENSEMBLE_MODEL = "seqguard_ensemble"


def ensemble_output(model_name: str) -> str:
    """The ensemble's output tensor carrying one component's logits."""
    return f"{model_name}__logits"


# Checkpoint folder (what `seqguard train` writes; `export` and `evaluate` read only this).
CHECKPOINT_INDEX = "checkpoint.json"  # version, models [{name, kind, path}], hashes, created
SEQUENCE_CONFIG_FILE = "sequence_config.json"
TOKENIZER_DIR = "tokenizer"
ENSEMBLE_FILE = "ensemble.json"
RULES_FILE = "rules.yaml"
DETECTOR_FILE = "unsupervised.json"
METRICS_FILE = "metrics.json"

# Triton repository (what `seqguard export` writes; the service loads only this).
MANIFEST_FILE = "manifest.json"
