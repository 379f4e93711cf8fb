"""Cross-entity features: what the other entities sharing this window's devices and IPs say about it.

A window's own aggregates cannot see that its device also served forty other accounts today. These features can:

- xe_accounts_per_device: max over the window's devices of the entities seen on it. Shared-device payment fraud,
  coupon-abuse rings (one phone, many sign-ups).
- xe_accounts_per_ip: the same for the window's IPs. Card-testing farms, coupon rings behind one NAT/proxy.
- xe_devices_per_account, xe_ips_per_account: devices / IPs this entity has used. Account takeover, device farms,
  proxy rotation.
- xe_new_devices, xe_new_ips: the window's devices / IPs this entity had not used before the window's first event.
  Account takeover (a new device, then a payment).
- xe_first_payment_log_s: log1p(seconds from the entity's first event to its first payment: purchase or payment
  attempt); -1 while it has not paid. Card testing and fresh mule accounts pay minutes after appearing.

All are as of the window's last event T.

Point in time: a window ending at T counts only what happened at or before T, so an offline window never sees the
future. Every index entry is a *first-seen time* (the minimum over events), which does not depend on the order
events arrive in: the batch index built from a whole frame, the streaming index built event by event (in any order)
and the Redis index give the same answer for the same window (tests/test_crossentity.py holds them together).

Bounds: each index key keeps at most `XE_CAP` members, the ones seen first (ties by member id). Counts are therefore
capped at XE_CAP ("64 or more"), exactly, whatever the arrival order; a device used by an entity beyond its first
XE_CAP devices counts as new for it. The service's store applies its TTL and byte bounds to these keys too.

Index kinds (a key of each kind maps members to their first-seen time):
  dev:<device> -> entities, ip:<ip> -> entities, edev:<entity> -> devices, eip:<entity> -> ips,
  t:<entity> -> {"seen": first event, "pay": first purchase / payment attempt}.
"""

from __future__ import annotations

import bisect
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from seqguard.sequences import KIND_INDEX, EventColumns

XE_CAP = 64
CROSS_FEATURE_NAMES: tuple[str, ...] = (
    "xe_accounts_per_device",
    "xe_accounts_per_ip",
    "xe_devices_per_account",
    "xe_ips_per_account",
    "xe_new_devices",
    "xe_new_ips",
    "xe_first_payment_log_s",
)
NO_PAYMENT = -1.0
PAYMENT_KINDS = np.array([KIND_INDEX["purchase"], KIND_INDEX["payment_attempt"], KIND_INDEX["payment_failed"]])
KINDS = ("dev", "ip", "edev", "eip", "t")
SEEN, PAY = "seen", "pay"

Key = tuple[str, str]  # (kind, key)
Members = Sequence[tuple[float, str]]  # (first-seen ts, member), sorted ascending, at most XE_CAP


# ---------------------------------------------------------------------------------------------------------------------
# What an entity's events add to the index


def _first_seen(entity: str, rows: Iterable[tuple[float, Any, Any, bool]]) -> Iterator[tuple[str, str, str, float]]:
    """(kind, key, member, ts) index updates from (ts, device, ip, is_payment) rows of one entity, reduced to the
    minimum ts per entry: the one reduction behind the column and the Event forms below."""
    best: dict[tuple[str, str, str], float] = {}

    def put(k: tuple[str, str, str], t: float) -> None:
        if t < best.get(k, np.inf):
            best[k] = t

    for t, d, ip, pay in rows:
        if d is not None:
            put(("dev", d, entity), t)
            put(("edev", entity, d), t)
        if ip is not None:
            put(("ip", ip, entity), t)
            put(("eip", entity, ip), t)
        put(("t", entity, SEEN), t)
        if pay:
            put(("t", entity, PAY), t)
    for (kind, key, member), t in best.items():
        yield kind, key, member, t


def updates(entity: str, cols: EventColumns) -> Iterator[tuple[str, str, str, float]]:
    """(kind, key, member, ts) index updates of one entity's events, reduced to the minimum ts per entry."""
    pay = np.isin(cols.kind, PAYMENT_KINDS).tolist()
    return _first_seen(entity, zip(cols.ts.tolist(), cols.device, cols.ip, pay, strict=True))


PAYMENT_EVENT_TYPES = ("purchase", "payment_attempt")  # payment_attempt covers the failed ones (payment_failed)
_PAYMENT_TYPES = frozenset(PAYMENT_EVENT_TYPES)


