"""Card testing: stolen card numbers checked with small payments before they are used or sold.

Who: attackers in groups of 1-3 sharing a device; 40 % of the non-careful ones rotate to foreign hosting-range IPs,
careful ones stay on their own device and address.

Signals it leaves:
- events: a cheap item (price <= 6) carted, then bursts of `payment_attempt` (median 14 x strength per session, up to
  150; careful 2-5) with amounts wandering around the item's price (0.8-1.6 x), 60-97 % of them `failed` (careful
  40-80 %); 70 % of the successes become one-item purchases. Few views (careful 1-5).
- sequences: cart -> pay fail, pay fail, pay ok, ... at a median 6 s (careful 60 s) between attempts.
- aggregates: the failed-payment share, attempts per session and per hour, distinct amounts per item, foreign and
  hosting IPs, accounts per device.
"""

from __future__ import annotations

import numpy as np

from seqguard.generator.helpers import _expand, _groups, _lognormal, _pick
from seqguard.generator.rows import _Rows, _Sessions
from seqguard.generator.scenarios.common import _attack_starts
from seqguard.generator.vocab import ET
from seqguard.generator.world import _World


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

