"""The synthetic traffic generator, its CLI command and the realism statistics (small configs only: fast)."""

from __future__ import annotations

import math
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from seqguard.cli import main
from seqguard.events import EVENT_FIELDS, EVENT_TYPES, ID_FIELDS, Event
from seqguard.generator import LABELS, SCENARIOS, GeneratedData, GeneratorConfig, generate
from seqguard.io import read_events
from seqguard.realism import compare_markdown, realism_stats

# Raised prevalences so that a small population still holds a few attackers of every scenario.
RAISED = {name: {"prevalence": 0.02} for name in SCENARIOS}
DAY = 86400.0


@cache
def _data(seed: int = 11, users: int = 2000, days: int = 3) -> GeneratedData:
    return generate(GeneratorConfig(users=users, days=days, seed=seed, **RAISED))


@pytest.fixture(scope="module")
def data() -> GeneratedData:
    return _data()


def test_same_seed_gives_identical_frames() -> None:
    cfg = GeneratorConfig(users=400, days=2, seed=5)
    a, b = generate(cfg), generate(cfg)
    pd.testing.assert_frame_equal(a.events, b.events)
    pd.testing.assert_frame_equal(a.users, b.users)


def test_different_seeds_differ() -> None:
    a = generate(GeneratorConfig(users=400, days=2, seed=5))
    b = generate(GeneratorConfig(users=400, days=2, seed=6))
    assert len(a.events) != len(b.events) or not a.events["ts"].equals(b.events["ts"])
    assert set(a.users["user_id"]).isdisjoint(set(b.users["user_id"])) or not a.users.equals(b.users)


def test_every_scenario_present(data: GeneratedData) -> None:
    ev, us = data.events, data.users
    for name in SCENARIOS:
        assert (us["scenario"] == name).sum() >= 10, name
        assert (ev["scenario"] == name).sum() > 0, name
    assert set(ev["scenario"].unique()) == set(LABELS)
    # Defaults: 5-8 % of users are attackers.
    default = generate(GeneratorConfig(users=3000, days=1, seed=1))
    assert 0.05 <= default.users["is_anomaly"].mean() <= 0.08


def test_frame_contract(data: GeneratedData) -> None:
    ev = data.events
    assert list(ev.columns) == [*EVENT_FIELDS, "is_anomaly", "scenario"]
    assert ev["ts"].dtype == np.float64
    assert ev["price"].dtype == np.float64
    assert str(ev["quantity"].dtype) == "Int64"
    assert ev["is_anomaly"].dtype == bool
    for col in (*ID_FIELDS, "event_type", "payment_status", "text", "scenario"):
        assert ev[col].dtype == object, col
        kinds = set(ev[col].map(type).unique())
        assert kinds <= {str, type(None)}, (col, kinds)
    for col in ("user_id", "event_id", "session_id", "event_type", "device_id", "ip", "country", "scenario"):
        assert ev[col].notna().all(), col
    assert ev["event_id"].is_unique
    assert ev["ts"].is_monotonic_increasing
    start = data.config.start.timestamp()
    assert ev["ts"].min() >= start and ev["ts"].max() < start + data.config.days * DAY
    assert set(ev["event_type"].unique()) <= set(EVENT_TYPES)
    pay = ev["event_type"] == "payment_attempt"
    assert ev.loc[pay, "payment_status"].isin(["success", "failed"]).all()
    assert ev.loc[~pay, "payment_status"].isna().all()
    assert ev.loc[pay, "price"].gt(0).all()
    assert ev.loc[ev["event_type"] == "search", "text"].notna().all()
    assert ev.loc[ev["event_type"] == "review", "text"].notna().all()
    assert ev.loc[ev["event_type"] == "coupon_redeem", "coupon_code"].notna().all()
    buy = ev["event_type"] == "purchase"
    assert ev.loc[buy, "item_id"].notna().all() and ev.loc[buy, "quantity"].ge(1).all()
    assert list(data.users.columns) == ["user_id", "is_anomaly", "scenario", "first_seen"]
    assert data.users["user_id"].is_unique


def _record(row: pd.Series) -> dict[str, object]:
    out: dict[str, object] = {}
    for k in EVENT_FIELDS:
        v = row[k]
        out[k] = None if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)) else v
    if out["quantity"] is not None:
        out["quantity"] = int(out["quantity"])  # type: ignore[call-overload]
    return out


def test_rows_are_valid_events(data: GeneratedData) -> None:
    ev = data.events
    # A random sample plus a few rows of every event type, so rare types are checked too.
    sample = pd.concat([ev.sample(400, random_state=0), ev.groupby("event_type").head(5)])
    for _, row in sample.iterrows():
        e = Event.model_validate(_record(row))
        assert e.epoch == pytest.approx(row["ts"], abs=1e-3)


