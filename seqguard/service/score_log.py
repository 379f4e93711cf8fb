"""The score log: every scored window, off the request path, as rotated Parquet files (a folder or s3://bucket/prefix).

    ScoreLog.record(...)   called by the service after it has its answer: one `put_nowait` on a bounded queue.
                           A full queue drops the rows and counts them (seqguard_score_log_rows_total{outcome=
                           "dropped"}); a request never waits for the log.
    writer thread          turns queued results into rows, feeds the drift monitor (every row), keeps the sampled
                           rows (a deterministic hash of request id + entity, so a request's rows are kept or
                           dropped together) and writes one Parquet file per `flush_rows` rows or `flush_s`
                           seconds, keeping the newest `max_files` files.

Rows carry no raw identifier: the entity id is the salted hash the service's logs use (`observability.hash_id`).
Columns: ts, request_id, route, role (primary | shadow), entity_hash, model_version, score, decision, degraded,
n_events, c_<component> per component score, f_<feature> per aggregate feature.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import queue
import threading
import time
from collections import deque
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from seqguard.drift import SCORE, DriftError, DriftReference
from seqguard.features import FEATURE_NAMES
from seqguard.service.observability import hash_id

log = logging.getLogger("seqguard.score_log")

FEATURE_PREFIX = "f_"
COMPONENT_PREFIX = "c_"
FEATURE_COLUMNS = [FEATURE_PREFIX + n for n in FEATURE_NAMES]
_STOP = object()


class LoopMetrics:
    """The loop's Prometheus series (score log and drift gauges); created in the worker like `Metrics`."""

    def __init__(self, registry: Any = None) -> None:
        from prometheus_client import REGISTRY, Counter, Gauge

        reg = registry or REGISTRY
        self.rows = Counter("seqguard_score_log_rows", "score-log rows by outcome (written, sampled_out, dropped)",
                            ["outcome"], registry=reg)
        self.files = Counter("seqguard_score_log_files", "score-log files written", registry=reg)
        self.write_errors = Counter("seqguard_score_log_write_errors", "score-log files that failed to write",
                                    registry=reg)
        self.feature_psi = Gauge("seqguard_feature_psi", "PSI of an aggregate feature over the sliding window "
                                 "vs the training reference", ["feature"], registry=reg,
                                 multiprocess_mode="livemostrecent")
        self.score_psi = Gauge("seqguard_score_psi", "PSI of the ensemble score over the sliding window vs the "
                               "training reference", registry=reg, multiprocess_mode="livemostrecent")
        self.drift_rows = Gauge("seqguard_drift_window_rows", "windows in the drift sliding window", registry=reg,
                                multiprocess_mode="livemostrecent")
        self.shadow = Counter("seqguard_shadow_total", "shadow (challenger) scorings by outcome", ["outcome"],
                              registry=reg)


class DriftMonitor:
    """PSI of the last `window` primary windows against the reference, recomputed every `every` windows once
    `min_rows` are in. Runs in the score-log thread, never on a request."""

    def __init__(self, reference: DriftReference, window: int = 5000, min_rows: int = 500, every: int = 200,
                 metrics: LoopMetrics | None = None) -> None:
        self.reference = reference
        self.features: deque[np.ndarray] = deque(maxlen=window)
        self.scores: deque[float] = deque(maxlen=window)
        self.min_rows = min_rows
        self.every = every
        self.metrics = metrics
        self._since = 0
        self.latest: dict[str, float] = {}

    def observe(self, features: np.ndarray, scores: np.ndarray) -> None:
        """Windows [n, F] with their scores [n]."""
        self.features.extend(features)
        self.scores.extend(scores.tolist())
        self._since += len(scores)
        if self._since >= self.every and len(self.scores) >= self.min_rows:
            self.update()

    def update(self) -> dict[str, float]:
        self._since = 0
        if not self.scores:
            return {}
        self.latest = self.reference.psi_table(np.stack(self.features), np.asarray(self.scores))
        if self.metrics:
            for name, value in self.latest.items():
                if name == SCORE:
                    self.metrics.score_psi.set(value)
                else:
                    self.metrics.feature_psi.labels(feature=name).set(value)
            self.metrics.drift_rows.set(len(self.scores))
        return self.latest


