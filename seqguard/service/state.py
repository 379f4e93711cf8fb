"""Per-entity streaming state: the last-N window of each entity, idempotent by event_id.

Two stores with one interface. The in-memory store is an LRU with a TTL, bounded by entities and by bytes (one
replica). The Redis store lets several replicas behind a load balancer share state and survive restarts; an update is
a WATCH/MULTI transaction so two replicas appending to the same entity cannot lose each other's events.

`JournaledStore` wraps the Redis store so that no acknowledged event is lost while Redis is down: the events go to a
local append-only journal (fsync'd before the answer) and a background thread replays them, idempotently by
event_id, once Redis answers again. Under the `refuse` policy, or when the journal is full, the request is refused
(503 + Retry-After) instead: the client keeps the events.

Both stores also keep the cross-entity secondary indexes (seqguard.crossentity: device -> entities, ip -> entities,
entity -> devices / ips, first-seen times), written with every append and read by `cross_features`: under the same
TTL and byte bounds as the windows in memory, and in Redis as sorted sets (member -> first-seen time, the XE_CAP
earliest kept) in the same transaction as the window, so every replica reads the same indexes.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import sys
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from seqguard.config import SequenceConfig
from seqguard.crossentity import XE_CAP, CrossIndex, Key, Members, cross_features, event_updates, window_keys
from seqguard.sequences import EntityState, EventColumns, append_events, event_record

log = logging.getLogger("seqguard.state")


class StateStoreError(RuntimeError):
    """The store could not be read or written (e.g. Redis is unreachable)."""


class StateStoreJournaled(StateStoreError):
    """The store is down but the events are safe in the local journal: the caller answers degraded."""


class StateStoreRefused(RuntimeError):
    """The store is down and the events were NOT kept (refuse policy, or the journal is full): answer 503. Not a
    StateStoreError, so nothing on the way treats it as a degraded-but-accepted answer."""

    def __init__(self, message: str, retry_after_s: int = 5) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


def state_bytes(state: EntityState) -> int:
    """Estimated resident size of one entity's window: the Python objects, not their JSON (~3x larger for the
    string-heavy records of e-commerce events). Shared constants (None, small ints, interned keys) are counted too,
    which keeps the estimate on the safe side."""
    size = sys.getsizeof(state.records) + sys.getsizeof(state.seen_ids) + 64
    for rec in state.records:
        size += sys.getsizeof(rec) + sum(sys.getsizeof(v) for v in rec.values())
    size += sum(sys.getsizeof(i) for i in state.seen_ids)
    return size


class StateStore(Protocol):
    def get(self, entity: str) -> EntityState: ...

    def append(self, entity: str, events: Sequence[Any]) -> tuple[EntityState, int]: ...

    def cross_features(self, entity: str, cols: EventColumns) -> np.ndarray: ...

    def ping(self) -> bool: ...

    def close(self) -> None: ...


class MemoryStateStore:
    def __init__(
        self,
        cfg: SequenceConfig,
        max_entities: int = 100_000,
        ttl_seconds: float = 86_400.0,
        max_bytes: int = 512 * 1024 * 1024,
    ) -> None:
        self.cfg = cfg
        self.max_entities = max_entities
        self.max_bytes = max_bytes
        self.ttl = ttl_seconds
        self._data: OrderedDict[str, tuple[float, EntityState]] = OrderedDict()
        self._sizes: dict[str, int] = {}
        self.window_bytes = 0
        self.index = CrossIndex(ttl_seconds)
        self._lock = threading.Lock()

    @property
    def total_bytes(self) -> int:
        return self.window_bytes + self.index.total_bytes

    def _drop(self, entity: str) -> None:
        self._data.pop(entity, None)
        self.window_bytes -= self._sizes.pop(entity, 0)

    def _live(self, entity: str, now: float) -> EntityState:
        item = self._data.get(entity)
        if item is None or now - item[0] > self.ttl:
            self._drop(entity)
            return EntityState.empty()
        return item[1]

    def get(self, entity: str) -> EntityState:
        with self._lock:
            return self._live(entity, time.monotonic())

    def append(self, entity: str, events: Sequence[Any]) -> tuple[EntityState, int]:
        with self._lock:
            now = time.monotonic()
            state, added = append_events(self._live(entity, now), events, self.cfg)
            size = state_bytes(state)
            self.window_bytes += size - self._sizes.get(entity, 0)
            self._sizes[entity] = size
            self._data[entity] = (now, state)
            self._data.move_to_end(entity)
            self.index.add_all(event_updates(entity, events), now)
            # Least recently used first, windows and index keys alike; the entity just written stays even if alone
            # it is over the byte bound (a window holds at most max_events events, each with size-limited fields).
            while len(self._data) > self.max_entities:
                self._drop(next(iter(self._data)))
            while self.total_bytes > self.max_bytes and len(self._data) > 1:
                oldest = self.index.oldest()
                if oldest is not None and oldest[0] <= self._data[next(iter(self._data))][0]:
                    self.index.drop(oldest[1])
                else:
                    self._drop(next(iter(self._data)))
            return state, added

    def cross_features(self, entity: str, cols: EventColumns) -> np.ndarray:
        with self._lock:
            return cross_features(entity, cols, self.index.get(window_keys(entity, cols), time.monotonic()))

    def __len__(self) -> int:
        return len(self._data)

    def stats(self) -> dict[str, int]:
        return {"entities": len(self._data), "bytes": self.total_bytes, "journal_bytes": 0}

    def ping(self) -> bool:
        return True

    def close(self) -> None:
        self._data.clear()
        self._sizes.clear()
        self.window_bytes = 0
        self.index.clear()


class RedisStateStore:
    def __init__(
        self,
        url: str,
        cfg: SequenceConfig,
        ttl_seconds: float = 86_400.0,
        prefix: str = "seqguard:state:",
        timeout_seconds: float = 0.5,
        retries: int = 5,
        index_prefix: str = "seqguard:xe:",
    ) -> None:
        import redis

        self.cfg = cfg
        self.ttl = int(ttl_seconds)
        # The config hash in the key keeps windows of different sequence configs apart after a model upgrade.
        self.prefix = f"{prefix}{cfg.config_hash()[:12]}:"
        # The cross-entity indexes: a prefix of their own, so no entity id can collide with an index key.
        self.index_prefix = f"{index_prefix}{cfg.config_hash()[:12]}:"
        self.retries = retries
        self._redis_errors: tuple[type[Exception], ...] = (redis.RedisError, OSError)
        self._watch_error = redis.WatchError
        self.client = redis.Redis.from_url(
            url, socket_timeout=timeout_seconds, socket_connect_timeout=timeout_seconds, health_check_interval=10
        )
        self._stats_at = -1e9
        self._stats = {"entities": -1, "bytes": -1, "journal_bytes": 0}

    def _key(self, entity: str) -> str:
        return self.prefix + entity

    def _index_key(self, k: Key) -> str:
        return f"{self.index_prefix}{k[0]}:{k[1]}"

    def get(self, entity: str) -> EntityState:
        try:
            raw = self.client.get(self._key(entity))
        except self._redis_errors as e:
            raise StateStoreError(f"redis get failed: {e}") from None
        return _decode(raw)

    def append(self, entity: str, events: Sequence[Any]) -> tuple[EntityState, int]:
        key = self._key(entity)
        try:
            for _ in range(self.retries):
                with self.client.pipeline() as pipe:
                    try:
                        pipe.watch(key)
                        state, added = append_events(_decode(pipe.get(key)), events, self.cfg)
                        pipe.multi()
                        pipe.set(key, json.dumps(state.to_dict(), separators=(",", ":")), ex=self.ttl)
                        self._queue_index(pipe, entity, events)
                        pipe.execute()
                        return state, added
                    except self._watch_error:
                        continue  # another replica wrote this entity meanwhile: recompute on its state
            raise StateStoreError(f"redis append for one entity lost {self.retries} races in a row")
        except self._redis_errors as e:
            raise StateStoreError(f"redis append failed: {e}") from None

    def _queue_index(self, pipe: Any, entity: str, events: Sequence[Any]) -> None:
        """The index updates, in the window's transaction. ZADD LT keeps the earliest time of a member (any arrival
        order gives the same set); the rank trim keeps the XE_CAP earliest, ties by member as in CappedSet."""
        grouped: dict[Key, dict[str, float]] = {}
        for kind, k, member, t in event_updates(entity, events):
            grouped.setdefault((kind, k), {})[member] = t
        for k, members in grouped.items():
            name = self._index_key(k)
            pipe.zadd(name, members, lt=True)
            pipe.zremrangebyrank(name, XE_CAP, -1)
            pipe.expire(name, self.ttl)

    def cross_features(self, entity: str, cols: EventColumns) -> np.ndarray:
        keys = window_keys(entity, cols)
        try:
            with self.client.pipeline(transaction=False) as pipe:
                for k in keys:
                    pipe.zrange(self._index_key(k), 0, -1, withscores=True)
                replies = pipe.execute()
        except self._redis_errors as e:
            raise StateStoreError(f"redis index read failed: {e}") from None
        sets: dict[Key, Members] = {k: [(float(t), _text(m)) for m, t in r] for k, r in zip(keys, replies, strict=True)}
        return cross_features(entity, cols, sets)

    def ping(self) -> bool:
        try:
            return bool(self.client.ping())
        except self._redis_errors:
            return False

    def persistence_problems(self) -> tuple[list[str], list[str]]:
        """(problems, notes) about whether an acknowledged write survives a Redis restart. Only the append-only file
        does (an RDB snapshot loses everything since the last one); appendfsync other than `always` can lose up to
        a second of writes on a crash, which is a note, not a problem. Unreachable or CONFIG disabled (managed
        Redis): a note, since it cannot be checked from here."""
        try:
            config = {**self.client.config_get("appendonly"), **self.client.config_get("appendfsync"),
                      **self.client.config_get("save")}
        except self._redis_errors as e:
            return [], [f"could not read the Redis persistence settings ({type(e).__name__}): check appendonly yes"]
        config = {_text(k): _text(v) for k, v in config.items()}
        if config.get("appendonly") != "yes":
            snapshot = f"RDB snapshots only (save '{config.get('save', '')}')" if config.get("save") else "none"
            return [f"Redis persistence is {snapshot}: appendonly is off, so events acknowledged as stored are lost "
                    "when Redis restarts (set appendonly yes)"], []
        if config.get("appendfsync") != "always":
            return [], [f"Redis appendfsync is {config.get('appendfsync')}: a crash can lose up to 1 s of writes"]
        return [], []

    def stats(self) -> dict[str, int]:
        """Redis's own memory and key count (all keys of the database), read at most every 5 s."""
        now = time.monotonic()
        if now - self._stats_at > 5.0:
            self._stats_at = now
            try:
                self._stats = {"entities": int(self.client.dbsize()),
                               "bytes": int(self.client.info("memory")["used_memory"]), "journal_bytes": 0}
            except self._redis_errors:
                self._stats = {"entities": -1, "bytes": -1, "journal_bytes": 0}
        return dict(self._stats)

    def close(self) -> None:
        self.client.close()


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


