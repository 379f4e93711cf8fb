"""Normal shopping sessions: login, browsing a focus category, favourites and carts, checkout, chores.

Tuned to the Taobao UserBehavior sample (docs/generator_vs_taobao.md): session lengths, per-view follow-up rates,
in-session gaps by event type, a share of quick re-orders that look like the purchase-without-browsing of the rings.
"""

from __future__ import annotations

import numpy as np

from seqguard.generator.config import DAY, LABELS
from seqguard.generator.helpers import _diurnal_times, _expand, _lognormal, _pick
from seqguard.generator.rows import _Rows, _Sessions
from seqguard.generator.vocab import ET, PUBLIC_COUPONS, TEXT_RANGES
from seqguard.generator.world import _World

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