def test_labels_are_consistent(data: GeneratedData) -> None:
    ev, us = data.events, data.users
    assert (ev["is_anomaly"] == (ev["scenario"] != "normal")).all()
    assert (us["is_anomaly"] == (us["scenario"] != "normal")).all()
    scen = us.set_index("user_id")["scenario"]
    attack = ev[ev["is_anomaly"]]
    # An attack event belongs to an attacker of that very scenario...
    assert (scen.loc[attack["user_id"]].to_numpy() == attack["scenario"].to_numpy()).all()
    # ...every attacker has attack events, and most attackers also have normal-looking events of their own.
    attackers = set(us.loc[us["is_anomaly"], "user_id"])
    assert set(attack["user_id"]) == attackers
    mixed = set(ev.loc[~ev["is_anomaly"], "user_id"]) & attackers
    assert len(mixed) > 0.4 * len(attackers)
    assert set(us["user_id"]) == set(ev["user_id"])
    first = ev.groupby("user_id")["ts"].min()
    assert np.allclose(us.set_index("user_id")["first_seen"], first.loc[us["user_id"]])


def _of(ev: pd.DataFrame, scenario: str) -> pd.DataFrame:
    return ev[ev["scenario"] == scenario]


def test_scenario_signatures(data: GeneratedData) -> None:
    ev = data.events
    normal = _of(ev, "normal")
    # card testing: many declined small payments
    ct = _of(ev, "card_testing")
    ct_pay = ct[ct["event_type"] == "payment_attempt"]
    assert (ct_pay["payment_status"] == "failed").mean() > 0.5
    assert ct_pay["price"].median() < 10
    normal_pay = normal[normal["event_type"] == "payment_attempt"]
    assert 0 < (normal_pay["payment_status"] == "failed").mean() < 0.1  # genuine declines exist, rarely
    # coupon abuse: coupons redeemed by several accounts on one device
    ca = _of(ev, "coupon_abuse")
    redeem = ca[ca["event_type"] == "coupon_redeem"]
    assert redeem.groupby("device_id")["user_id"].nunique().max() >= 3
    assert (normal["event_type"] == "coupon_redeem").any()  # legit coupon use exists too
    # brushing: purchases with next to no browsing, rings sharing devices
    br = _of(ev, "brushing")
    counts = br["event_type"].value_counts()
    assert counts.get("purchase", 0) > 0 and counts.get("view", 0) < 3 * counts["purchase"]
    assert br.groupby("device_id")["user_id"].nunique().max() >= 2
    # account takeover: a device the owner never used in their own sessions, a changed password or address
    ato = _of(ev, "account_takeover")
    own = set(zip(normal["user_id"], normal["device_id"], strict=True))
    assert not any((u, d) in own for u, d in zip(ato["user_id"], ato["device_id"], strict=True))
    assert ato["event_type"].isin(["password_change", "address_change"]).any()
    assert ato.loc[ato["event_type"] == "purchase", "price"].median() > normal.loc[
        normal["event_type"] == "purchase", "price"].median()
    # click farm: long runs of views with short, regular gaps
    bot = _of(ev, "click_farm_bot")
    assert (bot["event_type"] == "view").mean() > 0.9
    gaps = bot.sort_values(["session_id", "ts"]).groupby("session_id")["ts"].diff().dropna()
    assert gaps.median() < 15
    # scalping: repeated add_to_cart of the same item within a session
    sc = _of(ev, "scalping")
    carts = sc[sc["event_type"] == "add_to_cart"].groupby(["session_id", "item_id"]).size()
    assert carts.max() >= 3
    # review spam: reviews of items the account never bought, with repeated texts
    rs = _of(ev, "review_spam")
    reviews = rs[rs["event_type"] == "review"]
    bought = set(zip(ev.loc[ev["event_type"] == "purchase", "user_id"],
                     ev.loc[ev["event_type"] == "purchase", "item_id"], strict=True))
    assert not any(k in bought for k in zip(reviews["user_id"], reviews["item_id"], strict=True))
    assert reviews.groupby("user_id")["text"].agg(lambda t: t.value_counts().max()).max() >= 3


def test_normal_traffic_looks_like_shopping(data: GeneratedData) -> None:
    ev = data.events
    normal = _of(ev, "normal")
    share = normal["event_type"].value_counts(normalize=True)
    assert share["view"] > 0.7
    assert share["view"] > share["add_to_cart"] > share["purchase"]
    for kind in ("favorite", "search", "review", "login", "logout", "payment_attempt", "remove_from_cart"):
        assert share.get(kind, 0) > 0, kind
    # Diurnal rhythm in shop time (UTC+8): the evening is much busier than the small hours.
    hour = ((normal["ts"] / 3600 + 8) % 24).astype(int)
    assert (hour == 21).mean() > 3 * (hour == 4).mean()
    # Accounts keep signing up during the period, so a fresh account is no proof of fraud.
    us = data.users
    start = data.config.start.timestamp()
    late = us["first_seen"] > start + DAY
    assert late[~us["is_anomaly"]].sum() >= 20
    # Shoppers come back on several devices and IPs now and then.
    per_user = normal.groupby("user_id").agg(dev=("device_id", "nunique"), ip=("ip", "nunique"))
    assert (per_user["dev"] >= 2).mean() > 0.1 and (per_user["ip"] >= 2).mean() > 0.1


