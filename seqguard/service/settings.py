"""The service's own configuration: typed, read once from SEQGUARD_* environment variables, validated at start-up."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from seqguard.envsettings import EnvSettings

ENV_PREFIX = "SEQGUARD_"


class SettingsError(ValueError):
    pass


class ServiceSettings(EnvSettings):
    """`ServiceSettings()` reads SEQGUARD_<FIELD> (pydantic-settings); `from_env` also names each bad variable."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX)
    error = SettingsError
    what = "service settings"

    repo: Path = Field(Path("triton_repo"), description="Triton model repository with manifest.json")
    backend: Literal["embedded", "triton", "local_triton"] = "embedded"
    triton_url: str = Field("127.0.0.1:8001", description="host:port of Triton's gRPC endpoint (backend=triton)")
    triton_timeout_ms: float = Field(1000.0, gt=0, le=60_000)
    triton_retries: int = Field(2, ge=0, le=10)
    breaker_failures: int = Field(5, ge=1, le=1000)
    breaker_cooldown_s: float = Field(5.0, gt=0, le=600)
    intra_op_threads: int = Field(0, ge=0, le=256, description="embedded ONNX Runtime threads; 0 = all cores")
    state: Literal["memory", "redis"] = "memory"
    redis_url: str | None = None
    state_ttl_s: float = Field(86_400.0, gt=0)
    state_max_entities: int = Field(100_000, ge=1)
    state_max_bytes: int = Field(
        512 * 1024 * 1024, ge=64 * 1024, description="memory store: bound on the estimated size of all windows"
    )
    state_failure_policy: Literal["journal", "refuse"] = Field(
        "journal",
        description="state store down: journal /events durably on local disk and replay later (200, degraded), or "
        "refuse with 503 + Retry-After",
    )
    journal_dir: Path = Field(Path("/tmp/seqguard-journal"), description="where the local append-only journal lives")
    journal_max_bytes: int = Field(64 * 1024 * 1024, ge=4096, description="beyond this the journal refuses (503)")
    redis_persistence: Literal["require", "warn"] = Field(
        "require", description="Redis without appendonly: refuse to start, or start with a loud warning"
    )
    drain_s: float = Field(3.0, ge=0, le=60, description="after SIGTERM: answer 503 + Connection: close this long")
    max_events_per_request: int = Field(5_000, ge=1, le=1_000_000)
    max_entities_per_request: int = Field(1_000, ge=1)
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    large_request_bytes: int = Field(
        256 * 1024, ge=0,
        description="bodies larger than this take turns, one at a time, in the background of smaller requests "
        "(seqguard/service/fairness.py); 0 = off",
    )
    max_batch: int = Field(32, ge=1, le=1024)
    max_call_tokens: int = Field(
        512, ge=0, le=1 << 20, description="padded tokens one backend call may hold (rows x bucket length, at least 2 "
        "rows); 0 = max_batch rows whatever their length. CPU inference costs the same per row in large calls as in "
        "medium ones, so the bound costs no throughput and keeps any call to a few milliseconds"
    )
    max_wait_ms: float = Field(
        0.0, ge=0, le=1000, description="linger for more windows before a call that is not full; 0 = send at once "
        "(windows arriving during a call still share the next one)"
    )
    max_queue: int = Field(4096, ge=1)
    request_timeout_ms: float = Field(2000.0, gt=0, le=120_000)
    failure_policy: Literal["fail_open", "fail_closed"] = Field(
        "fail_open", description="backend down: answer from rules + unsupervised (degraded), or refuse with 503"
    )
    api_keys: Annotated[tuple[str, ...], NoDecode] = Field((), description="comma-separated keys; empty = no auth")
    max_future_skew_s: float = Field(300.0, ge=0, description="events further in the future are rejected")
    max_event_age_days: float = Field(3650.0, gt=0, description="older events are rejected")
    log_salt: str = Field("seqguard", description="salt for the hashes that replace identifiers in logs")
    # The feedback loop (seqguard/service/loop.py): score log, drift gauges, outcomes, shadow challenger.
    score_log_path: str | None = Field(None, description="folder or s3://bucket/prefix for the Parquet score log; "
                                                         "empty = no score log")
    score_log_sample_rate: float = Field(1.0, ge=0, le=1, description="share of scored windows written to the log")
    score_log_flush_rows: int = Field(5000, ge=1, description="rows per Parquet file")
    score_log_flush_s: float = Field(10.0, gt=0, le=3600, description="write a file at least this often")
    score_log_max_files: int = Field(1000, ge=1, description="keep the newest N files; older ones are deleted")
    score_log_queue: int = Field(10_000, ge=1, description="results waiting for the writer; beyond, dropped+counted")
    drift_window: int = Field(5000, ge=10, description="windows in the sliding window of the PSI gauges")
    drift_min_rows: int = Field(500, ge=1, description="no PSI gauge before this many windows")
    drift_every: int = Field(200, ge=1, description="recompute the PSI gauges every N windows")
    feedback_path: Path | None = Field(None, description="SQLite file of POST /feedback; empty = endpoint off")
    shadow_repo: Path | None = Field(None, description="challenger repository scored in shadow (logged, never "
                                                       "served)")

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, v: Any) -> Any:
        # A comma-separated list, not JSON: keys are typed into secrets managers and compose files by hand.
        return tuple(k.strip() for k in v.split(",") if k.strip()) if isinstance(v, str) else v

    @model_validator(mode="after")
    def _check(self) -> ServiceSettings:
        if self.state == "redis" and not self.redis_url:
            raise ValueError("redis_url: required when state is redis (SEQGUARD_REDIS_URL)")
        if self.shadow_repo is not None and not self.score_log_path:
            raise ValueError("shadow_repo: needs score_log_path (SEQGUARD_SCORE_LOG_PATH): shadow scores are only "
                             "logged")
        return self
