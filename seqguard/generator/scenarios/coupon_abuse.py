"""Coupon abuse: rings of freshly made accounts that each redeem the same new-customer code once.

Who: rings of 4-25 accounts, all signed up inside the period one after another (minutes apart; careful rings hours
apart), on one shared device (60 % of the rings; else 2-3) and two IPs in one home country. Throwaway accounts:
little normal traffic (0.3 x the usual rate).

Signals it leaves:
- events: in the first session right after sign-up: login, 0-2 views (careful 2-7), `add_to_cart` of a cheap or
  random item, `coupon_redeem` of the ring's code (WELCOME10, NEWUSER20, FIRSTORDER, STAFF50, APP-LAUNCH-30),
  payment and purchase. 20 % x strength of the accounts come back within two days with a second code.
- sequences: sign-up -> login -> cart -> coupon -> pay -> purchase, short and fast (median 9 s gaps, careful 30 s).
- aggregates: many new accounts per device and IP redeeming the same code, sign-up times clustered per ring, the
  share of first orders with a coupon, abused codes that the public campaigns do not hand out.
"""

from __future__ import annotations

import numpy as np

from seqguard.generator.config import DAY
from seqguard.generator.helpers import _expand, _groups, _lognormal, _pick
from seqguard.generator.rows import _Rows, _Sessions
from seqguard.generator.vocab import ABUSED_COUPONS, ABUSED_COUPONS_IDX, ET
from seqguard.generator.world import _World


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

