"""Per-event tokens and per-window aggregate features: the one function everybody calls.

Training, evaluation, export calibration and parity, the service and the load-test payload builder all turn a
window (`EventColumns`) into model inputs with `encode_window`, so a score can never depend on which of them built it.

Each event becomes two tokens: a *what* token (kind, price bucket, category bucket) and a *context* token (time
gap to the previous event, local hour bucket, new-device / new-ip / new-country / repeated-item flags). Flags are
relative to the earlier events of the same window, so a window's tokens are a pure function of the window.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from seqguard.config import SequenceConfig
from seqguard.crossentity import CROSS_FEATURE_NAMES, window_only_features
from seqguard.sequences import KIND_INDEX, KINDS, EventColumns, category_bucket

SPECIAL_TOKENS: tuple[str, ...] = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
PAD_ID, UNK_ID, CLS_ID, SEP_ID, MASK_ID = range(5)
N_FLAGS = 4  # new device, new ip, new country, repeated item


@dataclass(frozen=True)
class TokenSpace:
    """Sizes of the token fields; ids are computed arithmetically and `vocabulary()` lists them in the same order."""

    n_price: int
    n_cat: int
    n_gap: int
    n_hour: int

    @classmethod
    def of(cls, cfg: SequenceConfig) -> TokenSpace:
        return cls(
            n_price=len(cfg.price_edges) + 2,  # 0 = no price
            n_cat=cfg.category_buckets + 1,  # 0 = no category
            n_gap=len(cfg.gap_edges) + 2,  # 0 = first event of the window
            n_hour=len(cfg.hour_edges) + 1,
        )

    @property
    def n_what(self) -> int:
        return len(KINDS) * self.n_price * self.n_cat

    @property
    def n_ctx(self) -> int:
        return self.n_gap * self.n_hour * (1 << N_FLAGS)

    @property
    def vocab_size(self) -> int:
        return len(SPECIAL_TOKENS) + self.n_what + self.n_ctx

    def vocabulary(self) -> list[str]:
        words = list(SPECIAL_TOKENS)
        for k in KINDS:
            for p in range(self.n_price):
                for c in range(self.n_cat):
                    words.append(f"{k}:p{p}:c{c}")
        for g in range(self.n_gap):
            for h in range(self.n_hour):
                for f in range(1 << N_FLAGS):
                    words.append(f"g{g}:h{h}:f{f:0{N_FLAGS}b}")
        return words


def nan_to_zero(x: np.ndarray) -> np.ndarray:
    """np.nan_to_num(x, nan=0.0), exactly (infinities become the largest finite floats), at a fraction of its cost
    when there is no infinity, the case of every request (prices are validated finite at the edge)."""
    x = np.asarray(x)
    if np.isinf(x).any():
        return np.nan_to_num(x, nan=0.0)
    return np.where(np.isnan(x), 0.0, x).astype(x.dtype, copy=False)


def price_buckets(price: np.ndarray, cfg: SequenceConfig) -> np.ndarray:
    b = np.searchsorted(np.asarray(cfg.price_edges), nan_to_zero(price), side="right") + 1
    b[np.isnan(price)] = 0
    return b.astype(np.int64)


def gap_buckets(ts: np.ndarray, cfg: SequenceConfig) -> np.ndarray:
    out = np.zeros(len(ts), dtype=np.int64)
    if len(ts) > 1:
        out[1:] = np.searchsorted(np.asarray(cfg.gap_edges), np.diff(ts), side="right") + 1
    return out


def local_hours(ts: np.ndarray, cfg: SequenceConfig) -> np.ndarray:
    return ((np.floor((ts + cfg.utc_offset_hours * 3600.0) / 3600.0)) % 24).astype(np.int64)


def novelty_flags(cols: EventColumns) -> np.ndarray:
    """Bit flags per event: a device / ip / country / item not seen earlier in the window (never on the first)."""
    n = len(cols)
    flags = np.zeros(n, dtype=np.int64)
    for bit, values, is_repeat in ((3, cols.device, False), (2, cols.ip, False), (1, cols.country, False),
                                   (0, cols.item, True)):
        seen: set[str] = set()
        any_before = False
        for i in range(n):
            v = values[i]
            if v is None:
                continue
            known = v in seen
            if (is_repeat and known) or (not is_repeat and any_before and not known):
                flags[i] |= 1 << bit
            seen.add(v)
            any_before = True
    return flags


@dataclass(frozen=True)
class Encoded:
    input_ids: np.ndarray  # int64 [2n + 2]
    token_type_ids: np.ndarray  # int64 zeros: one segment, as the HF tokenizer produces
    features: np.ndarray  # float32 [len(FEATURE_NAMES)]: base then cross-entity


def event_token_ids(
    cols: EventColumns, cfg: SequenceConfig, flags: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(what ids, context ids) per event."""
    flags = novelty_flags(cols) if flags is None else flags
    space = TokenSpace.of(cfg)
    cat = np.fromiter((category_bucket(c, cfg.category_buckets) for c in cols.category), dtype=np.int64,
                      count=len(cols))
    what = len(SPECIAL_TOKENS) + (cols.kind * space.n_price + price_buckets(cols.price, cfg)) * space.n_cat + cat
    hour_b = np.searchsorted(np.asarray(cfg.hour_edges), local_hours(cols.ts, cfg), side="right")
    ctx = (len(SPECIAL_TOKENS) + space.n_what
           + (gap_buckets(cols.ts, cfg) * space.n_hour + hour_b) * (1 << N_FLAGS) + flags)
    return what.astype(np.int64), ctx.astype(np.int64)


