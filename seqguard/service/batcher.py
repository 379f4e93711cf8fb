"""A micro-batcher: windows from concurrent requests share one backend call, and a window's score never depends on
which other windows share it.

Determinism. Every window is padded to a length that depends only on its own length (`bucket_length`), and a backend
call only ever holds windows of one bucket, so a window is computed on exactly the same tensor row whatever else is
in flight. A call never holds a single row either: ONNX Runtime's CPU kernels take a different (matrix-vector) path
for one row, whose rounding differs from the batched path in the last bit, so a lone window is scored next to a copy
of itself (the embedded backend adds that copy itself, only for the models whose one-row result it found to differ
at start-up: backends.lone_row_exact). With row-independent models (padding-invariant RNN, fp32 or static int8; see
seqguard/export/quantize.py) the score of a window is then bit-identical alone or in any company.

Fairness. Requests are queued as jobs; each backend call takes windows round-robin from every waiting job (one
window per job per pass, up to `max_batch` rows and `max_call_tokens` padded tokens), so a one-window request is in
the next call even while large requests are being worked through, and a large request is split into calls of a few
milliseconds interleaved with the others. A large request's job (a background one, seqguard/service/fairness.py)
gives way: while small requests' windows wait, calls take only theirs, unless the background has not been served
for MAX_YIELD_S.

Latency. When the backend is idle, waiting windows go at once (no linger); windows that arrive while a call is in
flight form the next call. One call is in flight at a time per process: on two cores a second concurrent ONNX
Runtime call would only split the same cores.

Overload. The queue is bounded: a request that would exceed it is refused at once with `QueueFull` (429 with
Retry-After). A caller that stops waiting (its deadline passed) has its windows dropped before they are computed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import numpy as np

from seqguard.features import Encoded, pad_batch
from seqguard.service.fairness import MAX_YIELD_S, in_background

MIN_ROWS = 2


class QueueFull(RuntimeError):
    """More windows are waiting than the configured bound."""


def bucket_length(n_tokens: int, max_len: int | None = None) -> int:
    """The padded length of a window of `n_tokens`: the next multiple of 16 (at most 15 padding tokens; 8 buckets
    for the default max_len of 128), never past the model's `max_len`. A function of the window alone, by design."""
    length = max(16, -(-n_tokens // 16) * 16)
    return max(n_tokens, min(length, max_len)) if max_len else length


@dataclass(eq=False)
class _Job:
    items: list[Encoded]
    future: asyncio.Future[dict[str, np.ndarray]]
    # bucket length -> indices of this job's windows not yet sent, in order
    todo: dict[int, deque[int]] = field(default_factory=dict)
    left: int = 0
    parts: dict[str, np.ndarray] | None = None
    enqueued: float = field(default_factory=time.perf_counter)
    served: bool = False  # whether a call has taken any of its windows yet
    background: bool = False  # a large request's (seqguard/service/fairness.py): served after waiting small ones

    def index(self, max_len: int | None) -> None:
        for i, e in enumerate(self.items):
            self.todo.setdefault(bucket_length(len(e.input_ids), max_len), deque()).append(i)
        self.left = len(self.items)

    def oldest_bucket(self) -> int:
        return min(self.todo, key=lambda b: self.todo[b][0])

    def take(self, bucket: int) -> int | None:
        q = self.todo.get(bucket)
        if not q:
            return None
        i = q.popleft()
        self.served = True
        if not q:
            del self.todo[bucket]
        return i


InferFn = Callable[[dict[str, np.ndarray]], Awaitable[dict[str, np.ndarray]]]


class MicroBatcher:
    def __init__(
        self,
        infer: InferFn,
        max_batch: int = 32,
        max_wait_ms: float = 0.0,
        max_queue: int = 2048,
        on_batch: Callable[[int, float], None] | None = None,
        max_len: int | None = None,
        min_rows: int = MIN_ROWS,
        max_call_tokens: int = 0,
    ) -> None:
        self.infer = infer
        self.max_len = max_len
        # 1 for a backend that copies lone windows itself, only where its kernels need it (the embedded one).
        self.min_rows = min_rows
        self.max_batch = max(MIN_ROWS, max_batch)
        # When set (> 0): a call holds at most this many padded tokens (but at least MIN_ROWS rows), so no call keeps
        # the backend longer than a few milliseconds whatever the bucket.
        self.max_call_tokens = max_call_tokens
        # Only when set (> 0): how long a call that is not full may wait for more windows. 0 sends at once.
        self.max_wait = max_wait_ms / 1000.0
        self.max_queue = max_queue
        self.on_batch = on_batch
        self._jobs: deque[_Job] = deque()
        self._wake: asyncio.Event | None = None
        self._pending = 0
        self._worker: asyncio.Task[None] | None = None
        self._background_served = time.perf_counter()  # when a call last took a background job's windows

    def _start(self) -> asyncio.Event:
        if self._wake is None:
            self._wake = asyncio.Event()
            self._worker = asyncio.get_running_loop().create_task(self._run())
        return self._wake

    @property
    def pending(self) -> int:
        """Windows waiting to be sent to the backend."""
        return self._pending

    async def submit(self, items: list[Encoded]) -> dict[str, np.ndarray]:
        """Logits for `items`, in order: {component: [len(items), 2]}."""
        if not items:
            return {}
        wake = self._start()
        if self._pending + len(items) > self.max_queue:
            raise QueueFull(f"{self._pending} windows already waiting (limit {self.max_queue})")
        job = _Job(items, asyncio.get_running_loop().create_future(), background=in_background())
        job.index(self.max_len)
        self._pending += len(items)
        # At the round-robin cursor, behind the jobs that have not had a turn yet either: a new request is served
        # before those that already had one, and one that arrived earlier is never overtaken by later arrivals.
        ahead = 0
        while ahead < len(self._jobs) and not self._jobs[ahead].served:
            ahead += 1
        self._jobs.insert(ahead, job)
        wake.set()
        try:
            return await job.future
        finally:
            if not job.future.done():  # the caller gave up (timeout, disconnect): drop what was not sent
                job.future.cancel()
            self._drop(job)

    def _drop(self, job: _Job) -> None:
        if job in self._jobs:
            self._jobs.remove(job)
            self._pending -= sum(len(q) for q in job.todo.values())
            job.todo.clear()

    def rows_per_call(self, bucket: int) -> int:
        """How many windows of padded length `bucket` one call may hold."""
        if self.max_call_tokens <= 0:
            return self.max_batch
        return max(MIN_ROWS, min(self.max_batch, self.max_call_tokens // bucket))

    def _eligible(self) -> list[bool]:
        """Per queued job, whether the next call may take its windows: the small requests' jobs when any wait,
        unless background jobs have not been served for MAX_YIELD_S (so a large request always progresses)."""
        now = time.perf_counter()
        if not any(j.background for j in self._jobs) or now - self._background_served > MAX_YIELD_S:
            return [True] * len(self._jobs)
        fore = [not j.background for j in self._jobs]
        return fore if any(fore) else [True] * len(self._jobs)

    def _next_call(self) -> list[tuple[_Job, int]]:
        """Up to max_batch windows of one bucket (the bucket of the first eligible job at the cursor), round-robin
        over the eligible jobs."""
        eligible = self._eligible()
        head = self._jobs[eligible.index(True)]
        bucket = head.oldest_bucket()
        limit = self.rows_per_call(bucket)
        rows: list[tuple[_Job, int]] = []
        last = 0
        while len(rows) < limit:
            took = False
            for k, job in enumerate(self._jobs):
                if not eligible[k]:
                    continue
                i = job.take(bucket)
                if i is not None:
                    rows.append((job, i))
                    took, last = True, k
                    if len(rows) == limit:
                        break
            if not took:
                break
        self._pending -= len(rows)
        if any(j.background for j, _ in rows):
            self._background_served = time.perf_counter()
        # The next call starts with the job after the last one served: a job's turn comes round whatever the others'
        # sizes, so a one-window request waits at most for the call in flight and one more.
        self._jobs.rotate(-(last + 1))
        for job in {id(j): j for j, _ in rows}.values():
            if not job.todo:
                self._jobs.remove(job)
        return rows

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            if not self._jobs:
                self._wake.clear()
                await self._wake.wait()
                continue
            if self.max_wait > 0 and self._pending < self.max_batch:
                await asyncio.sleep(self.max_wait)
                if not self._jobs:
                    continue
            await self._execute(self._next_call())
            # A backend that answers without suspending (the embedded one runs small calls inline) would otherwise
            # keep the loop through every queued call: yield, so requests arriving meanwhile join the next call.
            await asyncio.sleep(0)

    async def _execute(self, rows: list[tuple[_Job, int]]) -> None:
        live = [(j, i) for j, i in rows if not j.future.done()]  # callers that gave up no longer wait
        if not live:
            return
        encoded = [j.items[i] for j, i in live]
        length = bucket_length(len(encoded[0].input_ids), self.max_len)
        if len(encoded) < self.min_rows:
            encoded = encoded + encoded[:1] * (self.min_rows - len(encoded))
        t0 = time.perf_counter()
        try:
            out = await self.infer(pad_batch(encoded, pad_to=length))
        except Exception as e:
            for j, _ in live:
                if not j.future.done():
                    j.future.set_exception(e)
                self._drop(j)
            return
        if self.on_batch:
            self.on_batch(len(live), time.perf_counter() - t0)
        for r, (j, i) in enumerate(live):
            if j.future.done():
                continue
            if j.parts is None:
                j.parts = {k: np.empty((len(j.items), *v.shape[1:]), dtype=v.dtype) for k, v in out.items()}
            for k, v in out.items():
                j.parts[k][i] = v[r]
            j.left -= 1
            if j.left == 0:
                j.future.set_result(j.parts)

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
