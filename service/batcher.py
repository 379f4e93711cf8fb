"""A micro-batcher: windows from concurrent requests share one backend call, within a bounded wait.

The queue is bounded (a full queue is refused at once with `QueueFull`, which the API turns into a 429), and every
wait has a timeout. One batch is in flight at a time per process: on two cores a second concurrent ONNX Runtime
call would only split the same cores.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import numpy as np

from seqguard.features import Encoded, pad_batch


class QueueFull(RuntimeError):
    """More windows are waiting than the configured bound."""


@dataclass
class _Job:
    items: list[Encoded]
    future: asyncio.Future[dict[str, np.ndarray]]
    enqueued: float = field(default_factory=time.perf_counter)


InferFn = Callable[[dict[str, np.ndarray]], Awaitable[dict[str, np.ndarray]]]


class MicroBatcher:
    def __init__(
        self,
        infer: InferFn,
        max_batch: int = 32,
        max_wait_ms: float = 2.0,
        max_queue: int = 2048,
        on_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        self.infer = infer
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self.max_queue = max_queue
        self.on_batch = on_batch
        self._queue: asyncio.Queue[_Job] | None = None
        self._pending = 0
        self._worker: asyncio.Task[None] | None = None

    def _start(self) -> asyncio.Queue[_Job]:
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._worker = asyncio.get_running_loop().create_task(self._run())
        return self._queue

    @property
    def pending(self) -> int:
        return self._pending

    async def submit(self, items: list[Encoded]) -> dict[str, np.ndarray]:
        """Logits for `items`, in order: {component: [len(items), 2]}."""
        if not items:
            return {}
        queue = self._start()
        if self._pending + len(items) > self.max_queue:
            raise QueueFull(f"{self._pending} windows already waiting (limit {self.max_queue})")
        fut: asyncio.Future[dict[str, np.ndarray]] = asyncio.get_running_loop().create_future()
        self._pending += len(items)
        queue.put_nowait(_Job(items, fut))
        return await fut

    async def _run(self) -> None:
        assert self._queue is not None
        while True:
            first = await self._queue.get()
            jobs = [first]
            size = len(first.items)
            deadline = time.perf_counter() + self.max_wait
            while size < self.max_batch:
                timeout = deadline - time.perf_counter()
                if timeout <= 0:
                    break
                try:
                    job = await asyncio.wait_for(self._queue.get(), timeout)
                except TimeoutError:
                    break
                jobs.append(job)
                size += len(job.items)
            await self._execute(jobs)

    async def _execute(self, jobs: list[_Job]) -> None:
        items = [e for j in jobs for e in j.items]
        self._pending -= len(items)
        live = [j for j in jobs if not j.future.done()]  # callers that timed out no longer wait
        if not live:
            return
        t0 = time.perf_counter()
        todo = [e for j in live for e in j.items]
        try:
            # A large request is split so no backend call exceeds max_batch (Triton's max_batch_size).
            parts = [
                await self.infer(pad_batch(todo[i : i + self.max_batch])) for i in range(0, len(todo), self.max_batch)
            ]
            out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        except Exception as e:
            for j in live:
                if not j.future.done():
                    j.future.set_exception(e)
            return
        if self.on_batch:
            self.on_batch(sum(len(j.items) for j in live), time.perf_counter() - t0)
        start = 0
        for j in live:
            n = len(j.items)
            if not j.future.done():
                j.future.set_result({k: v[start : start + n] for k, v in out.items()})
            start += n

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
