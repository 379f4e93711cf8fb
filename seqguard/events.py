"""The Event model: the only shape raw behaviour data takes inside seqguard.

Everything that reads foreign data (files, the HTTP API, load-test replays) goes through a column mapping into
these fields. The limits below are declared once and used by the row-level (pydantic) path and the columnar
(pandas) path alike, so both reject exactly the same rows for the same reasons.
"""

from __future__ import annotations

import hashlib
import math
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator


class EventType(StrEnum):
    VIEW = "view"
    SEARCH = "search"
    ADD_TO_CART = "add_to_cart"
    REMOVE_FROM_CART = "remove_from_cart"
    FAVORITE = "favorite"
    PURCHASE = "purchase"
    PAYMENT_ATTEMPT = "payment_attempt"
    REFUND = "refund"
    REVIEW = "review"
    LOGIN = "login"
    LOGIN_FAILED = "login_failed"
    LOGOUT = "logout"
    PASSWORD_CHANGE = "password_change"
    ADDRESS_CHANGE = "address_change"
    COUPON_REDEEM = "coupon_redeem"


EVENT_TYPES: tuple[str, ...] = tuple(e.value for e in EventType)
PAYMENT_STATUSES: tuple[str, ...] = ("success", "failed")

# Limits. Epoch values above this are milliseconds: 1e11 s is the year 5138, 1e11 ms is 1973.
EPOCH_MS_THRESHOLD = 1e11
TS_MIN = datetime(2000, 1, 1, tzinfo=UTC)
TS_MAX = datetime(2100, 1, 1, tzinfo=UTC)
TEXT_MAX_CHARS = 1000
ID_MAX_CHARS = 128
ID_HASH_CHARS = 16  # hex digits of the sha256 suffix an over-long identifier keeps (64 bits: no practical collisions)
PRICE_MAX = 1_000_000.0
QUANTITY_MAX = 10_000

# Columns in the order files are written; the first three are required.
REQUIRED_FIELDS: tuple[str, ...] = ("user_id", "ts", "event_type")
OPTIONAL_FIELDS: tuple[str, ...] = (
    "event_id",
    "session_id",
    "item_id",
    "category_id",
    "price",
    "quantity",
    "device_id",
    "ip",
    "country",
    "payment_status",
    "coupon_code",
    "text",
)
ID_FIELDS: tuple[str, ...] = (
    "user_id",
    "event_id",
    "session_id",
    "item_id",
    "category_id",
    "device_id",
    "ip",
    "country",
    "coupon_code",
)
EVENT_FIELDS: tuple[str, ...] = REQUIRED_FIELDS + OPTIONAL_FIELDS


