"""The deploy config: YAML → pydantic models, validated in full before any AWS call.

Every limit that AWS would only report after resources were half-created (serverless memory steps, canary size,
name lengths, ARN shapes) is checked here, so a bad file fails in milliseconds with the field path named.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from seqguard.configfile import read_mapping, validate
from seqguard.infra.deploy.errors import ConfigError

# Derived names append "-<version>-<8 hex>" to `name`; SageMaker caps names at 63 characters.
NAME_MAX = 32
VERSION_MAX = 20

_NAME_RE = re.compile(rf"^[a-z0-9](?:[a-z0-9-]{{0,{NAME_MAX - 2}}}[a-z0-9])?$")
_VERSION_RE = re.compile(rf"^[A-Za-z0-9](?:[A-Za-z0-9-]{{0,{VERSION_MAX - 2}}}[A-Za-z0-9])?$")
_REGION_RE = re.compile(r"^(?:us|eu|ap|sa|ca|me|af|il|mx|cn|us-gov)-[a-z]+-\d$")
_ROLE_ARN_RE = re.compile(r"^arn:(aws|aws-cn|aws-us-gov):iam::(\d{12}):role/(?:[\w+=,.@-]+/)*([\w+=,.@-]{1,64})$")
_ECR_REPO_RE = re.compile(r"^(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*$")
_IMAGE_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_INSTANCE_TYPE_RE = re.compile(r"^ml\.[a-z0-9]+\.[a-z0-9]+$")
_S3_URI_RE = re.compile(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/\S+$")
_ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,1023}$")
_SNS_ARN_RE = re.compile(r"^arn:aws(?:-cn|-us-gov)?:sns:[a-z0-9-]+:\d{12}:[\w-]{1,256}$")

SERVERLESS_MEMORY_MB = (1024, 2048, 3072, 4096, 5120, 6144)
# SageMaker GPU instance families start with g (g4dn, g5, g6, ...) or p (p3, p4d, p5, ...).
_GPU_FAMILY_PREFIXES = ("g", "p")


def _must_match(pattern: re.Pattern[str], value: str, shape: str) -> str:
    if not pattern.match(value):
        raise ValueError(f"must be {shape} (got {value!r})")
    return value


def max_not_below_min(v: int, info: ValidationInfo) -> int:
    """The `max_capacity` field validator of every model that also has `min_capacity` (the autoscaling config and the
    capacity plan): one rule, one message."""
    low = info.data.get("min_capacity")
    if low is not None and v < low:
        raise ValueError(f"must be ≥ min_capacity ({low}) (got {v})")
    return v


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ImageConfig(_Strict):
    repository: str = Field(description="ECR repository name, e.g. seqguard/anomaly-service")
    tag: str = Field(description="image tag deployed by this config")
    keep_last_images: int = Field(20, ge=1, le=1000, description="ECR lifecycle policy: keep the newest N images")
    immutable_tags: bool = True
    scan_on_push: bool = True
    dockerfile: str = "Dockerfile"
    build_context: str = "."
    platform: str = Field("linux/amd64", description="SageMaker hosts run linux/amd64 unless the instance is Graviton")

    @field_validator("repository")
    @classmethod
    def _repo(cls, v: str) -> str:
        if not 2 <= len(v) <= 256:
            raise ValueError(f"must be 2-256 characters (got {len(v)})")
        return _must_match(_ECR_REPO_RE, v, "an ECR repository name: lowercase, digits, '.', '_', '-', '/'")

    @field_validator("tag")
    @classmethod
    def _tag(cls, v: str) -> str:
        return _must_match(_IMAGE_TAG_RE, v, "a docker tag: letters, digits, '_', '.', '-', at most 128")


class ModelConfig(_Strict):
    version: str = Field(description="label of the model version; part of the Model and EndpointConfig names")
    data_url: str | None = Field(None, description="s3:// URI of model.tar.gz; omit when the image carries the model")

    @field_validator("version")
    @classmethod
    def _version(cls, v: str) -> str:
        return _must_match(
            _VERSION_RE, v, f"letters, digits and '-' only, at most {VERSION_MAX} (SageMaker names allow no dots)"
        )

    @field_validator("data_url")
    @classmethod
    def _data_url(cls, v: str | None) -> str | None:
        return None if v is None else _must_match(_S3_URI_RE, v, "an s3://bucket/key URI")


class RealtimeVariant(_Strict):
    kind: Literal["realtime"]
    instance_type: str
    initial_instance_count: int = Field(1, ge=1)

    @field_validator("instance_type")
    @classmethod
    def _instance_type(cls, v: str) -> str:
        return _must_match(_INSTANCE_TYPE_RE, v, "a SageMaker instance type like ml.c5.xlarge or ml.g5.xlarge")

    @property
    def is_gpu(self) -> bool:
        return self.instance_type.split(".")[1].startswith(_GPU_FAMILY_PREFIXES)


class ServerlessVariant(_Strict):
    kind: Literal["serverless"]
    memory_size_in_mb: int
    max_concurrency: int = Field(ge=1, le=200)
    provisioned_concurrency: int | None = Field(None, ge=1)

    @field_validator("memory_size_in_mb")
    @classmethod
    def _memory(cls, v: int) -> int:
        if v not in SERVERLESS_MEMORY_MB:
            raise ValueError(f"must be 1024..6144 in steps of 1024, i.e. one of {list(SERVERLESS_MEMORY_MB)} (got {v})")
        return v

    @field_validator("provisioned_concurrency")
    @classmethod
    def _provisioned(cls, v: int | None, info: ValidationInfo) -> int | None:
        top = info.data.get("max_concurrency")
        if v is not None and top is not None and v > top:
            raise ValueError(f"must not exceed max_concurrency ({top}) (got {v})")
        return v


Variant = Annotated[RealtimeVariant | ServerlessVariant, Field(discriminator="kind")]
_VARIANT_TAGS = ("realtime", "serverless")


class RolloutConfig(_Strict):
    """Blue/green update of an existing endpoint, with automatic rollback when an alarm fires during baking."""

    strategy: Literal["canary", "all_at_once"] = "canary"
    canary_percent: int = Field(10, ge=1, le=50, description="share of capacity that takes traffic first (AWS: ≤ 50)")
    wait_interval_seconds: int = Field(600, ge=0, le=3600, description="bake time between canary and full shift")
    termination_wait_seconds: int = Field(300, ge=0, le=3600, description="keep the old fleet this long after shift")
    max_execution_timeout_seconds: int | None = Field(None, ge=600, le=28800)
    auto_rollback_alarms: list[str] | None = Field(
        None, description="alarm names that roll the update back; default: this deployment's latency and 5XX alarms"
    )

    @model_validator(mode="after")
    def _timeout_covers_waits(self) -> RolloutConfig:
        waits = self.wait_interval_seconds + self.termination_wait_seconds
        if self.max_execution_timeout_seconds is not None and self.max_execution_timeout_seconds <= waits:
            raise ValueError(
                f"max_execution_timeout_seconds ({self.max_execution_timeout_seconds}) must exceed "
                f"wait_interval_seconds + termination_wait_seconds ({waits})"
            )
        return self


class AutoscalingConfig(_Strict):
    min_capacity: int = Field(1, ge=1)
    max_capacity: int = Field(ge=1)
    target_invocations_per_instance_per_minute: float = Field(gt=0)
    scale_in_cooldown_seconds: int = Field(300, ge=0, le=86400)
    scale_out_cooldown_seconds: int = Field(60, ge=0, le=86400)
    disable_scale_in: bool = False

    _max_ge_min = field_validator("max_capacity")(max_not_below_min)


class AlarmsConfig(_Strict):
    latency_p99_ms: float = Field(500, gt=0, description="p99 ModelLatency threshold in milliseconds")
    error_5xx_rate_percent: float = Field(1.0, gt=0, le=100, description="Invocation5XXErrors / Invocations, in %")
    # CloudWatch reports these as the sum over cores/GPUs: 4 vCPUs → 0..400.
    cpu_utilization_percent: float | None = Field(None, gt=0)
    gpu_utilization_percent: float | None = Field(None, gt=0)
    period_seconds: int = 60
    evaluation_periods: int = Field(3, ge=1)
    datapoints_to_alarm: int | None = Field(None, ge=1)
    actions: list[str] = Field(default_factory=list, description="SNS topic ARNs notified on ALARM")
    drift_psi: float | None = Field(None, gt=0, description="alarm when the published max feature PSI or score PSI "
                                                            "exceeds this (0.25: a shift worth acting on); none = off")
    drift_period_seconds: int = Field(3600, ge=60, le=86400, description="period of the drift alarms (the drift "
                                                                          "job's cadence)")

    @field_validator("period_seconds")
    @classmethod
    def _period(cls, v: int) -> int:
        if v not in (10, 30) and (v < 60 or v % 60):
            raise ValueError(f"must be 10, 30 or a multiple of 60 (got {v})")
        return v

    @field_validator("evaluation_periods")
    @classmethod
    def _window(cls, v: int, info: ValidationInfo) -> int:
        period = info.data.get("period_seconds")
        if period is not None and v * period > 86400:
            raise ValueError(f"evaluation_periods × period_seconds must be ≤ 86400 s, CloudWatch's limit (got {v})")
        return v

    @field_validator("datapoints_to_alarm")
    @classmethod
    def _datapoints(cls, v: int | None, info: ValidationInfo) -> int | None:
        periods = info.data.get("evaluation_periods")
        if v is not None and periods is not None and v > periods:
            raise ValueError(f"must be ≤ evaluation_periods ({periods}) (got {v})")
        return v

    @field_validator("actions")
    @classmethod
    def _actions(cls, v: list[str]) -> list[str]:
        for arn in v:
            _must_match(_SNS_ARN_RE, arn, "an SNS topic ARN")
        return v


class DeployConfig(_Strict):
    name: str = Field(description="endpoint name and prefix of every resource this deployment owns")
    region: str
    execution_role_arn: str
    image: ImageConfig
    model: ModelConfig
    variant: Variant
    environment: dict[str, str] = Field(default_factory=dict, description="container environment")
    rollout: RolloutConfig = Field(default_factory=RolloutConfig)
    autoscaling: AutoscalingConfig | None = None
    alarms: AlarmsConfig = Field(default_factory=AlarmsConfig)
    tags: dict[str, str] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _must_match(_NAME_RE, v, f"lowercase letters, digits and '-', at most {NAME_MAX} characters")

    @field_validator("region")
    @classmethod
    def _region(cls, v: str) -> str:
        return _must_match(_REGION_RE, v, "an AWS region like us-east-1")

    @field_validator("execution_role_arn")
    @classmethod
    def _role(cls, v: str, info: ValidationInfo) -> str:
        m = _must_match(_ROLE_ARN_RE, v, "an IAM role ARN like arn:aws:iam::123456789012:role/SageMakerExecution")
        region = info.data.get("region", "")
        partition = _ROLE_ARN_RE.match(m).group(1)  # type: ignore[union-attr]
        wanted = "aws-cn" if region.startswith("cn-") else "aws-us-gov" if region.startswith("us-gov-") else "aws"
        if region and partition != wanted:
            raise ValueError(f"is in partition {partition!r} but region {region!r} needs {wanted!r}")
        return v

    @field_validator("environment")
    @classmethod
    def _environment(cls, v: dict[str, str]) -> dict[str, str]:
        if len(v) > 100:
            raise ValueError(f"SageMaker allows at most 100 variables (got {len(v)})")
        for key, value in v.items():
            _must_match(_ENV_KEY_RE, key, "a variable name ([A-Za-z_][A-Za-z0-9_]*)")
            if len(value) > 1024:
                raise ValueError(f"value of {key} is longer than SageMaker's 1024 characters")
        return v

    @field_validator("autoscaling")
    @classmethod
    def _autoscaling_realtime_only(cls, v: AutoscalingConfig | None, info: ValidationInfo) -> AutoscalingConfig | None:
        if v is not None and isinstance(info.data.get("variant"), ServerlessVariant):
            raise ValueError(
                "applies to real-time variants only; a serverless endpoint scales itself up to "
                "variant.max_concurrency — remove this section or use variant.kind: realtime"
            )
        return v

    @property
    def role_account(self) -> str:
        return _ROLE_ARN_RE.match(self.execution_role_arn).group(2)  # type: ignore[union-attr]

    @property
    def role_name(self) -> str:
        return _ROLE_ARN_RE.match(self.execution_role_arn).group(3)  # type: ignore[union-attr]


def load_config(path: str | Path) -> DeployConfig:
    """Read and validate a deploy YAML file; every problem is reported at once, each with its field path."""
    return validate_config(read_mapping(path, "deploy config", ConfigError), source=str(path))


def validate_config(data: dict[str, Any], source: str = "config") -> DeployConfig:
    # pydantic puts the variant's `kind` tag into error locations; users wrote `variant.x`.
    return validate(data, DeployConfig, source, ConfigError, tags=_VARIANT_TAGS)
