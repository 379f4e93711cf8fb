"""One table of event-limit cases, run against every path an event comes in by: the API's Event model
(tests/test_events_limits.py and, over HTTP, tests/test_service.py) and the file readers (JSONL, CSV)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from seqguard.events import clip_identifier

BASE: dict[str, Any] = {"user_id": "u1", "ts": "2026-10-05T08:00:00Z", "event_type": "view"}
LONG = "item " * 60  # 300 characters


@dataclass(frozen=True)
class Case:
    name: str
    given: dict[str, Any]  # fields over BASE
    ok: dict[str, Any] | None = None  # accepted: these fields' kept values
    error: tuple[str, str] | None = None  # refused: (field, reason)
    csv: bool = True  # a CSV cell is text and an empty cell is null: cases with JSON types or "" are JSON-only

    @property
    def event(self) -> dict[str, Any]:
        return {**BASE, **self.given}


CASES: list[Case] = [
    # Empty identifiers: an empty optional id is absent, an empty required id is an error; in every path.
    Case("empty optional id is absent", {"device_id": ""}, ok={"device_id": None}, csv=False),
    Case("blank optional id is absent", {"session_id": "   "}, ok={"session_id": None}),
    Case("empty user_id is missing", {"user_id": ""}, error=("user_id", "missing")),
    Case("blank user_id is missing", {"user_id": "  "}, error=("user_id", "missing")),
    Case("null user_id is missing", {"user_id": None}, error=("user_id", "missing"), csv=False),
    Case("ids are stripped", {"user_id": " u1 ", "item_id": " i9"}, ok={"user_id": "u1", "item_id": "i9"}),
    Case("integer id becomes text", {"user_id": 42, "item_id": 7.0}, ok={"user_id": "42", "item_id": "7"},
         csv=False),
    Case("fractional id is refused", {"item_id": 1.5}, error=("item_id", "must be a string or an integer"),
         csv=False),
    Case("boolean id is refused", {"device_id": True}, error=("device_id", "must be a string or an integer"),
         csv=False),
    Case("long id is clipped, not refused", {"item_id": LONG}, ok={"item_id": clip_identifier(LONG.strip())}),
    Case("long user_id is clipped", {"user_id": "u" * 200}, ok={"user_id": clip_identifier("u" * 200)}),
    # Allowed values.
    Case("event type any case", {"event_type": " Purchase "}, ok={"event_type": "purchase"}),
    Case("unknown event type", {"event_type": "teleport"}, error=("event_type", "unknown event type")),
    Case("empty event type is missing", {"event_type": ""}, error=("event_type", "missing")),
    Case("payment status any case", {"payment_status": "FAILED"}, ok={"payment_status": "failed"}),
    Case("unknown payment status", {"payment_status": "maybe"},
         error=("payment_status", "must be one of success, failed")),
    Case("empty payment status is refused", {"payment_status": ""},
         error=("payment_status", "must be one of success, failed"), csv=False),
    # Numbers.
    Case("numeric text price", {"price": "12.5"}, ok={"price": 12.5}),
    Case("negative price", {"price": -1}, error=("price", "outside 0..1e+06")),
    Case("huge price", {"price": "2e6"}, error=("price", "outside 0..1e+06")),
    Case("boolean price", {"price": True}, error=("price", "not a number"), csv=False),
    Case("text price", {"price": "abc"}, error=("price", "not a number")),
    Case("empty price text", {"price": ""}, error=("price", "not a number"), csv=False),
    Case("integral quantity", {"quantity": "3"}, ok={"quantity": 3}),
    Case("fractional quantity", {"quantity": 2.5}, error=("quantity", "not an integer in 1..10000")),
    Case("zero quantity", {"quantity": 0}, error=("quantity", "not an integer in 1..10000")),
    # Text.
    Case("text is stripped", {"text": " red shoes "}, ok={"text": "red shoes"}),
    Case("blank text is absent", {"text": "   "}, ok={"text": None}),
    Case("long text", {"text": "x" * 1001}, error=("text", "longer than 1000 characters")),
    Case("number as text", {"text": 5}, error=("text", "must be a string"), csv=False),
    # Timestamps.
    Case("epoch milliseconds", {"ts": 1791187200000}, ok={"ts": 1791187200.0}),
    Case("no offset", {"ts": "2026-10-05T08:00:00"}, error=("ts", "ISO timestamp has no UTC offset")),
    Case("not a time", {"ts": "yesterday"}, error=("ts", "cannot parse as ISO 8601 or epoch time")),
    Case("before 2000", {"ts": "1999-01-01T00:00:00Z"}, error=("ts", "outside 2000..2100")),
    Case("empty ts", {"ts": ""}, error=("ts", "missing")),
]