def event_updates(entity: str, events: Iterable[Any]) -> Iterator[tuple[str, str, str, float]]:
    """The same updates from Event objects or stored records (ts as datetime or epoch seconds), for the service."""

    def rows() -> Iterator[tuple[float, Any, Any, bool]]:
        for ev in events:
            get = ev.get if isinstance(ev, Mapping) else lambda k, ev=ev: getattr(ev, k, None)
            ts = get("ts")
            et = get("event_type")
            yield (float(ts.timestamp() if hasattr(ts, "timestamp") else ts), get("device_id"), get("ip"),
                   str(getattr(et, "value", et)) in _PAYMENT_TYPES)

    return _first_seen(entity, rows())


def frame_updates(entity: np.ndarray, cols: EventColumns) -> Iterator[tuple[str, str, str, float]]:
    """The same updates for a whole frame (rows of many entities), vectorised: one minimum per entry."""
    df = pd.DataFrame({"e": entity.astype(object), "ts": cols.ts, "dev": cols.device, "ip": cols.ip,
                       "pay": np.isin(cols.kind, PAYMENT_KINDS)})
    for col, fwd, back in (("dev", "dev", "edev"), ("ip", "ip", "eip")):
        sub = df[df[col].notna()]
        if len(sub):
            pairs = sub.groupby([col, "e"], sort=False)["ts"].min()
            for (v, e), t in pairs.items():
                yield fwd, str(v), str(e), float(t)
                yield back, str(e), str(v), float(t)
    for e, t in df.groupby("e", sort=False)["ts"].min().items():
        yield "t", str(e), SEEN, float(t)
    for e, t in df[df["pay"]].groupby("e", sort=False)["ts"].min().items():
        yield "t", str(e), PAY, float(t)


# ---------------------------------------------------------------------------------------------------------------------
# The in-memory index (batch, and the memory state store)


class CappedSet:
    """The XE_CAP members seen first, with their first-seen times."""

    __slots__ = ("first", "order")

    def __init__(self) -> None:
        self.first: dict[str, float] = {}
        self.order: list[tuple[float, str]] = []

    def add(self, member: str, t: float) -> bool:
        """Record `member` at `t`; True when the set changed."""
        old = self.first.get(member)
        if old is not None:
            if t >= old:
                return False
            self.order.remove((old, member))
        elif len(self.order) >= XE_CAP:
            if (t, member) >= self.order[-1]:
                return False  # later than the XE_CAP kept: it would be the one dropped
            _, dropped = self.order.pop()
            del self.first[dropped]
        self.first[member] = t
        bisect.insort(self.order, (t, member))
        return True

    def nbytes(self) -> int:
        return 200 + 120 * len(self.order)


class CrossIndex:
    """Capped sets by (kind, key), least recently written first; optionally bounded by a TTL (seconds since the key's
    last write, on the store's clock) for the service. Batch use leaves it unbounded."""

    def __init__(self, ttl_seconds: float | None = None) -> None:
        self.ttl = ttl_seconds
        self._sets: OrderedDict[Key, tuple[float, CappedSet]] = OrderedDict()
        self.total_bytes = 0

    def add(self, kind: str, key: str, member: str, t: float, now: float = 0.0) -> None:
        item = self._sets.get((kind, key))
        if item is None or (self.ttl is not None and now - item[0] > self.ttl):
            self.drop((kind, key))
            item = (now, CappedSet())
        s = item[1]
        before = s.nbytes() if (kind, key) in self._sets else 0
        s.add(member, t)
        self._sets[(kind, key)] = (now, s)
        self._sets.move_to_end((kind, key))
        self.total_bytes += s.nbytes() - before

    def add_all(self, ups: Iterable[tuple[str, str, str, float]], now: float = 0.0) -> None:
        for kind, key, member, t in ups:
            self.add(kind, key, member, t, now)

    def get(self, keys: Iterable[Key], now: float = 0.0) -> dict[Key, Members]:
        out: dict[Key, Members] = {}
        for k in keys:
            item = self._sets.get(k)
            if item is not None and not (self.ttl is not None and now - item[0] > self.ttl):
                out[k] = item[1].order
        return out

    def drop(self, k: Key) -> None:
        item = self._sets.pop(k, None)
        if item is not None:
            self.total_bytes -= item[1].nbytes()

    def oldest(self) -> tuple[float, Key] | None:
        """(last write time, key) of the least recently written key."""
        if not self._sets:
            return None
        k = next(iter(self._sets))
        return self._sets[k][0], k

    def __len__(self) -> int:
        return len(self._sets)

    def clear(self) -> None:
        self._sets.clear()
        self.total_bytes = 0


