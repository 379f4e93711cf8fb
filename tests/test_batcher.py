import asyncio

import numpy as np
import pytest

from seqguard.features import Encoded
from service.backends import CircuitBreaker
from service.batcher import MicroBatcher, QueueFull


def enc(n: int) -> Encoded:
    ids = np.arange(2, 2 + n, dtype=np.int64)
    return Encoded(ids, np.zeros_like(ids), np.zeros(3, dtype=np.float32))


def test_concurrent_requests_share_batches_and_get_their_own_rows():
    calls = []

    async def infer(batch):
        calls.append(batch["input_ids"].shape)
        # Each row's logit = its length, so a mix-up between requests would show.
        lengths = batch["attention_mask"].sum(1).astype(np.float32)
        return {"m": np.stack([lengths, -lengths], 1)}

    async def main():
        b = MicroBatcher(infer, max_batch=8, max_wait_ms=20)
        outs = await asyncio.gather(*(b.submit([enc(i + 1)]) for i in range(6)))
        await b.close()
        return outs

    outs = asyncio.run(main())
    assert [float(o["m"][0, 0]) for o in outs] == [1, 2, 3, 4, 5, 6]
    assert len(calls) < 6  # grouped


def test_large_request_is_split_to_max_batch_and_queue_is_bounded():
    sizes = []

    async def infer(batch):
        sizes.append(len(batch["input_ids"]))
        await asyncio.sleep(0.01)
        return {"m": np.zeros((len(batch["input_ids"]), 2), np.float32)}

    async def main():
        b = MicroBatcher(infer, max_batch=4, max_wait_ms=1, max_queue=12)
        out = await b.submit([enc(3)] * 10)
        assert out["m"].shape == (10, 2)
        first = asyncio.ensure_future(b.submit([enc(3)] * 10))
        await asyncio.sleep(0)
        with pytest.raises(QueueFull):
            await b.submit([enc(3)] * 5)
        await first
        await b.close()

    asyncio.run(main())
    assert max(sizes) == 4


def test_backend_errors_reach_every_waiting_caller():
    async def infer(batch):
        raise RuntimeError("boom")

    async def main():
        b = MicroBatcher(infer, max_batch=8, max_wait_ms=5)
        res = await asyncio.gather(b.submit([enc(1)]), b.submit([enc(2)]), return_exceptions=True)
        await b.close()
        return res

    assert all(isinstance(r, RuntimeError) for r in asyncio.run(main()))


def test_circuit_breaker_opens_and_half_opens(monkeypatch):
    now = [0.0]
    monkeypatch.setattr("service.backends.time.monotonic", lambda: now[0])
    br = CircuitBreaker(threshold=2, cooldown_seconds=5)
    br.failure()
    assert br.allow()
    br.failure()
    assert br.state == "open" and not br.allow()
    now[0] = 6.0
    assert br.state == "half_open" and br.allow()
    br.failure()  # the trial failed: open again
    assert br.state == "open"
    now[0] = 12.0
    br.success()
    assert br.state == "closed"