def test_attacks_spread_over_days_and_hours(data: GeneratedData) -> None:
    ev = data.events
    start = data.config.start.timestamp()
    day = ((ev["ts"] - start) // DAY).astype(int)
    attack_day_share = ev["is_anomaly"].groupby(day).mean()
    assert len(attack_day_share) == data.config.days and (attack_day_share > 0).all()
    hour = ((ev["ts"] / 3600 + 8) % 24).astype(int)
    assert ev.loc[ev["is_anomaly"], "ts"].groupby(hour[ev["is_anomaly"]]).size().size >= 20


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"click_farm_bot": {"prevalence": -0.1}}, "click_farm_bot.prevalence"),
        ({"brushing": {"prevalence": 1.5}}, "brushing.prevalence"),
        ({"scalping": {"intensity": 0}}, "scalping.intensity"),
        ({"users": 0}, "users"),
        ({"days": -1}, "days"),
        ({"colour": "red"}, "colour"),
        ({"start": "2026-10-05T00:00:00"}, "start"),
    ],
)
def test_config_errors_name_the_field(overrides: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        GeneratorConfig.model_validate(overrides)
    assert field in {".".join(map(str, e["loc"])) for e in info.value.errors()}


def test_prevalences_must_not_exceed_one() -> None:
    with pytest.raises(ValidationError, match="prevalence"):
        GeneratorConfig.model_validate({name: {"prevalence": 0.2} for name in SCENARIOS})
    cfg = GeneratorConfig.model_validate({"brushing": {"intensity": 2.0}})
    assert cfg.brushing.prevalence == GeneratorConfig().brushing.prevalence  # a missing prevalence keeps its default


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_cli_writes_files(tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str) -> None:
    out = tmp_path / "gen"
    rc = main(["generate", "--users", "300", "--days", "2", "--seed", "3", "--out", str(out), "--format", fmt])
    assert rc == 0
    printed = capsys.readouterr().out
    for label in LABELS:
        assert label in printed
    assert "elapsed" in printed
    frame, report = read_events(out / f"events.{fmt}", on_error="fail")
    expected = generate(GeneratorConfig(users=300, days=2, seed=3)).events
    assert report.rows_skipped == 0 and len(frame) == len(expected)
    assert np.allclose(frame["ts"].to_numpy(), expected["ts"].to_numpy(), atol=1e-3)
    users = pd.read_parquet(out / "users.parquet") if fmt == "parquet" else pd.read_csv(out / "users.csv")
    assert len(users) == 300 and set(users.columns) == {"user_id", "is_anomaly", "scenario", "first_seen"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--users", "0"], "--users"),
        (["--users", "-5"], "--users"),
        (["--days", "0"], "--days"),
        (["--format", "xlsx"], "--format"),
        (["--start", "yesterday"], "--start"),
    ],
)
def test_cli_bad_args(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str) -> None:
    rc = main(["generate", "--out", str(tmp_path / "o"), *args])
    err = capsys.readouterr().err
    assert rc == 2
    assert message in err and "Traceback" not in err


def test_cli_unwritable_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    rc = main(["generate", "--users", "50", "--days", "1", "--out", str(blocker / "sub")])
    err = capsys.readouterr().err
    assert rc == 2 and "--out" in err and "Traceback" not in err
    rc = main(["generate", "--users", "50", "--days", "1", "--out", str(blocker)])
    assert rc == 2 and "not a folder" in capsys.readouterr().err


def test_cli_non_numeric_users_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["generate", "--users", "many", "--out", str(tmp_path)])
    assert info.value.code == 2
    assert "--users" in capsys.readouterr().err


def test_realism_stats_on_generated(data: GeneratedData) -> None:
    stats = realism_stats(data.events[data.events["scenario"] == "normal"])
    assert stats.days == data.config.days
    assert 0.8 < stats.type_share["view"] < 0.95
    assert stats.per_active_day[50] >= 3
    assert 20 < stats.gaps[50] < 120
    assert stats.hour_share.sum() == pytest.approx(1.0)
    report = compare_markdown({"a": stats, "b": realism_stats(data.events)})
    assert "| pv share % |" in report and "total variation vs a" in report


def test_scenario_registry_is_complete() -> None:
    """Every scenario in SCENARIOS has a config field, a module documenting its signals, and a registered function."""
    import importlib

    from seqguard.generator.scenarios import _SCENARIO_FUNCS

    assert tuple(_SCENARIO_FUNCS) == SCENARIOS
    assert set(SCENARIOS) <= set(GeneratorConfig.model_fields)
    for name in SCENARIOS:
        module = importlib.import_module(f"seqguard.generator.scenarios.{name}")
        assert _SCENARIO_FUNCS[name].__module__ == module.__name__
        doc = module.__doc__ or ""
        for part in ("Signals it leaves", "- events:", "- sequences:", "- aggregates:"):
            assert part in doc, f"{module.__name__}: docstring lacks {part!r}"
