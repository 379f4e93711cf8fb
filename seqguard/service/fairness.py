"""One lane for large requests, run in the background of small ones, and their bodies validated in slices.

Why: BentoML validates a request body on the event loop before any handler runs, and a maximum-size body (1,000
entities x 5 events, ~1 MB) takes tens of milliseconds of pydantic work that nothing can interleave with. Four of
them at once put a one-event request behind all four parses. And a large request is hundreds of steps of a few
milliseconds (windows, model calls, scores): a small request that shares the event loop with it round-robin waits
one such step at each of its own awaits, tens of milliseconds in all. So:

- at most one request over `large_bytes` is inside the app at a time;
- it is a background request (`in_background()`): between two of its steps it takes its turn (`take_turn`) only
  when no small request is inside the app, or when it has waited `MAX_YIELD_S` (so it always progresses), and the
  micro-batcher serves waiting small requests' windows first (seqguard/service/batcher.py). A small request then
  waits for at most the one background step in progress;
- a large `{"events": [...]}` body is validated here, `SLICE` events at a time with a yield in between, by the same
  pydantic model in the same (JSON) mode BentoML uses; BentoML then receives `{"events": []}` and the handler takes
  the validated events from `validated_events` instead. A body that is anything but a valid `{"events": [...]}`
  goes to BentoML untouched, so every error is BentoML's own, word for word (field paths included).

Requests are told apart by their Content-Length before anything is read; a body without one (chunked) is treated as
small here and the gateway's byte limit still applies to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
from typing import Any

from pydantic import TypeAdapter, ValidationError

from seqguard.events import Event
from seqguard.service.http import read_body, replay_body

SLICE = 200  # events validated between two yields to the event loop (~2 ms)
MAX_YIELD_S = 0.05  # the longest a background step waits for small requests to leave, so large ones still progress
EVENT_ROUTES = ("/score", "/events")  # the routes whose body is {"events": [Event, ...]}
_EMPTY = b'{"events":[]}'
_EVENTS: TypeAdapter[list[Event]] = TypeAdapter(list[Event])
_validated: contextvars.ContextVar[list[Event] | None] = contextvars.ContextVar("seqguard_validated", default=None)
_background: contextvars.ContextVar[bool] = contextvars.ContextVar("seqguard_background", default=False)


class _Foreground:
    """How many small requests are inside the app (this process, this event loop), and an event set when none is."""

    def __init__(self) -> None:
        self.active = 0
        self._idle: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def enter(self) -> None:
        self.active += 1
        if self._idle is not None:
            self._idle.clear()

    def leave(self) -> None:
        self.active -= 1
        if self.active == 0 and self._idle is not None:
            self._idle.set()

    async def wait_idle(self, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        if self._idle is None or self._loop is not loop:
            # An asyncio.Event belongs to the loop it first waited on: a new loop (tests, tools) gets its own.
            self._idle, self._loop = asyncio.Event(), loop
            if self.active == 0:
                self._idle.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout)


FOREGROUND = _Foreground()


def in_background() -> bool:
    """Whether the current request is a large one, run in the background of small ones."""
    return _background.get()


async def take_turn() -> None:
    """Between two steps of a request's work: let the event loop serve others. A background request lets every small
    request inside the app finish first (up to MAX_YIELD_S); any other request just yields once."""
    if _background.get() and FOREGROUND.active:
        await FOREGROUND.wait_idle(MAX_YIELD_S)
    else:
        await asyncio.sleep(0)


def validated_events(events: list[Event]) -> list[Event]:
    """The events this request's handler should use: the lane's when it validated the body, else BentoML's."""
    pre = _validated.get()
    return events if pre is None else pre


async def validate_in_slices(body: bytes) -> list[Event] | None:
    """The body's events, validated a slice at a time; None when the body is not a valid `{"events": [...]}`."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict) or set(data) != {"events"} or not isinstance(data["events"], list):
        return None
    raw = data["events"]
    out: list[Event] = []
    for i in range(0, len(raw), SLICE):
        await take_turn()
        try:
            # JSON mode, as BentoML validates: the slice goes back to JSON text (floats round-trip exactly).
            out.extend(_EVENTS.validate_json(json.dumps(raw[i : i + SLICE])))
        except ValidationError:
            return None
    return out


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
            counted = scope["type"] == "http"
            if counted:
                FOREGROUND.enter()
            try:
                await self.app(scope, receive, send)
            finally:
                if counted:
                    FOREGROUND.leave()
            return
        if self._lane is None:
            self._lane = asyncio.Semaphore(1)  # created on the serving loop
        background = _background.set(True)
        try:
            async with self._lane:
                await self._large(scope, receive, send)
        finally:
            _background.reset(background)

    async def _large(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope.get("path") not in EVENT_ROUTES:
            await self.app(scope, receive, send)
            return
        body = await read_body(receive) or b""
        events = await validate_in_slices(body)
        if events is None:
            await self.app(scope, replay_body(body, receive), send)
            return
        headers = [(k, v) for k, v in scope["headers"] if k.lower() != b"content-length"]
        scope = {**scope, "headers": [*headers, (b"content-length", str(len(_EMPTY)).encode())]}
        token = _validated.set(events)
        try:
            await self.app(scope, replay_body(_EMPTY, receive), send)
        finally:
            _validated.reset(token)