# ---------------------------------------------------------------------------------------------------------------------
# The query: one function for batch, the memory store and Redis


def _distinct(values: np.ndarray) -> list[str]:
    return sorted({v for v in values if v is not None})


def window_keys(entity: str, cols: EventColumns) -> list[Key]:
    """The index keys a window's features read."""
    keys: list[Key] = [("edev", entity), ("eip", entity), ("t", entity)]
    keys += [("dev", d) for d in _distinct(cols.device)]
    keys += [("ip", i) for i in _distinct(cols.ip)]
    return keys


def _count_upto(members: Members, t: float) -> int:
    return bisect.bisect_right([m[0] for m in members], t)


def cross_features(entity: str, cols: EventColumns, sets: Mapping[Key, Members]) -> np.ndarray:
    """The CROSS_FEATURE_NAMES of one window (time-sorted `cols`), from the index sets of `window_keys`."""
    f = np.zeros(len(CROSS_FEATURE_NAMES), dtype=np.float32)
    f[6] = NO_PAYMENT
    if len(cols) == 0:
        return f
    start, end = float(cols.ts[0]), float(cols.ts[-1])
    devs, ips = _distinct(cols.device), _distinct(cols.ip)
    f[0] = max((_count_upto(sets.get(("dev", d), ()), end) for d in devs), default=0)
    f[1] = max((_count_upto(sets.get(("ip", i), ()), end) for i in ips), default=0)
    edev, eip = sets.get(("edev", entity), ()), sets.get(("eip", entity), ())
    f[2] = _count_upto(edev, end)
    f[3] = _count_upto(eip, end)
    known_dev = {m for t, m in edev if t < start}
    known_ip = {m for t, m in eip if t < start}
    f[4] = sum(1 for d in devs if d not in known_dev)
    f[5] = sum(1 for i in ips if i not in known_ip)
    times = {m: t for t, m in sets.get(("t", entity), ())}
    seen, pay = times.get(SEEN), times.get(PAY)
    if seen is not None and pay is not None and pay <= end:
        f[6] = np.log1p(max(0.0, pay - seen))
    return f


def window_only_features(cols: EventColumns) -> np.ndarray:
    """Without any context (a window on its own: load-test payloads, benchmarks): the window is all that is known,
    so every device is new and each is shared by this one entity."""
    index = CrossIndex()
    index.add_all(updates("_", cols))
    return cross_features("_", cols, index.get(window_keys("_", cols)))


def frame_cross_features(entity: np.ndarray, cols: EventColumns, starts: np.ndarray, ends: np.ndarray,
                         index: CrossIndex | None = None) -> np.ndarray:
    """Batch: the features of windows [start, end) of an entity-sorted frame (`entity` per row), each as of its own
    last event: the index holds the whole frame, the query counts only what was first seen by then. `index`: one
    built over more than this frame (a file scored bucket by bucket: every bucket reads the whole file's index)."""
    if index is None:
        index = CrossIndex()
        index.add_all(frame_updates(entity, cols))
    out = np.empty((len(starts), len(CROSS_FEATURE_NAMES)), dtype=np.float32)
    for i, (s, e) in enumerate(zip(starts.tolist(), ends.tolist(), strict=True)):
        win = cols.slice(int(s), int(e))
        ent = str(entity[int(s)])
        out[i] = cross_features(ent, win, index.get(window_keys(ent, win)))
    return out


def presence(cols: EventColumns) -> dict[str, Any]:
    """What the data gives these features to work with; absent fields make some of them constant."""
    has_dev = any(v is not None for v in cols.device)
    has_ip = any(v is not None for v in cols.ip)
    constant = [n for n, ok in (("xe_accounts_per_device", has_dev), ("xe_devices_per_account", has_dev),
                                ("xe_new_devices", has_dev), ("xe_accounts_per_ip", has_ip),
                                ("xe_ips_per_account", has_ip), ("xe_new_ips", has_ip)) if not ok]
    missing = [n for n, ok in (("device_id", has_dev), ("ip", has_ip)) if not ok]
    note = (f"{' and '.join(missing)} absent from the data: {', '.join(constant)} are constant (0)"
            if missing else "")
    return {"device_id_present": has_dev, "ip_present": has_ip, "constant_features": constant, "note": note}

