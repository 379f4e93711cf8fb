"""Attack entities of the seven generator scenarios mixed into a team's own real traffic, with labels.

The attacks are the generator's scenario functions (seqguard.generator.scenarios), run in a world built from the real
traffic instead of a synthetic one: its period, its hour-of-day rhythm, its items and categories (with their
popularity), its in-session pace and its timestamp resolution. What the data cannot show is left out rather than
invented: event types it never holds are dropped from the attacks (a scenario whose core needs them is skipped, with
a note), and columns it never fills stay empty, so that an injected row is not told apart by a column no real row has.

Attacks that run from existing accounts (bots, account takeover, card testing, scalping, review spam) are hosted by
real entities chosen at random: their own traffic stays, labelled normal per event, like the generator's attackers
that keep a life of their own. Throwaway rings (brushing, coupon abuse) get new entities.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from seqguard.events import EVENT_FIELDS, EVENT_TYPES
from seqguard.generator import (
    _SCENARIO_FUNCS,
    COUNTRIES,
    COUPONS,
    DAY,
    DEFAULT_PREVALENCE,
    LABELS,
    NORMAL,
    PRICED_TYPES,
    SCENARIOS,
    TEXTS,
    GeneratorConfig,
    _assign_ips,
    _build_catalog,
    _build_users,
    _Catalog,
    _lognormal,
    _lookup,
    _post_purchase,
    _Rows,
    _Sessions,
    _timestamps,
    _World,
)

# The event types without which a scenario is not itself (its other event types are decoration, dropped if absent).
REQUIRED_TYPES: dict[str, tuple[str, ...]] = {
    "click_farm_bot": ("view",),
    "brushing": ("purchase",),
    "account_takeover": ("login", "purchase"),
    "card_testing": ("payment_attempt",),
    "coupon_abuse": ("coupon_redeem",),
    "scalping": ("add_to_cart", "purchase"),
    "review_spam": ("review",),
}
# Scenarios run from existing accounts; the others are rings of new throwaway accounts.
HOSTED: frozenset[str] = frozenset({"click_farm_bot", "account_takeover", "card_testing", "scalping", "review_spam"})
# The generator's gaps are tuned to Taobao's page-view gaps (median about 55 s in a session); a capture whose users
# click faster or slower gets its attacks' gaps scaled by the same factor.
REFERENCE_GAP_S = 55.0
SESSION_BREAK_S = 1800.0
MIN_HOST_EVENTS = 5


class InjectError(ValueError):
    """Data or options with which nothing can be injected; the message says why."""


@dataclass
class TrafficProfile:
    """What the injected attacks take from the real traffic."""

    start: float  # period (robust: the 0.1 % and 99.9 % quantiles, so stray timestamps do not stretch it)
    end: float
    hour_weights: np.ndarray  # events per UTC hour of day
    event_types: frozenset[str]
    filled: frozenset[str]  # optional columns that hold at least one value
    resolution: float  # 1.0 for second timestamps, 0.001 for milliseconds
    median_gap: float  # in-session gap between consecutive events of an entity
    pace: float
    countries: tuple[str, ...]  # values seen, most frequent first


def _resolution(ts: np.ndarray) -> float:
    for res in (60.0, 1.0, 0.001):
        if np.allclose(ts / res, np.round(ts / res), rtol=0.0, atol=1e-6):
            return res
    return 0.001


def profile_traffic(frame: pd.DataFrame) -> TrafficProfile:
    ts = frame["ts"].to_numpy(dtype=np.float64)
    start, end = np.quantile(ts, [0.001, 0.999]) if len(ts) >= 1000 else (ts.min(), ts.max())
    end = max(float(end), float(start) + 3600.0)
    hours = np.floor((ts % DAY) / 3600.0).astype(np.int64)
    # A small floor keeps every hour possible: real traffic never has a truly empty hour, only a quiet one.
    hour_weights = np.bincount(hours, minlength=24).astype(float) + max(1.0, 0.002 * len(ts))
    ordered = frame[["user_id", "ts"]].sort_values(["user_id", "ts"], kind="stable")
    same = ordered["user_id"].to_numpy()[1:] == ordered["user_id"].to_numpy()[:-1]
    gaps = np.diff(ordered["ts"].to_numpy(dtype=np.float64))[same]
    gaps = gaps[(gaps > 0) & (gaps <= SESSION_BREAK_S)]
    median_gap = float(np.median(gaps)) if len(gaps) else REFERENCE_GAP_S
    filled = frozenset(c for c in EVENT_FIELDS if c in frame and frame[c].notna().any())
    countries = tuple(frame["country"].value_counts().index.astype(str)) if "country" in filled else ()
    return TrafficProfile(
        start=float(start), end=float(end), hour_weights=hour_weights, event_types=frozenset(frame["event_type"]),
        filled=filled, resolution=_resolution(ts), median_gap=median_gap,
        pace=float(np.clip(median_gap / REFERENCE_GAP_S, 0.1, 10.0)), countries=countries,
    )


@dataclass
class _RealCatalog:
    catalog: _Catalog
    item_ids: np.ndarray | None  # item code -> the real item_id (None: the data has no items)
    category_ids: np.ndarray | None


def _real_catalog(frame: pd.DataFrame, rng: np.random.Generator, profile: TrafficProfile) -> _RealCatalog:
    """The generator's catalogue, filled with the data's items: per category, ranked by how often they appear."""
    if "item_id" not in profile.filled:
        return _RealCatalog(_build_catalog(rng), None, None)
    rows = frame.loc[frame["item_id"].notna(), ["item_id", "category_id", "price"]]
    cat = rows["category_id"].astype(object).where(rows["category_id"].notna(), "")
    counts = pd.DataFrame({"item": rows["item_id"].astype(str), "cat": cat.astype(str)}).value_counts()
    # An item filed under several categories belongs to its most frequent one.
    counts = counts.reset_index(name="n").drop_duplicates("item", keep="first")
    cat_events = counts.groupby("cat")["n"].sum()
    cat_codes = {c: i for i, c in enumerate(cat_events.index)}
    counts["code"] = counts["cat"].map(cat_codes)
    counts = counts.sort_values(["code", "n"], ascending=[True, False], kind="stable").reset_index(drop=True)
    n_cat = len(cat_codes)
    item_cat = counts["code"].to_numpy(dtype=np.int64)
    cat_items = np.bincount(item_cat, minlength=n_cat)
    cat_offset = np.cumsum(cat_items) - cat_items
    cat_prob = cat_events.to_numpy(dtype=float) / cat_events.sum()
    if "price" in profile.filled:
        by_item = rows.assign(item=rows["item_id"].astype(str)).groupby("item")["price"].median()
        price = counts["item"].map(by_item).to_numpy(dtype=float)
        cat_med = pd.Series(price).groupby(item_cat).transform("median").to_numpy()
        price = np.where(np.isnan(price), cat_med, price)
        price = np.where(np.isnan(price), np.nanmedian(price) if np.isfinite(price).any() else 35.0, price)
    else:  # prices are not written out, but scenarios still pick cheap / expensive items by them
        base = _lognormal(rng, 35.0, 1.0, n_cat, 1.0, 3000.0)
        price = base[item_cat] * _lognormal(rng, 1.0, 0.45, len(item_cat))
    q10, q75, q97 = np.quantile(price, [0.10, 0.75, 0.97])
    hot = np.argsort(-cat_prob)[:6]
    scarce = np.concatenate([cat_offset[c] + np.arange(min(4, cat_items[c])) for c in hot])

    def nonempty(sel: np.ndarray) -> np.ndarray:
        idx = np.flatnonzero(sel)
        return idx if len(idx) else np.arange(len(price))

    catalog = _Catalog(
        n_cat=n_cat, cat_prob=cat_prob, cat_offset=cat_offset, cat_items=cat_items, item_cat=item_cat,
        item_price=price, cheap=nonempty(price <= q10), high_value=nonempty(price >= q97),
        upper_value=nonempty((price >= q75) & (price < q97)), scarce=scarce,
    )
    cats = np.array(list(cat_codes), dtype=object)
    cats = np.where(cats == "", None, cats) if "category_id" in profile.filled else np.full(n_cat, None, object)
    return _RealCatalog(catalog, counts["item"].to_numpy(dtype=object), cats)


@dataclass
class InjectResult:
    events: pd.DataFrame  # the real rows and the injected ones, sorted by ts, with is_anomaly and scenario
    labels: pd.DataFrame  # entity_id, label (0/1), scenario: one row per entity
    injected: pd.DataFrame  # per scenario: entities, events, hosted (entities that are real accounts)
    skipped: dict[str, str]  # scenario -> why it was not injected
    notes: list[str] = field(default_factory=list)
    profile: TrafficProfile | None = None


def _counts(n_total: int, active: list[str]) -> dict[str, int]:
    """Attacker accounts per scenario: the total split in proportion to the generator's prevalences, each >= 1."""
    w = np.array([DEFAULT_PREVALENCE[s] for s in active])
    raw = n_total * w / w.sum()
    k = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - k))[: n_total - k.sum()]:
        k[i] += 1
    return {s: max(1, int(c)) for s, c in zip(active, k, strict=True)}