class _Held:
    """Rows waiting for the next file, column by column: extending lists is cheap, and a file is one DataFrame
    built at once (the writer shares the GIL with the requests, so it must not linger)."""

    def __init__(self) -> None:
        self.cols: dict[str, list[Any]] = {}
        self.feats: list[np.ndarray] = []
        self.n = 0

    def clear(self) -> None:
        self.cols, self.feats, self.n = {}, [], 0

    def extend(self, cols: dict[str, list[Any]], feats: np.ndarray) -> None:
        k = len(feats)
        for name in cols.keys() - self.cols.keys():  # a component this model has and earlier rows lacked
            self.cols[name] = [float("nan")] * self.n
        for name, values in self.cols.items():
            values.extend(cols.get(name, [float("nan")] * k))
        self.feats.append(feats)
        self.n += k

    def take(self) -> pd.DataFrame:
        frame = pd.concat([pd.DataFrame(self.cols), pd.DataFrame(np.concatenate(self.feats), columns=FEATURE_COLUMNS)],
                          axis=1)
        self.clear()
        return frame


def _keep(request_id: str, entity_hash: str | None, rate: float) -> bool:
    if rate >= 1.0:
        return True
    h = hashlib.blake2b(f"{request_id}:{entity_hash}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") / 2**64 < rate


