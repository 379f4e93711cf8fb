from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from seqguard.configfile import field_errors
from seqguard.events import EVENT_TYPES, Event, parse_timestamp


def errors_of(**kw):
    with pytest.raises(ValidationError) as exc:
        Event.model_validate(kw)
    return {e["field"]: e["reason"] for e in field_errors(exc.value)}


def test_event_types_cover_the_catalogue():
    for t in ("view", "search", "add_to_cart", "remove_from_cart", "favorite", "purchase", "payment_attempt",
              "refund", "review", "login", "login_failed", "logout", "password_change", "address_change",
              "coupon_redeem"):
        assert t in EVENT_TYPES


@pytest.mark.parametrize(
    "raw",
    ["2026-10-05T10:00:00+02:00", "2026-10-05T08:00:00Z", 1791187200, 1791187200000, "1791187200", 1791187200.0],
)
def test_timestamps_normalise_to_utc(raw):
    ts = parse_timestamp(raw)
    assert ts.tzinfo is not None and ts.utcoffset().total_seconds() == 0
    assert ts == datetime(2026, 10, 5, 8, 0, tzinfo=UTC)


def test_integer_ids_become_strings_and_types_normalise():
    e = Event.model_validate({"user_id": 42, "ts": 1791187200, "event_type": " Purchase ", "item_id": 7.0,
                              "price": 12.5, "payment_status": "FAILED"})
    assert e.user_id == "42" and e.item_id == "7" and e.event_type == "purchase" and e.payment_status == "failed"


def test_errors_name_field_and_reason():
    errs = errors_of(user_id="u", ts="2026-10-05T10:00:00", event_type="teleport", price=-1, text="x" * 1001)
    assert "no UTC offset" in errs["ts"]
    assert "unknown event type" in errs["event_type"]
    assert "price" in errs and "text" in errs


@pytest.mark.parametrize("raw", ["yesterday", "1899-01-01T00:00:00Z", 99999999999999999, "", float("nan"), True])
def test_bad_timestamps_rejected(raw):
    assert "ts" in errors_of(user_id="u", ts=raw, event_type="view")


def test_missing_required_and_unknown_fields():
    errs = errors_of(ts=1791187200, event_type="view", colour="red")
    assert "user_id" in errs and "colour" in errs
