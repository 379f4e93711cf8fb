"""The evaluation suite's data sets: each an events frame with per-event `is_anomaly` / `scenario` labels.

- the generator with a seed no training default uses;
- the Taobao UserBehavior sample (real traffic) with `seqguard inject` attacks, one set per seed;
- the labelled real sets staged beside the project in ../shared/data (read their SOURCE.md): Bitcoin OTC (REV2
  labels, rater side only because incoming ratings leak the label) and Wikipedia VEWS (edits before the block only;
  the post-hoc revert / ClueBot / STiki columns are label leaks and never read), as staged (half vandals) and at
  10 % vandals.

A set whose folder is absent is reported as skipped with the reason, never an error: CI has no ../shared.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from seqguard.events import EVENT_FIELDS, ID_MAX_CHARS

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
MAPPINGS = Path(__file__).resolve().parents[1] / "data"


class SkipSet(Exception):
    """A set that cannot be built here (absent folder, too few labels); the message says why."""


@dataclass
class EvalSet:
    name: str
    frame: pd.DataFrame  # events with is_anomaly and scenario columns
    notes: list[str] = field(default_factory=list)
    entity_split: bool = False  # needs an entity split (a time split would leave the test days one-class)
    utc_offset_hours: float = 0.0


def _complete(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """All Event fields, through the same row validation as any events file."""
    from seqguard.io import validate_frame

    for c in EVENT_FIELDS:
        if c not in frame:
            frame[c] = np.nan if c == "price" else None
    frame = frame[[*EVENT_FIELDS, "is_anomaly", "scenario"]].reset_index(drop=True)
    good, _ = validate_frame(frame, np.arange(1, len(frame) + 1), "skip", source)
    return good


def generator_set(seed: int = 101, users: int = 1500, days: int = 7) -> EvalSet:
    from seqguard.generator import GeneratorConfig, generate

    data = generate(GeneratorConfig(users=users, days=days, seed=seed))
    return EvalSet(f"generator_seed{seed}", data.events,
                   [f"{users} users x {days} days, seed {seed} (the demo model uses seed 0)"], utc_offset_hours=8.0)


def taobao_injected(seed: int, rate: float = 0.05, root: Path = SHARED) -> EvalSet:
    from seqguard.inject import inject
    from seqguard.io import load_mapping, read_events

    path = root / "taobao_userbehavior" / "UserBehavior_user_sorted.csv"
    if not path.is_file():
        raise SkipSet(f"{path} is absent")
    frame, _ = read_events(path, load_mapping(MAPPINGS / "taobao_userbehavior.yaml"))
    res = inject(frame, rate=rate, seed=seed)
    injected = ", ".join(f"{s} {int(r['entities'])}" for s, r in res.injected.iterrows())
    notes = [f"real Taobao traffic ({frame['user_id'].nunique()} users) + "
             f"`seqguard inject --rate {rate} --seed {seed}`: {injected}"]
    notes += [f"skipped {s}: {why}" for s, why in res.skipped.items()]
    return EvalSet(f"taobao_inject_seed{seed}", res.events, notes, utc_offset_hours=8.0)


def bitcoin_otc(root: Path = SHARED) -> EvalSet:
    path = root / "bitcoin_otc_rev2" / "ratings_labeled.csv"
    if not path.is_file():
        raise SkipSet(f"{path} is absent")
    raw = pd.read_csv(path)
    # Rater side only: the labels come from ratings users received, so incoming ratings would leak them.
    raw = raw[raw["rater_is_fraud"].notna()]
    frame = pd.DataFrame({
        "user_id": raw["rater_id"].astype(str),
        "ts": raw["time_unix"].astype(float),
        "event_type": "review",
        "item_id": raw["ratee_id"].astype(str),
        # The rating is the only number: as a "price" 1..21 it lands in the price buckets (negative = low).
        "price": raw["rating"].astype(float) + 11.0,
        "is_anomaly": raw["rater_is_fraud"].astype(int).astype(bool),
        "scenario": np.where(raw["rater_is_fraud"] == 1, "fraud", "normal"),
    })
    notes = [f"rater-side ratings of the {frame['user_id'].nunique()} labelled raters "
             f"({int(frame.groupby('user_id')['is_anomaly'].first().sum())} fraudulent); unlabelled users left out; "
             "incoming ratings not used (label leak)"]
    return EvalSet("bitcoin_otc", _complete(frame, str(path)), notes, entity_split=True)


def wikipedia_vews(root: Path = SHARED, users: int = 2000, seed: int = 0,
                   vandal_share: float | None = None) -> EvalSet:
    """`users` accounts drawn at random, or, with `vandal_share`, that share of them vandals and the rest benign: the
    staged sample is half vandals by construction, far from an abuse base rate, and its SOURCE.md suggests
    subsampling one class to test imbalance."""
    folder = root / "wikipedia_vews_vandals"
    if not (folder / "edits.csv").is_file():
        raise SkipSet(f"{folder / 'edits.csv'} is absent")
    cols = ["username", "revtime", "pagetitle", "is_vandal_user"]  # never isReverted / cluebot / stiki: leaks
    raw = pd.read_csv(folder / "edits.csv", usecols=cols, dtype={"username": str, "pagetitle": str})
    blocked = pd.read_csv(folder / "users.csv", usecols=["username", "blocked_time"], dtype=str)
    rng = np.random.default_rng(seed)
    name = "wikipedia_vews"
    if vandal_share is None:
        names = raw["username"].unique()
        keep = set(rng.choice(names, min(users, len(names)), replace=False))
        drawn = f"{len(keep)} users sampled (seed {seed}) of the {len(names):,}"
    else:
        label = raw.groupby("username", sort=True)["is_vandal_user"].first()
        vandals, benign = label.index[label == 1].to_numpy(), label.index[label == 0].to_numpy()
        n_vandal = round(users * vandal_share)
        if n_vandal > len(vandals) or users - n_vandal > len(benign):
            raise SkipSet(f"{users} users at {vandal_share:.0%} vandals needs {n_vandal} vandals and "
                          f"{users - n_vandal} benign users; the folder holds {len(vandals)} and {len(benign)}")
        keep = (set(rng.choice(vandals, n_vandal, replace=False))
                | set(rng.choice(benign, users - n_vandal, replace=False)))
        name = f"wikipedia_vews_{round(100 * vandal_share)}pct"
        drawn = (f"{n_vandal} vandals and {users - n_vandal} benign users sampled (seed {seed}): {vandal_share:.0%} "
                 f"vandals instead of the staged {len(vandals) / len(label):.0%}, nearer an abuse base rate")
    raw = raw[raw["username"].isin(keep)]
    ts = pd.to_datetime(raw["revtime"], utc=True)
    block = pd.to_datetime(raw["username"].map(blocked.set_index("username")["blocked_time"]).replace("-", None),
                           utc=True, errors="coerce")
    before = block.isna() | (ts < block)  # score only what was known before the block
    raw, ts = raw[before.to_numpy()], ts[before.to_numpy()]
    title = raw["pagetitle"].fillna("")
    ns = title.str.extract(r"^([A-Za-z ]+(?: talk)?):", expand=False).fillna("Main")
    frame = pd.DataFrame({
        "user_id": raw["username"].str.slice(0, ID_MAX_CHARS),
        "ts": ts.astype("int64").to_numpy() / 1e9,
        "event_type": "review",
        "item_id": title.str.slice(0, ID_MAX_CHARS),
        "category_id": ns,
        "is_anomaly": raw["is_vandal_user"].astype(bool).to_numpy(),
        "scenario": np.where(raw["is_vandal_user"] == 1, "vandal", "normal"),
    })
    notes = [f"{drawn}; edits after a user's block dropped; revert / ClueBot / STiki columns not used (label leaks)"]
    return EvalSet(name, _complete(frame, str(folder)), notes, entity_split=True)


SETS: dict[str, Callable[[Path], EvalSet]] = {
    "taobao_inject_1": lambda root: taobao_injected(1, root=root),
    "taobao_inject_2": lambda root: taobao_injected(2, root=root),
    "bitcoin_otc": bitcoin_otc,
    "wikipedia_vews": wikipedia_vews,
    "wikipedia_vews_10pct": lambda root: wikipedia_vews(root, vandal_share=0.1),
    "generator": lambda root: generator_set(),
}