class EventError(ValueError):
    """A value that cannot become an Event; `field` names the culprit."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def parse_timestamp(value: Any) -> datetime:
    """ISO 8601 with an offset, or epoch seconds / milliseconds, to an aware UTC datetime."""
    if isinstance(value, bool):
        raise EventError("ts", "must be an ISO 8601 timestamp with offset or epoch seconds/milliseconds")
    if isinstance(value, datetime):
        dt = value
        if dt.tzinfo is None:
            raise EventError("ts", "datetime has no UTC offset")
    elif isinstance(value, int | float):
        dt = _from_epoch(float(value))
    elif isinstance(value, str):
        text = value.strip()
        if not text:
            raise EventError("ts", "is empty")
        try:
            number: float | None = float(text)
        except ValueError:
            number = None
        if number is not None:
            dt = _from_epoch(number)
        else:
            try:
                dt = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
            except ValueError:
                raise EventError("ts", f"cannot parse {text[:40]!r} as ISO 8601 or epoch time") from None
            if dt.tzinfo is None:
                raise EventError("ts", f"{text[:40]!r} has no UTC offset (add Z or +hh:mm)")
    else:
        raise EventError("ts", f"unsupported type {type(value).__name__}")
    dt = dt.astimezone(UTC)
    if not TS_MIN <= dt < TS_MAX:
        raise EventError("ts", f"{dt.isoformat()} is outside {TS_MIN.year}..{TS_MAX.year}")
    return dt


def _from_epoch(x: float) -> datetime:
    if not math.isfinite(x):
        raise EventError("ts", "epoch value is not finite")
    seconds = x / 1000.0 if abs(x) >= EPOCH_MS_THRESHOLD else x
    try:
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, OSError, ValueError):
        raise EventError("ts", f"epoch value {x!r} is out of range") from None


def _to_id(value: Any) -> Any:
    """IDs are strings; integer ids (Taobao, many warehouses) are accepted and rendered without a '.0'."""
    if value is None or isinstance(value, str):
        return value.strip() if isinstance(value, str) else value
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return value


def clip_identifier(value: str) -> str:
    """An identifier longer than ID_MAX_CHARS (a 300-character page title as item_id) as its head plus a hash of the
    whole value: distinct long values stay distinct, equal ones stay equal, and the row is kept. Files and label
    tables both go through this, so a clipped user_id still joins its label."""
    if len(value) <= ID_MAX_CHARS:
        return value
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:ID_HASH_CHARS]
    return f"{value[: ID_MAX_CHARS - ID_HASH_CHARS - 1]}~{digest}"


IdStr = Annotated[str, BeforeValidator(_to_id), Field(min_length=1, max_length=ID_MAX_CHARS)]
OptIdStr = IdStr | None


class Event(BaseModel):
    """One behaviour event of one user. Timestamps are normalised to UTC."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    user_id: IdStr
    ts: datetime = Field(description="ISO 8601 with offset, or epoch seconds / milliseconds; stored in UTC")
    event_type: EventType
    event_id: OptIdStr = None
    session_id: OptIdStr = None
    item_id: OptIdStr = None
    category_id: OptIdStr = None
    price: float | None = Field(default=None, ge=0.0, le=PRICE_MAX, allow_inf_nan=False)
    quantity: int | None = Field(default=None, ge=1, le=QUANTITY_MAX)
    device_id: OptIdStr = None
    ip: OptIdStr = None
    country: OptIdStr = None
    payment_status: str | None = Field(default=None, description="success | failed (payment_attempt events)")
    coupon_code: OptIdStr = None
    text: str | None = Field(default=None, max_length=TEXT_MAX_CHARS, description="search query or review text")

    @field_validator("price", "quantity", mode="before")
    @classmethod
    def _not_bool(cls, v: Any) -> Any:
        # pydantic's lax mode would read true as 1: a boolean price or quantity is a producer bug, not a number.
        if isinstance(v, bool):
            raise ValueError("must be a number, not a boolean")
        return v

    @field_validator("ts", mode="before")
    @classmethod
    def _ts(cls, v: Any) -> datetime:
        try:
            return parse_timestamp(v)
        except EventError as e:
            raise ValueError(e.reason) from None

    @field_validator("event_type", mode="before")
    @classmethod
    def _event_type(cls, v: Any) -> Any:
        if isinstance(v, str) and v.strip().lower() not in EVENT_TYPES:
            raise ValueError(f"unknown event type {v[:40]!r}; expected one of {', '.join(EVENT_TYPES)}")
        return v.strip().lower() if isinstance(v, str) else v

    @field_validator("payment_status", mode="before")
    @classmethod
    def _payment_status(cls, v: Any) -> Any:
        if v is None:
            return None
        s = str(v).strip().lower()
        if s not in PAYMENT_STATUSES:
            raise ValueError(f"must be one of {', '.join(PAYMENT_STATUSES)}, got {str(v)[:40]!r}")
        return s

    @property
    def epoch(self) -> float:
        return self.ts.timestamp()

    def to_record(self) -> dict[str, Any]:
        """A flat dict with every field (None where absent), ts as an aware UTC datetime."""
        return self.model_dump()


def format_validation_error(err: ValidationError) -> list[dict[str, str]]:
    """pydantic errors as [{field, reason}] — the shape every seqguard boundary reports."""
    out = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(root)"
        msg = e["msg"].removeprefix("Value error, ")
        out.append({"field": loc, "reason": msg})
    return out
