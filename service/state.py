"""Per-entity streaming state: the last-N window of each entity, idempotent by event_id.

Two stores with one interface. The in-memory store is a bounded LRU with a TTL (one replica). The Redis store lets
several replicas behind a load balancer share state and survive restarts; an update is a WATCH/MULTI transaction so
two replicas appending to the same entity cannot lose each other's events.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, Protocol

from seqguard.config import SequenceConfig
from seqguard.sequences import EntityState, append_events


class StateStoreError(RuntimeError):
    """The store could not be read or written (e.g. Redis is unreachable)."""


class StateStore(Protocol):
    def get(self, entity: str) -> EntityState: ...

    def append(self, entity: str, events: Sequence[Any]) -> tuple[EntityState, int]: ...

    def ping(self) -> bool: ...

    def close(self) -> None: ...


class MemoryStateStore:
    def __init__(self, cfg: SequenceConfig, max_entities: int = 100_000, ttl_seconds: float = 86_400.0) -> None:
        self.cfg = cfg
        self.max_entities = max_entities
        self.ttl = ttl_seconds
        self._data: OrderedDict[str, tuple[float, EntityState]] = OrderedDict()
        self._lock = threading.Lock()

    def _live(self, entity: str, now: float) -> EntityState:
        item = self._data.get(entity)
        if item is None or now - item[0] > self.ttl:
            self._data.pop(entity, None)
            return EntityState.empty()
        return item[1]

    def get(self, entity: str) -> EntityState:
        with self._lock:
            return self._live(entity, time.monotonic())

    def append(self, entity: str, events: Sequence[Any]) -> tuple[EntityState, int]:
        with self._lock:
            now = time.monotonic()
            state, added = append_events(self._live(entity, now), events, self.cfg)
            self._data[entity] = (now, state)
            self._data.move_to_end(entity)
            while len(self._data) > self.max_entities:
                self._data.popitem(last=False)
            return state, added

    def __len__(self) -> int:
        return len(self._data)

    def ping(self) -> bool:
        return True

    def close(self) -> None:
        self._data.clear()


class RedisStateStore:
    def __init__(
        self,
        url: str,
        cfg: SequenceConfig,
        ttl_seconds: float = 86_400.0,
        prefix: str = "seqguard:state:",
        timeout_seconds: float = 0.5,
        retries: int = 5,
    ) -> None:
        import redis

        self.cfg = cfg
        self.ttl = int(ttl_seconds)
        # The config hash in the key keeps windows of different sequence configs apart after a model upgrade.
        self.prefix = f"{prefix}{cfg.config_hash()[:12]}:"
        self.retries = retries
        self._redis_errors: tuple[type[Exception], ...] = (redis.RedisError, OSError)
        self._watch_error = redis.WatchError
        self.client = redis.Redis.from_url(
            url, socket_timeout=timeout_seconds, socket_connect_timeout=timeout_seconds, health_check_interval=10
        )

    def _key(self, entity: str) -> str:
        return self.prefix + entity

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
                        pipe.execute()
                        return state, added
                    except self._watch_error:
                        continue  # another replica wrote this entity meanwhile: recompute on its state
            raise StateStoreError(f"redis append for one entity lost {self.retries} races in a row")
        except self._redis_errors as e:
            raise StateStoreError(f"redis append failed: {e}") from None

    def ping(self) -> bool:
        try:
            return bool(self.client.ping())
        except self._redis_errors:
            return False

    def close(self) -> None:
        self.client.close()


def _decode(raw: bytes | None) -> EntityState:
    if raw is None:
        return EntityState.empty()
    return EntityState.from_dict(json.loads(raw))
