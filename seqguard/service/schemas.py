"""Bodies of the HTTP API (pydantic; they are the OpenAPI schema, examples included).

The request bodies are the APIs' own parameters (`list[seqguard.events.Event]`, `list[PrebuiltSequence]` in
service/service.py); the error body every status shares is documented in seqguard/service/openapi.py, whose gateway
(seqguard/service/http.py) writes it."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from seqguard.events import ID_MAX_CHARS

EXAMPLE_EVENTS: list[dict[str, Any]] = [
    {"user_id": "u-1001", "ts": "2026-10-05T09:00:00Z", "event_type": "login", "device_id": "dev-9",
     "ip": "203.0.113.7", "country": "BR", "event_id": "e1"},
    {"user_id": "u-1001", "ts": "2026-10-05T09:01:10Z", "event_type": "password_change", "device_id": "dev-9",
     "event_id": "e2"},
    {"user_id": "u-1001", "ts": "2026-10-05T09:03:00Z", "event_type": "purchase", "item_id": "tv-55",
     "price": 899.0, "device_id": "dev-9", "event_id": "e3"},
]


class PrebuiltSequence(BaseModel):
    model_config = ConfigDict(extra="forbid")

    entity_id: str = Field(min_length=1, max_length=ID_MAX_CHARS)
    input_ids: list[Annotated[int, Field(ge=0, le=2**31 - 1)]] = Field(
        min_length=2, max_length=4096, description="token ids as `seqguard sequences` writes them"
    )
    features: dict[str, Annotated[float, Field(allow_inf_nan=False)]] = Field(
        description="aggregate features by name, as `seqguard sequences` writes them"
    )


class RuleFired(BaseModel):
    id: str
    outcome: str
    reason: str


class EntityResult(BaseModel):
    entity_id: str
    score: float = Field(ge=0.0, le=1.0)
    decision: str = Field(description="allow | review | block")
    component_scores: dict[str, float]
    rules_fired: list[RuleFired]
    reasons: list[str]
    model_version: str
    degraded: bool
    degraded_reasons: list[str] = Field(default_factory=list)
    n_events: int = Field(description="events in the scored window")


class ScoreResponse(BaseModel):
    request_id: str
    results: list[EntityResult]


class FeedbackResponse(BaseModel):
    """What `POST /feedback` answers when the outcome was recorded (or already was: `duplicate`)."""

    feedback_id: str = Field(description="the idempotency key, given or derived from the content")
    stored: bool = Field(description="true when this call stored it")
    duplicate: bool = Field(description="true when the same feedback_id with the same content was already stored")
    request_id: str
