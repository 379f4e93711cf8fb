"""The service's side of the feedback loop: score log + drift gauges, outcomes (/feedback), the shadow challenger.

`ServiceLoop.after_score` runs after the answer is computed and costs the request one queue put (plus, in shadow
mode, scheduling a task): the score log's thread writes files and updates the PSI gauges; the challenger scores
the same windows in a background task whose result is logged with role "shadow" and never returned.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from seqguard.drift import DriftError, load_reference
from seqguard.feedback import FeedbackError, FeedbackStore, StoreResult, parse_feedback
from seqguard.service.engine import RequestError, ScoringEngine, Window
from seqguard.service.score_log import DriftMonitor, LoopMetrics, ScoreLog
from seqguard.service.settings import ServiceSettings

log = logging.getLogger("seqguard.loop")
MAX_SHADOW_IN_FLIGHT = 64


def check_loop_settings(settings: ServiceSettings, manifest: Any) -> None:
    """Pre-flight (seqguard/service/check.py): what would otherwise fail in the worker, said once with the setting
    named. Raises ValueError."""
    from seqguard.manifest import ManifestError, verify_repository

    if settings.shadow_repo is not None:
        try:
            shadow = verify_repository(settings.shadow_repo)
        except ManifestError as e:
            raise ValueError(f"SEQGUARD_SHADOW_REPO: {e}") from None
        if shadow.sequence_config_hash != manifest.sequence_config_hash:
            raise ValueError(f"SEQGUARD_SHADOW_REPO: {settings.shadow_repo} builds windows with another sequence "
                             "config than the served model; retrain the challenger from the champion's config")
    if settings.feedback_path is not None and settings.feedback_path.is_dir():
        raise ValueError(f"SEQGUARD_FEEDBACK_PATH: {settings.feedback_path} is a folder; give a file "
                         "(e.g. feedback.sqlite)")
    path = settings.score_log_path
    if path and not path.startswith("s3://") and Path(path).is_file():
        raise ValueError(f"SEQGUARD_SCORE_LOG_PATH: {path} is a file; give a folder (or s3://bucket/prefix)")


class ServiceLoop:
    def __init__(self, settings: ServiceSettings, engine: ScoringEngine, metrics: LoopMetrics | None = None,
                 shadow: ScoringEngine | None = None) -> None:
        self.settings = settings
        self.engine = engine
        self.metrics = metrics
        self.shadow = shadow
        self.monitor: DriftMonitor | None = None
        self.score_log: ScoreLog | None = None
        self.feedback: FeedbackStore | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        s = settings
        if s.score_log_path:
            try:
                ref = load_reference(s.repo)
                self.monitor = DriftMonitor(ref, s.drift_window, s.drift_min_rows, s.drift_every, metrics)
            except DriftError as e:
                log.warning("drift gauges off: %s", e)
            self.score_log = ScoreLog(s.score_log_path, s.log_salt, s.score_log_sample_rate, s.score_log_flush_rows,
                                      s.score_log_flush_s, s.score_log_max_files, s.score_log_queue, metrics,
                                      self.monitor)
        if s.feedback_path is not None:
            self.feedback = FeedbackStore(s.feedback_path)

    @classmethod
    def build(cls, settings: ServiceSettings, engine: ScoringEngine, metrics: LoopMetrics | None = None
              ) -> ServiceLoop:
        shadow = None
        if settings.shadow_repo is not None:
            from seqguard.service.runtime import build_engine

            # The challenger always runs embedded (a local folder) with its own small state; it sees the windows
            # the champion built, so both must build them alike.
            shadow = build_engine(settings.model_copy(update={"repo": settings.shadow_repo, "backend": "embedded",
                                                              "state": "memory", "shadow_repo": None}))
            if shadow.cfg.config_hash() != engine.cfg.config_hash():
                raise RuntimeError(f"shadow repository {settings.shadow_repo} builds windows with another sequence "
                                   "config than the served model; retrain the challenger from the champion's config")
        return cls(settings, engine, metrics, shadow)

    def after_score(self, route: str, request_id: str, windows: list[Window], results: list[dict[str, Any]]) -> None:
        if self.score_log is None:
            return
        self.score_log.record(route, request_id, "primary", [w.encoded.features for w in windows], results)
        if self.shadow is not None:
            if len(self._tasks) >= MAX_SHADOW_IN_FLIGHT:
                self._count("skipped")
                return
            task = asyncio.get_running_loop().create_task(self._shadow(route, request_id, windows))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _shadow(self, route: str, request_id: str, windows: list[Window]) -> None:
        assert self.shadow is not None and self.score_log is not None
        try:
            results = await self.shadow.score(windows)
        except (RequestError, Exception) as e:  # the challenger must never hurt the champion
            log.warning("shadow scoring failed: %s", e)
            self._count("failed")
            return
        self.score_log.record(route, request_id, "shadow", [w.encoded.features for w in windows], results)
        self._count("scored")

    def _count(self, outcome: str) -> None:
        if self.metrics:
            self.metrics.shadow.labels(outcome=outcome).inc()

    async def add_feedback(self, data: dict[str, Any]) -> StoreResult:
        if self.feedback is None:
            # 404, not 503: nothing is down, the route is switched off (and a 5xx would page someone).
            raise FeedbackError("feedback is not enabled on this service",
                                [{"field": "SEQGUARD_FEEDBACK_PATH", "reason": "not set"}], 404)
        fb = parse_feedback(data)
        return await asyncio.to_thread(self.feedback.add, fb)

    async def close(self) -> None:
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
        if self.score_log is not None:
            await asyncio.to_thread(self.score_log.close)
        if self.shadow is not None:
            await self.shadow.close()
        if self.feedback is not None:
            self.feedback.close()
