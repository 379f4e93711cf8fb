"""The scoring engine: events -> windows -> tensors -> component logits -> ensemble decisions.

Everything between the HTTP layer and the backend lives here, so the BentoML service stays a thin, readable shell and
tests can drive the same engine in process. Windows, tokens and features come from the shared seqguard modules; the
combination of components is `seqguard.scoring.Scorer`, the very object `seqguard evaluate` uses.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from seqguard.config import SequenceConfig
from seqguard.crossentity import CrossIndex, cross_features, event_updates, window_keys
from seqguard.events import Event
from seqguard.features import CLS_ID, FEATURE_NAMES, SEP_ID, Encoded, TokenSpace, encode_window
from seqguard.sequences import EntityState, append_events, state_columns
from seqguard.service.backends import Backend, BackendRejected, BackendUnavailable
from seqguard.service.batcher import MIN_ROWS, MicroBatcher, QueueFull
from seqguard.service.fairness import take_turn
from seqguard.service.settings import ServiceSettings
from seqguard.service.state import MemoryStateStore, StateStore, StateStoreError, StateStoreJournaled

log = logging.getLogger("seqguard.engine")


class RequestError(Exception):
    """A request the service will not process; carries the HTTP status and per-field details."""

    def __init__(
        self,
        status: int,
        message: str,
        details: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details or []
        self.headers = headers or {}


class Window:
    """One entity's window. Built from a request's events, it keeps them and builds its window and tensors when
    first needed (in chunks that let the event loop serve other requests in between, see ScoringEngine.score)."""

    def __init__(self, entity_id: str, encoded: Encoded | None = None, n_events: int = 0,
                 degraded_reasons: list[str] | None = None, events: Sequence[Event] | None = None,
                 cfg: SequenceConfig | None = None, index: CrossIndex | None = None) -> None:
        self.entity_id = entity_id
        self._encoded = encoded
        self._n_events = n_events
        self.degraded_reasons = degraded_reasons if degraded_reasons is not None else []
        self._events = events
        self._cfg = cfg
        self._index = index  # the request's cross-entity index (every entity of the request)

    def _build(self) -> Encoded:
        if self._encoded is None:
            assert self._events is not None and self._cfg is not None
            # The streaming update on an empty state is exactly the batch window (a property test holds the two
            # together), and it skips building a DataFrame for a request of a few dozen events.
            state, _ = append_events(EntityState.empty(), self._events, self._cfg)
            self._n_events = len(state.records)
            cols = state_columns(state)
            cross = None if self._index is None else cross_features(
                self.entity_id, cols, self._index.get(window_keys(self.entity_id, cols)))
            self._encoded = encode_window(cols, self._cfg, cross)
            self._events = None
        return self._encoded

    @property
    def encoded(self) -> Encoded:
        return self._build()

    @property
    def n_events(self) -> int:
        self._build()
        return self._n_events


CHUNK = 8  # windows indexed / encoded / scored between two turns of the event loop (~2-3 ms), for larger requests


class ScoringEngine:
    def __init__(
        self,
        settings: ServiceSettings,
        seq_cfg: SequenceConfig,
        scorer: Any,
        backend: Backend,
        store: StateStore,
        model_version: str,
        metrics: Any = None,
    ) -> None:
        self.settings = settings
        self.cfg = seq_cfg
        self.scorer = scorer
        self.backend = backend
        self.store = store
        self.model_version = model_version
        self.metrics = metrics
        self.vocab_size = TokenSpace.of(seq_cfg).vocab_size
        self.batcher = MicroBatcher(
            self._infer,
            max_batch=settings.max_batch,
            max_wait_ms=settings.max_wait_ms,
            max_queue=settings.max_queue,
            on_batch=self._on_batch,
            max_len=seq_cfg.max_len,
            min_rows=getattr(backend, "min_rows", MIN_ROWS),
            max_call_tokens=settings.max_call_tokens,
        )
        # Running mean of the backend's seconds per window, for Retry-After. Per window, not per call: a call holds up
        # to max_batch rows or max_call_tokens tokens, whichever is fewer, so calls per queued window vary by length.
        self._window_seconds = 0.001

    # ---------------------------------------------------------------------------------------------------------------
    # Request checks beyond the schema: limits and timestamps a model should never see.

    def check_events(self, events: Sequence[Event]) -> None:
        s = self.settings
        if not events:
            raise RequestError(422, "no events", [{"field": "events", "reason": "must contain at least one event"}])
        if len(events) > s.max_events_per_request:
            raise RequestError(
                422,
                "too many events",
                [
                    {
                        "field": "events",
                        "reason": f"{len(events)} events; at most {s.max_events_per_request} per request",
                    }
                ],
            )
        now = time.time()
        details = []
        for i, e in enumerate(events):
            t = e.ts.timestamp()
            if t > now + s.max_future_skew_s:
                details.append({"field": f"events.{i}.ts", "reason": "more than the allowed skew in the future"})
            elif t < now - s.max_event_age_days * 86400.0:
                details.append({"field": f"events.{i}.ts", "reason": f"older than {s.max_event_age_days:g} days"})
            if getattr(e, self.cfg.entity_key) is None:
                details.append({"field": f"events.{i}.{self.cfg.entity_key}", "reason": "the entity key is missing"})
        if details:
            raise RequestError(422, "events rejected", details[:100])
        entities = {getattr(e, self.cfg.entity_key) for e in events}
        if len(entities) > s.max_entities_per_request:
            raise RequestError(
                422,
                "too many entities",
                [{"field": "events", "reason": f"{len(entities)} entities; at most {s.max_entities_per_request}"}],
            )

    # ---------------------------------------------------------------------------------------------------------------
    # The three ways to build windows

    async def windows_from_events(self, events: Sequence[Event]) -> list[Window]:
        by_entity = self._by_entity(events)
        # Cross-entity features over what the request carries: the batch semantics, with the request as the frame.
        # Indexing a thousand entities' events takes ~20 ms: a large request does it a chunk at a time.
        index = CrossIndex()
        for k, (entity, evs) in enumerate(by_entity.items()):
            if k and k % (CHUNK * 8) == 0:
                await take_turn()
            index.add_all(event_updates(entity, evs))
        return [Window(entity, events=evs, cfg=self.cfg, index=index) for entity, evs in by_entity.items()]

    def _append(self, entity: str, evs: list[Event]) -> tuple[int, Encoded]:
        """Store the events, then the window and its cross-entity features from the store's indexes."""
        state, _added = self.store.append(entity, evs)
        cols = state_columns(state)
        return len(state.records), encode_window(cols, self.cfg, self.store.cross_features(entity, cols))

    def _by_entity(self, events: Sequence[Event]) -> dict[str, list[Event]]:
        by_entity: dict[str, list[Event]] = {}
        for e in events:
            by_entity.setdefault(str(getattr(e, self.cfg.entity_key)), []).append(e)
        return by_entity

    async def windows_from_state(self, events: Sequence[Event]) -> list[Window]:
        windows = []
        for entity, evs in self._by_entity(events).items():
            try:
                if isinstance(self.store, MemoryStateStore):
                    n, enc = self._append(entity, evs)  # microseconds: a thread hand-over costs more
                else:
                    n, enc = await asyncio.to_thread(self._append, entity, evs)  # network I/O
            except StateStoreError as err:
                log.warning("state store unavailable: %s", err)
                if self.metrics:
                    self.metrics.state_errors.inc()
                # Score what this request carries rather than failing: the answer says it is partial.
                # "events_journaled": the events are kept locally and will reach the store (seqguard/service/state.py).
                reasons = ["state_store_unavailable", *(["events_journaled"] if isinstance(err, StateStoreJournaled)
                                                        else [])]
                for w in await self.windows_from_events(evs):
                    w.degraded_reasons.extend(reasons)
                    windows.append(w)
                continue
            windows.append(Window(entity, enc, n))
        return windows

    def windows_from_sequences(self, sequences: Sequence[Any]) -> list[Window]:
        details = []
        windows = []
        max_len = self.cfg.max_len
        for i, seq in enumerate(sequences):
            ids = np.asarray(seq.input_ids, dtype=np.int64)
            if len(ids) > max_len:
                details.append({"field": f"sequences.{i}.input_ids", "reason": f"longer than {max_len} tokens"})
            elif ids[0] != CLS_ID or ids[-1] != SEP_ID:
                details.append(
                    {"field": f"sequences.{i}.input_ids", "reason": "must start with [CLS] and end with [SEP]"}
                )
            elif ids.min() < 0 or ids.max() >= self.vocab_size:
                details.append(
                    {"field": f"sequences.{i}.input_ids", "reason": f"ids must lie in 0..{self.vocab_size - 1}"}
                )
            missing = [f for f in FEATURE_NAMES if f not in seq.features]
            unknown = sorted(set(seq.features) - set(FEATURE_NAMES))
            if missing:
                details.append({"field": f"sequences.{i}.features", "reason": f"missing {missing[:5]}"})
            if unknown:
                details.append({"field": f"sequences.{i}.features", "reason": f"unknown {unknown[:5]}"})
            if details:
                continue
            feats = np.array([seq.features[f] for f in FEATURE_NAMES], dtype=np.float32)
            if not np.isfinite(feats).all():
                details.append({"field": f"sequences.{i}.features", "reason": "values must be finite"})
                continue
            enc = Encoded(ids, np.zeros_like(ids), feats)
            windows.append(Window(seq.entity_id, enc, (len(ids) - 2) // 2))
        if details:
            raise RequestError(422, "sequences rejected", details[:100])
        if not windows:
            raise RequestError(422, "no sequences", [{"field": "sequences", "reason": "must not be empty"}])
        if len(windows) > self.settings.max_entities_per_request:
            raise RequestError(422, "too many sequences", [{"field": "sequences", "reason": "over the entity limit"}])
        return windows

    # ---------------------------------------------------------------------------------------------------------------
    # Scoring

    async def _infer(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return await self.backend.infer(batch)

    def _on_batch(self, size: int, seconds: float) -> None:
        self._window_seconds = 0.9 * self._window_seconds + 0.1 * seconds / max(1, size)
        if self.metrics:
            self.metrics.batch_size.observe(size)
            self.metrics.backend_latency.labels(backend=self.backend.name).observe(seconds)

    async def _encode(self, windows: list[Window]) -> None:
        # A large request is encoded in chunks, yielding in between, so a one-event request arriving meanwhile is
        # not held up behind a thousand windows' worth of Python work.
        for i in range(0, len(windows), CHUNK):
            for w in windows[i : i + CHUNK]:
                _ = w.encoded
            if len(windows) > CHUNK:
                await take_turn()

    async def score(self, windows: list[Window]) -> list[dict[str, Any]]:
        reasons: list[str] = []
        logits: dict[str, np.ndarray] | None = None
        await self._encode(windows)
        if self.scorer.components:
            try:
                logits = await asyncio.wait_for(
                    self.batcher.submit([w.encoded for w in windows]), self.settings.request_timeout_ms / 1000.0
                )
            except QueueFull as e:
                self._count_fallback("overloaded")
                raise RequestError(429, f"overloaded: {e}; retry later", headers=self._retry_after()) from None
            except TimeoutError:
                # The windows did not get through the queue in time: the service is overloaded, the backend is not
                # down (a backend that fails or times out raises BackendUnavailable, with its own, shorter timeout).
                self._count_fallback("overloaded")
                if self.settings.failure_policy == "fail_closed":
                    raise RequestError(429, "overloaded: the request timed out waiting for the model backend; retry "
                                       "later", headers=self._retry_after()) from None
                log.warning("overloaded: %d windows not scored within %.0f ms (%d waiting); answering degraded",
                            len(windows), self.settings.request_timeout_ms, self.batcher.pending)
                reasons.append("overloaded")
            except BackendUnavailable as e:
                reason = "model_backend_rejected" if isinstance(e, BackendRejected) else "model_backend_unavailable"
                self._count_fallback(reason)
                if self.settings.failure_policy == "fail_closed":
                    raise RequestError(503, f"model backend unavailable (fail_closed policy): {e}") from None
                log.warning("%s, answering degraded: %s", reason, e)
                reasons.append(reason)
        results = []
        for i in range(0, len(windows), CHUNK):
            if i:
                await take_turn()  # as in _encode: reasons and dicts of a large request, a chunk at a time
            chunk = windows[i : i + CHUNK]
            part = None if logits is None else {k: v[i : i + CHUNK] for k, v in logits.items()}
            decisions = self.scorer.score(part, np.stack([w.encoded.features for w in chunk]),
                                          [w.encoded.input_ids for w in chunk], self.cfg)
            results.extend(self._result(w, d, reasons) for w, d in zip(chunk, decisions, strict=True))
        return results

    def _result(self, w: Window, d: Any, reasons: list[str]) -> dict[str, Any]:
        # The response model's fields straight from the Decision (dataclasses.asdict would deep-copy each one).
        degraded_reasons = reasons + w.degraded_reasons
        r = {
            "entity_id": w.entity_id,
            "score": d.score,
            "decision": d.decision,
            "component_scores": d.component_scores,
            "rules_fired": d.rules_fired,
            "reasons": d.reasons,
            "model_version": self.model_version,
            "degraded": bool(d.degraded) or bool(degraded_reasons),
            "degraded_reasons": degraded_reasons,
            "n_events": w.n_events,
        }
        if self.metrics:
            self.metrics.scores.observe(r["score"])
            self.metrics.decisions.labels(decision=r["decision"]).inc()
            if r["degraded"]:
                self.metrics.degraded.inc()
        return r

    def _count_fallback(self, reason: str) -> None:
        if self.metrics:
            self.metrics.fallbacks.labels(reason=reason).inc()

    def _retry_after(self) -> dict[str, str]:
        """Seconds until the current queue has drained at the recent rate per window (at least 1), as a header."""
        return {"Retry-After": str(max(1, int(np.ceil(self.batcher.pending * self._window_seconds))))}

    async def ready(self) -> bool:
        return await self.backend.ready()

    async def close(self) -> None:
        await self.batcher.close()
        await self.backend.close()
        self.store.close()
