"""Click-farm bots: scripted page views that push a few obscure items up the rankings (traffic / ranking fraud).

Who: farms of 3-12 accounts with shared target items (12 per farm, in one category), hosting-range IPs (US, SG, DE,
NL, HK) shared by the farm, or residential proxies in the shop's own countries for a third of the farms; 40 % of the
bots run on the farm's one device. About 40 % of the accounts are fresh.

Signals it leaves:
- events: long runs of `view` (median 30 x strength per session, up to 600), three quarters of them on the farm's
  targets; a login in only 30 % of sessions; an `add_to_cart` now and then (2 % of views, 30 % of the bots); no
  purchase.
- sequences: view, view, view at a clock-like pace (1.5-12 s with 1-8 % jitter for most bots), so the inter-event
  times barely vary; few distinct items. Careful bots (a quarter) view 6-25 items at 6-30 s with human-like
  log-normal jitter: the hard cases.
- aggregates: views per session and per item, the view-to-purchase ratio, many accounts per IP / device / target
  item, IPs in hosting ranges or countries outside the account's home.
"""

from __future__ import annotations

import numpy as np

from seqguard.generator.helpers import _expand, _groups, _lognormal, _pick
from seqguard.generator.rows import _Rows, _Sessions
from seqguard.generator.scenarios.common import _attack_starts
from seqguard.generator.vocab import COUNTRIES, ET, HOSTING_COUNTRIES
from seqguard.generator.world import _World


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

