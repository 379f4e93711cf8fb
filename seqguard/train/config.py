"""TrainConfig: everything `seqguard train` does, typed and validated once (YAML in, clear errors out).

Defaults live in seqguard/data/train_default.yaml (what `make model` trains) and train_tiny.yaml (seconds, for tests).
A user's file is merged onto the shipped default (a file that sets one key changes that key only), and unknown keys
are errors, so a misspelt setting can never silently fall back to a default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from seqguard.config import SequenceConfig

DATA_DIR = Path(__file__).resolve().parents[1] / "data"
DEFAULT_CONFIG = DATA_DIR / "train_default.yaml"
TINY_CONFIG = DATA_DIR / "train_tiny.yaml"


class ConfigError(ValueError):
    """A training config that cannot be used; the message names the file and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


SplitMode = Literal["time", "entity", "auto"]


class SplitConfig(_Strict):
    """time: train on the earliest days, validate on the next, test on the last ones. entity: a hashed,
    label-stratified split of entities (any capture length). auto: time when the days allow it and both
    validation and test hold enough of each class, else entity (the log says which and why)."""

    mode: SplitMode = "auto"
    val_days: int = Field(2, ge=1)
    test_days: int = Field(3, ge=1)
    unseen_entity_share: float = Field(0.1, ge=0.0, lt=1.0,
                                       description="time split: share of entities kept out of train and validation")
    val_share: float = Field(0.2, gt=0.0, lt=1.0, description="entity split: share of entities for validation")
    test_share: float = Field(0.3, gt=0.0, lt=1.0, description="entity split: share of entities for test")
    min_positives: int = Field(5, ge=1, description="auto: the time split is used only when validation and test "
                               "each hold at least this many anomalous windows")

    @field_validator("test_share")
    @classmethod
    def _shares(cls, v: float, info: Any) -> float:
        val = info.data.get("val_share")
        if val is not None and val + v >= 0.9:
            raise ValueError(f"val_share + test_share must leave at least 10 % to train on (got {val + v:g})")
        return v