def _new_ids(existing: pd.Series, k: int, rng: np.random.Generator) -> np.ndarray:
    """New entity ids that look like the data's: unused integers in its range, or hex strings of its length."""
    values = existing.astype(str)
    if k == 0:
        return np.zeros(0, dtype=object)
    if values.str.fullmatch(r"\d{1,15}").all():
        used = set(values.astype(np.int64).tolist())
        lo, hi = int(min(used)), int(max(used))
        hi = max(hi, lo + 2 * (len(used) + k))
        out: list[str] = []
        while len(out) < k:
            for c in rng.integers(lo, hi + 1, size=2 * k).tolist():
                if c not in used:
                    used.add(c)
                    out.append(str(c))
        return np.array(out[:k], dtype=object)
    width = int(np.clip(values.str.len().median(), 8, 32))
    used_s = set(values.tolist())
    out = []
    while len(out) < k:
        cand = "".join(rng.choice(list("0123456789abcdef"), size=width))
        if cand not in used_s:
            used_s.add(cand)
            out.append(cand)
    return np.array(out, dtype=object)


def _top_value(frame: pd.DataFrame, column: str, ids: np.ndarray) -> np.ndarray:
    """Each entity's most frequent value of a column (None where it has none)."""
    sub = frame.loc[frame["user_id"].isin(ids) & frame[column].notna(), ["user_id", column]]
    top = sub.groupby("user_id")[column].agg(lambda s: s.value_counts().index[0])
    return np.array([top.get(i) for i in ids], dtype=object)


