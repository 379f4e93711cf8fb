"""Inference backends: one small interface, three implementations. The scoring code never knows which it talks to.

- `EmbeddedBackend`: ONNX Runtime in process on the repository's ONNX files (the default; no server to run).
- `TritonBackend`: tritonclient gRPC (asyncio) to the repository's ensemble, with a timeout per call, bounded retries
  with jitter (only for UNAVAILABLE / DEADLINE_EXCEEDED: retrying a rejected request cannot help), one reused
  channel, and a circuit breaker fed one failure per failed request (retries included), so a dead server costs a
  fast failure, not a timeout each, and a few bad requests cannot open it.
- `LocalTritonBackend`: launches the tritonserver of the nvidia-pytriton wheel on the repository as a supervised
  child process (restarted when it dies) and talks to it as `TritonBackend` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from seqguard.contracts import ENSEMBLE_MODEL, MODEL_OUTPUT, ensemble_output, infer_inputs
from seqguard.features import CLS_ID, MASK_ID, PAD_ID, SEP_ID
from seqguard.service.batcher import bucket_length

log = logging.getLogger("seqguard.backend")


class BackendUnavailable(RuntimeError):
    """The backend cannot answer now (down, timed out, circuit open). The caller degrades or refuses."""


class BackendRejected(BackendUnavailable):
    """The backend answered, but refused this request (e.g. INVALID_ARGUMENT): not an outage, not retried."""


# gRPC statuses worth another attempt: the server is (maybe briefly) away or slow. Everything else is an answer.
RETRYABLE = frozenset({"StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED"})


class Backend(Protocol):
    name: str
    components: list[str]

    async def ready(self) -> bool: ...

    async def infer(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Padded `MODEL_INPUTS` tensors [B, L] -> {component: logits [B, 2]}."""
        ...

    async def close(self) -> None: ...


def lone_row_exact(session: Any, vocab_size: int, max_len: int, per_length: int = 4, seed: int = 0) -> bool:
    """Whether `session` computes a window alone (one row) bit-identically to the same window in a batch.

    ONNX Runtime's CPU kernels take a matrix-vector path for a one-row float product, whose rounding can differ from
    the batched path in the last bit. Whether a model has such a product depends on its graph: in a static-int8 BERT
    every batch-sized product is an integer one (exact either way), while the GRU's recurrent step is a float
    product over the batch. Probed once at start-up on padded random windows of every bucket length (row 0 of a
    batch of 1 against a batch of 2); a model that differs anywhere keeps the copy for lone windows, which costs it
    a second row (about twice the call)."""
    rng = np.random.default_rng(seed)
    names = {i.name for i in session.get_inputs()}
    for length in sorted({bucket_length(n, max_len) for n in range(3, max_len + 1)}):  # every padded length served
        for _ in range(per_length):
            rows = []
            for n in rng.integers(1, length - 1, size=2):  # tokens between [CLS] and [SEP]
                ids = np.full(length, PAD_ID, dtype=np.int64)
                ids[0], ids[n + 1] = CLS_ID, SEP_ID
                ids[1 : n + 1] = rng.integers(MASK_ID + 1, vocab_size, size=n)
                rows.append(ids)
            ids = np.stack(rows)
            full = {"input_ids": ids, "attention_mask": (ids != PAD_ID).astype(np.int64),
                    "token_type_ids": np.zeros_like(ids)}
            feed = {k: v for k, v in full.items() if k in names}
            one = session.run([MODEL_OUTPUT.name], {k: v[:1] for k, v in feed.items()})[0]
            two = session.run([MODEL_OUTPUT.name], feed)[0][:1]
            if not np.array_equal(one, two):
                return False
    return True


INLINE_TOKENS = 1024  # padded tokens per call up to which the embedded backend runs on the event loop


