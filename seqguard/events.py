"""The Event model: the only shape raw behaviour data takes inside seqguard.

Everything that reads foreign data (files, the HTTP API, load-test replays) goes through a column mapping into
these fields. The limits below are declared once and used by the row-level (pydantic) path and the columnar
(pandas) path alike, so both reject exactly the same rows for the same reasons.
"""

from __future__ import annotations

import hashlib
import math
from abc import ABC, abstractmethod
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, field_validator


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

# Reasons, shared by the API and the file readers (they never quote the value).
MISSING = "missing"
NOT_AN_ID = "must be a string or an integer"
NOT_A_NUMBER = "not a number"
NOT_TEXT = "must be a string"
TS_NO_OFFSET = "ISO timestamp has no UTC offset"
TS_UNPARSEABLE = "cannot parse as ISO 8601 or epoch time"
TS_OUT_OF_RANGE = f"outside {TS_MIN.year}..{TS_MAX.year}"
ID_CLIPPED = f"longer than {ID_MAX_CHARS} characters, clipped to head + hash"

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
            raise EventError("ts", MISSING)
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
                raise EventError("ts", TS_UNPARSEABLE) from None
            if dt.tzinfo is None:
                raise EventError("ts", TS_NO_OFFSET)
    else:
        raise EventError("ts", f"unsupported type {type(value).__name__}")
    dt = dt.astimezone(UTC)
    if not TS_MIN <= dt < TS_MAX:
        raise EventError("ts", TS_OUT_OF_RANGE)
    return dt


def _from_epoch(x: float) -> datetime:
    if not math.isfinite(x):
        raise EventError("ts", TS_UNPARSEABLE)
    seconds = x / 1000.0 if abs(x) >= EPOCH_MS_THRESHOLD else x
    try:
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, OSError, ValueError):
        raise EventError("ts", TS_OUT_OF_RANGE) from None


def clip_identifier(value: str) -> str:
    """An identifier longer than ID_MAX_CHARS (a 300-character page title as item_id) as its head plus a hash of the
    whole value: distinct long values stay distinct, equal ones stay equal, and the row is kept. Files, label tables
    and the API all go through this, so a clipped user_id still joins its label and meets its own state."""
    if len(value) <= ID_MAX_CHARS:
        return value
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:ID_HASH_CHARS]
    return f"{value[: ID_MAX_CHARS - ID_HASH_CHARS - 1]}~{digest}"


# ---------------------------------------------------------------------------------------------------------------
# Field limits, declared once. Each limit checks one field two ways with the same outcome and the same reason:
# `value` one value at a time (the pydantic Event below: the HTTP API, load-test replays) and `column` a pandas
# column at a time (seqguard.io.validate_frame: CSV, Parquet, JSONL, Spark partitions). Reasons never quote the value
# (they are counted per reason over millions of rows, and logged).
#
# Empty values: a string that is empty once stripped is an *absent* value for an optional identifier or text, and a
# "missing" error for a required field (user_id, event_type). An empty CSV cell is null, like a JSON null.
# Over-long identifiers are kept, clipped to head + hash (clip_identifier), in both paths.
# ---------------------------------------------------------------------------------------------------------------
Column = tuple[pd.Series, np.ndarray, int]  # values, reason per row ("" = fine), values repaired (clipped)


def _no_reasons(n: int) -> np.ndarray:
    return np.full(n, "", dtype=object)


def _strings(s: pd.Series) -> pd.Series:
    """Stripped text with empty strings as NA (pandas "string" dtype)."""
    st = s.astype("string").str.strip()
    return st.mask(st == "")


def _each(limit: FieldLimit, s: pd.Series) -> Column:
    """The per-value check over a column: for the unusual column types the fast paths below do not cover (mixed
    JSON values), so a file's odd column gets exactly the API's answer."""
    values = np.empty(len(s), dtype=object)
    reasons = _no_reasons(len(s))
    for i, v in enumerate(s.tolist()):
        try:
            values[i] = limit.value(None if _is_null(v) else v)
        except EventError as e:
            values[i], reasons[i] = None, e.reason
    return pd.Series(values, index=s.index, dtype=object), reasons, 0


def _is_null(v: Any) -> bool:
    return v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and math.isnan(v))


def _is_text_column(s: pd.Series) -> bool:
    return pd.api.types.infer_dtype(s, skipna=True) in ("string", "empty")


