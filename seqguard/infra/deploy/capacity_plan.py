"""The capacity plan: a JSON file that a load test writes and `seqguard deploy --capacity FILE` reads.

It carries the three autoscaling knobs (target invocations per instance per minute, min and max capacity) plus
the measurements they were derived from, which are informational. `from_measurement` is the one formula that
turns a measured per-instance maximum into those knobs, so the writer and the reader cannot drift apart.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from seqguard.configfile import validate
from seqguard.infra.deploy.config import (
    AutoscalingConfig,
    DeployConfig,
    RealtimeVariant,
    max_not_below_min,
    validate_config,
)
from seqguard.infra.deploy.errors import ConfigError


class CapacityPlan(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = 1
    target_invocations_per_instance_per_minute: float = Field(gt=0)
    min_capacity: int = Field(ge=1)
    max_capacity: int = Field(ge=1)
    # Informational: what the knobs were derived from.
    measured_max_rps_per_instance: float | None = Field(None, gt=0)
    target_rps: float | None = Field(None, ge=0)
    headroom: float | None = Field(None, gt=0, le=1, description="share of the measured maximum used as target")
    instance_type: str | None = Field(None, description="instance type the measurement ran on")
    p99_latency_ms: float | None = Field(None, gt=0, description="p99 latency at the target load")
    generated_at: datetime | None = None
    source: str | None = Field(None, description="what produced the plan, e.g. a load-test report path")

    _max_ge_min = field_validator("max_capacity")(max_not_below_min)

    @classmethod
    def from_measurement(
        cls,
        measured_max_rps_per_instance: float,
        target_rps: float,
        headroom: float = 0.7,
        burst_factor: float = 2.0,
        min_floor: int = 1,
        **info: object,
    ) -> CapacityPlan:
        """Knobs from a load test: track `headroom` × the measured maximum; size min for `target_rps`, max for bursts.

        Target tracking keeps each instance near the target value, so the target must sit below the saturation
        point by enough to absorb the minutes a scale-out takes.
        """
        per_instance_rps = measured_max_rps_per_instance * headroom
        min_capacity = max(min_floor, math.ceil(target_rps / per_instance_rps))
        return cls.model_validate(
            {
                "target_invocations_per_instance_per_minute": math.floor(per_instance_rps * 60),
                "min_capacity": min_capacity,
                "max_capacity": max(min_capacity, math.ceil(min_capacity * burst_factor)),
                "measured_max_rps_per_instance": measured_max_rps_per_instance,
                "target_rps": target_rps,
                "headroom": headroom,
                **info,
            }
        )

    def write(self, path: str | Path) -> None:
        Path(path).write_text(self.model_dump_json(indent=2, exclude_none=True) + "\n", encoding="utf-8")


def load_capacity_plan(path: str | Path) -> CapacityPlan:
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"cannot read capacity plan {p}: {e.strerror or e}") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"{p} is not valid JSON (line {e.lineno}, column {e.colno}): {e.msg}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: a capacity plan is a JSON object (got {type(data).__name__})")
    return validate(data, CapacityPlan, f"capacity plan {p}", ConfigError)


def apply_capacity_plan(config: DeployConfig, plan: CapacityPlan, source: str = "capacity plan") -> DeployConfig:
    """The config with its autoscaling knobs replaced by the plan's; cooldowns stay as configured."""
    if not isinstance(config.variant, RealtimeVariant):
        raise ConfigError(
            f"{source}: autoscaling applies to real-time variants only; this config deploys a serverless endpoint"
        )
    if plan.instance_type and plan.instance_type != config.variant.instance_type:
        raise ConfigError(
            f"{source}: instance_type {plan.instance_type} was measured, but variant.instance_type is "
            f"{config.variant.instance_type}; per-instance throughput does not carry over — re-measure"
        )
    base = config.autoscaling.model_dump() if config.autoscaling else {}
    knobs = {
        **base,
        "target_invocations_per_instance_per_minute": plan.target_invocations_per_instance_per_minute,
        "min_capacity": plan.min_capacity,
        "max_capacity": plan.max_capacity,
    }
    data = config.model_dump(mode="python")
    data["autoscaling"] = AutoscalingConfig.model_validate(knobs).model_dump()
    return validate_config(data, source=f"config with {source}")
