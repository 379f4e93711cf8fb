import pytest

from seqguard.config import SequenceConfig
from seqguard.events import Event
from service.state import MemoryStateStore, RedisStateStore, StateStoreError
from tests.support import free_port

T0 = 1791187200.0


def ev(i: int, user: str = "u") -> Event:
    return Event.model_validate({"user_id": user, "ts": T0 + i, "event_type": "view", "event_id": f"{user}-{i}"})


def test_memory_store_lru_and_ttl(monkeypatch):
    cfg = SequenceConfig(max_events=3)
    store = MemoryStateStore(cfg, max_entities=2, ttl_seconds=100)
    store.append("a", [ev(0, "a")])
    store.append("b", [ev(0, "b")])
    store.append("a", [ev(1, "a")])  # a is now most recent
    store.append("c", [ev(0, "c")])  # evicts b
    assert len(store) == 2 and store.get("b").records == [] and len(store.get("a").records) == 2
    clock = [1000.0]
    monkeypatch.setattr("service.state.time.monotonic", lambda: clock[0])
    store.append("a", [ev(2, "a")])
    clock[0] += 101
    assert store.get("a").records == []


def test_redis_store_shares_state_and_is_idempotent(redis_server):
    cfg = SequenceConfig(max_events=5)
    one = RedisStateStore(redis_server, cfg, prefix="t1:")
    two = RedisStateStore(redis_server, cfg, prefix="t1:")  # a second replica
    _, added = one.append("u", [ev(i) for i in range(3)])
    state, added2 = two.append("u", [ev(2), ev(3)])
    assert added == 3 and added2 == 1
    assert [r["event_id"] for r in state.records] == ["u-0", "u-1", "u-2", "u-3"]
    assert one.get("u") == state and one.ping()


def test_redis_unreachable_is_a_clear_error():
    store = RedisStateStore(f"redis://127.0.0.1:{free_port()}/0", SequenceConfig(), timeout_seconds=0.2)
    assert not store.ping()
    with pytest.raises(StateStoreError, match="redis"):
        store.append("u", [ev(0)])
