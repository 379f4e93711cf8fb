"""One lane for large requests: at most one request over `large_bytes` is inside the app at a time.

Why: BentoML validates a request body on the event loop before any handler runs, and a maximum-size body (1,000
entities x 5 events, ~1 MB) takes tens of milliseconds of pydantic work that nothing can interleave with. Four of
them at once put a one-event request behind all four parses. In one lane, a small request waits for at most one
large request's blocking step; the large ones still run back to back (on a core they would share anyway), and the
micro-batcher interleaves their windows with everyone else's (seqguard/service/batcher.py). Requests are told apart by
their Content-Length before anything is read; a body without one (chunked) is treated as small here and the gateway's
byte limit still applies to it.
"""

from __future__ import annotations

import asyncio
from typing import Any


class LargeRequestLane:
    def __init__(self, app: Any, large_bytes: int = 256 * 1024) -> None:
        self.app = app
        self.large_bytes = large_bytes
        self._lane: asyncio.Semaphore | None = None

    def _is_large(self, scope: dict[str, Any]) -> bool:
        if self.large_bytes <= 0 or scope["type"] != "http" or scope.get("method") not in ("POST", "PUT", "PATCH"):
            return False
        for k, v in scope.get("headers", []):
            if k.lower() == b"content-length":
                return v.isdigit() and int(v) > self.large_bytes
        return False

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if not self._is_large(scope):
            await self.app(scope, receive, send)
            return
        if self._lane is None:
            self._lane = asyncio.Semaphore(1)  # created on the serving loop
        async with self._lane:
            await self.app(scope, receive, send)