def _entity_labels(frame: pd.DataFrame) -> pd.DataFrame:
    ids = frame["user_id"].astype(str)
    if "is_anomaly" not in frame:
        uniq = ids.unique()
        return pd.DataFrame({"entity_id": uniq, "label": 0, "scenario": NORMAL})
    bad = frame["is_anomaly"].astype(bool)
    scen = frame["scenario"].astype(str) if "scenario" in frame else pd.Series("anomaly", index=frame.index)
    any_bad = bad.groupby(ids).any()
    top = scen[bad].groupby(ids[bad]).agg(lambda s: s.value_counts().index[0])
    return pd.DataFrame({"entity_id": any_bad.index, "label": any_bad.to_numpy().astype(int),
                         "scenario": [top.get(i, NORMAL) if b else NORMAL for i, b in any_bad.items()]})


def inject(frame: pd.DataFrame, scenarios: list[str] | tuple[str, ...] = SCENARIOS, rate: float = 0.02,
           seed: int = 0) -> InjectResult:
    """Mix labelled attack entities into `frame` (a validated events frame, as `read_events` returns it).

    `rate` is the number of attackers as a share of the real entities, split over the scenarios that can be
    injected in proportion to the generator's default prevalences.
    """
    unknown = [s for s in scenarios if s not in SCENARIOS]
    if unknown:
        raise InjectError(f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    if not 0.0 < rate < 0.5:
        raise InjectError(f"rate must lie in (0, 0.5), got {rate}")
    if len(frame) == 0:
        raise InjectError("the events have no rows")
    rng = np.random.default_rng(seed)
    profile = profile_traffic(frame)
    notes: list[str] = []
    skipped: dict[str, str] = {}
    for s in scenarios:
        missing = [t for t in REQUIRED_TYPES[s] if t not in profile.event_types]
        if missing:
            skipped[s] = f"needs event type(s) {', '.join(missing)}, which the data never holds"
    active = [s for s in scenarios if s not in skipped]
    if not active:
        raise InjectError("no scenario can be injected: " + "; ".join(f"{s} {r}" for s, r in skipped.items()))

    real_labels = _entity_labels(frame)
    n_real = len(real_labels)
    n_total = max(len(active), round(rate * n_real))
    counts = _counts(n_total, active)
    # Hosts: real, normal entities with some traffic of their own, each hosting at most one attack.
    ev_per = frame.groupby(frame["user_id"].astype(str)).size()
    normal_ids = set(real_labels.loc[real_labels["label"] == 0, "entity_id"])
    pool = np.array(sorted(i for i in ev_per.index[ev_per >= MIN_HOST_EVENTS] if i in normal_ids), dtype=object)
    pool = pool[rng.permutation(len(pool))]
    n_hosted = sum(counts[s] for s in active if s in HOSTED)
    if n_hosted > len(pool):
        notes.append(f"only {len(pool)} real entities have >= {MIN_HOST_EVENTS} events to host "
                     f"{n_hosted} hosted attackers: fewer were injected")
        for s in active:
            if s in HOSTED:
                counts[s] = max(1, int(counts[s] * len(pool) / n_hosted)) if len(pool) else 0
        if not len(pool):
            for s in [s for s in active if s in HOSTED]:
                skipped[s] = "no real entity has enough events to host it"
                del counts[s]
            active = [s for s in active if s in counts]
            if not active:
                raise InjectError("no scenario can be injected: " + "; ".join(f"{s} {r}" for s, r in skipped.items()))

    n_att = sum(counts.values())
    days = max(1, int(np.ceil((profile.end - profile.start) / DAY)))
    # Prevalences that make every world user an attacker of the planned scenario (a hair under 1 in sum).
    prev = {s: {"prevalence": counts.get(s, 0) / n_att * (1 - 1e-9)} for s in SCENARIOS}
    cfg = GeneratorConfig.model_validate({"users": n_att, "days": days, "seed": seed,
                                          "start": datetime.fromtimestamp(profile.start, UTC), **prev})
    real = _real_catalog(frame, rng, profile)
    users = _build_users(rng, cfg, profile.start, profile.end)
    w = _World(rng=rng, cfg=cfg, start=profile.start, end=profile.end, catalog=real.catalog, users=users,
               hour_weights=profile.hour_weights, utc_offset_hours=0.0)
    w.devices.new(3 * users.n)
    _assign_ips(w)
    users.prefs = real.catalog.sample_categories(rng, 4 * users.n).reshape(users.n, 4)
    label_names = np.array(LABELS, dtype=object)[users.label]
    hosted = np.array([name in HOSTED for name in label_names])
    users.fresh[hosted] = False
    users.join[hosted] = profile.start
    entity = np.empty(users.n, dtype=object)
    entity[hosted] = pool[: hosted.sum()]
    entity[~hosted] = _new_ids(real_labels["entity_id"], int((~hosted).sum()), rng)

    sessions, rows = _Sessions(), _Rows()
    for si, name in enumerate(SCENARIOS):
        members = np.flatnonzero(users.label == si + 1)
        if len(members):
            _SCENARIO_FUNCS[name](w, sessions, rows, members, si + 1)
    for part in rows.parts:
        part["gap"] = part["gap"] * profile.pace
    table = sessions.table()
    main = _timestamps(rows.concat(), table["start"])
    post = _Rows()
    _post_purchase(w, main, table, sessions, post)
    if post.parts:
        for part in post.parts:
            part["gap"] = part["gap"] * profile.pace
        table = sessions.table()
        extra = _timestamps(post.concat(), table["start"])
        main = {c: np.concatenate([main[c], extra[c]]) for c in main}
    attacks = _attack_frame(w, main, table, entity, hosted, real, profile, frame, seed)
    notes.extend(_column_notes(profile))
    dropped_types = sorted(set(EVENT_TYPES[int(t)] for t in np.unique(main["etype"])) - profile.event_types)
    if dropped_types:
        notes.append(f"attack steps of types the data never holds were left out: {', '.join(dropped_types)}")
    notes.append(f"timing from the data: {days} day(s) {_iso(profile.start)} .. {_iso(profile.end)}, its hour-of-day "
                 f"shape, median in-session gap {profile.median_gap:.0f} s (attack gaps x{profile.pace:.2f}), "
                 f"timestamps rounded to {profile.resolution:g} s")

    base = frame.copy()
    if "is_anomaly" not in base:
        base["is_anomaly"] = False
    if "scenario" not in base:
        base["scenario"] = np.where(base["is_anomaly"], "anomaly", NORMAL)
    events = pd.concat([base, attacks], ignore_index=True)
    events = events.sort_values("ts", kind="stable").reset_index(drop=True)

    inj_entities = pd.DataFrame({"entity_id": entity, "scenario": label_names, "hosted": hosted})
    inj_entities = inj_entities[inj_entities["entity_id"].isin(set(attacks["user_id"]))]
    labels = real_labels.set_index("entity_id")
    for row in inj_entities.itertuples():
        labels.loc[row.entity_id, ["label", "scenario"]] = [1, row.scenario]
    labels = labels.reset_index()
    labels["label"] = labels["label"].astype(int)
    per = attacks.groupby("scenario").size()
    injected = inj_entities.groupby("scenario").agg(entities=("entity_id", "size"), hosted=("hosted", "sum"))
    injected["events"] = per.reindex(injected.index).fillna(0).astype(int)
    injected = injected.reindex([s for s in SCENARIOS if s in injected.index])
    return InjectResult(events=events, labels=labels, injected=injected, skipped=skipped, notes=notes,
                        profile=profile)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M")


def _column_notes(profile: TrafficProfile) -> list[str]:
    empty = [c for c in EVENT_FIELDS[3:] if c not in profile.filled]
    if not empty:
        return []
    return [f"columns the data never fills stay empty in the attacks too: {', '.join(empty)}"]


def _attack_frame(w: _World, rows: dict[str, np.ndarray], sess: dict[str, np.ndarray], entity: np.ndarray,
                  hosted: np.ndarray, real: _RealCatalog, profile: TrafficProfile, frame: pd.DataFrame,
                  seed: int) -> pd.DataFrame:
    """The scenario rows as events in the data's own vocabulary, limited to what the data can hold."""
    ts = np.round(rows["ts"] / profile.resolution) * profile.resolution
    etype = np.array(EVENT_TYPES, dtype=object)[rows["etype"]]
    keep = (ts >= profile.start) & (ts < profile.end) & np.isin(etype, list(profile.event_types))
    rows = {c: v[keep] for c, v in rows.items()}
    ts, etype = ts[keep], etype[keep]
    n = len(ts)
    s = rows["sess"]
    user = sess["user"][s]
    filled = profile.filled
    cat = w.catalog
    item = rows["item"]
    out: dict[str, Any] = {"user_id": entity[user], "ts": ts.astype(np.float64), "event_type": etype}
    none = np.full(n, None, dtype=object)
    out["event_id"] = np.array([f"inj{seed:x}-{i:07d}" for i in range(n)], dtype=object) if "event_id" in filled \
        else none
    if "session_id" in filled:
        sess_ids = _new_ids(frame["session_id"].dropna(), len(sess["user"]), w.rng)
        out["session_id"] = sess_ids[s]
    else:
        out["session_id"] = none
    out["item_id"] = _lookup(real.item_ids, item) if real.item_ids is not None else none
    cat_code = np.where(item >= 0, cat.item_cat[np.maximum(item, 0)], -1)
    out["category_id"] = _lookup(real.category_ids, cat_code) if real.category_ids is not None else none
    if "price" in filled:
        price = rows["price"].copy()
        fill = np.isnan(price) & (item >= 0) & np.isin(rows["etype"], PRICED_TYPES)
        price[fill] = cat.item_price[item[fill]]
        out["price"] = price
    else:
        out["price"] = np.full(n, np.nan)
    qty = rows["qty"].astype(np.int64)
    out["quantity"] = pd.arrays.IntegerArray(qty, (qty <= 0) | ("quantity" not in filled))
    for column, codes, own in (("device_id", sess["device"][s], w.users.devices[:, 0]),
                               ("ip", sess["ip"][s], w.users.ips[:, 0])):
        if column not in filled:
            out[column] = none
            continue
        table = (w.ips.strings(seed + 2) if column == "ip"
                 else _new_ids(frame[column].dropna(), w.devices.n, w.rng)).astype(object)
        # A hosted attacker on its own device / address is on the host's usual one.
        host_ids = entity[hosted]
        table[own[hosted]] = np.where(pd.isna(v := _top_value(frame, column, host_ids)), table[own[hosted]], v)
        out[column] = table[codes]
    if "country" in filled:
        gen = np.array(COUNTRIES, dtype=object)[sess["country"][s]]
        # Countries the data never shows would tell the attacks apart by themselves; they become its most common.
        out["country"] = np.where(np.isin(gen, list(profile.countries)), gen, profile.countries[0])
    else:
        out["country"] = none
    out["payment_status"] = (np.array([None, "success", "failed"], dtype=object)[rows["pay"]]
                             if "payment_status" in filled else none)
    out["coupon_code"] = (_lookup(np.array(COUPONS, dtype=object), rows["coupon"].astype(np.int64))
                          if "coupon_code" in filled else none)
    out["text"] = _lookup(TEXTS, rows["text"].astype(np.int64)) if "text" in filled else none
    out["is_anomaly"] = np.ones(n, dtype=bool)
    out["scenario"] = np.array(LABELS, dtype=object)[sess["label"][s]]
    return pd.DataFrame(out, columns=[*EVENT_FIELDS, "is_anomaly", "scenario"])
