"""The loop's deployment side against a real moto_server: drift alarms + published PSI, and evidence-gated promotion.

moto stores alarms and metric data but does not evaluate alarms, so the tests read the published datapoint back
through CloudWatch and apply the alarm's own condition (its metric, statistic, comparison and threshold) to it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from seqguard.drift import load_reference
from seqguard.drift_report import build_drift_result
from tests import test_deploy, test_drift
from tests.test_deploy import Aws, deploy, first_apply, write_config

# The fixtures of the modules this one builds on (moto_server, an empty account, two scored generated periods).
moto_url, no_aws_env, aws = test_deploy.moto_url, test_deploy.no_aws_env, test_deploy.aws
days = test_drift.days

pytestmark = pytest.mark.slow


def alarm_fires(aws: Aws, alarm: dict[str, Any]) -> bool:
    dims = alarm["Dimensions"]
    now = datetime.now(UTC)
    stats = aws.client("cloudwatch").get_metric_statistics(
        Namespace=alarm["Namespace"], MetricName=alarm["MetricName"], Dimensions=dims,
        StartTime=now - timedelta(hours=2), EndTime=now + timedelta(minutes=5), Period=alarm["Period"],
        Statistics=[alarm["Statistic"]])["Datapoints"]
    assert stats, f"nothing published to {alarm['Namespace']}/{alarm['MetricName']} {dims}"
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
    return max(p[alarm["Statistic"]] for p in stats) > alarm["Threshold"]


def test_drift_alarms_watch_what_seqguard_drift_publishes(aws: Aws, tiny_checkpoint: Path, days: Any,
                                                          tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from seqguard.infra.deploy.aws import AwsSession
    from seqguard.infra.deploy.loop import publish_drift

    config = write_config(tmp_path / "d.yaml", alarms={"drift_psi": 0.25, "drift_period_seconds": 3600})
    first_apply(capsys, aws, config)
    alarms = aws.alarms()
    feature, score = alarms["sg-test-drift-feature-psi"], alarms["sg-test-drift-score-psi"]
    assert (feature["Namespace"], feature["MetricName"], feature["Threshold"]) == ("Seqguard/Drift",
                                                                                   "MaxFeaturePSI", 0.25)
    assert score["MetricName"] == "ScorePSI" and score["Dimensions"] == [{"Name": "EndpointName", "Value": "sg-test"}]
    endpoint = aws.client("sagemaker").describe_endpoint(EndpointName="sg-test")
    assert "drift" not in json.dumps(endpoint.get("LastDeploymentConfig", {}))  # drift never rolls a release back

    ref = load_reference(tiny_checkpoint)
    session = AwsSession("us-east-1", endpoint_url=aws.url)
    fired = {}
    for name in ("same", "shifted"):
        feats, results = days[name]
        result = build_drift_result(ref, feats, np.array([r["score"] for r in results]),
                                    np.array([r["decision"] for r in results]))
        endpoint_name = f"sg-{name}"  # one endpoint name per day keeps the two series apart
        publish_drift(session, endpoint_name, result)
        fired[name] = alarm_fires(aws, {**feature, "Dimensions": [{"Name": "EndpointName", "Value": endpoint_name}]})
    assert fired == {"same": False, "shifted": True}


def compare_result(tmp_path: Path, wins: bool) -> Path:
    result = {
        "format": "seqguard-compare-v1", "created": "2026-11-30T12:00:00+00:00", "winner":
        "challenger" if wins else "champion", "challenger_wins": wins,
        "reasons": ["entity PR-AUC 0.5000 -> 0.7000 (+0.2000; needs > +0.0000)"],
        "rule": {"metric": "entity pr_auc", "min_gain": 0.0, "fpr": 0.01, "max_recall_drop": 0.02},
        "data": {"events": 1000, "windows": 100, "entities": 80, "fingerprint": "abc123"},
        "champion": {"version": "seqguard-20261101-aaaa", "entity": {"pr_auc": 0.5, "recall_at_0.01_fpr": 0.3}},
        "challenger": {"version": "seqguard-20261130-bbbb", "entity": {"pr_auc": 0.7, "recall_at_0.01_fpr": 0.4}},
    }
    path = tmp_path / f"compare-{wins}.json"
    path.write_text(json.dumps(result))
    return path


def test_promotion_needs_a_winning_challenger_and_records_the_evidence(
        aws: Aws, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    v1 = write_config(tmp_path / "v1.yaml")
    first_apply(capsys, aws, v1)
    v2 = write_config(tmp_path / "v2.yaml", image={"tag": "v2"}, model={"version": "v2"})
    aws.push_image("seqguard/svc", "v2")
    sm = aws.client("sagemaker")

    refused = deploy(capsys, aws.url, "apply", v2, "--promote", str(compare_result(tmp_path, wins=False)))
    assert refused.code == 1 and "champion wins" in refused.err and "nothing was changed" in refused.err
    assert aws.models() == ["sg-test-v1"]  # refused before any AWS call
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    assert deploy(capsys, aws.url, "apply", v2, "--promote", str(bad)).code == 2

    promoted = deploy(capsys, aws.url, "apply", v2, "--promote", str(compare_result(tmp_path, wins=True)))
    assert promoted.code == 0, promoted.out + promoted.err
    assert "Promoted: seqguard-20261130-bbbb replaces seqguard-20261101-aaaa" in promoted.out
    endpoint = sm.describe_endpoint(EndpointName="sg-test")
    assert endpoint["EndpointConfigName"].startswith("sg-test-v2-")
    routing = endpoint["LastDeploymentConfig"]["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]
    assert routing["Type"] == "CANARY"  # through the existing canary
    for arn in (endpoint["EndpointArn"], sm.describe_model(ModelName="sg-test-v2")["ModelArn"]):
        tags = {t["Key"]: t["Value"] for t in sm.list_tags(ResourceArn=arn)["Tags"]}
        assert tags["seqguard:promotion:verdict"] == "challenger wins"
        assert tags["seqguard:promotion:entity-pr-auc"] == "champion=0.5000 challenger=0.7000"
        assert tags["seqguard:promotion:data"] == "80 entities fingerprint=abc123"
    again = deploy(capsys, aws.url, "apply", v2, "--promote", str(compare_result(tmp_path, wins=True)))
    assert again.code == 1 and "nothing to promote" in again.err
