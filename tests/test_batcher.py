import asyncio

import numpy as np
import pytest

from seqguard.features import Encoded
from seqguard.service.backends import CircuitBreaker
from seqguard.service.batcher import MicroBatcher, QueueFull


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
    monkeypatch.setattr("seqguard.service.backends.time.monotonic", lambda: now[0])
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


# ---------------------------------------------------------------------------------------------------------------------
# Determinism: a window's tensor row does not depend on what shares its call.


def test_calls_hold_one_length_bucket_and_never_a_single_row():
    from seqguard.service.batcher import bucket_length

    seen = []

    async def infer(batch):
        ids = batch["input_ids"]
        lengths = batch["attention_mask"].sum(1)
        seen.append((ids.shape, {bucket_length(int(n)) for n in lengths}))
        return {"m": np.stack([lengths, -lengths], 1).astype(np.float32)}

    async def main():
        b = MicroBatcher(infer, max_batch=8)
        lone = await b.submit([enc(3)])
        mixed = await asyncio.gather(*(b.submit([enc(n) for n in (3, 20, 40, 7)]) for _ in range(3)))
        await b.close()
        return lone, mixed

    lone, mixed = asyncio.run(main())
    assert seen[0][0] == (2, 16)  # one window: padded to its bucket, sent next to a copy of itself
    assert float(lone["m"][0, 0]) == 3
    for shape, buckets in seen:
        assert len(buckets) == 1 and shape[1] == buckets.pop()  # one bucket per call, padded to exactly it
        assert shape[0] >= 2
    for out in mixed:
        assert out["m"][:, 0].tolist() == [3, 20, 40, 7]
    assert bucket_length(3) == bucket_length(16) == 16 and bucket_length(65) == 80 and bucket_length(65, 70) == 70


def test_large_requests_are_interleaved_with_small_ones():
    calls = []

    async def infer(batch):
        calls.append(batch["attention_mask"].sum(1).tolist())
        await asyncio.sleep(0.001)
        return {"m": np.zeros((len(batch["input_ids"]), 2), np.float32)}

    async def main():
        b = MicroBatcher(infer, max_batch=4)
        bigs = [asyncio.ensure_future(b.submit([enc(5)] * 40)) for _ in range(4)]
        await asyncio.sleep(0)  # the large requests are queued (and the first call is in flight)
        await asyncio.gather(b.submit([enc(1)]), *bigs)
        await b.close()

    asyncio.run(main())
    small_call = next(i for i, c in enumerate(calls) if 1 in c)
    # 160 large windows = 40 calls; the one-window request, sent while the first is in flight, is in the second.
    assert small_call == 1
    assert len(calls) >= 40
    # Every call of the large requests takes from each of them in turn.
    assert calls[0] == [5, 5, 5, 5]


def test_a_caller_that_gives_up_has_its_windows_dropped():
    sizes = []
    gate = asyncio.Event

    async def infer(batch):
        sizes.append(len(batch["input_ids"]))
        await asyncio.sleep(0.05)
        return {"m": np.zeros((len(batch["input_ids"]), 2), np.float32)}

    async def main():
        b = MicroBatcher(infer, max_batch=4)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(b.submit([enc(2)] * 40), 0.02)
        assert b.pending == 0
        await asyncio.sleep(0.1)
        await b.close()

    del gate
    asyncio.run(main())
    assert len(sizes) == 1  # only the call already in flight ran


# ---------------------------------------------------------------------------------------------------------------------
# Triton client: retry only what a retry can fix, one breaker failure per request.


class _Status(Exception):
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code

    def status(self) -> str:
        return self.code


@pytest.mark.parametrize(("code", "attempts", "failures", "rejected"), [
    ("StatusCode.UNAVAILABLE", 3, 1, False),
    ("StatusCode.DEADLINE_EXCEEDED", 3, 1, False),
    ("StatusCode.INVALID_ARGUMENT", 1, 0, True),
    ("StatusCode.INTERNAL", 1, 0, True),
])
def test_triton_retries_only_transient_errors(code, attempts, failures, rejected):
    from seqguard.service.backends import BackendRejected, BackendUnavailable, TritonBackend

    tried = []

    class Client:
        async def infer(self, *args, **kwargs):
            tried.append(1)
            raise _Status(code)

    backend = TritonBackend("127.0.0.1:1", ["m"], retries=2, breaker=CircuitBreaker(threshold=2))
    backend._client = Client()
    batch = {k: np.zeros((2, 16), np.int64) for k in ("input_ids", "attention_mask", "token_type_ids")}
    with pytest.raises(BackendUnavailable) as err:
        asyncio.run(backend.infer(batch))
    assert isinstance(err.value, BackendRejected) is rejected
    assert len(tried) == attempts and backend.breaker.failures == failures
    # Two bad requests do not open the circuit (threshold 2); two requests to a dead server do.
    with pytest.raises(BackendUnavailable):
        asyncio.run(backend.infer(batch))
    assert backend.breaker.allow() is rejected


