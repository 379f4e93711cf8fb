"""Metrics and structured logs. Identifiers (user, device, ip) are logged only as salted hashes."""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import time
from typing import Any


class Metrics:
    """seqguard's Prometheus series, next to BentoML's own on /metrics. Created inside the worker process, after
    BentoML has set up multiprocess collection."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        self.scores = Histogram(
            "seqguard_score", "ensemble score per scored entity", buckets=[i / 20 for i in range(1, 21)]
        )
        self.decisions = Counter("seqguard_decisions_total", "decisions by outcome", ["decision"])
        self.backend_latency = Histogram(
            "seqguard_backend_latency_seconds",
            "model backend call latency per batch",
            ["backend"],
            buckets=[0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2],
        )
        self.batch_size = Histogram("seqguard_batch_size", "windows per backend call", buckets=[1, 2, 4, 8, 16, 32, 64])
        self.fallbacks = Counter("seqguard_fallbacks_total", "answers without the model backend", ["reason"])
        self.degraded = Counter("seqguard_degraded_total", "results marked degraded")
        self.state_errors = Counter("seqguard_state_store_errors_total", "state store failures")
        self.requests = Counter("seqguard_requests_total", "API requests by route and status", ["route", "status"])
        self.backend_ready = Gauge(
            "seqguard_backend_ready", "1 when the model backend is ready", multiprocess_mode="max"
        )
        self.state_bytes = Gauge(
            "seqguard_state_bytes", "state store size: estimated for memory, used_memory for Redis",
            multiprocess_mode="livesum",
        )
        self.state_entities = Gauge(
            "seqguard_state_entities", "entities in the state store", multiprocess_mode="livesum"
        )
        self.journal_bytes = Gauge(
            "seqguard_state_journal_bytes", "events waiting in the local journal for the state store to return",
            multiprocess_mode="livesum",
        )

    def observe_state(self, stats: dict[str, int]) -> None:
        if stats.get("bytes", -1) >= 0:
            self.state_bytes.set(stats["bytes"])
            self.state_entities.set(stats["entities"])
        self.journal_bytes.set(stats.get("journal_bytes", 0))


def hash_id(value: Any, salt: str) -> str | None:
    if value is None:
        return None
    return hashlib.blake2b(f"{salt}:{value}".encode(), digest_size=8).hexdigest()


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            payload.update(extra)
        if record.exc_info:
            payload["error"] = self.formatException(record.exc_info).splitlines()[-1]
        return json.dumps(payload, separators=(",", ":"))


def _is_client_error(exc: BaseException | None) -> bool:
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        return True
    code = getattr(getattr(exc, "error_code", None), "value", None) or getattr(exc, "status_code", None)
    return isinstance(code, int) and 400 <= code < 500


class ClientErrorFilter(logging.Filter):
    """Drops BentoML's 'Exception on /route' records for client errors: their traceback quotes the offending input
    (identifiers included) and costs kilobytes per bad request. The gateway logs one line per rejection instead
    (seqguard/service/http.py). Server errors keep their traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and _is_client_error(record.exc_info[1]))


def quiet_client_errors() -> None:
    for name in ("bentoml._internal.server.http_app", "bentoml.serve", "bentoml"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, ClientErrorFilter) for f in logger.filters):
            logger.addFilter(ClientErrorFilter())


def setup_logging(level: int = logging.INFO) -> logging.Logger:
    quiet_client_errors()
    logger = logging.getLogger("seqguard")
    if not any(isinstance(h.formatter, JsonFormatter) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(level)
    return logger
