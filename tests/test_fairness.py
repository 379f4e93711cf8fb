"""The large-request lane: large bodies take turns, small ones never wait for it."""

from __future__ import annotations

import asyncio

from seqguard.service.fairness import LargeRequestLane


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

    async def call(name: str, length: int | None, delay: float = 0.0):
        await asyncio.sleep(delay)
        await lane({**scope(length), "name": name}, None, None)

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