class Journal:
    """A local append-only file of events the state store could not take. Each entry is fsync'd before the service
    answers, so an acknowledged event survives a crash of this process too. Replay rotates the file aside first, so
    new entries never wait for a long replay; a replay cut short is simply repeated (appends are idempotent)."""

    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / "journal.jsonl"
        self.replaying = self.dir / "journal.replaying.jsonl"
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        # One process per journal: two writers would interleave lines and replay each other's events.
        self._lockfile = open(self.dir / "journal.lock", "a")  # noqa: SIM115 - held for the process lifetime
        try:
            fcntl.flock(self._lockfile, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise StateStoreError(
                f"journal {self.dir} is in use by another process: give each replica its own SEQGUARD_JOURNAL_DIR"
            ) from None

    def size(self) -> int:
        total = 0
        for p in (self.path, self.replaying):
            with contextlib.suppress(FileNotFoundError):
                total += p.stat().st_size
        return total

    def append(self, entity: str, records: list[dict[str, Any]]) -> bool:
        line = (json.dumps({"entity": entity, "records": records}, separators=(",", ":")) + "\n").encode()
        with self._lock:
            if self.size() + len(line) > self.max_bytes:
                return False
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)
        return True

    def replay(self, apply: Callable[[str, list[dict[str, Any]]], Any]) -> int:
        """Apply every journaled entry in order; the journal is emptied only after all succeeded. Returns the number
        of events replayed. A torn last line (a crash mid-write, never acknowledged) is skipped."""
        with self._lock:
            if not self.replaying.exists():
                if not self.path.exists():
                    return 0
                os.replace(self.path, self.replaying)
        n = 0
        with open(self.replaying, "rb") as f:
            for raw in f:
                try:
                    entry = json.loads(raw)
                except ValueError:
                    continue
                apply(entry["entity"], entry["records"])
                n += len(entry["records"])
        self.replaying.unlink()
        return n

    def close(self) -> None:
        self._lockfile.close()


