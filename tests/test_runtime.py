"""The service's start-up check of the serving CPU against the int8 repository's recorded ISA assumptions."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from seqguard.export.quantize import isa_assumptions
from seqguard.service.runtime import isa_warning


def manifest(flavor: str | None, precision: str = "int8", isa: dict | None = None) -> SimpleNamespace:
    quant = {"isa": isa} if isa is not None else {}
    return SimpleNamespace(export=SimpleNamespace(target="cpu", precision=precision, cpu_flavor=flavor,
                                                  quantization=quant))


@pytest.mark.parametrize(("flavor", "built_on", "serving", "expect"), [
    ("portable", "avx512_vnni", "avx512_vnni", None),
    ("portable", "avx512_vnni", "avx2", "scores match"),  # valid on both; the gate ran elsewhere: said, not alarmed
    ("avx512_vnni", "avx512_vnni", "avx2", "re-export with `--cpu-flavor portable`"),
    ("avx2", "avx2", "avx2", None),
])
def test_isa_warning(flavor: str, built_on: str, serving: str, expect: str | None,
                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("seqguard.export.quantize.detect_cpu_flavor", lambda: built_on)
    warning = isa_warning(manifest(flavor, isa=isa_assumptions(flavor, "static")), serving)
    if expect is None:
        assert warning is None
    else:
        assert warning and expect in warning and serving in warning


def test_isa_warning_for_older_manifests_and_other_precisions() -> None:
    assert "re-export" in (isa_warning(manifest("avx512_vnni"), "avx2") or "")
    assert isa_warning(manifest("avx512_vnni"), "avx512_vnni") is None
    assert isa_warning(manifest(None, precision="fp32"), "avx2") is None


def test_overload_is_429_with_retry_after_or_degraded_overloaded(tiny_repo) -> None:
    """A full queue answers 429 with Retry-After; a request that waited past its deadline is answered degraded
    with reason `overloaded` (fail_open) or 429 (fail_closed); neither is reported as a backend outage."""
    import asyncio
    import time

    import numpy as np

    from seqguard.events import Event
    from seqguard.service.engine import RequestError
    from seqguard.service.runtime import build_engine
    from seqguard.service.settings import ServiceSettings

    class SlowBackend:
        name = "slow"

        def __init__(self, components: list[str]) -> None:
            self.components = components

        async def infer(self, batch):
            await asyncio.sleep(0.3)
            return {c: np.zeros((len(batch["input_ids"]), 2), np.float32) for c in self.components}

        async def ready(self) -> bool:
            return True

        async def close(self) -> None:
            pass

    def events(user: str, n: int = 2) -> list[Event]:
        now = time.time() - 60
        return [Event.model_validate({"user_id": user, "ts": now + i, "event_type": "view"}) for i in range(n)]

    async def scenario(policy: str):
        engine = build_engine(ServiceSettings(repo=tiny_repo, max_queue=3, request_timeout_ms=100,
                                              failure_policy=policy))
        engine.backend = SlowBackend(engine.scorer.components)
        first = asyncio.ensure_future(engine.score(await engine.windows_from_events(events("a"))))  # in flight
        await asyncio.sleep(0.01)
        second = asyncio.ensure_future(engine.score(await engine.windows_from_events(events("b") + events("c"))))
        await asyncio.sleep(0.01)  # two windows waiting: the queue (3) has room for one more, not two
        try:
            await engine.score(await engine.windows_from_events(events("d") + events("e")))
            full = None
        except RequestError as e:
            full = e
        got = await asyncio.gather(first, second, return_exceptions=True)
        await engine.close()
        return full, got

    full, (first, second) = asyncio.run(scenario("fail_open"))
    assert full is not None and full.status == 429 and "overloaded" in full.message
    assert int(full.headers["Retry-After"]) >= 1
    for answer in (first, second):
        assert all(r["degraded"] and r["degraded_reasons"] == ["overloaded"] for r in answer)
    full, (first, second) = asyncio.run(scenario("fail_closed"))
    assert full.status == 429
    assert isinstance(second, RequestError) and second.status == 429 and "Retry-After" in second.headers


def test_retry_after_is_the_queue_at_the_recent_seconds_per_window(tiny_repo) -> None:
    """Retry-After counts windows, not calls: a call holds fewer rows than max_batch when the token bound applies."""
    from seqguard.service.runtime import build_engine
    from seqguard.service.settings import ServiceSettings

    engine = build_engine(ServiceSettings(repo=tiny_repo))
    for _ in range(200):
        engine._on_batch(4, 0.4)  # 0.1 s per window
    engine.batcher._pending = 50
    assert engine._retry_after() == {"Retry-After": "5"}
    engine.batcher._pending = 0
    assert engine._retry_after() == {"Retry-After": "1"}  # never less than a second
