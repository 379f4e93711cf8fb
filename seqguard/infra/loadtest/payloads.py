"""Realistic request payloads: generator accounts (normal and attacker) or a replayed events file.

Timestamps are shifted so that an account's last event lies at "now" when it starts streaming: the service rejects
events from the future and the model reads gaps, so the recorded gaps are kept and only the origin moves. Every
stream gets fresh entity and event ids (prefixed with the run tag), so a run never collides with the state of an
earlier one and the service's idempotency check never swallows load.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from seqguard.events import EVENT_FIELDS

NORMAL = "normal"
# Fields copied from the recorded event; ids and time are rewritten per stream.
_COPIED = tuple(f for f in EVENT_FIELDS if f not in ("user_id", "ts", "event_id"))
_ids = itertools.count()


def _clean(value: Any) -> Any:
    """JSON-safe: no NaN / NA (the API rejects NaN prices), numpy scalars to Python ones."""
    if value is None or value is pd.NA:
        return None
    if isinstance(value, float | np.floating):
        return None if math.isnan(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def _ms(ts: float) -> float:
    """Milliseconds, rounded down: rounding up could put "now" a fraction of a millisecond in the future."""
    return math.floor(ts * 1000.0) / 1000.0


def _record(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k in _COPIED if (v := _clean(row.get(k))) is not None}


@dataclass(frozen=True)
class Account:
    """One account's recorded history: event bodies without id/time, their ts relative to the last, and the gaps."""

    user_id: str
    scenario: str  # what the account is: "normal" or the attack scenario it runs
    bodies: tuple[dict[str, Any], ...]
    offsets: np.ndarray  # ts - ts[-1], <= 0
    gaps: np.ndarray  # seconds before each event (0 for the first)

    @property
    def is_attack(self) -> bool:
        return self.scenario != NORMAL

    def events(self, entity_id: str, now: float, last: int | None = None) -> list[dict[str, Any]]:
        """The history (or its last `last` events) as API events, ending at `now`."""
        start = 0 if last is None else max(0, len(self.bodies) - last)
        return [
            {"user_id": entity_id, "ts": _ms(now + float(self.offsets[i])), "event_id": f"{entity_id}-{i}",
             **self.bodies[i]}
            for i in range(start, len(self.bodies))
        ]


def new_entity_id(run_tag: str, account: Account) -> str:
    return f"{run_tag}-{next(_ids)}-{account.user_id}"[:128]


class AccountPool:
    """Normal and attacker accounts drawn from the generator; `pick` honours the attack share."""

    def __init__(self, accounts: list[Account], seed: int = 0) -> None:
        self.normal = [a for a in accounts if not a.is_attack]
        self.attack = [a for a in accounts if a.is_attack]
        if not self.normal:
            raise ValueError("the pool holds no normal accounts")
        self.rng = np.random.default_rng(seed)

    @classmethod
    def from_generator(cls, users: int, seed: int = 0, max_events: int = 120, days: int = 2) -> AccountPool:
        from seqguard.generator import GeneratorConfig, generate

        data = generate(GeneratorConfig(users=users, days=days, seed=seed))
        return cls(accounts_from_frame(data.events, data.users, max_events), seed=seed)

    def pick(self, attack_share: float) -> Account:
        attack = bool(self.attack) and self.rng.random() < attack_share
        pool = self.attack if attack else self.normal
        return pool[int(self.rng.integers(len(pool)))]

    def think_times(self, pace: float, cap: float) -> np.ndarray:
        """Recorded in-session gaps, compressed by `pace` and capped: what a shopper waits between sessions."""
        gaps = np.concatenate([a.gaps[1:] for a in self.normal if len(a.gaps) > 1] or [np.ones(1)])
        return np.minimum(gaps / pace, cap)


def accounts_from_frame(events: pd.DataFrame, users: pd.DataFrame | None, max_events: int) -> list[Account]:
    """Per account: its last `max_events` events in time order (ties keep file order)."""
    frame = events.assign(_order=np.arange(len(events))).sort_values(["user_id", "ts", "_order"], kind="stable")
    kind = dict(zip(users["user_id"], users["scenario"], strict=True)) if users is not None else {}
    accounts = []
    for user_id, group in frame.groupby("user_id", sort=False):
        group = group.tail(max_events)
        ts = group["ts"].to_numpy(dtype=np.float64)
        scenario = kind.get(user_id) or _scenario_of(group)
        accounts.append(Account(
            user_id=str(user_id),
            scenario=str(scenario),
            bodies=tuple(_record(r) for r in group.to_dict("records")),
            offsets=ts - ts[-1],
            gaps=np.diff(ts, prepend=ts[0]),
        ))
    return accounts


def _scenario_of(group: pd.DataFrame) -> str:
    if "scenario" not in group:
        return NORMAL
    attacks = group["scenario"][group["scenario"] != NORMAL]
    return str(attacks.iloc[0]) if len(attacks) else NORMAL