class JournaledStore:
    """A Redis store that journals locally while Redis is down and replays when it is back (see module doc)."""

    def __init__(self, inner: RedisStateStore, journal: Journal, policy: str = "journal",
                 retry_after_s: int = 5, replay_interval_s: float = 0.5) -> None:
        self.inner = inner
        self.journal = journal
        self.policy = policy
        self.retry_after_s = retry_after_s
        self.replayed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._replay_loop, args=(replay_interval_s,), daemon=True,
                                         name="seqguard-journal-replay")
        self._thread.start()

    def get(self, entity: str) -> EntityState:
        return self.inner.get(entity)

    def append(self, entity: str, events: Sequence[Any]) -> tuple[EntityState, int]:
        try:
            return self.inner.append(entity, events)
        except StateStoreError as err:
            if self.policy == "refuse":
                log.warning("state store unavailable, refusing (refuse policy): %s", err)
                raise StateStoreRefused("state store unavailable: events not stored", self.retry_after_s) from None
            records = []
            for e in events:
                rec = event_record(e)
                # A journaled event needs an id of its own, or a replay repeated after a crash would count it twice.
                rec["event_id"] = rec.get("event_id") or f"journal:{uuid.uuid4().hex}"
                records.append(rec)
            if not self.journal.append(entity, records):
                log.error("state store unavailable and the journal is full: refusing events (%s)", err)
                raise StateStoreRefused(
                    "state store unavailable and the local journal is full: events not stored",
                    self.retry_after_s,
                ) from None
            raise StateStoreJournaled(f"{err}; {len(records)} events journaled for replay") from None

    def _replay_loop(self, interval: float) -> None:
        while not self._stop.wait(interval):
            if self.journal.size() and self.inner.ping():
                try:
                    n = self.journal.replay(self.inner.append)
                except Exception as e:  # the replayer must outlive any one bad round
                    log.warning("journal replay interrupted, will retry: %s", e)
                    continue
                self.replayed += n
                log.warning("state store back: replayed %d journaled events", n)

    def cross_features(self, entity: str, cols: EventColumns) -> np.ndarray:
        return self.inner.cross_features(entity, cols)

    def ping(self) -> bool:
        return self.inner.ping()

    def persistence_problems(self) -> tuple[list[str], list[str]]:
        return self.inner.persistence_problems()

    def stats(self) -> dict[str, int]:
        return {**self.inner.stats(), "journal_bytes": self.journal.size()}

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.inner.close()
        self.journal.close()


def _decode(raw: bytes | None) -> EntityState:
    if raw is None:
        return EntityState.empty()
    return EntityState.from_dict(json.loads(raw))
