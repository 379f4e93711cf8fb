"""Brushing (fake orders): a merchant's rings of throwaway accounts buy its items to inflate sales and ratings.

Who: rings of 4-15 accounts, 85 % of them signed up inside the period, on 1-3 shared devices and two IPs in one home
country; each ring buys 3 target items of one category. The accounts have little life of their own (normal sessions
at 0.3 x the usual rate).

Signals it leaves:
- events: a `purchase` (qty 1-2) of a target item with almost no browsing (0-1 views; careful rings 2-6 views in the
  target's category), an `add_to_cart` in 60 % of orders, a successful `payment_attempt`, a login in 90 %; and a
  templated `review` ("Good", "Very satisfied", ...) about 8 h later for 75 % of the orders (post_purchase.py).
- sequences: login -> (search) -> view target -> cart -> pay -> purchase in a short, fast session (median 8 s gaps);
  a short review session a few hours later.
- aggregates: many accounts per device and IP that all buy the same few items, purchase-without-browsing, a review
  rate near 1 with short purchase-to-review delays and repeated review texts.
"""

from __future__ import annotations

import numpy as np

from seqguard.generator.helpers import _expand, _groups, _lognormal
from seqguard.generator.normal import _search_texts
from seqguard.generator.rows import _Rows, _Sessions
from seqguard.generator.scenarios.common import _attack_starts
from seqguard.generator.vocab import ET
from seqguard.generator.world import _World


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

