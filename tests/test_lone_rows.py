"""A lone window costs one row where the model allows it, and its logits are still the bits a batch gives it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np

from seqguard.features import CLS_ID, SEP_ID, Encoded, pad_batch
from seqguard.service.batcher import bucket_length
from seqguard.service.runtime import build_engine
from seqguard.service.settings import ServiceSettings


def _window(rng: np.random.Generator, n: int, vocab: int) -> Encoded:
    ids = np.concatenate([[CLS_ID], rng.integers(5, vocab, size=n), [SEP_ID]]).astype(np.int64)
    return Encoded(ids, np.zeros_like(ids), np.zeros(3, dtype=np.float32))


def test_lone_window_gets_the_bits_of_a_batched_one(tiny_repo: Path) -> None:
    engine = build_engine(ServiceSettings(repo=tiny_repo, intra_op_threads=1))
    backend = engine.backend
    assert engine.batcher.min_rows == backend.min_rows == 1
    rng = np.random.default_rng(3)
    for _ in range(40):
        a, b = (_window(rng, int(rng.integers(1, engine.cfg.max_len - 2)), engine.vocab_size) for _ in range(2))
        length = bucket_length(len(a.input_ids), engine.cfg.max_len)
        b = Encoded(b.input_ids[:length], b.token_type_ids[:length], b.features)
        alone = backend.infer_sync(pad_batch([a], pad_to=length))
        paired = backend.infer_sync(pad_batch([a, b], pad_to=length))
        for name in backend.components:
            assert alone[name].shape == (1, 2)
            assert np.array_equal(alone[name][0], paired[name][0]), name  # bit-equal


def test_batcher_sends_a_lone_window_as_one_row_when_the_backend_copies_itself() -> None:
    rows = []

    async def infer(batch):
        rows.append(len(batch["input_ids"]))
        return {"m": np.zeros((len(batch["input_ids"]), 2), np.float32)}

    async def main(min_rows: int) -> None:
        from seqguard.service.batcher import MicroBatcher

        b = MicroBatcher(infer, max_batch=8, min_rows=min_rows)
        out = await b.submit([_window(np.random.default_rng(0), 3, 50)])
        assert out["m"].shape == (1, 2)
        await b.close()

    asyncio.run(main(1))
    asyncio.run(main(2))
    assert rows == [1, 2]