class ScoreLog:
    def __init__(self, path: str, salt: str, sample_rate: float = 1.0, flush_rows: int = 5000,
                 flush_s: float = 10.0, max_files: int = 1000, queue_size: int = 10_000,
                 metrics: LoopMetrics | None = None, monitor: DriftMonitor | None = None) -> None:
        self.sink = sink_for(path)
        self.salt = salt
        self.sample_rate = sample_rate
        self.flush_rows = flush_rows
        self.flush_s = flush_s
        self.max_files = max_files
        self.metrics = metrics
        self.monitor = monitor
        self.dropped = 0
        self.written = 0
        self._q: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self._held = _Held()
        self._seq = 0
        self._last_flush = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="seqguard-score-log", daemon=True)
        self._thread.start()

    # -- request side: nothing but a non-blocking put -------------------------------------------------------------

    def record(self, route: str, request_id: str, role: str, features: list[np.ndarray],
               results: list[dict[str, Any]]) -> bool:
        try:
            self._q.put_nowait((time.time(), route, request_id, role, features, results))
            return True
        except queue.Full:
            self.dropped += len(results)
            if self.metrics:
                self.metrics.rows.labels(outcome="dropped").inc(len(results))
            return False

    # -- writer thread --------------------------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            timeout = max(0.05, self.flush_s - (time.monotonic() - self._last_flush))
            try:
                item = self._q.get(timeout=timeout)
            except queue.Empty:
                item = None
            if item is _STOP:
                self._flush()
                return
            if isinstance(item, threading.Event):  # flush(): write what is held, then wake the caller
                self._flush()
                item.set()
                continue
            if item is not None:
                try:
                    self._add(*item)
                except Exception:  # a bad row must not stop the logger
                    log.exception("score log: could not turn a result into rows")
            if self._held.n >= self.flush_rows or (
                    self._held.n and time.monotonic() - self._last_flush >= self.flush_s):
                self._flush()

    def _add(self, ts: float, route: str, request_id: str, role: str, features: list[np.ndarray],
             results: list[dict[str, Any]]) -> None:
        feats = np.asarray(features, dtype=np.float64).reshape(len(results), len(FEATURE_COLUMNS))
        entities = [hash_id(r["entity_id"], self.salt) for r in results]
        if role == "primary" and self.monitor is not None:
            self.monitor.observe(feats, np.array([r["score"] for r in results], dtype=np.float64))
        keep = [i for i, e in enumerate(entities) if _keep(request_id, e, self.sample_rate)]
        if self.metrics and len(results) - len(keep):
            self.metrics.rows.labels(outcome="sampled_out").inc(len(results) - len(keep))
        if not keep:
            return
        kept = [results[i] for i in keep]
        k = len(kept)
        cols: dict[str, list[Any]] = {
            "ts": [datetime.fromtimestamp(ts, UTC)] * k, "request_id": [request_id] * k, "route": [route] * k,
            "role": [role] * k, "entity_hash": [entities[i] for i in keep],
            "model_version": [r["model_version"] for r in kept], "score": [float(r["score"]) for r in kept],
            "decision": [r["decision"] for r in kept], "degraded": [bool(r["degraded"]) for r in kept],
            "n_events": [int(r["n_events"]) for r in kept]}
        for name in kept[0]["component_scores"]:
            cols[COMPONENT_PREFIX + name] = [float(r["component_scores"].get(name, np.nan)) for r in kept]
        self._held.extend(cols, feats[keep])

    def _flush(self) -> None:
        """Write what is held, as files of at most `flush_rows` rows."""
        self._last_flush = time.monotonic()
        if not self._held.n:
            return
        frame = self._held.take()
        for start in range(0, len(frame), self.flush_rows):
            self._write(frame.iloc[start:start + self.flush_rows])

    def _write(self, frame: pd.DataFrame) -> None:
        self._seq += 1
        name = f"scores-{datetime.now(UTC):%Y%m%dT%H%M%S%f}-{os.getpid()}-{self._seq:06d}.parquet"
        buf = io.BytesIO()
        frame.to_parquet(buf, index=False)
        try:
            self.sink.put(name, buf.getvalue())
            self.sink.prune(self.max_files)
        except Exception as e:
            log.warning("score log: writing %s failed (%d rows lost): %s", name, len(frame), e)
            if self.metrics:
                self.metrics.write_errors.inc()
                self.metrics.rows.labels(outcome="dropped").inc(len(frame))
            return
        self.written += len(frame)
        if self.metrics:
            self.metrics.files.inc()
            self.metrics.rows.labels(outcome="written").inc(len(frame))

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until everything queued so far is written (tests, shutdown)."""
        done = threading.Event()
        self._q.put(done, timeout=timeout)
        done.wait(timeout)

    def close(self, timeout: float = 10.0) -> None:
        with contextlib.suppress(queue.Full):
            self._q.put(_STOP, timeout=timeout)
        self._thread.join(timeout)


# ---------------------------------------------------------------------------------------------------------------
# Where the files go, and reading them back


class LocalSink:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def put(self, name: str, data: bytes) -> None:
        tmp = self.folder / f".{name}.tmp"
        tmp.write_bytes(data)
        tmp.rename(self.folder / name)  # readers never see half a file

    def names(self) -> list[str]:
        return sorted(p.name for p in self.folder.glob("scores-*.parquet"))

    def prune(self, keep: int) -> None:
        names = self.names()
        for name in names[: max(0, len(names) - keep)]:
            with contextlib.suppress(FileNotFoundError):
                (self.folder / name).unlink()

    def read(self, name: str) -> bytes:
        return (self.folder / name).read_bytes()


class S3Sink:
    """boto3 honours AWS_ENDPOINT_URL (moto_server, MinIO) and the usual credential chain."""

    def __init__(self, url: str) -> None:
        import boto3

        rest = url.removeprefix("s3://")
        self.bucket, _, prefix = rest.partition("/")
        if not self.bucket:
            raise ValueError(f"score log: {url!r} names no bucket (s3://bucket/prefix)")
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.client = boto3.client("s3")

    def put(self, name: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self.prefix + name, Body=data)

    def names(self) -> list[str]:
        out: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket,
                                                                          Prefix=self.prefix + "scores-"):
            out += [o["Key"][len(self.prefix):] for o in page.get("Contents", [])]
        return sorted(n for n in out if n.endswith(".parquet"))

    def prune(self, keep: int) -> None:
        names = self.names()
        old = names[: max(0, len(names) - keep)]
        for i in range(0, len(old), 1000):
            self.client.delete_objects(Bucket=self.bucket, Delete={
                "Objects": [{"Key": self.prefix + n} for n in old[i:i + 1000]]})

    def read(self, name: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=self.prefix + name)["Body"].read()


def sink_for(path: str) -> LocalSink | S3Sink:
    return S3Sink(path) if str(path).startswith("s3://") else LocalSink(Path(path))


def read_score_log(path: str | Path, since: datetime | None = None, role: str | None = "primary") -> pd.DataFrame:
    """Every row of a score log (folder, single file or s3:// prefix), optionally from `since` on and one role."""
    p = str(path)
    if not p.startswith("s3://") and Path(p).is_file():
        frames = [pd.read_parquet(p)]
    else:
        if not p.startswith("s3://") and not Path(p).is_dir():
            raise DriftError(f"score log {p}: no such folder or file")
        sink = sink_for(p)
        frames = [pd.read_parquet(io.BytesIO(sink.read(n))) for n in sink.names()]
    if not frames:
        raise DriftError(f"score log {p} holds no scores-*.parquet files")
    frame = pd.concat(frames, ignore_index=True)
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    if since is not None:
        frame = frame[frame["ts"] >= pd.Timestamp(since)]
    if role is not None and "role" in frame:
        frame = frame[frame["role"] == role]
    return frame.reset_index(drop=True)


def log_features(frame: pd.DataFrame) -> np.ndarray:
    missing = [c for c in FEATURE_COLUMNS if c not in frame]
    if missing:
        raise DriftError(f"the score log lacks feature columns {missing[:5]}: written by another seqguard version?")
    return frame[FEATURE_COLUMNS].to_numpy(dtype=np.float64)
