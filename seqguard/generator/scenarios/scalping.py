"""Scalping: resellers hammering add-to-cart on limited drops, then buying the most the shop allows.

Who: groups of 1-4 accounts run from one machine (one device), on the account's own home IP or, for 30 %, a
per-session proxy in the home country.

Signals it leaves:
- events: bursts of `add_to_cart` (median 8 x strength per session, up to 60; careful 2-3) on 1-3 scarce items
  (limited drops priced 159-899) with quantities 1-5, 15 % of them removed again; then one order of each target at
  quantity 2-5 (careful 1), 20 % with a declined payment before the successful one. Few views (0-2).
- sequences: cart, cart, cart at about a second apart (median 1.2 s; careful 6 s) -> pay -> purchases.
- aggregates: carts per session and per item, the share of scarce items in an account's traffic, order quantities,
  accounts per device.
"""

from __future__ import annotations

import numpy as np

from seqguard.generator.helpers import _expand, _groups, _lognormal, _pick
from seqguard.generator.rows import _Rows, _Sessions
from seqguard.generator.scenarios.common import _attack_starts
from seqguard.generator.vocab import ET
from seqguard.generator.world import _World


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

