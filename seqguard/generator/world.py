"""The world: catalogue (categories, items, prices), users (labels, sign-up, devices, IPs, tastes), id allocation."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from seqguard.generator.config import LABELS, SCENARIOS, SHOP_UTC_OFFSET_HOURS, GeneratorConfig
from seqguard.generator.helpers import _bounded_zipf, _diurnal_times, _lognormal, _scramble
from seqguard.generator.vocab import (
    _HOSTING_OCTETS,
    _IP_FIRST_OCTETS,
    COUNTRIES,
    HOME_COUNTRIES,
    HOME_WEIGHTS,
    HOUR_WEIGHTS,
)


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

