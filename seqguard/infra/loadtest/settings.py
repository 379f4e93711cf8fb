"""Every knob of a load run, as one typed model that travels to the locust subprocess in SEQGUARD_LT_* variables.

Locust runs the locustfile in a child process, so the runner cannot hand it Python objects; environment variables
also let someone run `locust -f seqguard/infra/loadtest/locustfile.py` by hand with the same settings.
"""

from __future__ import annotations

import json
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from seqguard.contracts import ENSEMBLE_MODEL
from seqguard.envsettings import EnvSettings

ENV_PREFIX = "SEQGUARD_LT_"
Mode = Literal["service", "triton", "replay"]
# The locust request name of a raw-Triton call (HTTP users' names are their paths).
TRITON_REQUEST_NAME = f"triton:{ENSEMBLE_MODEL}"


class LoadSettingsError(ValueError):
    pass


class LoadSettings(EnvSettings):
    """Read from SEQGUARD_LT_<FIELD> by pydantic-settings; `steps` is JSON (`[2, 4, 8]`), as `to_env` writes it."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX)
    error = LoadSettingsError
    what = "load-test settings"

    mode: Mode = Field("service", description="service: ShopperUser + BatchScorer; triton: TritonUser; replay")
    seed: int = Field(0, ge=0)
    pool_users: int = Field(2000, ge=50, le=200_000, description="generator accounts that traffic is drawn from")
    attack_share: float = Field(0.05, ge=0.0, le=1.0, description="share of streamed accounts that are attackers")
    pace: float = Field(30.0, gt=0, description="think times are the generator's recorded gaps divided by this")
    max_think_s: float = Field(5.0, ge=0, description="cap on one think time (gaps between sessions are hours)")
    max_events_per_account: int = Field(120, ge=1, le=5000, description="stream at most the last N events")
    batch_entities: int = Field(8, ge=1, le=1000, description="entities per /score request or Triton infer")
    batch_events: int = Field(32, ge=1, le=5000, description="BatchScorer: recent events sent per entity")
    batch_interval_s: float = Field(1.0, ge=0, description="BatchScorer: one request per interval per user")
    shopper_weight: int = Field(4, ge=0)
    batch_weight: int = Field(1, ge=0)
    repo: str | None = Field(None, description="Triton repository (TritonUser reads its sequence config)")
    api_key: str | None = None
    run_tag: str = Field("lt", min_length=1, max_length=40, description="prefix of entity and event ids")
    run_time_s: float | None = Field(None, gt=0, description="the run's length (replay trims the file to it)")
    replay_file: str | None = None
    replay_mapping: str | None = None
    replay_speed: float = Field(1.0, ge=0, description="1 = recorded pace, 10 = ten times faster, 0 = no pacing")
    steps: tuple[int, ...] | None = Field(None, description="step mode: user counts, one stage each")
    stage_s: float = Field(20.0, gt=0)
    spawn_rate: float = Field(10.0, gt=0)
    stats_out: str | None = Field(None, description="where the locustfile writes its final stats JSON")
    slo_file: str | None = Field(None, description="when set, the locustfile also sets its exit code from the SLO")

    @model_validator(mode="after")
    def _check(self) -> LoadSettings:
        if self.mode == "replay" and not self.replay_file:
            raise ValueError("replay_file: required in replay mode")
        if self.mode == "triton" and not self.repo:
            raise ValueError("repo: required in triton mode (the sequence config comes from its manifest)")
        if self.mode == "service" and self.shopper_weight + self.batch_weight == 0:
            raise ValueError("shopper_weight + batch_weight must be > 0")
        if self.steps is not None and (not self.steps or min(self.steps) < 1):
            raise ValueError("steps: positive user counts")
        return self

    def to_env(self) -> dict[str, str]:
        env = {}
        for name, value in self.model_dump(exclude_none=True).items():
            env[ENV_PREFIX + name.upper()] = json.dumps(value) if isinstance(value, tuple | list) else str(value)
        return env

def expected_endpoints(settings: LoadSettings) -> list[str]:
    """The request names a run in this mode produces: SLO entries for these must have been measured."""
    if settings.mode == "triton":
        return [TRITON_REQUEST_NAME]
    if settings.mode == "replay":
        return ["/events"]
    return [name for name, weight in (("/events", settings.shopper_weight), ("/score", settings.batch_weight))
            if weight > 0]
