import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seqguard.config import SequenceConfig
from seqguard.events import Event
from seqguard.features import FEATURE_INDEX, FEATURE_NAMES, encode_window
from seqguard.io import events_to_frame
from seqguard.sequences import (
    EntityState,
    append_events,
    columns_from_frame,
    iter_windows,
    sort_for_sequences,
    state_columns,
    window_index,
)

T0 = 1791187200.0

event_strategy = st.builds(
    dict,
    user_id=st.sampled_from(["u1", "u2"]),
    ts=st.floats(T0, T0 + 5 * 86400, allow_nan=False).map(lambda x: round(x, 3)),
    event_type=st.sampled_from(["view", "add_to_cart", "purchase", "payment_attempt", "login", "review"]),
    event_id=st.one_of(st.none(), st.integers(0, 40).map(lambda i: f"e{i}")),
    item_id=st.one_of(st.none(), st.sampled_from(["i1", "i2", "i3"])),
    device_id=st.one_of(st.none(), st.sampled_from(["d1", "d2"])),
    country=st.one_of(st.none(), st.sampled_from(["DE", "FR"])),
    price=st.one_of(st.none(), st.floats(0, 2000, allow_nan=False)),
    payment_status=st.one_of(st.none(), st.sampled_from(["success", "failed"])),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(event_strategy, min_size=1, max_size=60), st.integers(1, 12), st.sampled_from([None, 3600.0, 86400.0]))
def test_streaming_equals_batch(raw_events, max_events, span):
    cfg = SequenceConfig(max_events=max_events, span_seconds=span)
    events = [Event.model_validate(e) for e in raw_events]
    ordered = sort_for_sequences(events_to_frame([e.model_dump() for e in events]), cfg)
    batch = {ent: encode_window(cols, cfg) for ent, _, _, cols in iter_windows(ordered, cfg, "entity")}
    states: dict[str, EntityState] = {}
    for e in events:  # arrival order, one at a time, as the service receives them
        states[e.user_id], _ = append_events(states.get(e.user_id, EntityState.empty()), [e], cfg)
    assert set(states) == set(batch)
    for ent, state in states.items():
        stream = encode_window(state_columns(state), cfg)
        np.testing.assert_array_equal(stream.input_ids, batch[ent].input_ids)
        np.testing.assert_allclose(stream.features, batch[ent].features, rtol=1e-6)


def _events(n, gap=30.0, **kw):
    return [Event.model_validate({"user_id": "u", "ts": T0 + i * gap, "event_type": "view", **kw}) for i in range(n)]


def test_window_by_count_and_span():
    cfg = SequenceConfig(max_events=5, span_seconds=100.0)
    state, added = append_events(EntityState.empty(), _events(10), cfg)
    assert added == 10
    ts = [r["ts"] for r in state.records]
    assert ts == [T0 + 180, T0 + 210, T0 + 240, T0 + 270]  # the 100 s span keeps 4; the count would keep 5


def test_idempotent_by_event_id():
    cfg = SequenceConfig()
    ev = [Event.model_validate({"user_id": "u", "ts": T0 + i, "event_type": "view", "event_id": f"e{i}"})
          for i in range(3)]
    state, added = append_events(EntityState.empty(), ev, cfg)
    again, added2 = append_events(state, ev[1:], cfg)
    assert added == 3 and added2 == 0 and again.records == state.records
    restored = EntityState.from_dict(again.to_dict())
    assert restored == again


def test_out_of_order_events_are_placed_by_time_and_ties_keep_arrival_order():
    cfg = SequenceConfig()
    a = Event.model_validate({"user_id": "u", "ts": T0 + 10, "event_type": "view", "item_id": "a"})
    b = Event.model_validate({"user_id": "u", "ts": T0, "event_type": "view", "item_id": "b"})
    c = Event.model_validate({"user_id": "u", "ts": T0 + 10, "event_type": "view", "item_id": "c"})
    state, _ = append_events(EntityState.empty(), [a, b, c], cfg)
    assert [r["item_id"] for r in state.records] == ["b", "a", "c"]


def test_day_windows_and_entity_keys():
    rows = []
    for day in range(3):
        for i in range(4):
            rows.append({"user_id": "u1", "ts": T0 + day * 86400 + i * 60, "event_type": "view", "device_id": "dA"})
    rows.append({"user_id": "u2", "ts": T0, "event_type": "login", "device_id": "dA"})
    frame = events_to_frame(rows)
    cfg = SequenceConfig(max_events=63, span_seconds=86400.0)
    idx = window_index(sort_for_sequences(frame, cfg), cfg, "day")
    assert sorted(idx.entity_id.tolist()) == ["u1", "u1", "u1", "u2"]
    dev = SequenceConfig(entity_key="device_id")
    assert window_index(sort_for_sequences(frame, dev), dev, "entity").entity_id.tolist() == ["dA"]


def test_features_capture_attack_signatures():
    cfg = SequenceConfig()
    rows = [{"user_id": "u", "ts": T0 + i * 20, "event_type": "payment_attempt", "price": 1.0,
             "payment_status": "failed", "device_id": "d1"} for i in range(8)]
    rows += [{"user_id": "u", "ts": T0 + 200, "event_type": "password_change", "device_id": "d9", "country": "XX"},
             {"user_id": "u", "ts": T0 + 400, "event_type": "purchase", "price": 900.0, "item_id": "tv",
              "device_id": "d9"}]
    frame = sort_for_sequences(events_to_frame(rows), cfg)
    f = encode_window(columns_from_frame(frame), cfg).features
    assert f[FEATURE_INDEX["max_failed_payments_10m"]] == 8
    assert f[FEATURE_INDEX["failed_payment_share"]] == 1.0
    assert f[FEATURE_INDEX["max_purchase_15m_after_credential_change"]] == 900.0
    assert f[FEATURE_INDEX["new_device_events"]] == 1  # d9 is new once; the purchase then reuses it
    assert f[FEATURE_INDEX["new_device_purchase_amount"]] == 900.0
    assert f[FEATURE_INDEX["purchases_without_view"]] == 1
    assert len(f) == len(FEATURE_NAMES) and np.isfinite(f).all()


def test_config_validation():
    with pytest.raises(ValueError, match="gap_edges"):
        SequenceConfig(gap_edges=(10.0, 5.0))
    with pytest.raises(ValueError, match="max_events"):
        SequenceConfig(max_events=0)
    assert SequenceConfig().max_len == 128
    default_hash = SequenceConfig().config_hash()
    assert default_hash == SequenceConfig().config_hash() != SequenceConfig(max_events=10).config_hash()


def test_nan_to_zero_is_nan_to_num():
    """The features' fast NaN replacement gives exactly np.nan_to_num(x, nan=0.0), infinities and dtype included."""
    from seqguard.features import nan_to_zero

    rng = np.random.default_rng(0)
    for dtype in (np.float64, np.float32):
        for t in range(200):
            x = rng.normal(0, 100, int(rng.integers(0, 20))).astype(dtype)
            if len(x):
                x[rng.random(len(x)) < 0.3] = np.nan
                x[0] = np.inf if t % 3 == 0 else x[0]
                x[-1] = -np.inf if t % 4 == 0 else x[-1]
            got, want = nan_to_zero(x), np.nan_to_num(x, nan=0.0)
            assert got.dtype == want.dtype
            np.testing.assert_array_equal(got, want)