class EmbeddedBackend:
    name = "embedded"

    # The batcher may send a lone window as one row: this backend adds the copy itself, only to the models whose
    # one-row kernels round differently (seqguard/service/batcher.py explains why the copy exists at all).
    min_rows = 1

    def __init__(self, onnx_files: dict[str, Path], intra_op_threads: int = 0, vocab_size: int | None = None,
                 max_len: int = 128) -> None:
        import onnxruntime as ort

        self.components = list(onnx_files)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = intra_op_threads
        opts.inter_op_num_threads = 1
        # Worker threads sleep between calls instead of spinning: a spinning pool holds a core the event loop (and,
        # on a small machine, the other worker) needs; the wake-up costs microseconds against millisecond calls.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
        self.sessions = {
            name: ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
            for name, path in onnx_files.items()
        }
        self._inputs = {name: {i.name for i in s.get_inputs()} for name, s in self.sessions.items()}
        # Per model: does a lone window give the bits it gives inside a batch? (See lone_row_exact.) Unprobed models
        # (no vocabulary given) are assumed not to, and get the copy.
        self._lone_exact = {name: vocab_size is not None and lone_row_exact(s, vocab_size, max_len)
                            for name, s in self.sessions.items()}

    async def ready(self) -> bool:
        return bool(self.sessions)

    def infer_sync(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = {}
        lone = len(batch["input_ids"]) == 1
        for name, sess in self.sessions.items():
            feed = {k: v for k, v in batch.items() if k in self._inputs[name]}
            if lone and not self._lone_exact[name]:
                feed = {k: np.concatenate([v, v]) for k, v in feed.items()}
                out[name] = np.asarray(sess.run([MODEL_OUTPUT.name], feed)[0][:1], dtype=np.float32)
            else:
                out[name] = np.asarray(sess.run([MODEL_OUTPUT.name], feed)[0], dtype=np.float32)
        return out

    async def infer(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if batch["input_ids"].size <= INLINE_TOKENS:
            # A small call costs less than handing it to a thread (a queue put, a wake-up and a GIL hand-over: about
            # a millisecond on a loaded core, measured with bench.profile_paths), so it runs on the event loop.
            return self.infer_sync(batch)
        # ORT releases the GIL: a worker thread keeps the event loop accepting requests meanwhile.
        return await asyncio.to_thread(self.infer_sync, batch)

    async def close(self) -> None:
        self.sessions.clear()


class CircuitBreaker:
    """Closed -> open after `threshold` consecutive failures; half-open after `cooldown` lets one call try."""

    def __init__(self, threshold: int = 5, cooldown_seconds: float = 5.0) -> None:
        self.threshold = threshold
        self.cooldown = cooldown_seconds
        self.failures = 0
        self.opened_at: float | None = None

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "half_open" if time.monotonic() - self.opened_at >= self.cooldown else "open"

    def allow(self) -> bool:
        return self.state != "open"

    def success(self) -> None:
        self.failures = 0
        self.opened_at = None

    def failure(self) -> None:
        self.failures += 1
        if self.failures >= self.threshold or self.opened_at is not None:
            self.opened_at = time.monotonic()


class TritonBackend:
    name = "triton"

    def __init__(
        self,
        url: str,
        components: list[str],
        timeout_seconds: float = 1.0,
        retries: int = 2,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self.url = url
        self.components = list(components)
        self.timeout = timeout_seconds
        self.retries = retries
        self.breaker = breaker or CircuitBreaker()
        self._client = None

    def _get_client(self):
        if self._client is None:
            import tritonclient.grpc.aio as grpcclient

            self._client = grpcclient.InferenceServerClient(self.url)
        return self._client

    async def ready(self) -> bool:
        try:
            client = self._get_client()
            if not await asyncio.wait_for(client.is_server_ready(), self.timeout):
                return False
            for model in [ENSEMBLE_MODEL, *self.components]:
                if not await asyncio.wait_for(client.is_model_ready(model), self.timeout):
                    return False
            return True
        except Exception:
            return False

    async def infer(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import tritonclient.grpc.aio as grpcclient

        if not self.breaker.allow():
            raise BackendUnavailable("triton circuit open")
        inputs = infer_inputs(batch, grpcclient)
        outputs = [grpcclient.InferRequestedOutput(ensemble_output(c)) for c in self.components]
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            try:
                result = await self._get_client().infer(
                    ENSEMBLE_MODEL, inputs, outputs=outputs, client_timeout=self.timeout
                )
                self.breaker.success()
                return {c: np.asarray(result.as_numpy(ensemble_output(c)), dtype=np.float32) for c in self.components}
            except Exception as e:  # tritonclient raises InferenceServerException for every failure kind
                last = e
                if not retryable(e):
                    # The server is up and said no: retrying cannot help, and it says nothing about its health.
                    raise BackendRejected(f"triton rejected the request: {str(e)[:200]}") from None
                if attempt < self.retries:
                    # Full jitter keeps replicas from retrying in lockstep against a recovering server.
                    await asyncio.sleep(random.uniform(0, 0.05 * 2**attempt))
        self.breaker.failure()  # one per request, however many attempts it took
        raise BackendUnavailable(f"triton infer failed: {str(last)[:200]}")

    async def close(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.close()
            self._client = None


def retryable(error: Exception) -> bool:
    """UNAVAILABLE / DEADLINE_EXCEEDED from tritonclient; any other status, or an error raised client-side with none,
    is final."""
    status = getattr(error, "status", None)
    code = status() if callable(status) else None
    return code is not None and str(code) in RETRYABLE


class LocalTritonBackend(TritonBackend):
    """Runs tritonserver as a child process and restarts it when it dies."""

    name = "local_triton"

    def __init__(self, repo: Path, components: list[str], check_interval: float = 1.0, timeout_seconds: float = 1.0,
                 retries: int = 2, breaker: CircuitBreaker | None = None) -> None:
        from seqguard.processes.tritonserver import TritonProcess, free_port

        # Fixed ports, so a restarted server is found where the client already points.
        self.process = TritonProcess(repo, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port())
        self.process.start()
        assert self.process.urls is not None
        super().__init__(self.process.urls.grpc, components, timeout_seconds=timeout_seconds, retries=retries,
                         breaker=breaker)
        self.check_interval = check_interval
        self.restarts = 0
        self._supervisor: asyncio.Task[None] | None = None

    def _ensure_supervisor(self) -> None:
        if self._supervisor is None:
            with contextlib.suppress(RuntimeError):  # no running loop yet: the next call starts it
                self._supervisor = asyncio.get_running_loop().create_task(self._supervise())

    async def _supervise(self) -> None:
        while True:
            await asyncio.sleep(self.check_interval)
            if not self.process.alive():
                log.warning("local tritonserver exited; restarting")
                await asyncio.to_thread(self.process.start)
                self.restarts += 1

    async def ready(self) -> bool:
        self._ensure_supervisor()
        return self.process.alive() and await super().ready()

    async def infer(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self._ensure_supervisor()
        return await super().infer(batch)

    async def close(self) -> None:
        if self._supervisor is not None:
            self._supervisor.cancel()
        await super().close()
        await asyncio.to_thread(self.process.stop)
