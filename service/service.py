"""seqguard's scoring service (BentoML 1.4): raw events in; a score, a decision and the reasons out.

    bentoml serve                      # from the repo root: bentofile.yaml names this service
    SEQGUARD_BACKEND=local_triton bentoml serve   # the same answers through a local tritonserver

Preprocessing, sequence building and ensembling happen here; model inference is delegated to a backend (embedded
ONNX Runtime by default, or Triton over gRPC). Configuration comes from SEQGUARD_* variables (service/settings.py).
"""

from __future__ import annotations

import os
from typing import Annotated

import bentoml
from pydantic import Field
from starlette.responses import JSONResponse

from seqguard.events import Event
from service.engine import RequestError, Window
from service.fairness import LargeRequestLane
from service.http import GatewayMiddleware, request_id_var
from service.observability import Metrics, setup_logging
from service.runtime import build_engine
from service.schemas import EXAMPLE_EVENTS, PrebuiltSequence, ScoreResponse
from service.settings import ServiceSettings

SETTINGS = ServiceSettings.from_env()
log = setup_logging()

EventList = Annotated[list[Event], Field(description="raw events, any entities, any order", examples=[EXAMPLE_EVENTS])]


def _error(e: RequestError) -> JSONResponse:
    return JSONResponse(
        {"error": e.message, "details": e.details, "request_id": request_id_var.get()},
        status_code=e.status,
        headers=e.headers or None,
    )


@bentoml.service(
    name="seqguard",
    workers=1,
    traffic={"timeout": 30, "max_concurrency": 512},
    http={"port": int(os.environ.get("SEQGUARD_PORT", "3000"))},
)
class Seqguard:
    def __init__(self) -> None:
        self.metrics = Metrics()
        self.engine = build_engine(SETTINGS, self.metrics)
        log.info("seqguard ready to load", extra={"fields": {"backend": SETTINGS.backend, "state": SETTINGS.state,
                                                             "model_version": self.engine.model_version}})

    async def __is_ready__(self) -> bool:
        ready = await self.engine.ready()
        self.metrics.backend_ready.set(1 if ready else 0)
        return ready

    async def _answer(self, route: str, windows: list[Window]) -> ScoreResponse | JSONResponse:
        try:
            results = await self.engine.score(windows)
        except RequestError as e:
            self.metrics.requests.labels(route=route, status=str(e.status)).inc()
            return _error(e)
        self.metrics.requests.labels(route=route, status="200").inc()
        return ScoreResponse.model_validate({"request_id": request_id_var.get(), "results": results})

    @bentoml.api(route="/score")
    async def score(self, events: EventList) -> ScoreResponse:
        """Score each entity's window built from the events in this request alone (stateless)."""
        try:
            self.engine.check_events(events)
            windows = self.engine.windows_from_events(events)
        except RequestError as e:
            return _error(e)  # type: ignore[return-value]
        return await self._answer("/score", windows)  # type: ignore[return-value]

    @bentoml.api(route="/events")
    async def ingest(self, events: EventList) -> ScoreResponse:
        """The real-time path: append to each entity's state (idempotent by event_id), score the updated window."""
        try:
            self.engine.check_events(events)
        except RequestError as e:
            return _error(e)  # type: ignore[return-value]
        windows = await self.engine.windows_from_state(events)
        return await self._answer("/events", windows)  # type: ignore[return-value]

    @bentoml.api(route="/score_sequences")
    async def score_sequences(self, sequences: list[PrebuiltSequence]) -> ScoreResponse:
        """Score windows already built by `seqguard sequences` (token ids + aggregate features)."""
        try:
            windows = self.engine.windows_from_sequences(sequences)
        except RequestError as e:
            return _error(e)  # type: ignore[return-value]
        return await self._answer("/score_sequences", windows)  # type: ignore[return-value]

    @bentoml.on_shutdown
    async def shutdown(self) -> None:
        await self.engine.close()


Seqguard.add_asgi_middleware(GatewayMiddleware, max_body_bytes=SETTINGS.max_body_bytes, api_keys=SETTINGS.api_keys)
Seqguard.add_asgi_middleware(LargeRequestLane, large_bytes=SETTINGS.large_request_bytes)

