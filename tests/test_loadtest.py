"""Load tests: SLO files and gates, capacity planning, payloads, and real bounded locust runs against a real service.

The fast tests check the pieces; the slow ones run `seqguard loadtest` end to end (a real `bentoml serve` on the
tiny repository, a real tritonserver for the raw-Triton and fault runs). Every run is a few seconds long.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from seqguard.cli import main
from seqguard.infra.loadtest.capacity import CapacityError, CapacityResult, analyse, plan
from seqguard.infra.loadtest.fault import FaultTimes
from seqguard.infra.loadtest.fault import analyse as analyse_fault
from seqguard.infra.loadtest.payloads import AccountPool, ReplaySchedule, accounts_from_frame, score_batch, stream
from seqguard.infra.loadtest.runner import parse_duration
from seqguard.infra.loadtest.settings import LoadSettings, LoadSettingsError, expected_endpoints
from seqguard.infra.loadtest.slo import SLO, SLOError, evaluate, load_slo, table
from tests.support import REPO, free_port, start_service, tcp_open

SMOKE_SLO = str(REPO / "infra/slo.smoke.yaml")


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def figures(requests: int = 100, failures: int = 0, rps: float = 10.0, p50: float = 10.0, p95: float = 50.0,
            p99: float = 90.0) -> dict[str, Any]:
    return {"requests": requests, "failures": failures, "error_rate": failures / requests if requests else 0.0,
            "rps": rps, "p50_ms": p50, "p95_ms": p95, "p99_ms": p99, "avg_ms": p50, "max_ms": p99}


# ---------------------------------------------------------------------------------------------------------------------
# SLO files


def test_shipped_slo_files_load() -> None:
    real, smoke = load_slo(REPO / "infra/slo.yaml"), load_slo(SMOKE_SLO)
    for name in ("/events", "/score", "Aggregated", "triton:seqguard_ensemble"):
        assert name in real.endpoints and name in smoke.endpoints
    # The smoke gate is the more generous one, yet still has an error-rate and a latency ceiling everywhere.
    for name, limits in smoke.endpoints.items():
        assert limits.max_error_rate is not None and limits.max_error_rate <= 0.05
        strict = real.endpoints[name]
        if strict.p99_ms and limits.p99_ms:
            assert limits.p99_ms >= strict.p99_ms


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("endpoints: {/score: {p99_ms: -5}}", "endpoints./score.p99_ms: Input should be greater than 0"),
        ("endpoints: {/score: {p99: 5}}", "endpoints./score.p99: unknown key — did you mean 'p99_ms'?"),
        ("endpoints: {/score: {p50_ms: 300, p99_ms: 100}}", "p50_ms (300) must not exceed p99_ms (100)"),
        ("endpoints: {/score: {}}", "sets no threshold"),
        ("endpoints: {}", "endpoints: Dictionary should have at least 1 item"),
        ("endpoints: {/score: {max_error_rate: 2}}", "max_error_rate: Input should be less than or equal to 1"),
        ("- just\n- a list", "expected a mapping"),
        ("endpoints: {/score: [unclosed", "not valid YAML"),
        ("version: 2\nendpoints: {/score: {p99_ms: 5}}", "version: Input should be 1"),
    ],
)
def test_slo_validation_errors_are_clear(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path / "slo.yaml", text)
    with pytest.raises(SLOError) as e:
        load_slo(path)
    assert expected in str(e.value) and str(path) in str(e.value)
    with pytest.raises(SLOError, match="does not exist"):
        load_slo(tmp_path / "missing.yaml")


def test_slo_errors_reach_the_cli_before_anything_starts(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = write(tmp_path / "slo.yaml", "endpoints: {/events: {p95_ms: fast}}")
    code = main(["loadtest", "--slo", str(bad), "--host", "http://127.0.0.1:9", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "endpoints./events.p95_ms" in err and "valid number" in err
    assert not (tmp_path / "o").exists()


def test_evaluate_reports_every_violation() -> None:
    slo = SLO.model_validate({"endpoints": {
        "/events": {"p50_ms": 5, "p99_ms": 50, "max_error_rate": 0.01, "min_rps": 20},
        "/score": {"p99_ms": 100},
        "triton:seqguard_ensemble": {"p99_ms": 1},
        "Aggregated": {"max_error_rate": 0.0},
    }})
    measured = {"/events": figures(failures=3, rps=12, p50=8, p99=40), "/score": figures(p99=90),
                "Aggregated": figures(requests=200, failures=3)}
    verdict = evaluate(slo, measured, ["/events", "/score"])
    assert sorted(str(v) for v in verdict.violations) == [
        "/events error_rate 3.00% (allowed ≤ 1.00%)",
        "/events p50_ms 8.0 ms (allowed ≤ 5.0 ms)",
        "/events rps 12.0 rps (allowed ≥ 20.0 rps)",
        "Aggregated error_rate 1.50% (allowed ≤ 0.00%)",
    ]
    assert verdict.skipped == ["triton:seqguard_ensemble"]
    text = table(verdict, measured)
    assert "FAIL" in text and "/score" in text and "not exercised by this run: triton:seqguard_ensemble" in text
    # An endpoint the run should have exercised but never measured fails the gate.
    verdict = evaluate(slo, {"Aggregated": figures()}, ["/events", "/score"])
    assert {str(v) for v in verdict.violations} >= {"/events: no requests were measured",
                                                     "/score: no requests were measured"}
    assert evaluate(slo, measured, ["/events"], check_throughput=False, check_latency=False).violations[0].metric \
        == "error_rate"


def test_settings_round_trip_through_the_environment() -> None:
    s = LoadSettings(mode="service", attack_share=0.2, steps=(2, 4), stage_s=5, api_key="k", run_tag="t")
    assert LoadSettings.from_env(s.to_env()) == s
    assert expected_endpoints(s) == ["/events", "/score"]
    assert expected_endpoints(LoadSettings(mode="triton", repo="r")) == ["triton:seqguard_ensemble"]
    with pytest.raises(LoadSettingsError, match="SEQGUARD_LT_ATTACK_SHARE"):
        LoadSettings.from_env({"SEQGUARD_LT_ATTACK_SHARE": "1.5"})
    with pytest.raises(ValueError, match="replay_file"):
        LoadSettings(mode="replay")


@pytest.mark.parametrize(("text", "seconds"), [("60s", 60), ("2m", 120), ("1m30s", 90), ("45", 45), ("1h", 3600)])
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "0s", "-3s", "5x"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


# ---------------------------------------------------------------------------------------------------------------------
# Payloads


def test_payloads_are_shifted_to_now_keep_gaps_and_never_repeat_ids(tiny_events) -> None:
    accounts = accounts_from_frame(tiny_events, None, max_events=40)
    pool = AccountPool(accounts, seed=1)
    assert pool.attack, "the tiny data set has attackers"
    picks = [pool.pick(1.0) for _ in range(20)]
    assert all(a.is_attack for a in picks)
    assert all(not pool.pick(0.0).is_attack for _ in range(20))
    account = max(accounts, key=lambda a: len(a.bodies))
    before = time.time()
    steps = list(stream(account, "ent-1", pace=30, max_think_s=5))
    ts = np.array([e["ts"] for _, e in steps])
    assert ts.max() <= time.time() and ts.max() >= before - 1  # the last event is "now"
    np.testing.assert_allclose(np.diff(ts), np.diff(account.offsets), atol=2e-3)  # recorded gaps are kept
    thinks = np.array([t for t, _ in steps])
    assert thinks[0] == 0 and (thinks <= 5).all()
    np.testing.assert_allclose(thinks[1:], np.minimum(np.diff(account.offsets) / 30, 5), atol=1e-9)
    assert len({e["event_id"] for _, e in steps}) == len(steps)
    assert all(not (isinstance(v, float) and math.isnan(v)) for _, e in steps for v in e.values())
    events, kinds = score_batch(pool, 0.5, 6, "run", last=10)
    assert len(kinds) == 6 and {e["user_id"] for e in events} == set(kinds)
    assert set(kinds.values()) <= {"normal", "attack"}
    again, _ = score_batch(pool, 0.5, 6, "run", last=10)
    assert not {e["event_id"] for e in events} & {e["event_id"] for e in again}


def test_replay_schedule_keeps_order_and_pace(tiny_events) -> None:
    frame = tiny_events.head(200)
    schedule = ReplaySchedule(frame.iloc[::-1], speed=100.0, run_tag="rp")  # file order must not matter
    items = [schedule.next() for _ in range(len(schedule))]
    assert schedule.next() is None and schedule.exhausted and not schedule.finished
    dues = np.array([d for d, _ in items])
    ts = np.array([e["ts"] for _, e in items])
    assert (np.diff(ts) >= 0).all() and ts.max() <= time.time() + 1
    span = frame["ts"].max() - frame["ts"].min()
    assert dues[-1] - dues[0] == pytest.approx(span / 100.0, abs=1e-3)
    assert all(e["user_id"].startswith("rp-") and e["event_id"].startswith("rp-") for _, e in items)
    for _ in items:
        schedule.mark_sent(0.0)
    assert schedule.finished


# ---------------------------------------------------------------------------------------------------------------------
# Capacity planning


def step_stats(stages: list[tuple[int, float, float, int]]) -> dict[str, Any]:
    """(users, rps, p99 ms, failures) per stage, as the locustfile writes them."""
    out = []
    for i, (users, rps, p99, fails) in enumerate(stages):
        eps = {"/events": figures(requests=int(rps * 10), failures=fails, rps=rps, p50=p99 / 4, p95=p99 / 2, p99=p99)}
        eps["Aggregated"] = eps["/events"]
        out.append({"stage": i, "users": users, "window_s": 10.0, "endpoints": eps})
    return {"mode": "service", "host": "http://x", "expected_endpoints": ["/events"], "stages": out}


SLO_300 = SLO.model_validate({"endpoints": {"/events": {"p99_ms": 300, "max_error_rate": 0.01, "min_rps": 1000}}})


def test_capacity_picks_the_highest_throughput_meeting_the_slo() -> None:
    stats = step_stats([(5, 10, 50, 0), (10, 20, 80, 0), (20, 38, 250, 0), (40, 45, 900, 0), (80, 30, 200, 90)])
    result = analyse(stats, SLO_300)
    assert [s.meets_slo for s in result.stages] == [True, True, True, False, False]  # min_rps is not a stage gate
    assert result.best_stage == 2 and result.max_rps_meeting_slo == 38 and result.p99_at_max_ms == 250
    assert "error_rate" in result.stages[4].violations[0]
    none_pass = analyse(step_stats([(5, 10, 900, 0)]), SLO_300)
    assert none_pass.max_rps_meeting_slo is None
    with pytest.raises(CapacityError, match="no stage of the step run met the SLO"):
        plan(none_pass, 100)
    with pytest.raises(CapacityError, match="no stages"):
        analyse({"expected_endpoints": [], "stages": []}, SLO_300)


def test_capacity_plan_math() -> None:
    result = analyse(step_stats([(5, 10, 50, 0), (20, 40, 200, 0)]), SLO_300)
    p = plan(result, target_rps=100, headroom=0.3)
    # 40 rps measured, 30 % kept in reserve -> 28 rps per instance -> 1680 invocations / min; 100 rps -> 4 instances.
    assert p.target_invocations_per_instance_per_minute == 1680
    assert p.min_capacity == math.ceil(100 / 28) == 4 and p.max_capacity == 8
    assert p.measured_max_rps_per_instance == 40 and p.headroom == pytest.approx(0.7) and p.p99_latency_ms == 200
    small = plan(result, target_rps=5, headroom=0.5, burst_factor=3)
    assert (small.target_invocations_per_instance_per_minute, small.min_capacity, small.max_capacity) == (1200, 1, 3)
    assert plan(result, 0, 0.0).min_capacity == 1
    for bad in (1.0, -0.1):
        with pytest.raises(CapacityError, match="headroom"):
            plan(result, 10, bad)
    # A hand-edited plan file is held to the same max >= min rule as the deploy config.
    with pytest.raises(ValueError, match="must be ≥ min_capacity"):
        p.model_validate({**p.model_dump(), "min_capacity": 9, "max_capacity": 8})


def test_capacity_cli_writes_the_plan_deploy_reads(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from seqguard.infra.deploy.capacity_plan import CapacityPlan, load_capacity_plan

    result = analyse(step_stats([(5, 10, 50, 0), (20, 40, 200, 0)]), SLO_300)
    result.write(tmp_path / "capacity.json")
    assert CapacityResult.load(tmp_path / "capacity.json") == result
    out = tmp_path / "plan.json"
    assert main(["capacity", "--result", str(tmp_path / "capacity.json"), "--target-rps", "100", "--out",
                 str(out)]) == 0
    assert "min 4, max 8 instances" in capsys.readouterr().out
    loaded = load_capacity_plan(out)
    assert isinstance(loaded, CapacityPlan) and loaded.target_invocations_per_instance_per_minute == 1680
    assert set(json.loads(out.read_text())) <= set(CapacityPlan.model_fields)
    assert main(["capacity", "--result", str(tmp_path / "nope.json"), "--target-rps", "1"]) == 2
    write(tmp_path / "other.json", '{"kind": "something else"}')
    assert main(["capacity", "--result", str(tmp_path / "other.json"), "--target-rps", "1"]) == 2
    assert "not a capacity result" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------------------
# Fault analysis and argument checks


def test_fault_analysis_measures_recovery_from_triton_ready() -> None:
    times = FaultTimes(stop_at=100.0, stopped_at=100.5, restart_at=103.0, ready_at=105.0)
    stats = {"endpoints": {"Aggregated": figures()}, "server_errors_5xx": 0, "results": {"degraded_share": 0.2},
             "transitions": [(90.0, False), (100.2, True), (104.0, False), (104.5, True), (106.5, False)]}
    fault = analyse_fault(stats, times, max_recovery_s=5)
    assert fault["passed"] and fault["recovered_after_ready_s"] == 1.5 and fault["disruption_s"] == 6.5
    assert fault["first_degraded_after_stop_s"] == pytest.approx(0.2)
    stuck = analyse_fault({**stats, "transitions": [(100.2, True)], "server_errors_5xx": 2}, times, 5)
    assert not stuck["passed"] and any("5xx" in p for p in stuck["problems"])
    assert any("did not recover" in p for p in stuck["problems"])
    unseen = analyse_fault({**stats, "transitions": [(90.0, False)]}, times, 5)
    assert any("did not reach the clients" in p for p in unseen["problems"])
    slow = analyse_fault(stats, times, max_recovery_s=1)
    assert any("recovery took 1.5s" in p for p in slow["problems"])


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--host", "http://127.0.0.1:9", "--fault"], "drop --host"),
        (["--step", "4,x", "--host", "http://127.0.0.1:9"], "comma-separated"),
        (["--step", "2,4,8,16", "--duration", "10s", "--host", "http://127.0.0.1:9"], "under 5s per stage"),
        (["--mapping", "m.yaml", "--host", "http://127.0.0.1:9"], "--replay only"),
        (["--host", "127.0.0.1:3000"], "starts with http://"),
        ([], "--host URL, or --start-service"),
        (["--duration", "soon", "--host", "http://127.0.0.1:9"], "--duration"),
        (["--attack-share", "1.5", "--host", "http://127.0.0.1:9"], "--attack-share"),
        (["--start-service", "--repo", "/nonexistent"], "no manifest.json"),
    ],
)
def test_loadtest_argument_errors(extra: list[str], message: str, capsys: pytest.CaptureFixture) -> None:
    assert main(["loadtest", "--slo", SMOKE_SLO, *extra]) == 2
    assert message in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------------------
# Real runs (bounded: a few seconds each)


@pytest.fixture(scope="module")
def service(tiny_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server, url = start_service(tmp_path_factory.mktemp("lt_svc"), {"SEQGUARD_REPO": str(tiny_repo),
                                                                     "SEQGUARD_API_KEYS": ""})
    yield url
    server.stop()


def loadtest(*args: str) -> int:
    return main(["loadtest", "--spawn-rate", "10", "--pool-users", "300", *args])


@pytest.mark.slow
def test_smoke_run_passes_the_smoke_slo(service: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "smoke"
    code = loadtest("--slo", SMOKE_SLO, "--host", service, "--users", "8", "--duration", "10s",
                    "--attack-share", "0.3", "--out", str(out))
    printed = capsys.readouterr()
    assert code == 0, printed.out + printed.err
    assert "measured" in printed.out and "allowed" in printed.out and "SLO met" in printed.out
    report = json.loads((out / "loadtest.json").read_text())
    assert report["slo"]["passed"] and report["server_errors_5xx"] == 0
    for name in ("/events", "/score"):
        assert report["endpoints"][name]["requests"] > 0 and report["endpoints"][name]["failures"] == 0
    assert report["results"]["decisions"].get("attack"), "attack traffic reached the service"
    assert (out / "loadtest.html").stat().st_size > 1000 and (out / "loadtest_stats.csv").is_file()


@pytest.mark.slow
def test_impossible_slo_fails_naming_the_threshold(tiny_repo: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    impossible = write(tmp_path / "impossible.yaml", "endpoints:\n  /events: {p99_ms: 0.001}\n"
                       "  Aggregated: {max_error_rate: 0.02}\n")
    code = loadtest("--slo", str(impossible), "--start-service", "--repo", str(tiny_repo), "--users", "4",
                    "--duration", "6s", "--batch-weight", "0", "--out", str(tmp_path / "o"))
    printed = capsys.readouterr()
    assert code == 1, printed.out + printed.err
    assert "SLO violated: /events p99_ms" in printed.err and "allowed ≤ 0.001 ms" in printed.err
    assert "error_rate" not in printed.err  # only the threshold that was violated is named
    # The service it started is gone (stopped by PID at the end).
    port = int(next((tmp_path / "o/logs").glob("service-*.log")).stem.split("-")[1])
    assert not tcp_open(port)


@pytest.mark.slow
def test_broken_service_fails_the_gate_on_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    code = loadtest("--slo", SMOKE_SLO, "--host", dead, "--users", "4", "--duration", "4s",
                    "--out", str(tmp_path / "o"))
    err = capsys.readouterr().err
    assert code == 1
    assert "/events error_rate 100.00% (allowed ≤ 2.00%)" in err and "Aggregated error_rate" in err


@pytest.mark.slow
def test_replay_and_step_runs(service: str, tiny_events, tmp_path: Path,
                              capsys: pytest.CaptureFixture) -> None:
    from seqguard.infra.deploy.capacity_plan import load_capacity_plan
    from seqguard.io import write_events

    # A foreign file: renamed columns and a mapping, replayed as fast as the users can send.
    src = tiny_events.head(120).rename(columns={"user_id": "uid", "event_type": "action"})
    write_events(src, tmp_path / "events.csv")
    write(tmp_path / "map.yaml", "fields: {user_id: uid, ts: ts, event_type: action, event_id: event_id, "
          "item_id: item_id, price: price, payment_status: payment_status}\n")
    assert loadtest("--slo", SMOKE_SLO, "--host", service, "--replay", str(tmp_path / "events.csv"),
                    "--out", str(tmp_path / "bad")) == 2  # without the mapping: no user_id column
    assert "required column 'user_id' is missing" in capsys.readouterr().err
    code = loadtest("--slo", SMOKE_SLO, "--host", service, "--replay", str(tmp_path / "events.csv"), "--mapping",
                    str(tmp_path / "map.yaml"), "--speed", "0", "--users", "4", "--duration", "20s",
                    "--out", str(tmp_path / "replay"))
    printed = capsys.readouterr()
    assert code == 0, printed.out + printed.err
    report = json.loads((tmp_path / "replay/loadtest.json").read_text())
    assert report["replay"]["events_sent"] == 120 == report["endpoints"]["/events"]["requests"]
    assert report["replay"]["stopped_at_end_of_file"] is True  # the file ran out: it did not wait for --duration

    out = tmp_path / "step"
    code = loadtest("--slo", SMOKE_SLO, "--host", service, "--step", "2,6", "--duration", "12s",
                    "--batch-interval", "0.5", "--out", str(out))
    printed = capsys.readouterr()
    assert code == 0, printed.out + printed.err
    result = CapacityResult.load(out / "capacity.json")
    assert [s.users for s in result.stages] == [2, 6] and result.max_rps_meeting_slo
    assert all(s.rps > 0 for s in result.stages)  # both stages sent load (how much is for `make bench`)
    assert (out / "capacity.png").stat().st_size > 5000
    assert main(["capacity", "--result", str(out / "capacity.json"), "--target-rps", "50",
                 "--out", str(tmp_path / "plan.json")]) == 0
    assert load_capacity_plan(tmp_path / "plan.json").min_capacity >= 1


@pytest.mark.slow
def test_raw_triton_run(tiny_repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = loadtest("--slo", SMOKE_SLO, "--target", "triton", "--start-service", "--repo", str(tiny_repo),
                    "--users", "4", "--batch-interval", "0.05", "--duration", "5s", "--out", str(tmp_path / "o"))
    printed = capsys.readouterr()
    assert code == 0, printed.out + printed.err
    report = json.loads((tmp_path / "o/loadtest.json").read_text())
    tri = report["endpoints"]["triton:seqguard_ensemble"]
    assert tri["requests"] > 0 and tri["failures"] == 0  # how many is a benchmark figure, not a test
    assert report["slo"]["not_exercised"] == ["/events", "/score"]


@pytest.mark.slow
def test_fault_run_reports_zero_5xx_and_recovery(tiny_repo: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    code = loadtest("--slo", SMOKE_SLO, "--fault", "--repo", str(tiny_repo), "--users", "12", "--duration", "18s",
                    "--fault-at", "5", "--outage", "3", "--out", str(tmp_path / "o"))
    printed = capsys.readouterr()
    assert code == 0, printed.out + printed.err
    fault = json.loads((tmp_path / "o/loadtest.json").read_text())["fault"]
    assert fault["server_errors_5xx"] == 0 and fault["failures"] == 0
    assert fault["recovered_after_ready_s"] is not None  # how fast is measured in the bench
    assert 0 < fault["degraded_share"] < 1 and "model_backend_unavailable" in fault["degraded_reasons"]
    assert fault["outage_s"] >= 3
    assert "healthy again after Triton was ready" in printed.out