def test_a_backend_that_never_suspends_still_lets_others_in():
    """The embedded backend runs small calls inline (its coroutine never suspends): the batcher still yields
    between calls, so a request arriving while a large one is worked through joins the next call."""
    calls = []

    async def infer(batch):  # no await inside: like EmbeddedBackend.infer for a small call
        calls.append(batch["attention_mask"].sum(1).tolist())
        return {"m": np.zeros((len(batch["input_ids"]), 2), np.float32)}

    async def main():
        b = MicroBatcher(infer, max_batch=4)
        big = asyncio.ensure_future(b.submit([enc(5)] * 40))
        await asyncio.sleep(0)
        await asyncio.sleep(0)  # the worker has made its first call
        await asyncio.gather(b.submit([enc(1)]), big)
        await b.close()

    asyncio.run(main())
    small_call = next(i for i, c in enumerate(calls) if 1 in c)
    assert small_call <= 2 and len(calls) >= 10


def test_calls_are_bounded_in_padded_tokens():
    shapes = []

    async def infer(batch):
        shapes.append(batch["input_ids"].shape)
        return {"m": np.zeros((len(batch["input_ids"]), 2), np.float32)}

    async def main():
        b = MicroBatcher(infer, max_batch=32, max_call_tokens=256)
        for n in (10, 60, 120):  # buckets 16, 64, 128
            await b.submit([enc(n)] * 40)
        await b.close()

    asyncio.run(main())
    assert {s[1]: max(r for r, length in shapes if length == s[1]) for s in shapes} == {16: 16, 64: 4, 128: 2}
    assert MicroBatcher(None, max_batch=32).rows_per_call(128) == 32  # 0 = rows only, whatever their length


def test_a_large_requests_windows_give_way_to_small_ones():
    """A large request's job (a background one: the large-request lane marks it) is not mixed into the calls of
    small requests waiting meanwhile, and still completes."""
    from seqguard.service import fairness

    calls = []

    async def infer(batch):
        calls.append(batch["attention_mask"].sum(1).tolist())
        await asyncio.sleep(0.001)
        return {"m": np.zeros((len(batch["input_ids"]), 2), np.float32)}

    async def background(b):
        fairness._background.set(True)  # what LargeRequestLane sets for a large body (this task's context only)
        return await b.submit([enc(5)] * 64)

    async def main():
        b = MicroBatcher(infer, max_batch=8)
        big = asyncio.ensure_future(background(b))
        await asyncio.sleep(0)  # the large request's first call is in flight
        smalls = await asyncio.gather(*(b.submit([enc(1)]) for _ in range(3)))
        out = await big
        await b.close()
        return smalls, out

    smalls, out = asyncio.run(main())
    assert out["m"].shape == (64, 2) and all(s["m"].shape == (1, 2) for s in smalls)
    small_calls = [c for c in calls if 1 in c]
    assert small_calls == [[1, 1, 1]]  # the three small windows together, without large rows beside them
    assert calls.index([1, 1, 1]) == 1  # right after the call that was in flight


def test_requests_are_served_in_arrival_order_when_calls_are_full():
    """With more waiting requests than a call holds, none is overtaken by later arrivals (it would starve under
    steady load)."""
    calls = []

    async def infer(batch):
        calls.append(batch["attention_mask"].sum(1).tolist())
        await asyncio.sleep(0.005)
        return {"m": np.zeros((len(batch["input_ids"]), 2), np.float32)}

    async def main():
        b = MicroBatcher(infer, max_batch=2, min_rows=1)
        first = asyncio.ensure_future(b.submit([enc(1), enc(1)]))
        await asyncio.sleep(0)  # in flight
        wave = [asyncio.ensure_future(b.submit([enc(n)])) for n in (2, 3, 4, 5, 6)]
        await asyncio.sleep(0.007)  # the first call is done, the second in flight: two more arrive
        late = [asyncio.ensure_future(b.submit([enc(n)])) for n in (7, 8)]
        await asyncio.gather(first, *wave, *late)
        await b.close()

    asyncio.run(main())
    assert [n for c in calls[1:] for n in c] == [2, 3, 4, 5, 6, 7, 8]
