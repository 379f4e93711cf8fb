"""`seqguard inject`: attacks of the generator's scenarios mixed into "real" traffic (here: generated normal traffic
stripped of its labels, cut down the way real captures are), with a labels table."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from seqguard.cli import main
from seqguard.events import EVENT_FIELDS
from seqguard.generator import SCENARIOS, GeneratorConfig, generate
from seqguard.inject import REQUIRED_TYPES, InjectError, inject
from seqguard.io import read_events, write_events

NO_ATTACKS = {name: {"prevalence": 0.0} for name in SCENARIOS}


@cache
def _normal(seed: int = 3) -> pd.DataFrame:
    """Normal shoppers only, labels dropped, timestamps in whole seconds (as many real logs are)."""
    ev = generate(GeneratorConfig(users=400, days=3, seed=seed, **NO_ATTACKS)).events
    ev = ev.drop(columns=["is_anomaly", "scenario"])
    ev["ts"] = np.floor(ev["ts"])
    return ev.reset_index(drop=True)


def _view_cart_buy() -> pd.DataFrame:
    """A Taobao-like log: views, carts, favourites and purchases only, no device / ip / price / session columns."""
    ev = _normal().copy()
    ev = ev[ev["event_type"].isin(["view", "add_to_cart", "favorite", "purchase"])]
    for c in ("event_id", "session_id", "price", "quantity", "device_id", "ip", "payment_status", "coupon_code",
              "text"):
        ev[c] = np.nan if c == "price" else None
    return ev.reset_index(drop=True)


def test_all_scenarios_on_full_traffic_with_labels_table() -> None:
    real = _normal()
    res = inject(real, SCENARIOS, rate=0.05, seed=1)
    assert not res.skipped
    assert list(res.injected.index) == list(SCENARIOS)
    ev, lab = res.events, res.labels
    # The real rows are all there, unchanged, and labelled normal.
    back = ev[~ev["is_anomaly"]].drop(columns=["is_anomaly", "scenario"])
    key = ["user_id", "ts", "event_type", "event_id"]
    pd.testing.assert_frame_equal(back.sort_values(key).reset_index(drop=True)[list(EVENT_FIELDS)],
                                  real.sort_values(key).reset_index(drop=True)[list(EVENT_FIELDS)],
                                  check_dtype=False)
    # The labels table: one row per entity, 0/1, and exactly the entities that hold attack events are positive.
    assert lab["entity_id"].is_unique and set(lab["label"]) == {0, 1}
    assert set(lab["entity_id"]) == set(ev["user_id"])
    attackers = set(ev.loc[ev["is_anomaly"], "user_id"])
    assert set(lab.loc[lab["label"] == 1, "entity_id"]) == attackers
    by_entity = ev[ev["is_anomaly"]].groupby("user_id")["scenario"].agg(lambda s: s.value_counts().index[0])
    assert (lab.set_index("entity_id").loc[list(attackers), "scenario"] == by_entity[list(attackers)]).all()
    # About the asked rate of the real entities; hosted scenarios run on real accounts, rings on new ones.
    n_real = real["user_id"].nunique()
    assert abs(len(attackers) - 0.05 * n_real) <= len(SCENARIOS)
    hosted = res.injected["hosted"]
    assert hosted["account_takeover"] == res.injected.loc["account_takeover", "entities"]
    assert hosted["brushing"] == 0 and hosted["coupon_abuse"] == 0
    assert set(lab.loc[lab["scenario"] == "account_takeover", "entity_id"]) <= set(real["user_id"])
    # Attack rows use the real catalogue and stay in the capture's period and resolution.
    att = ev[ev["is_anomaly"]]
    assert set(att["item_id"].dropna()) <= set(real["item_id"].dropna())
    assert set(att["category_id"].dropna()) <= set(real["category_id"].dropna())
    assert att["ts"].between(real["ts"].min(), real["ts"].max()).all()
    assert (att["ts"] == np.round(att["ts"])).all()
    assert att["event_id"].notna().all() and not set(att["event_id"]) & set(real["event_id"])


def test_scenarios_needing_absent_event_types_are_skipped_with_a_note() -> None:
    real = _view_cart_buy()
    res = inject(real, SCENARIOS, rate=0.05, seed=2)
    assert set(res.skipped) == {"account_takeover", "card_testing", "coupon_abuse", "review_spam"}
    assert "login" in res.skipped["account_takeover"] and "payment_attempt" in res.skipped["card_testing"]
    assert list(res.injected.index) == ["click_farm_bot", "brushing", "scalping"]
    att = res.events[res.events["is_anomaly"]]
    assert set(att["event_type"]) <= {"view", "add_to_cart", "favorite", "purchase"}
    # Columns no real row fills stay empty: an attack must not be told apart by a column.
    for c in ("event_id", "session_id", "price", "quantity", "device_id", "ip", "text"):
        assert att[c].isna().all(), c
    assert any("never fills" in n for n in res.notes) and any("left out" in n for n in res.notes)
    for name in res.skipped:
        assert all(t in res.skipped[name] for t in REQUIRED_TYPES[name] if t not in set(real["event_type"]))


def test_attacks_follow_the_data_s_own_hour_of_day() -> None:
    real = _view_cart_buy()
    # A shop whose traffic all falls between 08:00 and 14:00 UTC.
    real = real.assign(ts=np.floor(real["ts"] / 86400) * 86400 + 8 * 3600 + (real["ts"] % 86400) % (6 * 3600))
    res = inject(real, ["click_farm_bot", "brushing", "scalping"], rate=0.1, seed=4)
    att = res.events[res.events["is_anomaly"]]
    first = att.groupby("user_id")["ts"].min()
    hours = (first % 86400) // 3600
    assert ((hours >= 8) & (hours < 14)).mean() > 0.8


def test_same_seed_same_output_other_seed_differs() -> None:
    real = _view_cart_buy()
    a = inject(real, ["brushing", "scalping"], rate=0.05, seed=7)
    b = inject(real, ["brushing", "scalping"], rate=0.05, seed=7)
    c = inject(real, ["brushing", "scalping"], rate=0.05, seed=8)
    pd.testing.assert_frame_equal(a.events, b.events)
    pd.testing.assert_frame_equal(a.labels, b.labels)
    assert not a.events[a.events["is_anomaly"]]["ts"].equals(c.events[c.events["is_anomaly"]]["ts"])


def test_nothing_injectable_is_an_error() -> None:
    real = _view_cart_buy()
    with pytest.raises(InjectError, match="review_spam needs event type"):
        inject(real, ["review_spam"], seed=0)
    with pytest.raises(InjectError, match="unknown scenario"):
        inject(real, ["sql_injection"], seed=0)


def test_cli_writes_events_labels_and_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = write_events(_view_cart_buy(), tmp_path / "real.csv")
    out = tmp_path / "out"
    rc = main(["inject", "--events", str(src), "--scenarios", "brushing,scalping", "review_spam",
               "--rate", "0.05", "--seed", "3", "--out", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "skipped review_spam: needs event type(s) review" in text
    events, report = read_events(out / "events.parquet")
    assert report.rows_skipped == 0 and events["is_anomaly"].any()
    labels = pd.read_csv(out / "labels.csv", dtype={"entity_id": str})
    assert list(labels.columns) == ["entity_id", "label", "scenario"]
    assert set(labels.loc[labels["label"] == 1, "entity_id"]) == set(events.loc[events["is_anomaly"], "user_id"])
    summary = json.loads((out / "inject.json").read_text())
    assert set(summary["injected"]) == {"brushing", "scalping"} and "review_spam" in summary["skipped"]


@pytest.mark.parametrize("argv, message", [
    (["--scenarios", "phishing"], "--scenarios: unknown phishing"),
    (["--rate", "0.7"], "--rate must lie in (0, 0.5)"),
    (["--rate", "0"], "--rate must lie in (0, 0.5)"),
    (["--format", "xls"], "--format: unknown format"),
    (["--scenarios", "review_spam"], "no scenario can be injected"),
])
def test_cli_bad_input_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str],
                               message: str) -> None:
    src = write_events(_view_cart_buy(), tmp_path / "real.csv")
    rc = main(["inject", "--events", str(src), "--out", str(tmp_path / "o"), *argv])
    assert rc == 2
    assert message in capsys.readouterr().err


def test_cli_missing_events_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["inject", "--events", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "o")])
    assert rc == 2 and "does not exist" in capsys.readouterr().err


def test_labels_table_joins_with_seqguard_labels(tmp_path: Path) -> None:
    """The labels table is what `train --labels` reads: seqguard.labels loads and joins it onto the events."""
    from seqguard.labels import join_labels, load_labels

    res = inject(_view_cart_buy(), ["brushing", "scalping"], rate=0.05, seed=5)
    res.labels.to_csv(tmp_path / "labels.csv", index=False)
    labels = load_labels(tmp_path / "labels.csv")
    joined, _ = join_labels(res.events.drop(columns=["is_anomaly", "scenario"]), labels)
    positive = set(joined.loc[joined["is_anomaly"], "user_id"])
    assert positive == set(res.events.loc[res.events["is_anomaly"], "user_id"])
    assert set(joined.loc[joined["is_anomaly"], "scenario"]) == {"brushing", "scalping"}