class FieldLimit(ABC):
    field: str
    required: bool = False

    @abstractmethod
    def value(self, v: Any) -> Any:
        """The checked, normalised value (None = absent); raises EventError(field, reason)."""

    @abstractmethod
    def column(self, s: pd.Series) -> Column:
        """`value` over a whole column: (values, reason per row, how many values were repaired)."""

    def _empty(self) -> None:
        if self.required:
            raise EventError(self.field, MISSING)

    def _missing(self, values: pd.Series, reasons: np.ndarray) -> np.ndarray:
        if self.required:
            reasons[values.isna().to_numpy() & (reasons == "")] = MISSING
        return reasons


class IdLimit(FieldLimit):
    """Identifiers are text; integer ids (Taobao, warehouse exports) become their decimal text, without a '.0'."""

    def __init__(self, field: str, required: bool = False) -> None:
        self.field, self.required = field, required

    def value(self, v: Any) -> str | None:
        if isinstance(v, str):
            text: str | None = v.strip() or None
        elif v is None:
            text = None
        elif isinstance(v, int) and not isinstance(v, bool):
            text = str(v)
        elif isinstance(v, float) and v.is_integer():
            text = str(int(v))
        else:
            raise EventError(self.field, NOT_AN_ID)
        if text is None:
            self._empty()
            return None
        return clip_identifier(text)

    def column(self, s: pd.Series) -> Column:
        n = len(s)
        reasons = _no_reasons(n)
        if pd.api.types.is_bool_dtype(s):
            reasons[:] = NOT_AN_ID
            return pd.Series(np.full(n, None, dtype=object), index=s.index), reasons, 0
        if pd.api.types.is_integer_dtype(s):
            col = s.astype("string")
        elif pd.api.types.is_float_dtype(s):
            vals = s.to_numpy(dtype=float)
            finite = np.isfinite(vals)
            integral = finite & (np.floor(vals) == vals)
            out = np.full(n, None, dtype=object)
            out[integral] = vals[integral].astype(np.int64).astype(str)
            reasons[finite & ~integral] = NOT_AN_ID
            col = pd.Series(out, index=s.index).astype("string")
        elif _is_text_column(s):
            col = _strings(s)
        else:  # JSON values of mixed types
            values, reasons, _ = _each(self, s)
            return values, reasons, sum(isinstance(v, str) and len(v.strip()) > ID_MAX_CHARS for v in s.tolist())
        too_long = (col.str.len() > ID_MAX_CHARS).fillna(False).to_numpy(dtype=bool)
        out_col = col.astype(object).where(col.notna(), None)
        if too_long.any():
            out_col[too_long] = [clip_identifier(v) for v in out_col[too_long]]
        return out_col, self._missing(col, reasons), int(too_long.sum())


class ChoiceLimit(FieldLimit):
    """One of a fixed set of lower-case words; case and surrounding blanks do not matter."""

    def __init__(self, field: str, choices: tuple[str, ...], reason: str, required: bool = False) -> None:
        self.field, self.choices, self.reason, self.required = field, choices, reason, required

    def value(self, v: Any) -> str | None:
        text = None if v is None else str(v).strip().lower()
        if not text:
            self._empty()
            if v is None:
                return None
            raise EventError(self.field, self.reason)
        if text not in self.choices:
            raise EventError(self.field, self.reason)
        return text

    def column(self, s: pd.Series) -> Column:
        given = s.notna().to_numpy()
        text = s.astype("string").str.strip().str.lower()
        reasons = _no_reasons(len(s))
        reasons[given & ~text.isin(self.choices).fillna(False).to_numpy(dtype=bool)] = self.reason
        if self.required:
            reasons[~given | (text == "").fillna(True).to_numpy(dtype=bool)] = MISSING
        return text.astype(object).where(text.notna() & (reasons == ""), None), reasons, 0


class NumberLimit(FieldLimit):
    """A finite number in [lo, hi] (an integer if `integer`); numeric text is read as its number, booleans are not
    numbers."""

    def __init__(self, field: str, lo: float, hi: float, integer: bool = False) -> None:
        self.field, self.lo, self.hi, self.integer = field, lo, hi, integer
        self.reason = f"not an integer in {lo:g}..{hi:g}" if integer else f"outside {lo:g}..{hi:g}"

    def value(self, v: Any) -> float | int | None:
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, int | float | str):
            raise EventError(self.field, NOT_A_NUMBER)
        try:
            x = float(v)
        except ValueError:
            raise EventError(self.field, NOT_A_NUMBER) from None
        if math.isnan(x):
            raise EventError(self.field, NOT_A_NUMBER)
        if not (self.lo <= x <= self.hi) or (self.integer and not x.is_integer()):
            raise EventError(self.field, self.reason)
        return int(x) if self.integer else x

    def column(self, s: pd.Series) -> Column:
        if s.dtype == object and not _is_text_column(s):
            return _each(self, s)  # JSON values of mixed types: booleans, lists, ...
        reasons = _no_reasons(len(s))
        given = s.notna().to_numpy()
        if pd.api.types.is_bool_dtype(s):
            reasons[given] = NOT_A_NUMBER
            return pd.Series(np.full(len(s), np.nan), index=s.index), reasons, 0
        x = pd.to_numeric(s, errors="coerce").to_numpy(dtype=float)
        nan = np.isnan(x)
        reasons[given & nan] = NOT_A_NUMBER
        with np.errstate(invalid="ignore"):
            bad = given & ~nan & ((x < self.lo) | (x > self.hi) | (self.integer & (np.floor(x) != x)))
        reasons[bad] = self.reason
        x[bad] = np.nan
        return pd.Series(x, index=s.index), reasons, 0


