"""Account takeover: a stolen login used to order resale-friendly goods on the victim's account.

Who: real shoppers (never fresh accounts) whose own normal sessions go on as before; the attacker comes from a new
device and a new IP, abroad for most (careful attackers stay in the victim's home country).

Signals it leaves:
- events: `login_failed` bursts (Poisson 1.2 x strength, up to 8) before the `login`; `password_change` (60 %,
  careful 20 %) and `address_change` (75 %, careful 35 %); 0-3 views and 1-2 carted items of the top 3 % by price
  (careful: the 75th-97th percentile, qty 1), 12 % of the payments declined once, then paid and purchased. Up to 5
  more order sessions in the next 20 h from rotating proxy IPs.
- sequences: failures -> login -> account changes -> checkout within minutes (median 7 s gaps, careful 25 s), unlike
  the victim's browsing-first sessions.
- aggregates: a new device and country for the account, the order value against the account's history, more devices
  and IPs per account, password / address changes followed by an order.
"""

from __future__ import annotations

import numpy as np

from seqguard.generator.helpers import _expand, _lognormal, _pick
from seqguard.generator.rows import _Rows, _Sessions
from seqguard.generator.vocab import ET
from seqguard.generator.world import _World


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