def stream(account: Account, entity_id: str, pace: float, max_think_s: float) -> Iterator[tuple[float, dict[str, Any]]]:
    """(think seconds before it, event) for each event of the account, ending at the moment the stream starts."""
    events = account.events(entity_id, time.time())
    for gap, event in zip(account.gaps, events, strict=True):
        yield min(float(gap) / pace, max_think_s), event


def score_batch(pool: AccountPool, attack_share: float, entities: int, run_tag: str, last: int) -> tuple[
    list[dict[str, Any]], dict[str, str]
]:
    """Events of `entities` accounts for one /score request, each account's last `last` events ending now; and
    what each entity is (normal / attack)."""
    now = time.time()
    out: list[dict[str, Any]] = []
    kinds: dict[str, str] = {}
    for _ in range(entities):
        account = pool.pick(attack_share)
        entity = new_entity_id(run_tag, account)
        kinds[entity] = "attack" if account.is_attack else "normal"
        out.extend(account.events(entity, now, last=last))
    return out, kinds


# ---------------------------------------------------------------------------------------------------------------------
# Replay: a real events file, in recorded order, at recorded or accelerated pace


class ReplaySchedule:
    """The file's events in time order with the wall-clock offset each is due at (offset / speed).

    Shared by every ReplayUser of the process: locust users are greenlets, and `next()` never yields, so taking the
    next event is atomic without a lock.
    """

    def __init__(self, frame: pd.DataFrame, speed: float, run_tag: str, run_time_s: float | None = None) -> None:
        frame = frame.assign(_order=np.arange(len(frame))).sort_values(["ts", "_order"], kind="stable")
        ts = frame["ts"].to_numpy(dtype=np.float64)
        if len(ts) == 0:
            raise ValueError("the replay file holds no valid events")
        if speed > 0 and run_time_s is not None:
            # Only what the run can reach (plus a margin) is converted to payloads.
            keep = ts <= ts[0] + (run_time_s + 30.0) * speed
            frame, ts = frame[keep], ts[keep]
        self.speed = speed
        self.run_tag = run_tag
        self.rel = ts - ts[0]
        self.span = float(self.rel[-1]) if len(self.rel) else 0.0
        self.records = frame.to_dict("records")
        self.cursor = 0
        self.started: float | None = None
        self.max_lag_s = 0.0
        self.sent = 0
        self.outstanding = 0  # handed to a user, not yet sent

    def __len__(self) -> int:
        return len(self.records)

    @property
    def exhausted(self) -> bool:
        return self.cursor >= len(self.records)

    def next(self) -> tuple[float, dict[str, Any]] | None:
        """(wall-clock time it is due at, event) or None when the file is exhausted."""
        if self.exhausted:
            return None
        if self.started is None:
            self.started = time.time()
        i = self.cursor
        self.cursor += 1
        self.outstanding += 1
        row = self.records[i]
        due = self.started + (self.rel[i] / self.speed if self.speed > 0 else 0.0)
        # The file's last event (within reach) is stamped with the start time; nothing lands in the future.
        ts = self.started - self.span + float(self.rel[i])
        user = f"{self.run_tag}-{row['user_id']}"[:128]
        eid = _clean(row.get("event_id"))
        event = {"user_id": user, "ts": _ms(ts), "event_id": f"{self.run_tag}-{eid if eid else i}"[:128],
                 **_record(row)}
        return due, event

    def mark_sent(self, lag_s: float) -> None:
        """An event went out `lag_s` after it was due (the generator fell behind when this grows)."""
        self.sent += 1
        self.outstanding -= 1
        self.max_lag_s = max(self.max_lag_s, lag_s)

    @property
    def finished(self) -> bool:
        return self.exhausted and self.outstanding == 0


def load_replay(path: str, mapping: str | None, speed: float, run_tag: str,
                run_time_s: float | None = None) -> ReplaySchedule:
    from seqguard.io import load_mapping, read_events

    frame, _report = read_events(path, load_mapping(mapping) if mapping else None, on_error="skip")
    return ReplaySchedule(frame, speed, run_tag, run_time_s)


# ---------------------------------------------------------------------------------------------------------------------
# Raw Triton: the tensors the service would send, built by the shared encoder


def triton_batches(pool: AccountPool, repo: str, attack_share: float, entities: int, count: int = 64) -> list[
    dict[str, np.ndarray]
]:
    """`count` padded input batches of `entities` windows each, encoded by seqguard.features.encode_window (the
    service's own encoder), so raw Triton sees exactly the tensors the service would send it."""
    from seqguard.features import encode_window, pad_batch
    from seqguard.manifest import Manifest
    from seqguard.sequences import columns_from_records, window_start

    cfg = Manifest.load(repo).sequence_config_model()
    now = time.time()
    batches = []
    for _ in range(count):
        encoded = []
        for _ in range(entities):
            account = pool.pick(attack_share)
            cols = columns_from_records(account.events("triton", now))
            encoded.append(encode_window(cols.slice(window_start(cols.ts, len(cols), cfg), len(cols)), cfg))
        batches.append(pad_batch(encoded))
    return batches
