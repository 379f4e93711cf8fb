"""The feedback loop end to end, on real processes (docs/feedback_loop.md walks the same path by hand):

generate -> train a champion that knows only a fifth of the fraud -> export -> serve (bentoml, score log, /feedback)
-> outcomes over HTTP and from a chargeback file -> drift -> retrain a challenger with the joined outcomes -> export
-> compare on a fresh labelled period -> serve the champion with the challenger in shadow -> promote on moto_server
through the canary with the evidence in the tags.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pandas as pd
import pytest

from seqguard.generator import GeneratorConfig, generate
from seqguard.service.score_log import read_score_log
from tests.support import REPO, free_port, running, start_service, tcp_open
from tests.test_deploy import MOTO_SERVER_WITH_UPDATE_ENDPOINT, Aws, write_config
from tests.test_service import get, post

pytestmark = pytest.mark.slow

TINY = str(REPO / "seqguard/data/train_tiny.yaml")
NOW = datetime.now(UTC).isoformat()


def cli(*args: Any, env: dict[str, str] | None = None, expect: int = 0, timeout: float = 300) -> str:
    """`seqguard ...` as a separate process; returns stdout (asserting the exit code)."""
    full = {**os.environ, "PYTHONPATH": str(REPO), "OMP_WAIT_POLICY": "PASSIVE", **(env or {})}
    p = subprocess.run([sys.executable, "-m", "seqguard.cli", *map(str, args)], capture_output=True, text=True,
                       env=full, cwd=REPO, timeout=timeout)
    assert p.returncode == expect, f"seqguard {args[0]} exited {p.returncode}:\n{p.stdout}\n{p.stderr[-3000:]}"
    return p.stdout


def version_of(repo: Path) -> str:
    return json.loads((repo / "manifest.json").read_text())["model_version"]


def score_requests(url: str, events: pd.DataFrame, users: list[str], per_request: int) -> list[tuple[str, list]]:
    """POST /score for `users`, `per_request` entities at a time; returns (request id, user ids) per request."""
    out = []
    for i in range(0, len(users), per_request):
        batch = users[i:i + per_request]
        rows = events[events["user_id"].isin(batch)]
        body = json.loads(rows.drop(columns=["is_anomaly", "scenario"]).to_json(orient="records"))
        body = [{k: v for k, v in e.items() if v is not None} for e in body]
        status, resp = post(url + "/score", {"events": body})
        assert status == 200, resp
        out.append((resp["request_id"], batch))
    return out


def test_the_loop_end_to_end(tmp_path: Path) -> None:
    w = tmp_path
    # -- generate, and a champion that was told about only a fifth of the fraud ---------------------------------
    cli("generate", "--users", 800, "--days", 4, "--seed", 3, "--out", w / "gen")
    events = pd.read_parquet(w / "gen" / "events.parquet")
    fraud = sorted(events.loc[events["is_anomaly"].astype(bool), "user_id"].unique())
    hidden = sorted(np.random.default_rng(0).choice(fraud, size=int(0.8 * len(fraud)), replace=False))
    known = events.copy()
    known.loc[known["user_id"].isin(hidden), ["is_anomaly", "scenario"]] = [False, "normal"]
    known.to_parquet(w / "known.parquet")
    cli("train", "--data", w / "known.parquet", "--config", TINY, "--out", w / "champion", "--no-progress")
    cli("export", "--models", w / "champion", "--precision", "fp32", "--out", w / "champion_repo")
    champion_version = version_of(w / "champion_repo")

    # -- serve: every answer logged, outcomes taken -----------------------------------------------------------
    store, log_dir = w / "feedback.sqlite", w / "score_log"
    env = {"SEQGUARD_REPO": str(w / "champion_repo"), "SEQGUARD_SCORE_LOG_PATH": str(log_dir),
           "SEQGUARD_SCORE_LOG_FLUSH_S": "0.3", "SEQGUARD_FEEDBACK_PATH": str(store),
           "SEQGUARD_DRIFT_MIN_ROWS": "20", "SEQGUARD_DRIFT_EVERY": "10"}
    server, url = start_service(w, env)
    try:
        normal = sorted(set(events["user_id"]) - set(fraud))[:60]
        requests = score_requests(url, events, normal + list(hidden[5:]), per_request=5)
        [(single_request, _)] = score_requests(url, events, hidden[:1], per_request=1)
        fb = {"outcome": "confirmed_fraud", "source": "review-queue", "ts": NOW}
        for user in hidden[1:5]:
            status, body = post(url + "/feedback", {**fb, "entity_id": user})
            assert status == 200 and body["stored"], body
        status, again = post(url + "/feedback", {**fb, "entity_id": hidden[1]})
        assert status == 200 and again["duplicate"] and not again["stored"]  # a retry, stored once
        status, by_request = post(url + "/feedback", {**fb, "request_id": single_request, "label": True})
        assert status == 200 and by_request["stored"]
        for bad, field in (({**fb, "entity_id": "u", "outcome": "refund"}, "outcome"),
                           ({"outcome": "chargeback", "ts": NOW, "entity_id": "u"}, "source"),
                           ({**fb, "entity_id": "u", "label": False}, "label"),
                           ({**fb}, "entity_id or request_id")):
            status, err = post(url + "/feedback", bad)
            assert status == 422 and err["details"][0]["field"] == field, err
        # The chargeback file brings the other outcomes, while the service holds the store open.
        pd.DataFrame({"entity_id": hidden[5:], "outcome": "chargeback", "source": "psp", "ts": NOW}).to_csv(
            w / "chargebacks.csv", index=False)
        assert f"{len(hidden) - 5} stored" in cli("feedback", "import", w / "chargebacks.csv", "--store", store)
        deadline = time.monotonic() + 20
        while "seqguard_feature_psi{" not in get(url + "/metrics")[1] and time.monotonic() < deadline:
            time.sleep(0.3)
        metrics = get(url + "/metrics")[1]
        assert "seqguard_feature_psi{" in metrics and "seqguard_score_psi" in metrics
    finally:
        server.stop()
    logged = read_score_log(log_dir)
    assert len(logged) == sum(len(u) for _, u in requests) + 1
    assert set(logged["model_version"]) == {champion_version} and not set(logged["entity_hash"]) & set(fraud)

    # -- drift report over the log ------------------------------------------------------------------------------
    cli("drift", "--models", w / "champion_repo", "--log", log_dir, "--out", w / "drift", "--no-evidently")
    assert json.loads((w / "drift" / "drift.json").read_text())["live_windows"] == len(logged)

    # -- retrain with the joined outcomes, compare on a fresh labelled period -------------------------------------
    cli("retrain", "--models", w / "champion", "--data", w / "known.parquet", "--feedback", store, "--log", log_dir,
        "--out", w / "challenger", "--no-progress")
    joined = json.loads((w / "challenger" / "retrain.json").read_text())["outcomes"]
    assert joined["by_request"] == 1 and joined["entities_with_outcome_in_data"] == len(hidden)
    cli("export", "--models", w / "challenger", "--precision", "fp32", "--out", w / "challenger_repo")
    challenger_version = version_of(w / "challenger_repo")
    generate(GeneratorConfig(users=600, days=2, seed=9)).events.to_parquet(w / "recent.parquet")
    out = cli("compare", w / "champion", w / "challenger", "--data", w / "recent.parquet", "--out", w / "compare")
    verdict = json.loads((w / "compare" / "compare.json").read_text())
    assert verdict["winner"] == "challenger", out
    assert "challenger wins" in (w / "compare" / "compare.md").read_text()

    # -- shadow: the challenger scores every request too, is logged, and is never served --------------------------
    shadow_log = w / "shadow_log"
    env = {"SEQGUARD_REPO": str(w / "champion_repo"), "SEQGUARD_SHADOW_REPO": str(w / "challenger_repo"),
           "SEQGUARD_SCORE_LOG_PATH": str(shadow_log), "SEQGUARD_SCORE_LOG_FLUSH_S": "0.3"}
    server, url = start_service(w, env)
    try:
        served = score_requests(url, events, list(fraud[:6]) + normal[:6], per_request=4)
        status, resp = post(url + "/score", {"events": [{"user_id": "u-x", "ts": NOW, "event_type": "view"}]})
        assert status == 200 and resp["results"][0]["model_version"] == champion_version
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            rows = read_score_log(shadow_log, role=None) if list(shadow_log.glob("*.parquet")) else pd.DataFrame()
            if len(rows) >= 2 * 13:
                break
            time.sleep(0.3)
    finally:
        server.stop()
    rows = read_score_log(shadow_log, role=None)
    by_role = {r: g.sort_values(["request_id", "entity_hash"]) for r, g in rows.groupby("role")}
    assert set(by_role["primary"]["model_version"]) == {champion_version}
    assert set(by_role["shadow"]["model_version"]) == {challenger_version}
    cols = ["request_id", "entity_hash"]
    assert by_role["primary"][cols].to_numpy().tolist() == by_role["shadow"][cols].to_numpy().tolist()
    assert len(by_role["primary"]) == sum(len(u) for _, u in served) + 1

    # -- promote through the canary on moto_server, evidence in the tags -------------------------------------------
    port = free_port()
    moto = [sys.executable, "-c", MOTO_SERVER_WITH_UPDATE_ENDPOINT, "-H", "127.0.0.1", "-p", str(port)]
    with running(moto, w / "moto.log", probe=lambda: tcp_open(port), timeout=60):
        moto_url = f"http://127.0.0.1:{port}"
        aws_env = {"AWS_CONFIG_FILE": str(w / "none"), "AWS_SHARED_CREDENTIALS_FILE": str(w / "none"),
                   "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
        client = {"endpoint_url": moto_url, "region_name": "us-east-1", "aws_access_key_id": "testing",
                  "aws_secret_access_key": "testing"}
        boto3.client("iam", **client).create_role(RoleName="seqguard-exec", AssumeRolePolicyDocument="{}")
        deploy = ["--endpoint-url", moto_url, "--poll-interval", "0.05", "--wait-timeout", "10"]
        v1 = write_config(w / "v1.yaml", model={"version": "champion"}, image={"tag": "champion"})
        cli("deploy", "apply", "--config", v1, *deploy, env=aws_env, expect=1)  # creates the ECR repository
        for tag in ("champion", "challenger"):  # what `docker push` would leave in ECR
            Aws(moto_url).push_image("seqguard/svc", tag)
        cli("deploy", "apply", "--config", v1, *deploy, env=aws_env)
        v2 = write_config(w / "v2.yaml", model={"version": "challenger"}, image={"tag": "challenger"})
        out = cli("deploy", "apply", "--config", v2, "--promote", w / "compare" / "compare.json", *deploy,
                  env=aws_env)
        trained = {k: json.loads((w / k / "checkpoint.json").read_text())["version"]
                   for k in ("champion", "challenger")}
        assert f"Promoted: {trained['challenger']} replaces {trained['champion']}" in out
        sm = boto3.client("sagemaker", **client)
        endpoint = sm.describe_endpoint(EndpointName="sg-test")
        assert endpoint["EndpointConfigName"].startswith("sg-test-challenger-")
        assert endpoint["LastDeploymentConfig"]["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"][
            "Type"] == "CANARY"
        tags = {t["Key"]: t["Value"] for t in sm.list_tags(ResourceArn=endpoint["EndpointArn"])["Tags"]}
        assert tags["seqguard:promotion:challenger"] == trained["challenger"]
        assert challenger_version.startswith(trained["challenger"])  # the repository serves that checkpoint
        assert tags["seqguard:promotion:data"].endswith(verdict["data"]["fingerprint"])
        # and the drift job publishes what the deployment's drift alarms watch
        cli("drift", "--models", w / "champion_repo", "--log", log_dir, "--out", w / "drift2", "--no-evidently",
            "--publish-to", "sg-test", "--region", "us-east-1", "--endpoint-url", moto_url, env=aws_env)
        metrics = boto3.client("cloudwatch", **client).list_metrics(Namespace="Seqguard/Drift")["Metrics"]
        assert {m["MetricName"] for m in metrics} == {"MaxFeaturePSI", "ScorePSI"}


def test_feedback_endpoint_fuzzed_and_switched_off(tiny_repo: Path, tmp_path: Path) -> None:
    import schemathesis
    from hypothesis import HealthCheck, given, settings

    from seqguard.feedback import FeedbackStore

    store = tmp_path / "fb.sqlite"
    server, url = start_service(tmp_path, {"SEQGUARD_REPO": str(tiny_repo), "SEQGUARD_FEEDBACK_PATH": str(store)})
    seen: dict[int, int] = {}
    try:
        schema = schemathesis.openapi.from_url(url + "/docs.json").include(path_regex="^/feedback$")
        [op] = [r.ok() for r in schema.get_all_operations()]

        @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(case=op.as_strategy())
        def run(case: Any) -> None:
            response = case.call(base_url=url, timeout=30)
            seen[response.status_code] = seen.get(response.status_code, 0) + 1
            assert response.status_code < 500, (case.body, response.status_code, response.text[:300])

        run()
        status, ok = post(url + "/feedback", {"entity_id": "u", "outcome": "chargeback", "source": "psp", "ts": NOW})
        assert status == 200 and ok["stored"]
    finally:
        server.stop()
    assert sum(seen.values()) >= 20 and FeedbackStore(store).count() >= 1
    server, url = start_service(tmp_path, {"SEQGUARD_REPO": str(tiny_repo)})
    try:
        status, err = post(url + "/feedback", {"entity_id": "u", "outcome": "chargeback", "source": "psp",
                                               "ts": NOW})
        assert status == 404 and err["details"][0]["field"] == "SEQGUARD_FEEDBACK_PATH"
    finally:
        server.stop()
