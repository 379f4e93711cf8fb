"""Cross-entity features: batch (whole frame, point in time) = streaming (memory store, Redis) = a brute-force
reference written here from the definitions, for random streams of entities sharing devices and IPs."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seqguard.config import SequenceConfig
from seqguard.crossentity import (
    CROSS_FEATURE_NAMES,
    NO_PAYMENT,
    XE_CAP,
    CrossIndex,
    frame_cross_features,
    presence,
)
from seqguard.events import Event
from seqguard.features import FEATURE_NAMES, encode_window
from seqguard.io import events_to_frame
from seqguard.sequences import columns_from_frame, sort_for_sequences, state_columns, window_index
from seqguard.service.state import MemoryStateStore, RedisStateStore

T0 = 1_700_000_000.0
CFG = SequenceConfig(max_events=4, span_seconds=3000.0)
F = {n: i for i, n in enumerate(CROSS_FEATURE_NAMES)}


def make_event(i: int, user: str, t: float, et: str, dev: str | None, ip: str | None) -> Event:
    d: dict[str, Any] = {"user_id": user, "ts": T0 + t, "event_type": et, "event_id": f"e{i}"}
    if dev is not None:
        d["device_id"] = dev
    if ip is not None:
        d["ip"] = ip
    return Event.model_validate(d)


event_rows = st.lists(
    st.tuples(st.sampled_from(["u0", "u1", "u2", "u3", "u4"]), st.integers(0, 8000),
              st.sampled_from(["view", "login", "purchase", "payment_attempt"]),
              st.sampled_from([None, "d0", "d1", "d2"]), st.sampled_from([None, "i0", "i1", "i2"])),
    min_size=1, max_size=30)


def build(rows: list[tuple[str, int, str, str | None, str | None]]) -> list[Event]:
    return [make_event(i, u, float(t), et, d, ip) for i, (u, t, et, d, ip) in enumerate(rows)]


def batch(events: list[Event]) -> tuple[list[tuple[str, float, float]], np.ndarray, Any, Any]:
    """Every-event windows of the frame and their batch cross features."""
    ordered = sort_for_sequences(events_to_frame([e.model_dump() for e in events]), CFG)
    idx = window_index(ordered, CFG, "event")
    cols = columns_from_frame(ordered)
    feats = frame_cross_features(ordered["user_id"].to_numpy(dtype=object), cols, idx.start, idx.end)
    wins = [(str(e), float(cols.ts[s]), float(cols.ts[x - 1])) for e, s, x in zip(idx.entity_id, idx.start, idx.end,
                                                                                strict=True)]
    return wins, feats, cols, idx


def reference(events: list[Event], entity: str, start: float, end: float, win_devs: set[str],
              win_ips: set[str]) -> np.ndarray:
    """The definitions, by brute force over the event list (no index, no caps reached in these streams)."""
    past = [e for e in events if e.ts.timestamp() <= end]
    f = np.zeros(len(CROSS_FEATURE_NAMES), dtype=np.float32)
    f[F["xe_accounts_per_device"]] = max((len({e.user_id for e in past if e.device_id == d}) for d in win_devs),
                                         default=0)
    f[F["xe_accounts_per_ip"]] = max((len({e.user_id for e in past if e.ip == i}) for i in win_ips), default=0)
    mine = [e for e in events if e.user_id == entity]
    f[F["xe_devices_per_account"]] = len({e.device_id for e in mine if e.device_id and e.ts.timestamp() <= end})
    f[F["xe_ips_per_account"]] = len({e.ip for e in mine if e.ip and e.ts.timestamp() <= end})
    before = [e for e in mine if e.ts.timestamp() < start]
    f[F["xe_new_devices"]] = len(win_devs - {e.device_id for e in before})
    f[F["xe_new_ips"]] = len(win_ips - {e.ip for e in before})
    pays = [e.ts.timestamp() for e in mine if e.event_type in ("purchase", "payment_attempt")
            and e.ts.timestamp() <= end]
    seen = min(e.ts.timestamp() for e in mine)
    f[F["xe_first_payment_log_s"]] = np.log1p(min(pays) - seen) if pays else NO_PAYMENT
    return f


@pytest.fixture(scope="module")
def redis_url(redis_server: str) -> str:
    return redis_server


def redis_store(url: str) -> RedisStateStore:
    tag = uuid.uuid4().hex[:8]  # a namespace per example: examples never see each other's keys
    return RedisStateStore(url, CFG, prefix=f"t{tag}:state:", index_prefix=f"t{tag}:xe:", ttl_seconds=600)


def stores(url: str) -> Iterator[Any]:
    yield MemoryStateStore(CFG)
    yield redis_store(url)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=event_rows, seed=st.integers(0, 2**16))
def test_batch_equals_reference_and_both_stores_in_any_arrival_order(redis_url: str, rows: list, seed: int) -> None:
    events = build(rows)
    wins, feats, cols, idx = batch(events)
    arrival = list(events)
    random.Random(seed).shuffle(arrival)  # out of order, across and within entities
    for store in stores(redis_url):
        for ev in arrival:
            store.append(ev.user_id, [ev])
        for k, (ent, start, end) in enumerate(wins):
            win = cols.slice(int(idx.start[k]), int(idx.end[k]))
            ref = reference(events, ent, start, end, {d for d in win.device if d}, {i for i in win.ip if i})
            np.testing.assert_allclose(feats[k], ref, rtol=1e-6, err_msg=f"batch, window {k} of {ent}")
            np.testing.assert_allclose(store.cross_features(ent, win), feats[k], rtol=1e-6,
                                       err_msg=f"{type(store).__name__}, window {k} of {ent}")
        store.close()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=event_rows)
def test_streaming_as_the_service_scores_equals_the_batch_window_ending_there(redis_url: str, rows: list) -> None:
    """In time order, each event scored on arrival (append, then the window's features from the store) gets what the
    batch gives the window ending at that event: the batch never looks past a window's end."""
    rows = [(u, i * 7 + t % 7, et, d, ip) for i, (u, t, et, d, ip) in enumerate(rows)]  # distinct, increasing ts
    events = build(rows)
    wins, feats, _, _ = batch(events)
    by_end = {(ent, end): feats[k] for k, (ent, _, end) in enumerate(wins)}
    for store in stores(redis_url):
        for ev in events:
            state, _ = store.append(ev.user_id, [ev])
            got = store.cross_features(ev.user_id, state_columns(state))
            np.testing.assert_allclose(got, by_end[(ev.user_id, ev.ts.timestamp())], rtol=1e-6)
        store.close()


def test_counts_are_capped_at_the_earliest_members_whatever_the_order(redis_url: str) -> None:
    n = XE_CAP + 10
    events = [make_event(i, f"acct{i:03d}", float(i), "login", "shared-phone", None) for i in range(n)]
    wins, feats, cols, idx = batch(events)
    last = max(range(len(wins)), key=lambda k: wins[k][2])
    assert feats[last][F["xe_accounts_per_device"]] == XE_CAP  # "XE_CAP or more"
    first = min(range(len(wins)), key=lambda k: wins[k][2])
    assert feats[first][F["xe_accounts_per_device"]] == 1  # as of the first login, nobody else was there
    arrival = list(reversed(events))
    for store in stores(redis_url):
        for ev in arrival:
            store.append(ev.user_id, [ev])
        for k in (first, last):
            win = cols.slice(int(idx.start[k]), int(idx.end[k]))
            np.testing.assert_array_equal(store.cross_features(wins[k][0], win), feats[k])
        store.close()


def test_redis_keys_carry_the_ttl_and_the_cap(redis_url: str) -> None:
    import redis

    store = redis_store(redis_url)
    for i in range(XE_CAP + 5):
        store.append(f"a{i}", [make_event(i, f"a{i}", float(i), "login", "dev:1", "10.0.0.1")])
    client = redis.Redis.from_url(redis_url)
    key = f"{store.index_prefix}dev:dev:1"
    assert client.zcard(key) == XE_CAP and 0 < client.ttl(key) <= 600
    assert client.zrange(key, 0, 0) == [b"a0"]  # the earliest kept
    assert client.zcard(f"{store.index_prefix}edev:a3") == 1
    store.close()


def test_memory_index_is_bounded_by_the_stores_ttl_and_bytes() -> None:
    clock = [0.0]
    index = CrossIndex(ttl_seconds=10.0)
    index.add("dev", "d", "u1", 5.0, now=clock[0])
    assert index.get([("dev", "d")], now=5.0) == {("dev", "d"): [(5.0, "u1")]}
    assert index.get([("dev", "d")], now=11.0) == {}  # idle past the TTL: forgotten
    store = MemoryStateStore(CFG, max_bytes=20_000)
    for i in range(200):
        store.append(f"u{i}", [make_event(i, f"u{i}", float(i), "login", f"d{i}", f"i{i}")])
        assert store.total_bytes <= 20_000
    assert len(store.index) < 200 * 5  # old index keys were evicted with the windows


def test_no_device_or_ip_makes_those_features_constant_and_says_so() -> None:
    events = [make_event(i, f"u{i % 3}", float(10 * i), "purchase" if i % 4 == 0 else "view", None, None)
              for i in range(12)]
    _, feats, cols, _ = batch(events)
    info = presence(cols)
    assert not info["device_id_present"] and not info["ip_present"]
    assert set(info["constant_features"]) == set(CROSS_FEATURE_NAMES) - {"xe_first_payment_log_s"}
    assert info["note"].startswith("device_id and ip absent from the data: xe_accounts_per_device")
    assert (feats[:, :6] == 0).all()
    assert (feats[:, 6] >= 0).any()  # the payment timing still works on such data


def test_encode_window_appends_the_cross_features_after_the_base_ones() -> None:
    events = [make_event(i, "u", float(i), "view", "d", "i") for i in range(3)]
    _, feats, cols, _ = batch(events)
    enc = encode_window(cols, CFG, feats[-1])
    assert len(enc.features) == len(FEATURE_NAMES)
    assert FEATURE_NAMES[-len(CROSS_FEATURE_NAMES):] == CROSS_FEATURE_NAMES
    np.testing.assert_array_equal(enc.features[-len(CROSS_FEATURE_NAMES):], feats[-1])
