"""Drift: the reference saved with a checkpoint, THE PSI function, the score log, the gauges and `seqguard drift`."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from seqguard.cli import main
from seqguard.drift import (
    DRIFT_REFERENCE_FILE,
    DRIFT_SAMPLE_FILE,
    PSI_ALERT,
    SCORE,
    Binning,
    DriftError,
    load_reference,
    psi,
)
from seqguard.features import FEATURE_NAMES
from seqguard.generator import GeneratorConfig, generate
from seqguard.service.score_log import DriftMonitor, LoopMetrics, ScoreLog, read_score_log

SHIFTED = {"activity": 3.0, "card_testing": {"prevalence": 0.15}, "click_farm_bot": {"prevalence": 0.1}}


def test_psi_is_small_for_the_same_distribution_and_large_for_a_shift() -> None:
    rng = np.random.default_rng(0)
    b = Binning.fit(rng.normal(size=5000))
    assert psi(b.expected, b.shares(rng.normal(size=3000))) < 0.02
    assert psi(b.expected, b.shares(rng.normal(0.8, 1, size=3000))) > PSI_ALERT
    # A zero-heavy count gets the bins {0} and (0, inf), not ten empty ones; a new share of non-zeros shows.
    counts = np.where(rng.uniform(size=5000) < 0.9, 0, rng.integers(1, 5, 5000))
    zb = Binning.fit(counts)
    assert len(zb.expected) <= 3 and zb.expected[0] == pytest.approx(0.9, abs=0.02)
    assert psi(zb.expected, zb.shares(np.where(rng.uniform(size=2000) < 0.6, 0, 3))) > PSI_ALERT
    with pytest.raises(DriftError):
        Binning.fit(np.array([np.nan]))


def test_the_checkpoint_and_the_repository_carry_the_reference(tiny_checkpoint: Path, tiny_repo: Path) -> None:
    from seqguard.manifest import verify_repository

    ref = load_reference(tiny_checkpoint)
    assert ref.features == list(FEATURE_NAMES) and SCORE in ref.bins and ref.windows > 0
    assert sum(ref.decision_rates.values()) == pytest.approx(1.0)
    assert sum(ref.score_hist) == pytest.approx(1.0)
    for name in (DRIFT_REFERENCE_FILE, DRIFT_SAMPLE_FILE):
        assert (tiny_repo / name).read_bytes() == (tiny_checkpoint / name).read_bytes()
    manifest = verify_repository(tiny_repo)  # pinned like every other file the service reads
    assert DRIFT_REFERENCE_FILE in manifest.files
    with pytest.raises(DriftError, match=r"no drift_reference\.json"):
        load_reference(tiny_checkpoint / "tokenizer")


def scored_day(models: Path, seed: int, **shift: Any) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """The last two days of a generated period (the reference is a late day of its period too: first days are
    full of first logins), scored with the checkpoint: features and service-shaped results per window."""
    from seqguard.compare import window_scores
    from seqguard.scoring.scorer import Scorer
    from seqguard.train.checkpoint import load_models
    from seqguard.train.loop import predict_logits

    frame = generate(GeneratorConfig(users=600, days=4, seed=seed, **shift)).events
    ws, _, _ = window_scores(models, frame)
    scorer, nets = Scorer.load(models), load_models(models)
    idx = np.flatnonzero(ws.day >= ws.day.min() + 2)
    decisions = scorer.score({n: predict_logits(nets[n], ws.encoded, idx) for n in scorer.components},
                             ws.features[idx])
    results = [{**d.to_dict(), "entity_id": e, "model_version": "m1", "n_events": 5}
               for d, e in zip(decisions, ws.entity[idx], strict=True)]
    return ws.features[idx], results


@pytest.fixture(scope="module")
def days(tiny_checkpoint: Path) -> dict[str, tuple[np.ndarray, list[dict[str, Any]]]]:
    return {"same": scored_day(tiny_checkpoint, 21), "shifted": scored_day(tiny_checkpoint, 21, **SHIFTED)}


def test_synthetic_drift_raises_psi_and_a_same_distribution_day_does_not(tiny_checkpoint: Path, days: Any) -> None:
    ref = load_reference(tiny_checkpoint)
    tables = {}
    for name, (feats, results) in days.items():
        tables[name] = ref.psi_table(feats, np.array([r["score"] for r in results]))
    same = {k: v for k, v in tables["same"].items() if k != SCORE}
    shifted = {k: v for k, v in tables["shifted"].items() if k != SCORE}
    assert max(same.values()) < PSI_ALERT, sorted(same.items(), key=lambda kv: -kv[1])[:5]
    assert tables["same"][SCORE] < PSI_ALERT
    assert max(shifted.values()) > PSI_ALERT
    assert sum(v > PSI_ALERT for v in shifted.values()) > sum(v > PSI_ALERT for v in same.values())


def gauge_values(registry: Any) -> dict[str, float]:
    out = {}
    for fam in registry.collect():
        for s in fam.samples:
            if s.name == "seqguard_feature_psi":
                out[s.labels["feature"]] = s.value
            elif s.name == "seqguard_score_psi":
                out[SCORE] = s.value
    return out


def test_score_log_feeds_the_gauges_with_the_same_psi(tiny_checkpoint: Path, days: Any, tmp_path: Path) -> None:
    from prometheus_client import CollectorRegistry

    ref = load_reference(tiny_checkpoint)
    for name, (feats, results) in days.items():
        registry = CollectorRegistry()
        metrics = LoopMetrics(registry)
        n = len(results)
        monitor = DriftMonitor(ref, window=n, min_rows=n, every=n, metrics=metrics)
        log = ScoreLog(str(tmp_path / name), "salt", metrics=metrics, monitor=monitor, flush_rows=10_000)
        for i in range(0, n, 50):  # requests of 50 windows
            assert log.record("/score", f"r{i}", "primary", list(feats[i:i + 50]), results[i:i + 50])
        log.close()
        gauges = gauge_values(registry)
        want = ref.psi_table(feats, np.array([r["score"] for r in results]))
        assert gauges == pytest.approx(want)
        assert (max(v for k, v in gauges.items() if k != SCORE) > PSI_ALERT) == (name == "shifted")
        frame = read_score_log(tmp_path / name)
        assert len(frame) == n and frame["entity_hash"].str.len().eq(16).all()
        assert not set(frame["entity_hash"]) & {r["entity_id"] for r in results}  # no raw identifiers


def test_drift_command_reports_and_alerts(tiny_checkpoint: Path, days: Any, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    for name, (feats, results) in days.items():
        log = ScoreLog(str(tmp_path / f"log-{name}"), "salt", flush_rows=10_000)
        log.record("/score", "r1", "primary", list(feats), results)
        log.close()
    out = tmp_path / "same"
    assert main(["drift", "--models", str(tiny_checkpoint), "--log", str(tmp_path / "log-same"), "--out", str(out),
                 "--no-evidently", "--fail-on-drift"]) == 0
    same = json.loads((out / "drift.json").read_text())
    assert not same["alert"] and same["live_windows"] == len(days["same"][1])
    assert "no drift" in capsys.readouterr().out
    out = tmp_path / "shifted"
    assert main(["drift", "--models", str(tiny_checkpoint), "--log", str(tmp_path / "log-shifted"), "--out",
                 str(out), "--fail-on-drift", "--since", "1h"]) == 1
    shifted = json.loads((out / "drift.json").read_text())
    assert shifted["alert"] and shifted["drifted_features"]
    assert set(shifted["evidently_psi"]) and (out / "evidently.html").stat().st_size > 10_000
    html = (out / "drift.html").read_text()
    assert "DRIFT" in html and "data:image/png;base64," in html
    assert "DRIFT:" in capsys.readouterr().out


@pytest.mark.parametrize(("argv", "needle"), [
    (["--log", "/nonexistent"], "no such folder"),
    (["--log", "LOG", "--since", "last tuesday"], "--since"),
    (["--log", "LOG", "--threshold", "0"], "--threshold"),
    (["--log", "LOG", "--since", "2999-01-01"], "no primary rows"),
])
def test_drift_command_errors_exit_2(tiny_checkpoint: Path, days: Any, tmp_path: Path, argv: list[str], needle: str,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    feats, results = days["same"]
    log = ScoreLog(str(tmp_path / "LOG"), "salt")
    log.record("/score", "r1", "primary", list(feats[:20]), results[:20])
    log.close()
    argv = [str(tmp_path / a) if a == "LOG" else a for a in argv]
    assert main(["drift", "--models", str(tiny_checkpoint), "--out", str(tmp_path / "o"), *argv]) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err


def test_score_log_samples_rotates_and_never_blocks(days: Any, tmp_path: Path) -> None:
    from prometheus_client import CollectorRegistry

    feats, results = days["same"]
    n = len(results)
    log = ScoreLog(str(tmp_path / "s"), "salt", sample_rate=0.3, flush_rows=50, max_files=3)
    for i in range(n):
        log.record("/events", f"req-{i}", "primary", [feats[i]], [results[i]])
    log.close()
    files = sorted((tmp_path / "s").glob("scores-*.parquet"))
    assert len(files) == 3  # rotated: the newest three files
    kept = pd.concat(pd.read_parquet(f) for f in files)
    assert len(kept) <= 150
    total = ScoreLog(str(tmp_path / "t"), "salt", sample_rate=0.3, flush_rows=10**6)
    for i in range(n):
        total.record("/events", f"req-{i}", "primary", [feats[i]], [results[i]])
    total.close()
    share = len(read_score_log(tmp_path / "t")) / n
    assert 0.2 < share < 0.4

    # A writer stuck on storage: the queue fills, record() returns at once and the rows are counted as dropped.
    registry = CollectorRegistry()
    release = threading.Event()
    stuck = ScoreLog(str(tmp_path / "u"), "salt", flush_rows=1, queue_size=4, metrics=LoopMetrics(registry))
    put = stuck.sink.put
    stuck.sink.put = lambda name, data: (release.wait(), put(name, data))  # type: ignore[method-assign]
    accepted: list[bool] = []
    done = threading.Event()

    def record_all() -> None:
        accepted.extend(stuck.record("/events", f"r{i}", "primary", [feats[0]], [results[0]]) for i in range(50))
        done.set()

    threading.Thread(target=record_all, daemon=True).start()
    # The writer stays stuck until `release` is set, so the 50 calls can only finish if none waits for it
    # (the wait is a hang guard, not a speed bound).
    finished_while_stuck = done.wait(60)
    release.set()
    assert finished_while_stuck, "record() waited for the stuck writer"
    stuck.close()
    assert not all(accepted) and stuck.dropped == accepted.count(False)
    assert registry.get_sample_value("seqguard_score_log_rows_total", {"outcome": "dropped"}) == stuck.dropped


@pytest.mark.slow
def test_score_log_to_s3_on_moto_server(days: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    import boto3

    from tests.support import free_port, running, tcp_open

    port = free_port()
    moto = str(Path(sys.executable).parent / "moto_server")
    with running([moto, "-H", "127.0.0.1", "-p", str(port)], tmp_path / "moto.log", lambda: tcp_open(port)):
        url = f"http://127.0.0.1:{port}"
        for k, v in {"AWS_ENDPOINT_URL": url, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                     "AWS_DEFAULT_REGION": "us-east-1"}.items():
            monkeypatch.setenv(k, v)
        boto3.client("s3").create_bucket(Bucket="scores")
        feats, results = days["same"]
        log = ScoreLog("s3://scores/live/svc-a", "salt", flush_rows=100, max_files=2)
        log.record("/score", "r1", "primary", list(feats[:250]), results[:250])
        log.close()
        keys = [o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket="scores")["Contents"]]
        assert len(keys) == 2 and all(k.startswith("live/svc-a/scores-") for k in keys)
        frame = read_score_log("s3://scores/live/svc-a")
        assert len(frame) == 150  # 100 + 100 + 50 rows written, the oldest file pruned
        assert frame["score"].tolist() == pytest.approx([r["score"] for r in results[100:250]])


def test_prometheus_rules_watch_the_service_gauges_at_the_report_threshold() -> None:
    import yaml
    from prometheus_client import CollectorRegistry

    rules = yaml.safe_load((Path(__file__).resolve().parents[1] / "infra/prometheus/seqguard_drift.rules.yml")
                           .read_text())["groups"][0]["rules"]
    registry = CollectorRegistry()
    LoopMetrics(registry)
    exposed = {m.name for m in registry.collect()} | {f"{m.name}_total" for m in registry.collect()}
    by_name = {r["alert"]: r["expr"] for r in rules}
    for alert in ("SeqguardFeatureDrift", "SeqguardScoreDrift"):
        expr = by_name[alert]
        assert f"> {PSI_ALERT}" in expr
        assert {w for w in expr.replace("(", " ").replace(")", " ").split() if w.startswith("seqguard_")} <= exposed
    assert "seqguard_score_log_rows_total" in by_name["SeqguardScoreLogDropping"]


@pytest.mark.parametrize(("env", "field"), [
    ({"SEQGUARD_SHADOW_REPO": "challenger_repo"}, "shadow_repo"),
    ({"SEQGUARD_SCORE_LOG_SAMPLE_RATE": "2"}, "SCORE_LOG_SAMPLE_RATE"),
    ({"SEQGUARD_DRIFT_WINDOW": "3"}, "DRIFT_WINDOW"),
])
def test_loop_settings_are_validated_at_start(env: dict[str, str], field: str) -> None:
    from seqguard.service.settings import ServiceSettings, SettingsError

    with pytest.raises(SettingsError, match=field):
        ServiceSettings.from_env(env)
