"""The few contracts between stages, declared once: tensor names and shapes, checkpoint and repository layout.

Export writes config.pbtxt from these specs and every backend feeds / reads tensors by these names, so a rename
here is the only rename there is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np


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


def infer_inputs(batch: Mapping[str, np.ndarray], client: Any, **set_data: Any) -> list[Any]:
    """Triton request inputs for MODEL_INPUTS from `batch`, in the declared dtypes.

    `client` is the tritonclient module the caller talks through (`tritonclient.grpc`, `.grpc.aio` or `.http`):
    they share the InferInput API, and the core does not import tritonclient. `set_data` goes to
    `set_data_from_numpy` (e.g. binary_data=True for HTTP)."""
    inputs = []
    for spec in MODEL_INPUTS:
        arr = np.ascontiguousarray(batch[spec.name], dtype=spec.numpy_dtype)
        t = client.InferInput(spec.name, list(arr.shape), spec.triton_dtype)
        t.set_data_from_numpy(arr, **set_data)
        inputs.append(t)
    return inputs


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
