"""The checkpoint folder: what `seqguard train` writes and `export` / `evaluate` / the service read.

    checkpoint.json        version, models [{name, kind, path}], hashes, created, train config, split, sizes
    sequence_config.json   the SequenceConfig every window was built with
    tokenizer/             the behaviour vocabulary (AutoTokenizer)
    behaviour_bert/        BertForSequenceClassification (save_pretrained) + tokenizer + seqguard.json
    sequence_rnn/          SequenceRNNForSequenceClassification (AutoModelForSequenceClassification via
                           seqguard.models) + tokenizer + seqguard.json
    text_minilm/           only with --with-text-model: MiniLM classifier over serialize_text (kind "text": evaluated,
                           not served, not part of the ensemble)
    unsupervised.json      the ECOD detector (seqguard.scoring.detector)
    rules.yaml             the rules the ensemble was fitted with
    ensemble.json          stackers, thresholds and the aggregate-feature trees (seqguard.scoring.ensemble, .tabular)
    metrics.json           validation / test metrics, timings, sizes, studies
    calibration.npz        validation windows for export parity gates and int8 calibration (seqguard.train.calibration)

Without labels, `models` is empty: the checkpoint holds the masked-token-pretrained encoder under
`pretrained_encoder/` (a `BertForMaskedLM`, listed under "pretrained", not under "models": it is not a classifier and
nothing serves it), the detector, the rules and a percentile ensemble; `Scorer` then runs with components=[].
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from seqguard.config import SequenceConfig
from seqguard.contracts import CHECKPOINT_INDEX, SEQUENCE_CONFIG_FILE, TOKENIZER_DIR
from seqguard.features import FEATURE_NAMES

MODEL_META = "seqguard.json"
SERVED_KINDS = ("bert", "rnn", "surprise")


class CheckpointError(ValueError):
    """A checkpoint folder that is missing or incomplete; the message says what is wrong."""


def save_model(model: Any, tokenizer: Any, folder: Path, seq_cfg: SequenceConfig, name: str, kind: str,
               extra: dict[str, Any] | None = None) -> dict[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    meta = {
        "name": name,
        "kind": kind,
        "sequence_config": seq_cfg.model_dump(mode="json"),
        "sequence_config_hash": seq_cfg.config_hash(),
        "feature_names": list(FEATURE_NAMES),
        "inputs": ["input_ids", "attention_mask", "token_type_ids"],
        "output": "logits",
        "labels": {"0": "normal", "1": "anomaly"},
        **(extra or {}),
    }
    (folder / MODEL_META).write_text(json.dumps(meta, indent=2) + "\n")
    return {"name": name, "kind": kind, "path": folder.name}


def read_index(folder: str | Path) -> dict[str, Any]:
    folder = Path(folder)
    path = folder / CHECKPOINT_INDEX
    if not folder.is_dir():
        raise CheckpointError(f"{folder} does not exist or is not a folder")
    if not path.is_file():
        raise CheckpointError(f"{folder} has no {CHECKPOINT_INDEX} (not a seqguard checkpoint, or training did not "
                              "finish)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path} is not valid JSON: {e}") from None


def load_sequence_config(folder: str | Path) -> SequenceConfig:
    path = Path(folder) / SEQUENCE_CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"{folder} has no {SEQUENCE_CONFIG_FILE}")
    return SequenceConfig.load(path)


def load_models(folder: str | Path, kinds: tuple[str, ...] = SERVED_KINDS) -> dict[str, Any]:
    """The checkpoint's sequence classifiers (eval mode) by name, loaded the way any HF user would."""
    from transformers import AutoModelForSequenceClassification

    import seqguard.models  # noqa: F401  (registers the RNN with the Auto classes)

    folder = Path(folder)
    out = {}
    for m in read_index(folder)["models"]:
        if m["kind"] in kinds:
            model = AutoModelForSequenceClassification.from_pretrained(folder / m["path"])
            model.eval()
            out[m["name"]] = model
    return out


def weights_hash(folder: Path, files: list[str]) -> str:
    """sha256 over the named files' contents (sorted): same training, same hash."""
    h = hashlib.sha256()
    for rel in sorted(files):
        h.update(rel.encode())
        h.update(hashlib.sha256((folder / rel).read_bytes()).digest())
    return h.hexdigest()


def tokenizer_dir(folder: Path) -> Path:
    return folder / TOKENIZER_DIR