class LoopConfig(_Strict):
    epochs: int = Field(3, ge=1)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(5e-4, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    patience: int = Field(1, ge=0, description="epochs without a better validation PR-AUC before stopping")
    min_steps: int = Field(0, ge=0, description="at least this many optimiser steps (small label fractions)")
    max_train_windows: int | None = Field(None, ge=1, description="subsample training windows (None: all)")


class BertTrainConfig(LoopConfig):
    hidden: int = Field(128, ge=8)
    layers: int = Field(2, ge=1)
    heads: int = Field(4, ge=1)
    intermediate: int = Field(256, ge=8)
    dropout: float = Field(0.1, ge=0, lt=1)
    pretrain_epochs: int = Field(2, ge=0, description="masked-token pretraining epochs; 0 skips the stage")
    pretrain_lr: float = Field(1e-3, gt=0)
    pretrain_max_windows: int | None = Field(None, ge=1)
    mask_prob: float = Field(0.15, gt=0, lt=1)

    @field_validator("heads")
    @classmethod
    def _divides(cls, v: int, info: Any) -> int:
        hidden = info.data.get("hidden")
        if hidden and hidden % v:
            raise ValueError(f"must divide hidden ({hidden})")
        return v


class RnnTrainConfig(LoopConfig):
    enabled: bool = True
    embedding: int = Field(64, ge=4)
    hidden: int = Field(64, ge=4)
    layers: int = Field(1, ge=1)
    lr: float = Field(2e-3, gt=0)


class TextTrainConfig(_Strict):
    """The MiniLM text path: only with --with-text-model; subsampled to keep CPU time bounded."""

    max_train_windows: int = Field(2000, ge=10)
    max_eval_windows: int | None = Field(None, ge=10, description="subsample validation/test windows (None: all)")
    max_events: int = Field(32, ge=1, description="last-N events serialised per window")
    max_length: int = Field(256, ge=16, le=512)
    epochs: int = Field(1, ge=1)
    batch_size: int = Field(16, ge=1)
    lr: float = Field(5e-5, gt=0)
    time_budget_s: float = Field(540.0, gt=0, description="stop fine-tuning after this long")


class TabularConfig(_Strict):
    """Boosted trees on the aggregate features, inside the ensemble (seqguard.scoring.tabular)."""

    enabled: bool = True
    max_iter: int = Field(300, ge=1, le=5000, description="boosting iterations (early stopping may use fewer)")
    max_leaf_nodes: int = Field(31, ge=2, le=1024)
    learning_rate: float = Field(0.1, gt=0, le=1)
    negative_share: float = Field(1.0, gt=0, le=1, description="share of normal training windows the trees see")


class DetectorConfig(_Strict):
    contamination: float = Field(0.01, gt=0, lt=0.5)
    tail_floor: float = Field(0.05, gt=0, le=1, description="per-feature tails count beyond this probability only "
                              "(1 = plain ECOD)")


class EnsembleConfig(_Strict):
    review_fpr: float = Field(0.01, gt=0, lt=1)
    block_fpr: float = Field(0.001, gt=0, lt=1)
    c: float = Field(1.0, gt=0, description="inverse L2 strength of the logistic stacker")
    min_positives: int = Field(10, ge=1, description="a component judged on fewer anomalous validation windows is "
                               "reported as degenerate")
    oof_below_entities: int = Field(500, ge=0, description="with fewer labelled train+validation entities, the "
                                    "stacker and thresholds are fitted on out-of-fold scores (k-fold by entity)")
    oof_folds: int = Field(5, ge=2, le=20)
    select_best: bool = Field(True, description="serve the single best input instead of the stack when it has the "
                              "higher cross-validated PR-AUC")
    entity_aggregation: Literal["auto", "max", "mean", "median"] = Field(
        "auto", description="window scores -> entity score; auto chooses on validation (entity PR-AUC)")


class StudiesConfig(_Strict):
    """Extra training runs for the report (seqguard train --studies turns both on)."""

    label_efficiency: bool = False
    label_fractions: list[float] = Field(default_factory=lambda: [0.01, 0.1, 1.0], min_length=1)
    held_out: bool = False
    held_out_scenarios: list[str] = Field(default_factory=lambda: ["account_takeover", "review_spam"], min_length=1)

    @field_validator("label_fractions")
    @classmethod
    def _fractions(cls, v: list[float]) -> list[float]:
        if not all(0 < f <= 1 for f in v):
            raise ValueError("fractions must lie in (0, 1]")
        return sorted(set(v))


class TrainConfig(_Strict):
    name: str = "default"
    seed: int = Field(0, ge=0)
    threads: int = Field(2, ge=1, le=256, description="torch intra-op threads (fixed, for determinism)")
    sequence: SequenceConfig = Field(default_factory=SequenceConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    positive_weight: float | Literal["sqrt", "balanced"] = Field(
        "sqrt", description="class weight of anomalies in the loss: a number, or sqrt / balanced of neg:pos"
    )
    bert: BertTrainConfig = Field(default_factory=BertTrainConfig)
    rnn: RnnTrainConfig = Field(default_factory=RnnTrainConfig)
    text: TextTrainConfig = Field(default_factory=TextTrainConfig)
    tabular: TabularConfig = Field(default_factory=TabularConfig)
    detector: DetectorConfig = Field(default_factory=DetectorConfig)
    ensemble: EnsembleConfig = Field(default_factory=EnsembleConfig)
    studies: StudiesConfig = Field(default_factory=StudiesConfig)
    rules: Path | None = Field(None, description="rules YAML (default: seqguard/data/rules.yaml)")
    calibration_windows: int = Field(256, ge=1, description="validation windows saved for export calibration")

    @field_validator("positive_weight")
    @classmethod
    def _weight(cls, v: Any) -> Any:
        if isinstance(v, float) and v <= 0:
            raise ValueError("must be positive")
        return v


def _format(err: ValidationError) -> str:
    parts = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown setting"
        parts.append(f"{loc}: {msg}")
    return "; ".join(parts)


def merge_settings(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`override` onto `base`, section by section (lists and values replace, mappings merge)."""
    out = dict(base)
    for k, v in override.items():
        out[k] = merge_settings(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _default_settings() -> dict[str, Any]:
    return yaml.safe_load(DEFAULT_CONFIG.read_text()) or {}


def parse_train_config(raw: Any, source: str = "<config>", base: Path | None = None,
                       merge: bool = True) -> TrainConfig:
    """Validate `raw` merged onto the shipped default (merge=False: onto the code defaults only)."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level")
    try:
        cfg = TrainConfig.model_validate(merge_settings(_default_settings(), raw) if merge else raw)
    except ValidationError as e:
        raise ConfigError(f"{source}: {_format(e)}") from None
    if cfg.rules is not None and not cfg.rules.is_absolute() and base is not None:
        # A rules path is relative to the config file, as a reader of the YAML would expect.
        cfg = cfg.model_copy(update={"rules": (base / cfg.rules)})
    return cfg


def read_settings(path: str | Path | None = None) -> dict[str, Any]:
    """The user's file as a dict (what it sets, before merging); {} for the default."""
    if path is None:
        return {}
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise ConfigError(f"config file {p} does not exist") from None
    except OSError as e:
        raise ConfigError(f"config file {p} cannot be read: {e}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {p} is not valid YAML: {e}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {p}: expected a mapping at the top level")
    return raw


def load_train_config(path: str | Path | None = None) -> TrainConfig:
    """The shipped default with the settings of `path` (if any) merged on top."""
    p = Path(path) if path is not None else DEFAULT_CONFIG
    return parse_train_config(read_settings(path), str(p), p.parent)


def resolve_time_zone(cfg: TrainConfig, settings: dict[str, Any], mapping_offset: float | None,
                      mapping_name: str | None) -> tuple[TrainConfig, str]:
    """The UTC offset for hour-of-day features and a line saying where it came from.

    Precedence: the user's config file, then the data's mapping (`utc_offset_hours:` stated per dataset), then,
    for data read through a mapping that states none, UTC (the shipped +8 is the demo shop's, not the user's);
    seqguard's own files without a mapping keep the shipped default."""
    explicit = "utc_offset_hours" in (settings.get("sequence") or {})
    if explicit:
        return cfg, f"hour of day: UTC{cfg.sequence.utc_offset_hours:+g} (from the config file)"
    if mapping_offset is not None:
        offset, why = float(mapping_offset), f"from mapping '{mapping_name}'"
    elif mapping_name is not None:
        offset, why = 0.0, (f"mapping '{mapping_name}' states no utc_offset_hours, so UTC; set it in the mapping "
                            "for local hours")
    else:
        return cfg, (f"hour of day: UTC{cfg.sequence.utc_offset_hours:+g} (the shipped default, the demo shop's "
                     "local time; set sequence.utc_offset_hours or a mapping's utc_offset_hours for your data)")
    seq = cfg.sequence.model_copy(update={"utc_offset_hours": offset})
    return cfg.model_copy(update={"sequence": seq}), f"hour of day: UTC{offset:+g} ({why})"