class TextLimit(FieldLimit):
    """Free text up to `max_chars` once stripped; empty text is absent."""

    def __init__(self, field: str, max_chars: int) -> None:
        self.field, self.max_chars = field, max_chars
        self.reason = f"longer than {max_chars} characters"

    def value(self, v: Any) -> str | None:
        if v is None:
            return None
        if not isinstance(v, str):
            raise EventError(self.field, NOT_TEXT)
        text = v.strip()
        if len(text) > self.max_chars:
            raise EventError(self.field, self.reason)
        return text or None

    def column(self, s: pd.Series) -> Column:
        if not _is_text_column(s):
            return _each(self, s)
        text = _strings(s)
        reasons = _no_reasons(len(s))
        reasons[(text.str.len() > self.max_chars).fillna(False).to_numpy(dtype=bool)] = self.reason
        return text.astype(object).where(text.notna() & (reasons == ""), None), reasons, 0


FIELD_LIMITS: dict[str, FieldLimit] = {
    **{f: IdLimit(f, required=f in REQUIRED_FIELDS) for f in ID_FIELDS},
    "event_type": ChoiceLimit("event_type", EVENT_TYPES, "unknown event type", required=True),
    "price": NumberLimit("price", 0.0, PRICE_MAX),
    "quantity": NumberLimit("quantity", 1, QUANTITY_MAX, integer=True),
    "payment_status": ChoiceLimit("payment_status", PAYMENT_STATUSES, f"must be one of {', '.join(PAYMENT_STATUSES)}"),
    "text": TextLimit("text", TEXT_MAX_CHARS),
}


def _check(v: Any, info: ValidationInfo) -> Any:
    try:
        return FIELD_LIMITS[str(info.field_name)].value(v)
    except EventError as e:
        raise ValueError(e.reason) from None


# The field's FIELD_LIMITS entry, as a pydantic validator. The OpenAPI document (seqguard/service/openapi.py)
# states what the identifiers accept: text or integers, and for user_id at least one non-blank character.
CHECKED = BeforeValidator(_check)
_ID_DOC = f"text or an integer, stripped; longer than {ID_MAX_CHARS} characters: kept as head + hash"
OptId = Annotated[str | None, CHECKED, Field(description=f"{_ID_DOC}; empty = absent")]


class Event(BaseModel):
    """One behaviour event of one user. Timestamps are normalised to UTC; every other field is checked by its
    FIELD_LIMITS entry (the Field constraints below only document the accepted values in the JSON schema)."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    user_id: Annotated[str, CHECKED] = Field(min_length=1, description=f"the entity: {_ID_DOC}; never empty")
    ts: datetime = Field(description="ISO 8601 with offset, or epoch seconds / milliseconds; stored in UTC")
    event_type: Annotated[EventType, CHECKED]
    event_id: OptId = None
    session_id: OptId = None
    item_id: OptId = None
    category_id: OptId = None
    price: Annotated[float | None, CHECKED] = Field(default=None, ge=0.0, le=PRICE_MAX, allow_inf_nan=False)
    quantity: Annotated[int | None, CHECKED] = Field(default=None, ge=1, le=QUANTITY_MAX)
    device_id: OptId = None
    ip: OptId = None
    country: OptId = None
    payment_status: Annotated[str | None, CHECKED] = Field(
        default=None, description="success | failed (payment_attempt events)")
    coupon_code: OptId = None
    text: Annotated[str | None, CHECKED] = Field(default=None, max_length=TEXT_MAX_CHARS,
                                                          description="search query or review text")

    @field_validator("ts", mode="before")
    @classmethod
    def _ts(cls, v: Any) -> datetime:
        try:
            return parse_timestamp(v)
        except EventError as e:
            raise ValueError(e.reason) from None

    @property
    def epoch(self) -> float:
        return self.ts.timestamp()

    def to_record(self) -> dict[str, Any]:
        """A flat dict with every field (None where absent), ts as an aware UTC datetime."""
        return self.model_dump()
