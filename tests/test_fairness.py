"""The large-request lane: large bodies take turns, small ones never wait for it."""

from __future__ import annotations

import asyncio
import json

from pydantic import TypeAdapter

from seqguard.events import Event
from seqguard.service.fairness import LargeRequestLane, validated_events


def scope(length: int | None, method: str = "POST") -> dict:
    headers = [] if length is None else [(b"content-length", str(length).encode())]
    return {"type": "http", "method": method, "path": "/score", "headers": headers}


def test_large_requests_take_turns_and_small_ones_pass():
    log: list[str] = []

    async def app(scope, receive, send):
        name = scope["name"]
        log.append(f"{name}+")
        await asyncio.sleep(0.02)
        log.append(f"{name}-")

    lane = LargeRequestLane(app, large_bytes=1000)

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def call(name: str, length: int | None, delay: float = 0.0):
        await asyncio.sleep(delay)
        await lane({**scope(length), "name": name}, receive, None)

    async def main():
        await asyncio.gather(call("big1", 5000), call("big2", 5000), call("small", 200, 0.005),
                             call("chunked", None, 0.005))

    asyncio.run(main())
    # The second large request starts only after the first has finished; the small and the chunked ones ran
    # meanwhile.
    assert log.index("big2+") > log.index("big1-")
    assert log.index("small+") < log.index("big1-") and log.index("chunked+") < log.index("big1-")


def test_lane_off_and_non_http_pass_through():
    seen = []

    async def app(scope, receive, send):
        seen.append(scope["type"])

    asyncio.run(LargeRequestLane(app, large_bytes=0)(scope(10**6), None, None))
    asyncio.run(LargeRequestLane(app)({"type": "lifespan"}, None, None))
    assert seen == ["http", "lifespan"]


def _body_app(seen: list):
    async def app(scope, receive, send):
        message = await receive()
        seen.append((message["body"], validated_events(["from bentoml"])))

    return app


def _events(n: int) -> list[dict]:
    return [{"user_id": f"u{i % 7}", "ts": 1_700_000_000 + i, "event_type": ["view", "login", "search"][i % 3],
             "event_id": f"e{i}", "price": 1.5 * i} for i in range(n)]


def test_large_event_body_is_validated_in_slices_and_handed_over():
    seen: list = []
    body = json.dumps({"events": _events(450)}).encode()  # three slices

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    asyncio.run(LargeRequestLane(_body_app(seen), large_bytes=1000)(scope(len(body)), receive, None))
    ((passed, events),) = seen
    assert passed == b'{"events":[]}'  # BentoML validates an empty list
    assert events == TypeAdapter(list[Event]).validate_json(json.dumps(_events(450)))  # what BentoML would give


def test_anything_but_a_valid_events_body_reaches_bentoml_untouched():
    bad = _events(300)
    bad[250]["ts"] = "yesterday-ish"
    for payload in ({"events": bad}, {"events": _events(300), "extra": 1}, [1, 2], "x" * 2000):
        seen: list = []
        body = json.dumps(payload).encode()

        async def receive(body=body):
            return {"type": "http.request", "body": body, "more_body": False}

        asyncio.run(LargeRequestLane(_body_app(seen), large_bytes=1000)(scope(len(body)), receive, None))
        assert seen == [(body, ["from bentoml"])]


def test_a_large_requests_steps_wait_while_small_requests_are_inside():
    from seqguard.service.fairness import in_background, take_turn

    log: list[str] = []

    async def app(scope, receive, send):
        if scope["name"] == "big":
            assert in_background()
            for i in range(20):
                await take_turn()
                log.append(f"step{i}")
                await asyncio.sleep(0.003)
        else:
            assert not in_background()
            log.append("small+")
            await asyncio.sleep(0.03)
            log.append("small-")

    lane = LargeRequestLane(app, large_bytes=1000)

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def call(name: str, length: int, delay: float = 0.0):
        await asyncio.sleep(delay)
        await lane({**scope(length), "path": "/other", "name": name}, receive, None)

    async def main():
        await asyncio.gather(call("big", 5000), call("small", 200, 0.01))

    asyncio.run(main())
    inside = log[log.index("small+") + 1 : log.index("small-")]
    # At most the step already past its turn when the small request came in; round-robin would have run ~10.
    assert len(inside) <= 1, log
    assert log.count("small+") == 1 and sum(s.startswith("step") for s in log) == 20


def test_the_foreground_gate_works_on_successive_event_loops():
    from seqguard.service.fairness import FOREGROUND

    async def small_inside_then_wait(hold: float) -> float:
        FOREGROUND.enter()
        asyncio.get_running_loop().call_later(hold, FOREGROUND.leave)
        t0 = asyncio.get_running_loop().time()
        await FOREGROUND.wait_idle(1.0)
        return asyncio.get_running_loop().time() - t0

    for _ in range(2):  # a second loop must not find the first loop's event (RuntimeError: bound to another loop)
        waited = asyncio.run(small_inside_then_wait(0.02))
        assert 0.015 <= waited < 0.5
    assert FOREGROUND.active == 0
