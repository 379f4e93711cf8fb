"""Assembly: build the world, run the scenarios and the normal sessions, then the frames with string ids."""

from __future__ import annotations

import numpy as np
import pandas as pd

from seqguard.events import EVENT_FIELDS, EVENT_TYPES
from seqguard.generator.config import DAY, LABELS, SCENARIOS, GeneratedData, GeneratorConfig
from seqguard.generator.helpers import _scramble
from seqguard.generator.normal import _normal_sessions
from seqguard.generator.post_purchase import _post_purchase
from seqguard.generator.rows import _Rows, _Sessions, _timestamps
from seqguard.generator.scenarios import _SCENARIO_FUNCS
from seqguard.generator.vocab import COUNTRIES, COUPONS, PRICED_TYPES, TEXTS, THROWAWAY
from seqguard.generator.world import _assign_ips, _build_catalog, _build_users, _World


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