def encode_window(cols: EventColumns, cfg: SequenceConfig, cross: np.ndarray | None = None) -> Encoded:
    """`cross`: the window's cross-entity features (seqguard.crossentity) from whatever index the caller has (the
    frame offline, the state store online); without one, the window alone is the history."""
    flags = novelty_flags(cols)
    what, ctx = event_token_ids(cols, cfg, flags)
    n = len(cols)
    ids = np.empty(2 * n + 2, dtype=np.int64)
    ids[0], ids[-1] = CLS_ID, SEP_ID
    ids[1:-1:2] = what
    ids[2:-1:2] = ctx
    types = np.zeros_like(ids)
    cross = window_only_features(cols) if cross is None else np.asarray(cross, dtype=np.float32)
    return Encoded(ids, types, np.concatenate([aggregate_features(cols, cfg, flags), cross]))


def pad_batch(encoded: list[Encoded], pad_to: int | None = None, multiple_of: int = 8) -> dict[str, np.ndarray]:
    """Dynamic padding: to the longest sequence in the batch (rounded up), not to max_len."""
    longest = max((len(e.input_ids) for e in encoded), default=2)
    length = pad_to or int(np.ceil(longest / multiple_of) * multiple_of)
    b = len(encoded)
    ids = np.full((b, length), PAD_ID, dtype=np.int64)
    types = np.zeros((b, length), dtype=np.int64)
    mask = np.zeros((b, length), dtype=np.int64)
    for i, e in enumerate(encoded):
        n = len(e.input_ids)
        ids[i, :n] = e.input_ids
        types[i, :n] = e.token_type_ids
        mask[i, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


# ---------------------------------------------------------------------------------------------------------------------
# Aggregate features: counts, rates, diversity, timing, funnels, payments, account changes.

K = KIND_INDEX
BASE_FEATURE_NAMES: tuple[str, ...] = (
    "n_events",
    "span_minutes",
    "events_per_minute",
    *(f"count_{k}" for k in KINDS),
    "distinct_items",
    "distinct_categories",
    "distinct_devices",
    "distinct_ips",
    "distinct_countries",
    "gap_log_mean",
    "gap_log_std",
    "gap_min_seconds",
    "gap_median_seconds",
    "gap_cv",
    "night_share",
    "cart_per_view",
    "purchase_per_cart",
    "purchase_per_view",
    "failed_payment_share",
    "max_failed_payments_10m",
    "purchases_without_view",
    "max_purchase_amount",
    "total_purchase_amount",
    "mean_failed_payment_amount",
    "repeated_item_share",
    "new_device_events",
    "new_ip_events",
    "new_country_events",
    "credential_changes",
    "max_purchase_15m_after_credential_change",
    "new_device_purchase_amount",
    "distinct_coupons",
    "reviews_without_purchase",
    "duplicate_review_share",
    "max_events_1m",
    "max_same_item_cart_adds",
)
# The models' aggregate input: the window's own features, then the cross-entity ones (last, so indices of the base
# features never move).
FEATURE_NAMES: tuple[str, ...] = BASE_FEATURE_NAMES + CROSS_FEATURE_NAMES
FEATURE_INDEX = {f: i for i, f in enumerate(FEATURE_NAMES)}


def _max_in_window(ts: np.ndarray, width: float) -> int:
    if len(ts) == 0:
        return 0
    ends = np.searchsorted(ts, ts + width, side="right")
    return int((ends - np.arange(len(ts))).max())


def aggregate_features(cols: EventColumns, cfg: SequenceConfig, flags: np.ndarray | None = None) -> np.ndarray:
    """BASE_FEATURE_NAMES of one window (the cross-entity ones need more than the window: encode_window)."""
    n = len(cols)
    f = np.zeros(len(BASE_FEATURE_NAMES), dtype=np.float64)
    if n == 0:
        return f.astype(np.float32)
    kind = cols.kind
    counts = np.bincount(kind, minlength=len(KINDS))
    ts = cols.ts
    span_min = (ts[-1] - ts[0]) / 60.0
    f[0], f[1], f[2] = n, span_min, n / (span_min + 1.0)
    f[3:3 + len(KINDS)] = counts
    i = 3 + len(KINDS)

    def distinct(values: np.ndarray) -> int:
        return len({v for v in values if v is not None})

    f[i:i + 5] = [distinct(cols.item), distinct(cols.category), distinct(cols.device), distinct(cols.ip),
                  distinct(cols.country)]
    i += 5
    gaps = np.diff(ts)
    if len(gaps):
        lg = np.log1p(gaps)
        f[i:i + 5] = [lg.mean(), lg.std(), gaps.min(), np.median(gaps), gaps.std() / (gaps.mean() + 1e-9)]
    i += 5
    hours = local_hours(ts, cfg)
    lo, hi = cfg.night_hours
    f[i] = float(np.mean((hours >= lo) & (hours < hi)))
    i += 1
    views, carts = counts[K["view"]], counts[K["add_to_cart"]]
    purchases = counts[K["purchase"]]
    f[i:i + 3] = [carts / (views + 1.0), purchases / (carts + 1.0), purchases / (views + 1.0)]
    i += 3
    failed = kind == K["payment_failed"]
    attempts = failed | (kind == K["payment_attempt"])
    f[i] = failed.sum() / attempts.sum() if attempts.any() else 0.0
    f[i + 1] = _max_in_window(ts[failed], 600.0)
    i += 2
    is_purchase = kind == K["purchase"]
    viewed = {v for v, k in zip(cols.item, kind, strict=True) if k == K["view"] and v is not None}
    f[i] = sum(1 for v, k in zip(cols.item, kind, strict=True) if k == K["purchase"] and v not in viewed)
    amounts = nan_to_zero(cols.price[is_purchase])
    f[i + 1] = amounts.max() if len(amounts) else 0.0
    f[i + 2] = amounts.sum()
    fp = cols.price[failed]
    f[i + 3] = float(np.nanmean(fp)) if len(fp) and not np.all(np.isnan(fp)) else 0.0
    i += 4
    items = [v for v in cols.item if v is not None]
    f[i] = 1.0 - len(set(items)) / len(items) if items else 0.0
    i += 1
    flags = novelty_flags(cols) if flags is None else flags
    f[i:i + 3] = [((flags >> 3) & 1).sum(), ((flags >> 2) & 1).sum(), ((flags >> 1) & 1).sum()]
    i += 3
    cred = (kind == K["password_change"]) | (kind == K["address_change"])
    f[i] = cred.sum()
    best = 0.0
    for t in ts[cred]:
        sel = is_purchase & (ts >= t) & (ts <= t + 900.0)
        if sel.any():
            best = max(best, float(nan_to_zero(cols.price[sel]).max()))
    f[i + 1] = best
    # A purchase while a device first seen in this window is in use: the takeover pattern.
    new_devs = {cols.device[j] for j in np.flatnonzero((flags >> 3) & 1)}
    sel = is_purchase & np.array([d in new_devs for d in cols.device], dtype=bool)
    f[i + 2] = float(nan_to_zero(cols.price[sel]).sum()) if sel.any() else 0.0
    i += 3
    f[i] = distinct(cols.coupon[kind == K["coupon_redeem"]])
    purchased = {v for v, k in zip(cols.item, kind, strict=True) if k == K["purchase"] and v is not None}
    reviews = kind == K["review"]
    f[i + 1] = sum(1 for v in cols.item[reviews] if v not in purchased)
    texts = [t for t in cols.text[reviews] if t]
    f[i + 2] = 1.0 - len(set(texts)) / len(texts) if texts else 0.0
    i += 3
    f[i] = _max_in_window(ts, 60.0)
    cart_items = [v for v, k in zip(cols.item, kind, strict=True) if k == K["add_to_cart"] and v is not None]
    f[i + 1] = max((cart_items.count(v) for v in set(cart_items)), default=0)
    return f.astype(np.float32)


# ---------------------------------------------------------------------------------------------------------------------
# Text serialisation for the pretrained text LM path ("view c12 +3s; add_to_cart c12 +40s; purchase 129.0 +2m").


def _fmt_gap(seconds: float) -> str:
    if seconds < 60:
        return f"+{int(seconds)}s"
    if seconds < 3600:
        return f"+{int(seconds // 60)}m"
    if seconds < 86400:
        return f"+{int(seconds // 3600)}h"
    return f"+{int(seconds // 86400)}d"


def serialize_text(cols: EventColumns, cfg: SequenceConfig, max_events: int | None = None) -> str:
    flags = novelty_flags(cols)
    parts = []
    start = 0 if max_events is None else max(0, len(cols) - max_events)
    for j in range(start, len(cols)):
        words = [KINDS[cols.kind[j]].replace("_", " ")]
        c = category_bucket(cols.category[j], cfg.category_buckets)
        if c:
            words.append(f"c{c}")
        if not np.isnan(cols.price[j]):
            words.append(f"{cols.price[j]:.0f}")
        if j > 0:
            words.append(_fmt_gap(cols.ts[j] - cols.ts[j - 1]))
        if flags[j] & 0b1000:
            words.append("new device")
        if flags[j] & 0b0010:
            words.append("new country")
        if flags[j] & 0b0001:
            words.append("again")
        parts.append(" ".join(words))
    return "; ".join(parts)


def _gap_range(bucket: int, edges: tuple[float, ...]) -> str:
    """Words for a gap bucket (gap_buckets: 1 = below the first edge, k = between edges k-2 and k-1)."""
    def fmt(s: float) -> str:
        return _fmt_gap(s).lstrip("+")
    if bucket == 0:  # the window's first event: no gap
        return ""
    if bucket == 1:
        return f"within {fmt(edges[0])}"
    if bucket > len(edges):
        return f"after more than {fmt(edges[-1])}"
    return f"after {fmt(edges[bucket - 2])}-{fmt(edges[bucket - 1])}"


def describe_step(input_ids: np.ndarray, event: int, cfg: SequenceConfig) -> str:
    """'view→purchase within 2s' for event `event` (0-based) of an encoded window (tokens as in encode_window)."""
    ids = np.asarray(input_ids, dtype=np.int64)
    space = TokenSpace.of(cfg)
    n_special = len(SPECIAL_TOKENS)
    n_events = (int((ids >= n_special).sum())) // 2

    def kind(e: int) -> str:
        what = int(ids[1 + 2 * e]) - n_special
        return KINDS[what // (space.n_price * space.n_cat)] if 0 <= what < space.n_what else "?"

    if not 0 <= event < n_events:
        return f"event {event + 1}"
    ctx = int(ids[2 + 2 * event]) - n_special - space.n_what
    gap = _gap_range(ctx // (space.n_hour * (1 << N_FLAGS)), cfg.gap_edges) if ctx >= 0 else ""
    prev = f"{kind(event - 1)}→" if event > 0 else ""
    return f"{prev}{kind(event)} {gap}".strip()
