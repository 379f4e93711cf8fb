"""A labeled synthetic e-commerce traffic generator: realistic normal behaviour plus seven attack scenarios.

Normal traffic is tuned to resemble the Taobao UserBehavior sample (events per active user-day, view:cart:fav:buy
ratios, in-session gaps, diurnal shape; see docs/generator_vs_taobao.md). Attacks are injected as whole sessions of
attacker accounts that also keep normal-labeled sessions, start at the same diurnal times as everyone else (the test
split is by day, so absolute time must not leak the class), and vary in rate so that the low-intensity ones mimic
normal users closely.

Everything is vectorised over rows with numpy: a session table (who, when, which device / ip / country, which label)
plus row blocks that point into it with an ordering key and the gap that precedes each row. Timestamps come from a
grouped cumulative sum of those gaps, so a scenario only has to say what happens in which order and how fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from seqguard.events import EVENT_FIELDS, EVENT_TYPES, TS_MAX, TS_MIN

NORMAL = "normal"
SCENARIOS: tuple[str, ...] = (
    "click_farm_bot",
    "brushing",
    "account_takeover",
    "card_testing",
    "coupon_abuse",
    "scalping",
    "review_spam",
)
LABELS: tuple[str, ...] = (NORMAL, *SCENARIOS)
# Defaults sum to 6.2 % of users.
DEFAULT_PREVALENCE: dict[str, float] = {
    "click_farm_bot": 0.012,
    "brushing": 0.010,
    "account_takeover": 0.008,
    "card_testing": 0.006,
    "coupon_abuse": 0.012,
    "scalping": 0.006,
    "review_spam": 0.008,
}
DEFAULT_START = datetime(2026, 10, 5, tzinfo=UTC)
SHOP_UTC_OFFSET_HOURS = 8  # the diurnal rhythm is that of a shop in UTC+8 (like Taobao's)
DAY = 86400.0


# --------------------------------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------------------------------


class ScenarioConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prevalence: float = Field(ge=0.0, le=1.0, description="share of users who are attackers of this scenario")
    intensity: float = Field(1.0, gt=0.0, le=20.0, description="multiplier on the attack's rate and burst sizes")


def _scenario_default(name: str) -> Any:
    return Field(default_factory=lambda: ScenarioConfig(prevalence=DEFAULT_PREVALENCE[name]))


class GeneratorConfig(BaseModel):
    """What to generate. Scenario fields accept {prevalence, intensity}; a missing prevalence keeps its default."""

    model_config = ConfigDict(extra="forbid")

    users: int = Field(10_000, ge=1, le=5_000_000)
    days: int = Field(7, ge=1, le=366)
    seed: int = Field(0, ge=0, le=2**63 - 1)
    start: datetime = Field(DEFAULT_START, description="start of the period (UTC); it lasts `days` x 24 h")
    new_user_share: float = Field(0.12, ge=0.0, le=1.0, description="share of normal users who sign up mid-period")
    activity: float = Field(1.0, gt=0.0, le=10.0, description="multiplier on normal users' session rate")
    click_farm_bot: ScenarioConfig = _scenario_default("click_farm_bot")
    brushing: ScenarioConfig = _scenario_default("brushing")
    account_takeover: ScenarioConfig = _scenario_default("account_takeover")
    card_testing: ScenarioConfig = _scenario_default("card_testing")
    coupon_abuse: ScenarioConfig = _scenario_default("coupon_abuse")
    scalping: ScenarioConfig = _scenario_default("scalping")
    review_spam: ScenarioConfig = _scenario_default("review_spam")

    @model_validator(mode="before")
    @classmethod
    def _fill_prevalence(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            for name in SCENARIOS:
                value = data.get(name)
                if isinstance(value, dict) and "prevalence" not in value:
                    data[name] = {"prevalence": DEFAULT_PREVALENCE[name], **value}
        return data

    @field_validator("start")
    @classmethod
    def _start_utc(cls, v: datetime) -> datetime:
        if v.tzinfo is None:
            raise ValueError("needs a UTC offset (e.g. 2026-10-05T00:00:00Z)")
        v = v.astimezone(UTC)
        if not TS_MIN <= v < TS_MAX:
            raise ValueError(f"must lie in {TS_MIN.year}..{TS_MAX.year}")
        return v

    @model_validator(mode="after")
    def _check(self) -> GeneratorConfig:
        total = sum(self.scenario(n).prevalence for n in SCENARIOS)
        if total > 1.0:
            raise ValueError(f"the scenario prevalences ({', '.join(f'{n}.prevalence' for n in SCENARIOS)}) "
                             f"sum to {total:.3f}, more than 1")
        if self.start.timestamp() + self.days * DAY >= TS_MAX.timestamp():
            raise ValueError(f"start + days runs past {TS_MAX.year}")
        return self

    def scenario(self, name: str) -> ScenarioConfig:
        return getattr(self, name)


@dataclass
class GeneratedData:
    """The generated data set.

    `events`: EVENT_FIELDS in order, then `is_anomaly` (True only on attack events) and `scenario` (the scenario's
    name on attack events, "normal" otherwise); ts float64 epoch seconds UTC (ms resolution), rows sorted by ts.
    `users`: user_id, is_anomaly and scenario (what the account is: attackers also have normal-labeled events),
    first_seen (ts of the user's first event, float64 epoch seconds).
    """

    events: pd.DataFrame
    users: pd.DataFrame
    config: GeneratorConfig

    def summary(self) -> pd.DataFrame:
        """Per label: attacker users, events of that label, and users with at least one such event."""
        by = self.events.groupby("scenario", sort=False)["user_id"]
        ev = pd.DataFrame({"events": by.size(), "event_users": by.nunique()})
        us = self.users.groupby("scenario", sort=False).size().rename("users")
        out = pd.DataFrame(index=pd.Index(LABELS, name="scenario")).join(us).join(ev).fillna(0).astype(np.int64)
        return out


# --------------------------------------------------------------------------------------------------------------------
# Vocabularies (small on purpose: what matters is how often users repeat themselves, not linguistic variety)
# --------------------------------------------------------------------------------------------------------------------

# Home countries of shoppers (weights) and countries that only appear as attacker / traveller origins.
HOME_COUNTRIES = ("CN", "HK", "TW", "SG", "MY", "US", "JP", "KR", "TH", "VN", "ID", "AU")
HOME_WEIGHTS = np.array([62, 5, 5, 5, 4, 4, 3, 3, 3, 2, 2, 2], dtype=float)
OTHER_COUNTRIES = ("GB", "DE", "NL", "RU", "BR", "NG", "IN", "FR", "CA", "UA", "RO", "PH")
COUNTRIES = HOME_COUNTRIES + OTHER_COUNTRIES
HOSTING_COUNTRIES = ("US", "SG", "DE", "NL", "HK")
# Plausible first octets; residential per country and a few hosting / datacenter ranges.
_IP_FIRST_OCTETS: dict[str, tuple[int, ...]] = {
    "CN": (36, 58, 60, 101, 112, 113, 117, 120, 183, 223), "HK": (42, 116, 219), "TW": (1, 36, 111, 114),
    "SG": (116, 175, 182), "MY": (14, 115, 175), "US": (24, 50, 71, 73, 98, 174), "JP": (110, 126, 153),
    "KR": (121, 175, 211), "TH": (49, 110, 171), "VN": (14, 27, 113), "ID": (36, 114, 180), "AU": (1, 49, 101),
    "GB": (2, 81, 86), "DE": (79, 84, 91), "NL": (77, 83, 145), "RU": (5, 46, 95), "BR": (177, 179, 189),
    "NG": (41, 102, 197), "IN": (49, 106, 117), "FR": (2, 78, 90), "CA": (24, 70, 142), "UA": (37, 46, 93),
    "RO": (5, 79, 86), "PH": (49, 112, 124),
}
_HOSTING_OCTETS = (34, 35, 45, 104, 138, 159, 167, 185, 198)

# Relative traffic by hour of day in shop time (UTC+8): quiet night, morning ramp, evening peak around 21h.
HOUR_WEIGHTS = np.array(
    [2.6, 1.1, 0.5, 0.3, 0.5, 0.75, 1.6, 2.6, 3.3, 4.0, 4.5, 4.6,
     4.1, 5.0, 5.0, 5.4, 5.3, 4.7, 5.0, 6.5, 7.9, 9.0, 7.9, 5.6]
)

_SEARCH_TERMS = (
    "wireless earbuds", "phone case", "running shoes", "winter jacket", "usb c cable", "face cream", "lipstick",
    "rice cooker", "coffee beans", "yoga mat", "laptop stand", "mechanical keyboard", "baby formula", "cat food",
    "dog toy", "led desk lamp", "water bottle", "backpack", "sunglasses", "smart watch", "power bank", "hoodie",
    "jeans", "dress", "sneakers", "bluetooth speaker", "air fryer", "vacuum cleaner", "bed sheets", "towel set",
    "shampoo", "sunscreen", "protein powder", "green tea", "snacks", "notebook", "gel pen", "lego", "puzzle",
    "phone holder", "screen protector", "hair dryer", "electric toothbrush", "umbrella", "socks", "gift box",
)
_SEARCH_MODIFIERS = ("", "", "", " cheap", " women", " men", " 2026", " sale", " original", " large", " black")
_REVIEW_OPEN = ("Good quality", "Arrived quickly", "As described", "Okay overall", "Pretty good", "Not bad",
                "Exactly what I needed", "Decent for the price", "A bit smaller than expected", "Nice")
_REVIEW_DETAIL = ("the material feels solid", "packaging was fine", "color matches the photos",
                  "works as expected so far", "delivery took four days", "size runs a little small",
                  "my kid loves it", "second time buying", "battery lasts long", "smell is mild",
                  "stitching could be better", "seller answered quickly", "fits well", "easy to set up",
                  "a little noisy")
_REVIEW_CLOSE = (".", ", would buy again.", ", recommended.", ", three stars.", ", four stars.", ", five stars.",
                 ", thanks!", ".")
# Review spam reuses a handful of texts: promotion of targets or defamation of competitors.
_SPAM_REVIEWS = (
    "Great product!!! Highly recommend, 5 stars!!!",
    "Best seller ever, 5 stars, fast shipping, recommend!!",
    "Amazing quality amazing price, buy now!!!",
    "Perfect perfect perfect. 5 stars.",
    "Very good very good, will buy again!!!",
    "Excellent!!! Everyone should buy this!!!",
    "Terrible, fake item, do not buy.",
    "Worst seller, broken on arrival, avoid!!!",
    "Scam. Do not buy from this shop.",
    "Five stars!!! Super fast delivery, great seller!!!",
)
_BRUSHING_REVIEWS = ("Good", "Good product, fast delivery", "Very satisfied", "Nice, 5 stars", "Received, good",
                     "Quality is good, recommend")
PUBLIC_COUPONS = ("WELCOME10", "AUTUMN15", "FREESHIP", "VIP20", "FLASH5")
ABUSED_COUPONS = ("WELCOME10", "NEWUSER20", "FIRSTORDER", "STAFF50", "APP-LAUNCH-30")


def _text_tables() -> tuple[np.ndarray, dict[str, tuple[int, int]]]:
    """All text values as one object table, and the [lo, hi) code range of each kind."""
    searches = [t + m for t in _SEARCH_TERMS for m in dict.fromkeys(_SEARCH_MODIFIERS)]
    reviews = [f"{o}, {d}{c}" for o in _REVIEW_OPEN for d in _REVIEW_DETAIL for c in dict.fromkeys(_REVIEW_CLOSE)]
    kinds = {"search": searches, "review": reviews, "spam": list(_SPAM_REVIEWS), "brushing": list(_BRUSHING_REVIEWS)}
    table: list[str] = []
    ranges: dict[str, tuple[int, int]] = {}
    for kind, values in kinds.items():
        ranges[kind] = (len(table), len(table) + len(values))
        table.extend(values)
    return np.array(table, dtype=object), ranges


TEXTS, TEXT_RANGES = _text_tables()
COUPONS: tuple[str, ...] = tuple(dict.fromkeys(PUBLIC_COUPONS + ABUSED_COUPONS))
ABUSED_COUPONS_IDX = np.array([COUPONS.index(c) for c in ABUSED_COUPONS])
# Throwaway accounts (brushing, coupon rings) have little life of their own besides the abuse.
THROWAWAY = np.array([name in ("brushing", "coupon_abuse") for name in LABELS])
ET = {name: i for i, name in enumerate(EVENT_TYPES)}
PRICED_TYPES = np.array([ET[t] for t in ("view", "add_to_cart", "remove_from_cart", "favorite", "purchase", "refund")])


# --------------------------------------------------------------------------------------------------------------------
# Small vectorised helpers
# --------------------------------------------------------------------------------------------------------------------


def _lognormal(rng: np.random.Generator, median: Any, sigma: Any, size: int, lo: float = 0.0,
               hi: float = np.inf) -> np.ndarray:
    return np.clip(np.asarray(median) * np.exp(np.asarray(sigma) * rng.standard_normal(size)), lo, hi)


def _expand(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For counts per owner: the owner of each expanded element and its position within the owner."""
    counts = np.asarray(counts, dtype=np.int64)
    owner = np.repeat(np.arange(len(counts)), counts)
    offsets = np.cumsum(counts) - counts
    return owner, np.arange(len(owner)) - offsets[owner]


def _bounded_zipf(rng: np.random.Generator, n: np.ndarray, a: float = 0.95) -> np.ndarray:
    """Ranks in [0, n) with P(rank k) ~ (k+1)^-a, by inverting the continuous power law (n may vary per draw)."""
    u = rng.random(len(n))
    e = 1.0 - a
    x = (((n + 1.0) ** e - 1.0) * u + 1.0) ** (1.0 / e)
    return np.minimum(np.floor(x).astype(np.int64) - 1, n - 1)


def _diurnal_times(rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray, hour_weights: np.ndarray = HOUR_WEIGHTS,
                   utc_offset_hours: float = SHOP_UTC_OFFSET_HOURS) -> np.ndarray:
    """Times in [lo, hi) following the shop's hour-of-day rhythm, by rejection (interpolated between hours).

    `hour_weights` are per local hour (UTC + `utc_offset_hours`); `seqguard inject` passes a real traffic's own."""
    lo = np.asarray(lo, dtype=float)
    hi = np.maximum(np.asarray(hi, dtype=float), lo + 1.0)
    out = np.empty(len(lo))
    todo = np.arange(len(lo))
    wmax = hour_weights.max()
    hours = np.arange(25) + 0.5
    weights = np.r_[hour_weights, hour_weights[0]]
    for _ in range(200):
        if not len(todo):
            break
        t = lo[todo] + rng.random(len(todo)) * (hi[todo] - lo[todo])
        h = ((t / 3600.0 + utc_offset_hours) % 24.0 + 23.5) % 24.0 + 0.5  # shift so interp spans 0.5..24.5
        ok = rng.random(len(todo)) * wmax < np.interp(h, hours, weights)
        out[todo[ok]] = t[ok]
        todo = todo[~ok]
    out[todo] = lo[todo]  # windows so short that no draw was accepted: start at once
    return out


def _groups(rng: np.random.Generator, n: int, lo: int, hi: int) -> np.ndarray:
    """Group id for each of n members, group sizes uniform in [lo, hi]."""
    sizes = rng.integers(lo, hi + 1, size=max(1, n // max(1, lo) + 1))
    gid = np.repeat(np.arange(len(sizes)), sizes)[:n]
    return gid


def _scramble(codes: np.ndarray, bits: int, salt: int) -> np.ndarray:
    """A bijection on [0, 2^bits): ids that look random but stay unique."""
    mask = np.uint64((1 << bits) - 1)
    shift = np.uint64(bits // 2)
    x = (codes.astype(np.uint64) + np.uint64(salt)) & mask
    for mult in (0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9):  # odd multipliers and xor-shifts are invertible mod 2^bits
        x = (x * np.uint64(mult)) & mask
        x ^= x >> shift
    return x


def _pick(rng: np.random.Generator, pool: np.ndarray, size: int) -> np.ndarray:
    return pool[rng.integers(0, len(pool), size=size)]


# --------------------------------------------------------------------------------------------------------------------
# The world: catalogue, users, id allocation
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class _Catalog:
    n_cat: int
    cat_prob: np.ndarray  # popularity per category
    cat_offset: np.ndarray  # first global item index of each category
    cat_items: np.ndarray  # items per category; item rank r of category c is item cat_offset[c] + r
    item_cat: np.ndarray
    item_price: np.ndarray
    cheap: np.ndarray  # items for card testing and coupon abuse
    high_value: np.ndarray  # resale-friendly items for account takeover
    upper_value: np.ndarray  # the less conspicuous choice of careful fraudsters
    scarce: np.ndarray  # limited drops that scalpers go after

    def sample_categories(self, rng: np.random.Generator, size: int) -> np.ndarray:
        return rng.choice(self.n_cat, size=size, p=self.cat_prob)

    def sample_items(self, rng: np.random.Generator, cats: np.ndarray) -> np.ndarray:
        return self.cat_offset[cats] + _bounded_zipf(rng, self.cat_items[cats])


def _build_catalog(rng: np.random.Generator, n_cat: int = 3000) -> _Catalog:
    rank_prob = (np.arange(n_cat) + 1.0) ** -0.85
    rank_prob /= rank_prob.sum()
    cat_prob = rank_prob[rng.permutation(n_cat)]  # category ids carry no popularity order
    # Popular categories hold more items; a long tail holds a handful each.
    scale = np.sqrt(cat_prob / np.median(cat_prob))
    cat_items = np.clip(np.round(_lognormal(rng, 40.0, 1.0, n_cat) * scale), 2, 20000).astype(np.int64)
    cat_offset = np.cumsum(cat_items) - cat_items
    item_cat = np.repeat(np.arange(n_cat), cat_items)
    cat_base = _lognormal(rng, 35.0, 1.0, n_cat, 1.0, 3000.0)
    price = np.round(cat_base[item_cat] * _lognormal(rng, 1.0, 0.45, len(item_cat)), 1) - 0.01
    price = np.clip(price, 0.49, 50_000.0)
    # Scarce drops: the top items of a few very popular categories, priced like sneakers and consoles.
    hot = np.argsort(-cat_prob)[:6]
    scarce = np.concatenate([cat_offset[c] + np.arange(min(4, cat_items[c])) for c in hot])
    price[scarce] = np.round(rng.uniform(159, 899, len(scarce))) - 0.01
    q75, q97 = np.quantile(price, [0.75, 0.97])
    return _Catalog(
        n_cat=n_cat, cat_prob=cat_prob, cat_offset=cat_offset, cat_items=cat_items, item_cat=item_cat,
        item_price=price, cheap=np.flatnonzero(price <= 6.0), high_value=np.flatnonzero(price >= q97),
        upper_value=np.flatnonzero((price >= q75) & (price < q97)), scarce=scarce,
    )


class _Ips:
    """IP addresses by country; a code is an index into the table, strings are made at the end."""

    def __init__(self) -> None:
        self.country: list[np.ndarray] = []
        self.hosting: list[np.ndarray] = []
        self.n = 0

    def new(self, countries: np.ndarray, hosting: bool = False) -> np.ndarray:
        countries = np.asarray(countries, dtype=np.int64)
        codes = np.arange(self.n, self.n + len(countries))
        self.country.append(countries)
        self.hosting.append(np.full(len(countries), hosting))
        self.n += len(countries)
        return codes

    def strings(self, salt: int) -> np.ndarray:
        country = np.concatenate(self.country) if self.country else np.zeros(0, np.int64)
        hosting = np.concatenate(self.hosting) if self.hosting else np.zeros(0, bool)
        low = _scramble(np.arange(len(country)), 24, salt)  # unique per table, so no accidental sharing
        first = np.empty(len(country), dtype=np.int64)
        for ci, name in enumerate(COUNTRIES):
            sel = (country == ci) & ~hosting
            octets = np.array(_IP_FIRST_OCTETS[name])
            first[sel] = octets[low[sel].astype(np.int64) % len(octets)]
        octets = np.array(_HOSTING_OCTETS)
        first[hosting] = octets[low[hosting].astype(np.int64) % len(octets)]
        b, c, d = (low >> np.uint64(16)) & np.uint64(255), (low >> np.uint64(8)) & np.uint64(255), low & np.uint64(255)
        d = np.maximum(d, 1)
        return np.array([f"{w}.{x}.{y}.{z}" for w, x, y, z in zip(first.tolist(), b.tolist(), c.tolist(), d.tolist(),
                                                                   strict=True)], dtype=object)


class _Counter:
    def __init__(self) -> None:
        self.n = 0

    def new(self, k: int) -> np.ndarray:
        out = np.arange(self.n, self.n + k)
        self.n += k
        return out


@dataclass
class _Users:
    n: int
    label: np.ndarray  # 0 normal, 1.. scenario index + 1
    join: np.ndarray  # when the account can first act (start of period for older accounts)
    fresh: np.ndarray  # signed up inside the period
    rate: np.ndarray  # normal sessions per day
    home: np.ndarray  # country code
    devices: np.ndarray  # (n, 3) device codes; only the first n_dev are used
    n_dev: np.ndarray
    ips: np.ndarray  # (n, 2)
    n_ip: np.ndarray
    prefs: np.ndarray  # (n, 4) preferred categories
    strength: np.ndarray  # attack strength (intensity x per-attacker variation); 0 for normal users


@dataclass
class _World:
    rng: np.random.Generator
    cfg: GeneratorConfig
    start: float
    end: float
    catalog: _Catalog
    users: _Users
    ips: _Ips = field(default_factory=_Ips)
    devices: _Counter = field(default_factory=_Counter)
    hour_weights: np.ndarray = field(default_factory=lambda: HOUR_WEIGHTS)  # per local hour, see _diurnal_times
    utc_offset_hours: float = SHOP_UTC_OFFSET_HOURS

    def diurnal_times(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        return _diurnal_times(self.rng, lo, hi, self.hour_weights, self.utc_offset_hours)

    def ip_country(self, ip: np.ndarray) -> np.ndarray:
        return np.concatenate(self.ips.country)[ip]

    def home_weights(self) -> np.ndarray:
        return HOME_WEIGHTS / HOME_WEIGHTS.sum()

    def random_home_countries(self, size: int) -> np.ndarray:
        return self.rng.choice(len(HOME_COUNTRIES), size=size, p=self.home_weights())

    def foreign_countries(self, home: np.ndarray) -> np.ndarray:
        """A country other than `home`: attacker / traveller origins, often outside the shop's markets."""
        out = self.rng.integers(0, len(COUNTRIES), size=len(home))
        clash = out == home
        out[clash] = (out[clash] + 1 + self.rng.integers(0, len(COUNTRIES) - 1, clash.sum())) % len(COUNTRIES)
        return out


def _build_users(rng: np.random.Generator, cfg: GeneratorConfig, start: float, end: float) -> _Users:
    n = cfg.users
    label = np.zeros(n, dtype=np.int8)
    counts = [round(cfg.scenario(s).prevalence * n) for s in SCENARIOS]
    if n >= 100:  # a scenario asked for is present, even when its prevalence rounds to no one
        counts = [max(c, 1) if cfg.scenario(s).prevalence > 0 else c for c, s in zip(counts, SCENARIOS, strict=True)]
    while sum(counts) > n:  # prevalences summing to ~1 on a tiny population
        counts[int(np.argmax(counts))] -= 1
    perm = rng.permutation(n)
    pos = 0
    strength = np.zeros(n)
    for si, k in enumerate(counts):
        idx = perm[pos : pos + k]
        label[idx] = si + 1
        # A quarter of the attackers are careful and run at a fraction of the rate: hard cases by design.
        careful = rng.random(k) < 0.25
        strength[idx] = cfg.scenario(SCENARIOS[si]).intensity * _lognormal(rng, 1.0, 0.45, k, 0.3, 4.0)
        strength[idx[careful]] *= 0.25
        pos += k
    # Who signed up inside the period: some normal users, most throwaway fraud accounts, no takeover victims.
    fresh_p = np.array([cfg.new_user_share, 0.4, 0.85, 0.0, 0.5, 1.0, 0.3, 0.6])[label]
    fresh = rng.random(n) < fresh_p
    join = np.full(n, start)
    join[fresh] = _diurnal_times(rng, np.full(fresh.sum(), start), np.full(fresh.sum(), end - 3600.0))
    rate = cfg.activity * _lognormal(rng, 1.4, 0.8, n, 0.05, 25.0)
    # Attack accounts still browse, less than real shoppers; takeover victims are real shoppers.
    rate[(label > 0) & (label != LABELS.index("account_takeover"))] *= 0.5
    home = rng.choice(len(HOME_COUNTRIES), size=n, p=HOME_WEIGHTS / HOME_WEIGHTS.sum())
    n_dev = rng.choice([1, 2, 3], size=n, p=[0.55, 0.35, 0.10])
    devices = np.arange(3 * n).reshape(n, 3)
    # Families share a tablet: the second device of some users is the first device of another user.
    shared = np.flatnonzero((n_dev >= 2) & (rng.random(n) < 0.04))
    devices[shared, 1] = devices[rng.integers(0, n, len(shared)), 0]
    n_ip = rng.choice([1, 2], size=n, p=[0.6, 0.4])
    prefs = np.zeros((n, 4), dtype=np.int64)  # filled once the catalogue exists
    return _Users(n=n, label=label, join=join, fresh=fresh, rate=rate, home=home, devices=devices, n_dev=n_dev,
                  ips=np.zeros((n, 2), dtype=np.int64), n_ip=n_ip, prefs=prefs, strength=strength)


def _assign_ips(w: _World) -> None:
    """Home and mobile IPs per user; some share a NAT'd office / campus / carrier address with many others."""
    u = w.users
    rng = w.rng
    u.ips = w.ips.new(np.repeat(u.home, 2)).reshape(u.n, 2)
    n_hubs = max(4, u.n // 150)
    hub_country = w.random_home_countries(n_hubs)
    hub_codes = w.ips.new(hub_country)
    hub_prob = (np.arange(n_hubs) + 1.0) ** -1.0
    for ci in range(len(HOME_COUNTRIES)):
        members = np.flatnonzero((u.home == ci) & (rng.random(u.n) < 0.15))
        hubs = np.flatnonzero(hub_country == ci)
        if len(members) and len(hubs):
            p = hub_prob[hubs] / hub_prob[hubs].sum()
            u.ips[members, 0] = hub_codes[rng.choice(hubs, size=len(members), p=p)]


# --------------------------------------------------------------------------------------------------------------------
# Sessions and rows
# --------------------------------------------------------------------------------------------------------------------


class _Sessions:
    """The session table: each session belongs to one user, one device/ip/country and one label."""

    COLS = ("user", "start", "device", "ip", "country", "label")

    def __init__(self) -> None:
        self.parts: list[dict[str, np.ndarray]] = []
        self.n = 0

    def add(self, user: np.ndarray, start: np.ndarray, device: np.ndarray, ip: np.ndarray, country: np.ndarray,
            label: int | np.ndarray) -> np.ndarray:
        k = len(user)
        part = {"user": user, "start": start, "device": device, "ip": ip, "country": country,
                "label": np.broadcast_to(np.asarray(label, dtype=np.int8), (k,))}
        self.parts.append({c: np.asarray(v) for c, v in part.items()})
        ids = np.arange(self.n, self.n + k)
        self.n += k
        return ids

    def table(self) -> dict[str, np.ndarray]:
        return {c: np.concatenate([p[c] for p in self.parts]) for c in self.COLS}


_ROW_DEFAULTS: dict[str, tuple[Any, Any]] = {
    "item": (-1, np.int64),
    "price": (np.nan, np.float64),
    "qty": (0, np.int32),
    "pay": (0, np.int8),  # 0 none, 1 success, 2 failed
    "coupon": (-1, np.int32),
    "text": (-1, np.int32),
}


class _Rows:
    """Row blocks: the session each row belongs to, its order key within the session and the gap before it."""

    def __init__(self) -> None:
        self.parts: list[dict[str, np.ndarray]] = []

    def add(self, sess: np.ndarray, key: Any, etype: int | np.ndarray, gap: Any, **cols: Any) -> None:
        k = len(sess)
        if k == 0:
            return
        part = {
            "sess": np.asarray(sess, dtype=np.int64),
            "key": np.broadcast_to(np.asarray(key, dtype=np.float64), (k,)),
            "etype": np.broadcast_to(np.asarray(etype, dtype=np.int8), (k,)),
            "gap": np.broadcast_to(np.asarray(gap, dtype=np.float64), (k,)),
        }
        for name, (default, dtype) in _ROW_DEFAULTS.items():
            part[name] = np.broadcast_to(np.asarray(cols.pop(name, default), dtype=dtype), (k,))
        if cols:
            raise TypeError(f"unknown row columns {sorted(cols)}")
        self.parts.append(part)

    def concat(self) -> dict[str, np.ndarray]:
        names = ["sess", "key", "etype", "gap", *_ROW_DEFAULTS]
        return {c: np.concatenate([p[c] for p in self.parts]) for c in names}


def _timestamps(rows: dict[str, np.ndarray], start: np.ndarray) -> dict[str, np.ndarray]:
    """Sort rows by (session, key) and give each one its session start plus the gaps before it (first row: 0)."""
    order = np.lexsort((rows["key"], rows["sess"]))
    rows = {c: v[order] for c, v in rows.items()}
    sess = rows["sess"]
    first = np.r_[True, sess[1:] != sess[:-1]]
    gap = np.where(first, 0.0, rows["gap"])
    cs = np.cumsum(gap)
    group_start = np.flatnonzero(first)
    offset = cs - cs[group_start][np.cumsum(first) - 1]
    rows["ts"] = start[sess] + offset
    return rows


# Gap before a row of each type in normal sessions: (median s, sigma). Views drive the in-session rhythm and are
# tuned to Taobao's pv gaps (median ~55 s, p90 ~340 s); actions that follow a view come quicker.
_NORMAL_GAPS: dict[str, tuple[float, float]] = {
    "view": (62.0, 1.22), "search": (18.0, 0.8), "favorite": (14.0, 0.9), "add_to_cart": (16.0, 0.9),
    "remove_from_cart": (25.0, 0.8), "address_change": (70.0, 0.5), "coupon_redeem": (25.0, 0.6),
    "payment_attempt": (40.0, 0.6), "purchase": (1.5, 0.5), "logout": (30.0, 0.8), "login": (9.0, 0.5),
    "login_failed": (6.0, 0.5), "password_change": (60.0, 0.5), "review": (45.0, 0.6), "refund": (40.0, 0.6),
}


def _normal_gaps(rng: np.random.Generator, etype: np.ndarray, pace: np.ndarray) -> np.ndarray:
    """Gaps by event type, scaled by the pace of the user / session (some people click through fast)."""
    med = np.ones(len(etype))
    sig = np.full(len(etype), 0.5)
    for name, (m, s) in _NORMAL_GAPS.items():
        sel = etype == ET[name]
        med[sel], sig[sel] = m, s
    return _lognormal(rng, med * pace, sig, len(etype), 0.3, 1700.0)


def _session_ip(w: _World, user: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mostly the user's own IPs, sometimes a one-off mobile address, rarely a foreign one (travel, VPN)."""
    rng, u = w.rng, w.users
    k = len(user)
    slot = np.where(rng.random(k) < 0.75, 0, rng.integers(0, u.n_ip[user]))
    ip = u.ips[user, slot]
    country = u.home[user].astype(np.int64)
    r = rng.random(k)
    mobile = r < 0.04
    ip[mobile] = w.ips.new(country[mobile])
    travel = r > 0.995
    country[travel] = w.foreign_countries(country[travel])
    ip[travel] = w.ips.new(country[travel])
    return ip, country


def _normal_sessions(w: _World, sessions: _Sessions, rows: _Rows, rate_mult: np.ndarray) -> None:
    """Ordinary shopping: browse a focus category, favourite / cart some items, sometimes check out."""
    rng, u, cat = w.rng, w.users, w.catalog
    avail_days = (w.end - u.join) / DAY
    n_sess = rng.poisson(u.rate * rate_mult * avail_days)
    # Every listed shopper shows up at least once, and a takeover victim has a life of their own.
    n_sess[(n_sess == 0) & ((u.label == 0) | (u.label == LABELS.index("account_takeover")))] = 1
    user, nth = _expand(n_sess)
    start = _diurnal_times(rng, u.join[user], np.full(len(user), w.end))
    signup = u.fresh[user] & (nth == 0)
    start[signup] = u.join[user[signup]]  # a new account's first session is its sign-up
    dslot = np.where(rng.random(len(user)) < 0.7, 0, rng.integers(0, u.n_dev[user]))
    device = u.devices[user, dslot]
    ip, country = _session_ip(w, user)
    sid = sessions.add(user, start, device, ip, country, 0)
    S = len(sid)

    # Login when a device is new to the account (first session on it) or the login cookie expired.
    order = np.lexsort((start, device, user))
    first_on_dev = np.ones(S, dtype=bool)
    su, sd = user[order], device[order]
    first_on_dev[order[1:]] = (su[1:] != su[:-1]) | (sd[1:] != sd[:-1])
    login = first_on_dev | (rng.random(S) < 0.15)
    typo = login & (rng.random(S) < 0.03)
    rows.add(sid[login], -2.0, ET["login"], 0.0)
    rows.add(sid[typo], -3.0, ET["login_failed"], 0.0)
    pw = rng.random(S) < 0.003  # forgotten password: reset after a failed login or three
    fs, fslot = _expand(np.where(pw, rng.integers(1, 4, S), 0))
    rows.add(sid[fs], -2.9 + 0.1 * fslot, ET["login_failed"], 0.0)
    rows.add(sid[pw], -1.5, ET["password_change"], 0.0)
    opening_search = rng.random(S) < 0.22
    rows.add(sid[opening_search], -1.0, ET["search"], 0.0, text=_search_texts(rng, opening_search.sum()))

    # Browsing slots: heavy-tailed session lengths (Taobao: median 3 events, p90 ~15, p99 ~40 per session).
    K = np.ceil(_lognormal(rng, 2.2, 1.2, S, 1.0, 400.0)).astype(np.int64)
    # Re-orders: straight to one item and buy it (consumables, a deal from a push message). They look like the
    # "purchase without browsing" of brushing and coupon rings, which is the point.
    quick = rng.random(S) < 0.035
    K[quick] = 1
    rs, slot = _expand(K)
    R = len(rs)
    focus = _session_focus(w, user)
    r = rng.random(R)
    cats = np.where(r < 0.72, focus[rs], u.prefs[user[rs], rng.integers(0, 4, R)])
    wander = r > 0.92
    cats[wander] = cat.sample_categories(rng, wander.sum())
    items = cat.sample_items(rng, cats)
    revisit = (slot > 0) & (rng.random(R) < 0.05)  # back to the item just seen (photos, reviews, size chart)
    items[revisit] = items[np.flatnonzero(revisit) - 1]
    drop = rng.random(R) < 0.004  # everyone peeks at the hyped limited drops now and then
    items[drop] = _pick(rng, cat.scarce, drop.sum())
    search = (slot > 0) & (rng.random(R) < 0.035)
    view = ~search
    rows.add(sid[rs[search]], slot[search], ET["search"], 0.0, text=_search_texts(rng, search.sum()))
    rows.add(sid[rs[view]], slot[view], ET["view"], 0.0, item=items[view])

    # Follow-ups on a viewed item (Taobao per pv: cart ~5.9 %, fav ~3.1 %, buy ~2.3 %).
    vi = np.flatnonzero(view)
    fav = vi[rng.random(len(vi)) < 0.031]
    rows.add(sid[rs[fav]], slot[fav] + 0.1, ET["favorite"], 0.0, item=items[fav])
    cart = vi[rng.random(len(vi)) < 0.056]
    cart_qty = rng.choice([1, 2, 3], size=len(cart), p=[0.86, 0.10, 0.04])
    rows.add(sid[rs[cart]], slot[cart] + 0.2, ET["add_to_cart"], 0.0, item=items[cart], qty=cart_qty)
    quick_view = quick[rs[vi]] & (slot[vi] == 0)
    buy_now = vi[(rng.random(len(vi)) < 0.0045) | (quick_view & (rng.random(len(vi)) < 0.75))]
    buy_now = np.setdiff1d(buy_now, cart, assume_unique=True)

    # Checkout at the end of the session: a third of carted items and every "buy now".
    bought_cart = rng.random(len(cart)) < 0.26
    kept = cart[~bought_cart]
    removed = kept[rng.random(len(kept)) < 0.12]
    rows.add(sid[rs[removed]], K[rs[removed]] + 0.1, ET["remove_from_cart"], 0.0, item=items[removed])
    order_rows = np.r_[cart[bought_cart], buy_now]
    order_qty = np.r_[cart_qty[bought_cart], rng.choice([1, 2], size=len(buy_now), p=[0.9, 0.1])]
    _checkout(w, rows, sid, K, rs[order_rows], items[order_rows], order_qty, fresh_first=signup)

    # Rare account chores and an occasional explicit logout.
    addr = rng.random(S) < 0.004
    rows.add(sid[addr], K[addr] + 0.2, ET["address_change"], 0.0)
    out = rng.random(S) < 0.06
    rows.add(sid[out], K[out] + 1.0, ET["logout"], 0.0)

    # Pace: per user (fast and slow shoppers) and per session (in a hurry today or not).
    pace = _lognormal(rng, 1.0, 0.45, u.n)[user] * _lognormal(rng, 1.0, 0.25, S)
    for part in rows.parts:
        part["gap"] = _normal_gaps(rng, part["etype"], pace[part["sess"] - sid[0]])


def _search_texts(rng: np.random.Generator, k: int) -> np.ndarray:
    lo, hi = TEXT_RANGES["search"]
    return rng.integers(lo, hi, size=k)


def _session_focus(w: _World, user: np.ndarray) -> np.ndarray:
    """Each session mostly browses one category: one of the user's favourites, sometimes something new."""
    rng = w.rng
    k = len(user)
    pref_slot = rng.choice(4, size=k, p=[0.45, 0.25, 0.18, 0.12])
    focus = w.users.prefs[user, pref_slot]
    new = rng.random(k) < 0.25
    focus[new] = w.catalog.sample_categories(rng, new.sum())
    return focus


def _checkout(w: _World, rows: _Rows, sid: np.ndarray, K: np.ndarray, order_sess: np.ndarray, items: np.ndarray,
              qty: np.ndarray, fresh_first: np.ndarray) -> None:
    """Orders of normal sessions: optional coupon, payment (sometimes a genuine decline and retry), purchases."""
    rng, cat = w.rng, w.catalog
    S = len(sid)
    amount = np.bincount(order_sess, weights=cat.item_price[items] * qty, minlength=S)
    has_order = np.bincount(order_sess, minlength=S) > 0
    welcome = has_order & fresh_first & (rng.random(S) < 0.5)
    coupon = has_order & ~welcome & (rng.random(S) < 0.15)  # vouchers are everyday on big platforms
    code = np.where(welcome, 0, rng.integers(0, len(PUBLIC_COUPONS), S))
    use = welcome | coupon
    rows.add(sid[use], K[use] + 0.3, ET["coupon_redeem"], 0.0, coupon=code[use])
    # Genuine declines (typo in the CVV, limit reached): usually one, sometimes a few tries, then success or give up.
    declined = has_order & (rng.random(S) < 0.05)
    retried = declined & (rng.random(S) < 0.7)
    n_decl = np.where(declined, np.minimum(rng.geometric(0.7, S), 5), 0)
    ds, dslot = _expand(n_decl)
    rows.add(sid[ds], K[ds] + 0.4 + 0.01 * dslot, ET["payment_attempt"], 0.0, price=amount[ds], pay=2)
    paid = has_order & (~declined | retried)
    rows.add(sid[paid], K[paid] + 0.5, ET["payment_attempt"], 0.0, price=amount[paid], pay=1)
    ok = paid[order_sess]
    rows.add(sid[order_sess[ok]], K[order_sess[ok]] + 0.6, ET["purchase"], 0.0, item=items[ok], qty=qty[ok])


# --------------------------------------------------------------------------------------------------------------------
# Attack scenarios. Each adds sessions labeled with its scenario for the users of that scenario.
# --------------------------------------------------------------------------------------------------------------------


def _attack_starts(w: _World, users: np.ndarray, n_sess: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Attack sessions spread over the whole period with the normal diurnal rhythm: (owner, user, start).

    Times are drawn first and a fresh account's sign-up is put shortly before its first attack. Drawing sign-ups first
    and activity after them would pile attacks up towards the end of the period, which a by-day split would notice.
    """
    owner, _ = _expand(n_sess)
    user = users[owner]
    start = w.diurnal_times(np.full(len(user), w.start), np.full(len(user), w.end))
    first = np.full(len(users), np.inf)
    np.minimum.at(first, owner, start)
    fresh = w.users.fresh[users]
    lead = _lognormal(w.rng, 900.0, 1.2, len(users), 30.0, 3 * DAY)
    join = np.maximum(first - lead, w.start)
    w.users.join[users[fresh]] = join[fresh]
    w.users.fresh[users] = fresh & (join > w.start)
    return owner, user, start


def _click_farm_bot(w: _World, sessions: _Sessions, rows: _Rows, users: np.ndarray, code: int) -> None:
    """Scripted page views that inflate a few target items: regular clock-like gaps, long sessions.

    Farms share targets and IPs (hosting ranges or residential proxies); some bots add jitter and carts to blend in.
    """
    rng, cat, u = w.rng, w.catalog, w.users
    n = len(users)
    s = u.strength[users]
    farm = _groups(rng, n, 3, 12)
    n_farm = farm.max() + 1
    target_cat = cat.sample_categories(rng, n_farm)
    # Obscure items that somebody pays to push up the rankings.
    targets = cat.cat_offset[target_cat][:, None] + (
        rng.integers(5, 200, (n_farm, 12)) % cat.cat_items[target_cat][:, None])
    proxy = rng.random(n_farm) < 0.35
    farm_ips = w.ips.new(_pick(rng, np.array([COUNTRIES.index(c) for c in HOSTING_COUNTRIES]), 3 * n_farm),
                         hosting=True).reshape(n_farm, 3)
    farm_dev = w.devices.new(n_farm)
    careful = s < 0.5
    # Careful bots pace themselves like a quick human and jitter log-normally; the rest tick like a clock.
    base = np.where(careful, rng.uniform(6.0, 30.0, n), rng.uniform(1.5, 12.0, n))
    jitter = np.where((rng.random(n) < 0.7) & ~careful, rng.uniform(0.01, 0.08, n), rng.uniform(0.4, 1.0, n))
    carts = rng.random(n) < 0.3
    shared_dev = rng.random(n) < 0.4
    own_dev = np.where(shared_dev, farm_dev[farm], u.devices[users, 0])

    n_sess = np.maximum(1, rng.poisson(1.0 * s * w.cfg.days))
    owner, su, start = _attack_starts(w, users, n_sess)
    f = farm[owner]
    ip = farm_ips[f, rng.integers(0, 3, len(su))]
    country = w.ip_country(ip)
    px = proxy[f]
    country[px] = w.random_home_countries(px.sum())
    ip[px] = w.ips.new(country[px])
    sid = sessions.add(su, start, own_dev[owner], ip, country, code)
    login = rng.random(len(sid)) < 0.3
    rows.add(sid[login], -1.0, ET["login"], 0.0)

    K = np.where(careful[owner], rng.integers(6, 25, len(sid)),
                 np.ceil(_lognormal(rng, 30.0 * s[owner], 0.6, len(sid), 8, 600))).astype(np.int64)
    rs, slot = _expand(K)
    b = owner[rs]
    items = np.where(rng.random(len(rs)) < 0.75, targets[f[rs], rng.integers(0, 12, len(rs))],
                     cat.sample_items(rng, cat.sample_categories(rng, len(rs))))
    low = jitter[b] < 0.2
    gap = np.where(low, base[b] * (1.0 + jitter[b] * rng.standard_normal(len(rs))),
                   base[b] * np.exp(jitter[b] * rng.standard_normal(len(rs))))
    rows.add(sid[rs], slot, ET["view"], np.maximum(gap, 0.2), item=items)
    c = np.flatnonzero(carts[b] & (rng.random(len(rs)) < 0.02))
    rows.add(sid[rs[c]], slot[c] + 0.5, ET["add_to_cart"], rng.uniform(0.8, 3.0, len(c)), item=items[c], qty=1)


def _brushing(w: _World, sessions: _Sessions, rows: _Rows, users: np.ndarray, code: int) -> None:
    """Fake orders from rings of fresh accounts on shared devices: buy a merchant's item without shopping around.

    Reviews follow most of these orders (see _post_purchase); careful rings browse a little first.
    """
    rng, cat, u = w.rng, w.catalog, w.users
    n = len(users)
    s = u.strength[users]
    ring = _groups(rng, n, 4, 15)
    n_ring = ring.max() + 1
    ring_dev = w.devices.new(3 * n_ring).reshape(n_ring, 3)
    ring_n_dev = rng.integers(1, 4, n_ring)
    ring_country = w.random_home_countries(n_ring)
    ring_ip = w.ips.new(np.repeat(ring_country, 2)).reshape(n_ring, 2)
    target_cat = cat.sample_categories(rng, n_ring)
    targets = cat.cat_offset[target_cat][:, None] + (
        rng.integers(10, 300, (n_ring, 3)) % cat.cat_items[target_cat][:, None])

    n_sess = np.maximum(1, rng.poisson(0.4 + 0.35 * s * w.cfg.days))
    owner, su, start = _attack_starts(w, users, n_sess)
    r = ring[owner]
    device = ring_dev[r, rng.integers(0, ring_n_dev[r])]
    ip = ring_ip[r, rng.integers(0, 2, len(r))]
    sid = sessions.add(su, start, device, ip, ring_country[r], code)
    S = len(sid)
    careful = s[owner] < 0.5
    target = targets[r, rng.integers(0, 3, S)]
    rows.add(sid[rng.random(S) < 0.9], -2.0, ET["login"], 0.0)
    fast = _lognormal(rng, 8.0, 0.6, S, 1.0, 120.0)
    search = rng.random(S) < 0.3
    rows.add(sid[search], -1.0, ET["search"], fast[search], text=_search_texts(rng, search.sum()))
    # Careful rings look around the target's category first, like a shopper comparing offers.
    n_browse = np.where(careful, rng.integers(2, 7, S), rng.integers(0, 2, S))
    bs, slot = _expand(n_browse)
    bitems = np.where(slot == n_browse[bs] - 1, target[bs],
                      cat.sample_items(rng, np.full(len(bs), target_cat[r[bs]])))
    rows.add(sid[bs], slot, ET["view"], _lognormal(rng, np.where(careful[bs], 40.0, 10.0), 0.7, len(bs), 1.0, 900.0),
             item=bitems)
    cart = rng.random(S) < 0.6
    rows.add(sid[cart], 50.0, ET["add_to_cart"], fast[cart], item=target[cart], qty=1)
    qty = rng.choice([1, 2], size=S, p=[0.85, 0.15])
    price = cat.item_price[target] * qty
    rows.add(sid, 51.0, ET["payment_attempt"], _lognormal(rng, 20.0, 0.5, S, 3.0), price=price, pay=1)
    rows.add(sid, 52.0, ET["purchase"], rng.uniform(0.3, 2.0, S), item=target, qty=qty)


def _account_takeover(w: _World, sessions: _Sessions, rows: _Rows, users: np.ndarray, code: int) -> None:
    """A stolen login: failed tries, then a new device from a new IP (often abroad), account changes and a quick
    high-value order; maybe a few more orders in the next hours. The owner's own sessions go on as before."""
    rng, cat, u = w.rng, w.catalog, w.users
    n = len(users)
    s = u.strength[users]
    careful = s < 0.5
    t0 = w.diurnal_times(np.maximum(u.join[users], w.start), np.full(n, w.end - 1800.0))
    adev = w.devices.new(n)
    acountry = np.where(careful | (rng.random(n) < 0.3), u.home[users], w.foreign_countries(u.home[users]))
    aip = w.ips.new(acountry, hosting=False)
    extra = np.minimum(rng.poisson(0.8 * s), 5)
    n_sess = 1 + extra
    owner, nth = _expand(n_sess)
    start = t0[owner] + np.where(nth == 0, 0.0, rng.uniform(600.0, 20 * 3600.0, len(owner)))
    # Later sessions rotate through the attacker's proxies.
    ip = np.where(nth == 0, aip[owner], w.ips.new(acountry[owner]))
    sid = sessions.add(users[owner], start, adev[owner], ip, acountry[owner], code)
    S = len(sid)
    first = nth == 0
    fast = _lognormal(rng, np.where(careful[owner], 25.0, 7.0), 0.6, S, 1.0, 600.0)
    n_fail = np.where(first, np.minimum(rng.poisson(1.2 * s[owner]), 8), 0)
    fs, fslot = _expand(n_fail)
    rows.add(sid[fs], -10.0 + fslot, ET["login_failed"], _lognormal(rng, 5.0, 0.5, len(fs), 1.0))
    login = first | (rng.random(S) < 0.5)
    rows.add(sid[login], -1.0, ET["login"], fast[login])
    pw = first & (rng.random(S) < np.where(careful[owner], 0.2, 0.6))
    rows.add(sid[pw], 0.0, ET["password_change"], fast[pw] * 2)
    addr = first & (rng.random(S) < np.where(careful[owner], 0.35, 0.75))
    rows.add(sid[addr], 1.0, ET["address_change"], fast[addr] * 2)
    pool_high = np.where(careful[owner], 0, 1)
    n_items = rng.integers(1, 3, S)
    os_, _ = _expand(n_items)
    items = np.where(pool_high[os_] == 1, _pick(rng, cat.high_value, len(os_)), _pick(rng, cat.upper_value, len(os_)))
    n_views = rng.integers(0, 4, S)
    vs, vslot = _expand(n_views)
    rows.add(sid[vs], 2.0 + vslot, ET["view"], fast[vs], item=_pick(rng, cat.high_value, len(vs)))
    qty = np.where(careful[owner[os_]], 1, rng.integers(1, 4, len(os_)))
    rows.add(sid[os_], 10.0, ET["add_to_cart"], fast[os_], item=items, qty=qty)
    amount = np.bincount(os_, weights=cat.item_price[items] * qty, minlength=S)
    declined = rng.random(S) < 0.12
    rows.add(sid[declined], 11.0, ET["payment_attempt"], fast[declined], price=amount[declined], pay=2)
    rows.add(sid, 12.0, ET["payment_attempt"], fast, price=amount, pay=1)
    rows.add(sid[os_], 13.0, ET["purchase"], rng.uniform(0.3, 2.0, len(os_)), item=items, qty=qty)


def _card_testing(w: _World, sessions: _Sessions, rows: _Rows, users: np.ndarray, code: int) -> None:
    """Stolen-card checks: bursts of small payment attempts, mostly declined; successes become tiny purchases."""
    rng, cat, u = w.rng, w.catalog, w.users
    n = len(users)
    s = u.strength[users]
    careful = s < 0.5
    fail_rate = np.where(careful, rng.uniform(0.4, 0.8, n), rng.uniform(0.6, 0.97, n))
    rotate = (rng.random(n) < 0.4) & ~careful  # careful testers stay on their own device and address
    group = _groups(rng, n, 1, 3)
    group_dev = w.devices.new(group.max() + 1)
    n_sess = np.maximum(1, rng.poisson(0.6 + 0.25 * s * w.cfg.days))
    owner, su, start = _attack_starts(w, users, n_sess)
    own_ip = u.ips[su, 0]
    country = u.home[su].astype(np.int64)
    rot = rotate[owner]
    country[rot] = w.foreign_countries(country[rot])
    ip = own_ip.copy()
    ip[rot] = w.ips.new(country[rot], hosting=True)
    device = np.where(careful[owner], u.devices[su, 0], group_dev[group[owner]])
    sid = sessions.add(su, start, device, ip, country, code)
    S = len(sid)
    item = _pick(rng, cat.cheap, S)
    rows.add(sid[rng.random(S) < 0.6], -2.0, ET["login"], 0.0)
    n_views = np.where(careful[owner], rng.integers(1, 6, S), rng.random(S) < 0.6)
    vs, vslot = _expand(n_views)
    vitem = np.where(vslot == n_views[vs] - 1, item[vs], cat.sample_items(rng, cat.item_cat[item[vs]]))
    rows.add(sid[vs], -2.0 + vslot * 0.1, ET["view"], _lognormal(rng, np.where(careful[owner[vs]], 45.0, 10.0), 0.6,
                                                                  len(vs), 1.0), item=vitem)
    rows.add(sid, 0.0, ET["add_to_cart"], _lognormal(rng, 8.0, 0.6, S, 1.0), item=item, qty=1)
    m = np.where(careful[owner], rng.integers(2, 6, S),
                 np.ceil(_lognormal(rng, 14.0 * s[owner], 0.6, S, 3, 150))).astype(np.int64)
    ps, slot = _expand(m)
    failed = rng.random(len(ps)) < fail_rate[owner[ps]]
    # Amounts wander around the item's price (shipping, tax, different cards' currencies).
    amount = np.round(cat.item_price[item[ps]] * rng.uniform(0.8, 1.6, len(ps)), 2)
    gap = _lognormal(rng, np.where(careful[owner[ps]], 60.0, 6.0), 0.6, len(ps), 0.8, 900.0)
    rows.add(sid[ps], 1.0 + slot, ET["payment_attempt"], gap, price=amount, pay=np.where(failed, 2, 1))
    ok = np.flatnonzero(~failed & (rng.random(len(ps)) < 0.7))
    rows.add(sid[ps[ok]], 1.5 + slot[ok], ET["purchase"], rng.uniform(0.3, 2.0, len(ok)), item=item[ps[ok]], qty=1)


def _coupon_abuse(w: _World, sessions: _Sessions, rows: _Rows, users: np.ndarray, code: int) -> None:
    """Rings of freshly made accounts on one device / IP, each redeeming the same new-customer code once."""
    rng, cat, u = w.rng, w.catalog, w.users
    n = len(users)
    s = u.strength[users]
    ring = _groups(rng, n, 4, 25)
    n_ring = ring.max() + 1
    careful_ring = rng.random(n_ring) < 0.25
    # Accounts are made one after another: minutes apart, or hours apart for the careful rings.
    spacing = _lognormal(rng, np.where(careful_ring[ring], 5 * 3600.0, 480.0), 0.7, n, 30.0)
    period = w.end - w.start
    ring_span = np.bincount(ring, weights=spacing, minlength=n_ring)
    squeeze = np.minimum(1.0, 0.8 * period / np.maximum(ring_span, 1.0))
    spacing *= squeeze[ring]
    ring_span *= squeeze
    t0 = w.diurnal_times(np.full(n_ring, w.start), w.end - ring_span - 1800.0)
    offsets = np.cumsum(spacing) - np.r_[0.0, np.cumsum(np.bincount(ring, weights=spacing, minlength=n_ring))][ring]
    join = t0[ring] + offsets - spacing  # the first account of a ring signs up at t0
    u.join[users] = join
    u.fresh[users] = True
    ring_dev = w.devices.new(3 * n_ring).reshape(n_ring, 3)
    ring_n_dev = np.where(rng.random(n_ring) < 0.6, 1, rng.integers(2, 4, n_ring))
    ring_country = w.random_home_countries(n_ring)
    ring_ip = w.ips.new(np.repeat(ring_country, 2)).reshape(n_ring, 2)
    ring_code = rng.choice(len(ABUSED_COUPONS), size=n_ring, p=[0.35, 0.3, 0.15, 0.1, 0.1])
    again = rng.random(n) < 0.2 * np.minimum(s, 3.0)  # some accounts come back with a second code
    n_sess = 1 + again
    owner, nth = _expand(n_sess)
    r = ring[owner]
    start = np.where(nth == 0, join[owner], join[owner] + rng.uniform(3600.0, 2 * DAY, len(owner)))
    keep = start < w.end - 60.0
    owner, nth, r, start = owner[keep], nth[keep], r[keep], start[keep]
    device = ring_dev[r, rng.integers(0, ring_n_dev[r])]
    sid = sessions.add(users[owner], start, device, ring_ip[r, rng.integers(0, 2, len(r))], ring_country[r], code)
    S = len(sid)
    careful = careful_ring[r]
    fast = _lognormal(rng, np.where(careful, 30.0, 9.0), 0.6, S, 1.0, 900.0)
    rows.add(sid, -2.0, ET["login"], 0.0)
    n_views = np.where(careful, rng.integers(2, 8, S), rng.integers(0, 3, S))
    vs, vslot = _expand(n_views)
    focus = cat.sample_categories(rng, S)
    rows.add(sid[vs], vslot, ET["view"], _lognormal(rng, np.where(careful[vs], 45.0, 8.0), 0.8, len(vs), 1.0),
             item=cat.sample_items(rng, focus[vs]))
    item = np.where(rng.random(S) < 0.6, _pick(rng, cat.cheap, S), cat.sample_items(rng, focus))
    rows.add(sid, 20.0, ET["add_to_cart"], fast, item=item, qty=1)
    cc = np.where(nth == 0, ABUSED_COUPONS_IDX[ring_code[r]], ABUSED_COUPONS_IDX[rng.integers(0, 5, S)])
    rows.add(sid, 21.0, ET["coupon_redeem"], fast, coupon=cc)
    rows.add(sid, 22.0, ET["payment_attempt"], fast, price=cat.item_price[item], pay=1)
    rows.add(sid, 23.0, ET["purchase"], rng.uniform(0.3, 2.0, S), item=item, qty=1)


def _scalping(w: _World, sessions: _Sessions, rows: _Rows, users: np.ndarray, code: int) -> None:
    """Resellers hammering add_to_cart on the same few limited items, then buying the maximum quantity."""
    rng, cat, u = w.rng, w.catalog, w.users
    n = len(users)
    s = u.strength[users]
    careful = s < 0.5
    group = _groups(rng, n, 1, 4)  # one reseller often runs a few accounts from one machine
    group_dev = w.devices.new(group.max() + 1)
    proxies = rng.random(n) < 0.3
    n_sess = np.maximum(1, rng.poisson(0.5 + 0.3 * s * w.cfg.days))
    owner, su, start = _attack_starts(w, users, n_sess)
    country = u.home[su].astype(np.int64)
    ip = u.ips[su, 0].copy()
    px = proxies[owner]
    ip[px] = w.ips.new(country[px])
    sid = sessions.add(su, start, group_dev[group[owner]], ip, country, code)
    S = len(sid)
    n_target = rng.integers(1, 4, S)
    targets = _pick(rng, cat.scarce, 3 * S).reshape(S, 3)
    rows.add(sid[rng.random(S) < 0.5], -2.0, ET["login"], 0.0)
    n_views = rng.integers(0, 3, S)
    vs, vslot = _expand(n_views)
    rows.add(sid[vs], -1.0 + vslot * 0.1, ET["view"], _lognormal(rng, 2.0, 0.6, len(vs), 0.3), item=targets[vs, 0])
    c = careful[owner]
    m = np.where(c, rng.integers(2, 4, S), np.ceil(_lognormal(rng, 8.0 * s[owner], 0.5, S, 2, 60))).astype(np.int64)
    cs, slot = _expand(m)
    citem = targets[cs, slot % n_target[cs]]
    gap = _lognormal(rng, np.where(c[cs], 6.0, 1.2), 0.5, len(cs), 0.2, 120.0)
    rows.add(sid[cs], slot, ET["add_to_cart"], gap, item=citem, qty=np.where(c[cs], 1, rng.integers(1, 6, len(cs))))
    rm = np.flatnonzero(rng.random(len(cs)) < 0.15)
    rows.add(sid[cs[rm]], slot[rm] + 0.5, ET["remove_from_cart"], gap[rm], item=citem[rm])
    # The order: each target once, as many as the shop allows.
    os_, oslot = _expand(n_target)
    oitem = targets[os_, oslot]
    oqty = np.where(c[os_], 1, rng.integers(2, 6, len(os_)))
    amount = np.bincount(os_, weights=cat.item_price[oitem] * oqty, minlength=S)
    pay_gap = _lognormal(rng, np.where(c, 20.0, 4.0), 0.5, S, 0.5)
    declined = rng.random(S) < 0.2
    rows.add(sid[declined], 200.0, ET["payment_attempt"], pay_gap[declined], price=amount[declined], pay=2)
    rows.add(sid, 201.0, ET["payment_attempt"], pay_gap, price=amount, pay=1)
    rows.add(sid[os_], 202.0, ET["purchase"], rng.uniform(0.3, 1.5, len(os_)), item=oitem, qty=oqty)


def _review_spam(w: _World, sessions: _Sessions, rows: _Rows, users: np.ndarray, code: int) -> None:
    """Bursts of copy-paste reviews on target items nobody in the account bought; careful ones vary their text."""
    rng, cat, u = w.rng, w.catalog, w.users
    n = len(users)
    s = u.strength[users]
    careful = s < 0.5
    target_cat = cat.sample_categories(rng, n)
    targets = cat.cat_offset[target_cat][:, None] + (rng.integers(0, 60, (n, 20)) % cat.cat_items[target_cat][:, None])
    n_sess = np.maximum(1, rng.poisson(0.5 + 0.3 * s * w.cfg.days))
    owner, su, start = _attack_starts(w, users, n_sess)
    dslot = rng.integers(0, u.n_dev[su])
    ip, country = _session_ip(w, su)
    sid = sessions.add(su, start, u.devices[su, dslot], ip, country, code)
    S = len(sid)
    rows.add(sid[rng.random(S) < 0.5], -2.0, ET["login"], 0.0)
    c = careful[owner]
    m = np.where(c, rng.integers(1, 4, S), np.ceil(_lognormal(rng, 8.0 * s[owner], 0.5, S, 2, 80))).astype(np.int64)
    rs, slot = _expand(m)
    item = targets[owner[rs], rng.integers(0, 20, len(rs))]
    cr = c[rs]
    view = rng.random(len(rs)) < np.where(cr, 0.95, 0.6)
    view_gap = _lognormal(rng, np.where(cr[view], 40.0, 8.0), 0.5, view.sum(), 1.0)
    rows.add(sid[rs[view]], slot[view], ET["view"], view_gap, item=item[view])
    spam_lo, spam_hi = TEXT_RANGES["spam"]
    rev_lo, rev_hi = TEXT_RANGES["review"]
    per_user_template = rng.integers(spam_lo, spam_hi, (n, 3))
    spam = per_user_template[owner[rs], rng.integers(0, 3, len(rs))]
    text = np.where(cr, rng.integers(rev_lo, rev_hi, len(rs)), spam)
    rows.add(sid[rs], slot + 0.5, ET["review"], _lognormal(rng, np.where(cr, 60.0, 18.0), 0.5, len(rs), 2.0),
             item=item, text=text)


_SCENARIO_FUNCS = {
    "click_farm_bot": _click_farm_bot,
    "brushing": _brushing,
    "account_takeover": _account_takeover,
    "card_testing": _card_testing,
    "coupon_abuse": _coupon_abuse,
    "scalping": _scalping,
    "review_spam": _review_spam,
}


# --------------------------------------------------------------------------------------------------------------------
# After purchases: reviews and refunds days later, in their own short sessions
# --------------------------------------------------------------------------------------------------------------------


def _post_purchase(w: _World, main: dict[str, np.ndarray], sess: dict[str, np.ndarray], sessions: _Sessions,
                   rows: _Rows) -> None:
    rng = w.rng
    is_buy = main["etype"] == ET["purchase"]
    p_sess = main["sess"][is_buy]
    label = sess["label"][p_sess]
    brushing = LABELS.index("brushing")
    # Shoppers review a good share of orders (platforms nudge them to), so a review is no oddity in itself.
    p_review = np.where(label == 0, 0.25, np.where(label == brushing, 0.75, 0.0))
    p_refund = np.where(label == 0, 0.02, 0.0)
    r = rng.random(len(p_sess))
    review = r < p_review
    refund = (r >= p_review) & (r < p_review + p_refund)
    for kind, sel in (("review", review), ("refund", refund)):
        idx = np.flatnonzero(is_buy)[sel]
        ps = main["sess"][idx]
        lab = sess["label"][ps]
        median = np.where(lab == brushing, 8 * 3600.0, 2 * DAY)
        start = main["ts"][idx] + _lognormal(rng, median, 0.7, len(idx), 1800.0, 12 * DAY)
        keep = start < w.end
        idx, ps, lab, start = idx[keep], ps[keep], lab[keep], start[keep]
        user = sess["user"][ps]
        sid = sessions.add(user, start, sess["device"][ps], sess["ip"][ps], sess["country"][ps], lab)
        k = len(sid)
        item = main["item"][idx]
        rows.add(sid[rng.random(k) < 0.2], -1.0, ET["login"], 0.0)
        look = rng.random(k) < 0.5
        rows.add(sid[look], 0.0, ET["view"], _lognormal(rng, 20.0, 0.6, look.sum(), 1.0), item=item[look])
        if kind == "review":
            rev_lo, rev_hi = TEXT_RANGES["review"]
            br_lo, br_hi = TEXT_RANGES["brushing"]
            text = np.where(lab == brushing, rng.integers(br_lo, br_hi, k), rng.integers(rev_lo, rev_hi, k))
            rows.add(sid, 1.0, ET["review"], _lognormal(rng, 45.0, 0.6, k, 3.0), item=item, text=text)
        else:
            price = main["price"][idx]
            rows.add(sid, 1.0, ET["refund"], _lognormal(rng, 40.0, 0.6, k, 3.0), item=item, qty=main["qty"][idx],
                     price=price)


# --------------------------------------------------------------------------------------------------------------------
# Assembly
# --------------------------------------------------------------------------------------------------------------------


def _salt(seed: int) -> int:
    """Per-seed id salt, so that data sets made with different seeds do not share ids by accident."""
    return (seed * 7919 + 17) % (1 << 32)


def _ids(prefix: str, codes: np.ndarray, bits: int, salt: int) -> np.ndarray:
    width = (bits + 3) // 4
    return np.array([f"{prefix}{x:0{width}x}" for x in _scramble(codes, bits, salt).tolist()], dtype=object)


def _lookup(table: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """table[codes] with None wherever the code is negative."""
    ext = np.append(table, None).astype(object)
    return ext[np.where(codes < 0, len(table), codes)]


def generate(config: GeneratorConfig | None = None) -> GeneratedData:
    """Generate labeled traffic. Same config (seed included) -> identical frames."""
    cfg = config if config is not None else GeneratorConfig()
    rng = np.random.default_rng(cfg.seed)
    start = cfg.start.timestamp()
    end = start + cfg.days * DAY
    catalog = _build_catalog(rng)
    users = _build_users(rng, cfg, start, end)
    w = _World(rng=rng, cfg=cfg, start=start, end=end, catalog=catalog, users=users)
    w.devices.new(3 * users.n)  # codes 0..3n-1 are the users' own devices
    _assign_ips(w)
    # Favourite categories follow global popularity, so popular categories get most of the traffic.
    users.prefs = catalog.sample_categories(rng, 4 * users.n).reshape(users.n, 4)

    sessions, rows = _Sessions(), _Rows()
    # Attack scenarios run first: coupon rings set their accounts' sign-up times, which normal sessions respect.
    for si, name in enumerate(SCENARIOS):
        members = np.flatnonzero(users.label == si + 1)
        if len(members):
            _SCENARIO_FUNCS[name](w, sessions, rows, members, si + 1)
    normal_rows = _Rows()
    _normal_sessions(w, sessions, normal_rows, np.where(THROWAWAY[users.label], 0.3, 1.0))
    rows.parts.extend(normal_rows.parts)

    table = sessions.table()
    main = _timestamps(rows.concat(), table["start"])
    post_rows = _Rows()
    _post_purchase(w, main, table, sessions, post_rows)
    table = sessions.table()
    if post_rows.parts:
        post = _timestamps(post_rows.concat(), table["start"])
        main = {c: np.concatenate([main[c], post[c]]) for c in main}
    events = _frame(w, main, table)
    users_frame = _users_frame(w, events)
    return GeneratedData(events=events, users=users_frame, config=cfg)


def _frame(w: _World, rows: dict[str, np.ndarray], sess: dict[str, np.ndarray]) -> pd.DataFrame:
    ts = np.round(rows["ts"], 3)
    keep = ts < w.end
    rows = {c: v[keep] for c, v in rows.items()}
    ts = ts[keep]
    order = np.argsort(ts, kind="stable")
    rows = {c: v[order] for c, v in rows.items()}
    ts = ts[order]
    n = len(ts)
    s = rows["sess"]
    cat = w.catalog
    salt = _salt(w.cfg.seed)
    item = rows["item"]
    price = rows["price"].copy()
    fill = np.isnan(price) & (item >= 0) & np.isin(rows["etype"], PRICED_TYPES)
    price[fill] = cat.item_price[item[fill]]
    qty = rows["qty"]
    user_str = _ids("u", np.arange(w.users.n), 32, salt)
    dev_str = _ids("d", np.arange(w.devices.n), 40, salt + 1)
    ip_str = w.ips.strings(salt + 2)
    label = sess["label"][s]
    used_items = np.unique(item[item >= 0])
    item_table = np.full(len(cat.item_cat), None, dtype=object)
    item_table[used_items] = _ids("i", used_items, 32, salt + 3)
    cat_table = np.array([f"c{c}" for c in range(cat.n_cat)], dtype=object)
    n_sess = len(sess["user"])
    sess_str = _ids("s", np.arange(n_sess), 40, salt + 4)  # scrambled: creation order is by scenario
    data = {
        "user_id": user_str[sess["user"][s]],
        "ts": ts.astype(np.float64),
        "event_type": np.array(EVENT_TYPES, dtype=object)[rows["etype"]],
        "event_id": np.array([f"e{salt:x}-{i:08d}" for i in range(n)], dtype=object),
        "session_id": sess_str[s],
        "item_id": _lookup(item_table, item),
        "category_id": _lookup(cat_table, np.where(item >= 0, cat.item_cat[np.maximum(item, 0)], -1)),
        "price": price,
        "quantity": pd.arrays.IntegerArray(qty.astype(np.int64), qty <= 0),
        "device_id": dev_str[sess["device"][s]],
        "ip": ip_str[sess["ip"][s]],
        "country": np.array(COUNTRIES, dtype=object)[sess["country"][s]],
        "payment_status": np.array([None, "success", "failed"], dtype=object)[rows["pay"]],
        "coupon_code": _lookup(np.array(COUPONS, dtype=object), rows["coupon"].astype(np.int64)),
        "text": _lookup(TEXTS, rows["text"].astype(np.int64)),
        "is_anomaly": label > 0,
        "scenario": np.array(LABELS, dtype=object)[label],
    }
    frame = pd.DataFrame(data, columns=[*EVENT_FIELDS, "is_anomaly", "scenario"])
    return frame


def _users_frame(w: _World, events: pd.DataFrame) -> pd.DataFrame:
    u = w.users
    user_str = _ids("u", np.arange(u.n), 32, _salt(w.cfg.seed))
    first = events.groupby("user_id", sort=False)["ts"].min()
    frame = pd.DataFrame({
        "user_id": user_str,
        "is_anomaly": u.label > 0,
        "scenario": np.array(LABELS, dtype=object)[u.label],
    })
    frame["first_seen"] = frame["user_id"].map(first).astype(np.float64)
    return frame
