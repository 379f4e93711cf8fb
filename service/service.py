"""seqguard's scoring service (BentoML 1.4): raw events in; a score, a decision and the reasons out.

    bentoml serve                      # from the repo root: bentofile.yaml names this service
    SEQGUARD_BACKEND=local_triton bentoml serve   # the same answers through a local tritonserver

Preprocessing, sequence building and ensembling happen here; model inference is delegated to a backend (embedded
ONNX Runtime by default, or Triton over gRPC). Configuration comes from SEQGUARD_* variables
(seqguard/service/settings.py).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from typing import Annotated, Any

import bentoml
from pydantic import Field
from starlette.responses import JSONResponse

from seqguard.events import Event
from seqguard.service.check import PreflightError, preflight
from seqguard.service.engine import RequestError, Window
from seqguard.service.fairness import LargeRequestLane, validated_events
from seqguard.service.http import Drain, GatewayMiddleware, request_id_var
from seqguard.service.loop import ServiceLoop
from seqguard.service.observability import Metrics, setup_logging
from seqguard.service.runtime import build_engine
from seqguard.service.schemas import EXAMPLE_EVENTS, FeedbackResponse, PrebuiltSequence, ScoreResponse
from seqguard.service.score_log import LoopMetrics
from seqguard.service.settings import ServiceSettings, SettingsError
from seqguard.service.state import StateStoreRefused

log = setup_logging()
try:
    SETTINGS = ServiceSettings.from_env()
except SettingsError as _e:
    # Imported first by `bentoml serve`'s main process: a bad setting stops it here, named, before any worker.
    print(f"seqguard service: {_e}", file=sys.stderr, flush=True)
    raise SystemExit(2) from None

# /feedback's fields reach seqguard.feedback.Feedback untouched, so its errors (422, field and reason) are the ones
# `seqguard feedback import` reports too; the OpenAPI document describes them
# (seqguard.service.openapi.FEEDBACK_FIELDS).
FeedbackField = Annotated[Any, Field(description="see the /feedback operation")]
EventList = Annotated[list[Event], Field(description="raw events, any entities, any order", examples=[EXAMPLE_EVENTS])]


def _error(e: RequestError, retry_after_s: int = 1) -> JSONResponse:
    # The engine's own Retry-After (from its queue) when it gave one; else the default for 429 / 503.
    headers = e.headers or ({"Retry-After": str(retry_after_s)} if e.status in (429, 503) else None)
    return JSONResponse(
        {"error": e.message, "details": e.details, "request_id": request_id_var.get()},
        status_code=e.status,
        headers=headers,
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
        self.loop = ServiceLoop.build(SETTINGS, self.engine, LoopMetrics())
        log.info("seqguard ready to load", extra={"fields": {"backend": SETTINGS.backend, "state": SETTINGS.state,
                                                             "model_version": self.engine.model_version}})

    @bentoml.on_deployment
    def check() -> None:
        """Runs once in `bentoml serve`'s main process before any worker: a repository failing its manifest check (or
        a state store that would lose acknowledged events, under the require policy) stops the server here, with
        exit code 2 and the file named, instead of a worker crashing and being restarted in a loop."""
        try:
            log.info("seqguard pre-flight: %s", preflight(SETTINGS))
        except PreflightError as e:
            print(f"seqguard service: {e}", file=sys.stderr, flush=True)
            raise SystemExit(2) from None

    @bentoml.on_startup
    async def _drain_on_sigterm(self) -> None:
        """Chain in front of uvicorn's SIGTERM handler: first answer every request 503 + `Connection: close` for
        drain_s (clients on kept-alive connections get an answer instead of a closed socket), then let uvicorn finish
        the requests in flight and exit."""
        loop = asyncio.get_running_loop()
        previous = signal.getsignal(signal.SIGTERM)
        if not callable(previous):
            return

        def on_term(signum: int, frame: Any) -> None:
            if Drain.active:
                return
            Drain.active = True
            log.warning("SIGTERM: draining for %.1f s (new requests get 503)", SETTINGS.drain_s)
            loop.call_later(SETTINGS.drain_s, previous, signum, frame)

        signal.signal(signal.SIGTERM, on_term)

    @bentoml.on_startup
    async def _watch_state(self) -> None:
        """State gauges, refreshed every second (they move without requests too: TTL, the journal replayed in the
        background). In a thread: reading Redis's size must not block the event loop while Redis is down."""

        async def refresh() -> None:
            while True:
                self.metrics.observe_state(await asyncio.to_thread(self.engine.store.stats))
                await asyncio.sleep(1.0)

        self._state_watch = asyncio.get_running_loop().create_task(refresh())

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
        self.loop.after_score(route, request_id_var.get(), windows, results)
        return ScoreResponse.model_validate({"request_id": request_id_var.get(), "results": results})

    @bentoml.api(route="/score", output_spec=ScoreResponse)
    async def score(self, events: EventList) -> ScoreResponse | JSONResponse:
        """Score each entity's window built from the events in this request alone (stateless)."""
        # A large body was validated in slices by the lane (seqguard/service/fairness.py).
        events = validated_events(events)
        try:
            self.engine.check_events(events)
            windows = await self.engine.windows_from_events(events)
        except RequestError as e:
            return _error(e)
        return await self._answer("/score", windows)

    @bentoml.api(route="/events", output_spec=ScoreResponse)
    async def ingest(self, events: EventList) -> ScoreResponse | JSONResponse:
        """The real-time path: append to each entity's state (idempotent by event_id), score the updated window."""
        events = validated_events(events)
        try:
            self.engine.check_events(events)
        except RequestError as e:
            return _error(e)
        try:
            windows = await self.engine.windows_from_state(events)
        except StateStoreRefused as e:
            # The events were not kept: say so, so the client retries them (appends are idempotent by event_id).
            self.metrics.requests.labels(route="/events", status="503").inc()
            return _error(RequestError(503, str(e)), e.retry_after_s)
        return await self._answer("/events", windows)

    @bentoml.api(route="/score_sequences", output_spec=ScoreResponse)
    async def score_sequences(self, sequences: list[PrebuiltSequence]) -> ScoreResponse | JSONResponse:
        """Score windows already built by `seqguard sequences` (token ids + aggregate features)."""
        try:
            windows = self.engine.windows_from_sequences(sequences)
        except RequestError as e:
            return _error(e)
        return await self._answer("/score_sequences", windows)

    @bentoml.api(route="/feedback", output_spec=FeedbackResponse)
    async def feedback(self, outcome: FeedbackField = None, source: FeedbackField = None, ts: FeedbackField = None,
                       entity_id: FeedbackField = None, request_id: FeedbackField = None,
                       label: FeedbackField = None,
                       feedback_id: FeedbackField = None) -> FeedbackResponse | JSONResponse:
        """Record an outcome (chargeback | confirmed_fraud | false_positive | reviewed_ok) for an entity, or for the
        single entity a request scored. Idempotent by feedback_id (derived from the content when absent)."""
        from seqguard.feedback import FeedbackError

        body = {k: v for k, v in {"outcome": outcome, "source": source, "ts": ts, "entity_id": entity_id,
                                  "request_id": request_id, "label": label, "feedback_id": feedback_id}.items()
                if v is not None}
        try:
            res = await self.loop.add_feedback(body)
        except FeedbackError as e:
            self.metrics.requests.labels(route="/feedback", status=str(e.status)).inc()
            return _error(RequestError(e.status, str(e), e.details))
        self.metrics.requests.labels(route="/feedback", status="200").inc()
        return FeedbackResponse(feedback_id=res.feedback_id, stored=res.stored, duplicate=not res.stored,
                                request_id=request_id_var.get())

    @bentoml.on_shutdown
    async def shutdown(self) -> None:
        await self.loop.close()
        await self.engine.close()


Seqguard.add_asgi_middleware(
    GatewayMiddleware,
    max_body_bytes=SETTINGS.max_body_bytes,
    api_keys=SETTINGS.api_keys,
    spec_limits={"max_events": SETTINGS.max_events_per_request, "max_entities": SETTINGS.max_entities_per_request,
                 "max_age_days": SETTINGS.max_event_age_days},
)
Seqguard.add_asgi_middleware(LargeRequestLane, large_bytes=SETTINGS.large_request_bytes)

