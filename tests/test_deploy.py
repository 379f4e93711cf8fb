"""`seqguard deploy` against a real moto_server process on a free port: plan, apply, status, update, destroy.

No in-process mocks: every AWS call crosses HTTP to the moto server started below, the same way it would reach
AWS. Each test starts from an empty account (moto's /moto-api/reset) holding only the execution role.
"""

from __future__ import annotations

import json
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from seqguard import cli
from seqguard.infra.deploy.aws import error_code_and_message, explain
from seqguard.infra.deploy.capacity_plan import CapacityPlan
from seqguard.infra.deploy.config import load_config
from tests.support import REPO, free_port, running, tcp_open

ACCOUNT = "123456789012"  # moto's default account
REGION = "us-east-1"
ROLE_NAME = "seqguard-exec"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/{ROLE_NAME}"

# moto 5.2.5 has no SageMaker UpdateEndpoint (it answers 500 NotImplementedError). The server below is moto's own
# server with that one action added: it switches the endpoint to the new config and records DeploymentConfig as
# DescribeEndpoint's LastDeploymentConfig, as AWS does. Everything else is stock moto.
MOTO_SERVER_WITH_UPDATE_ENDPOINT = """
from moto.core.responses import ActionResult
from moto.core.utils import utcnow
from moto.sagemaker.exceptions import ValidationError
from moto.sagemaker.responses import SageMakerResponse


def update_endpoint(self):
    backend = self.sagemaker_backend
    name = self._get_param("EndpointName")
    endpoint = backend.endpoints.get(name)
    if endpoint is None:
        raise ValidationError(message=f"Could not find endpoint '{name}'.")
    config = backend.describe_endpoint_config(self._get_param("EndpointConfigName"))
    endpoint.endpoint_config_name = config["EndpointConfigName"]
    endpoint.production_variants = endpoint._process_production_variants(config["ProductionVariants"])
    endpoint.last_deployment_config = self._get_param("DeploymentConfig")
    endpoint.last_modified_time = utcnow()
    return ActionResult({"EndpointArn": endpoint.arn})


SageMakerResponse.update_endpoint = update_endpoint

from moto.server import main

main()
"""

BASE_CONFIG: dict[str, Any] = {
    "name": "sg-test",
    "region": REGION,
    "execution_role_arn": ROLE_ARN,
    "image": {"repository": "seqguard/svc", "tag": "v1", "keep_last_images": 5},
    "model": {"version": "v1"},
    "variant": {"kind": "realtime", "instance_type": "ml.c5.xlarge", "initial_instance_count": 1},
    "environment": {"SEQGUARD_BACKEND": "embedded"},
    "rollout": {"canary_percent": 20, "wait_interval_seconds": 60, "termination_wait_seconds": 0},
    "autoscaling": {"min_capacity": 1, "max_capacity": 3, "target_invocations_per_instance_per_minute": 600},
    "alarms": {"latency_p99_ms": 200, "cpu_utilization_percent": 320},
}
SERVERLESS_VARIANT = {"kind": "serverless", "memory_size_in_mb": 2048, "max_concurrency": 10}


@pytest.fixture(scope="module")
def moto_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto_server.log"
    cmd = [sys.executable, "-c", MOTO_SERVER_WITH_UPDATE_ENDPOINT, "-H", "127.0.0.1", "-p", str(port)]
    with running(cmd, log, probe=lambda: tcp_open(port), timeout=60):
        yield f"http://127.0.0.1:{port}"


def _moto_api(url: str, path: str, body: bytes = b"") -> None:
    request = urllib.request.Request(url + path, data=body, method="POST", headers={"Content-Type": "text/plain"})
    with urllib.request.urlopen(request, timeout=10) as r:
        assert r.status == 200


@dataclass
class Aws:
    """The test's own view of the account, for arranging state and checking what the CLI did."""

    url: str

    def client(self, service: str, **credentials: str) -> Any:
        creds = credentials or {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
        return boto3.client(service, endpoint_url=self.url, region_name=REGION, **creds)

    def push_image(self, repository: str, tag: str) -> None:
        """What `docker push` leaves behind in ECR: a manifest under the tag."""
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "size": 1234,
                "digest": "sha256:" + tag.encode().hex().ljust(64, "0")[:64],
            },
            "layers": [],
        }
        self.client("ecr").put_image(repositoryName=repository, imageManifest=json.dumps(manifest), imageTag=tag)

    def repositories(self) -> list[str]:
        return [r["repositoryName"] for r in self.client("ecr").describe_repositories()["repositories"]]

    def models(self) -> list[str]:
        return sorted(m["ModelName"] for m in self.client("sagemaker").list_models()["Models"])

    def endpoint_configs(self) -> list[str]:
        configs = self.client("sagemaker").list_endpoint_configs()["EndpointConfigs"]
        return sorted(c["EndpointConfigName"] for c in configs)

    def endpoints(self) -> list[str]:
        return [e["EndpointName"] for e in self.client("sagemaker").list_endpoints()["Endpoints"]]

    def alarms(self) -> dict[str, dict[str, Any]]:
        return {a["AlarmName"]: a for a in self.client("cloudwatch").describe_alarms()["MetricAlarms"]}

    def scalable_targets(self) -> list[dict[str, Any]]:
        aas = self.client("application-autoscaling")
        return aas.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]

    def scaling_policies(self) -> list[dict[str, Any]]:
        aas = self.client("application-autoscaling")
        return aas.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"]

    def is_empty(self) -> bool:
        return not any(
            (
                self.repositories(),
                self.models(),
                self.endpoint_configs(),
                self.endpoints(),
                self.alarms(),
                self.scalable_targets(),
            )
        )


@pytest.fixture
def no_aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Nothing from the developer's shell or ~/.aws reaches the CLI."""
    for var in ("AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))


@pytest.fixture
def aws(moto_url: str, no_aws_env: None) -> Iterator[Aws]:
    _moto_api(moto_url, "/moto-api/reset")
    env = Aws(moto_url)
    env.client("iam").create_role(RoleName=ROLE_NAME, AssumeRolePolicyDocument=json.dumps({"Statement": []}))
    yield env


@dataclass
class Result:
    code: int
    out: str
    err: str


def write_config(path: Path, **overrides: Any) -> Path:
    data = json.loads(json.dumps(BASE_CONFIG))
    for key, value in overrides.items():
        if value is None:
            data.pop(key, None)
        elif isinstance(value, dict) and isinstance(data.get(key), dict) and key != "variant":
            data[key].update(value)
        else:
            data[key] = value
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def deploy(capsys: pytest.CaptureFixture[str], url: str, action: str, config: Path, *extra: str) -> Result:
    capsys.readouterr()
    argv = ["deploy", action, "--config", str(config), "--endpoint-url", url, "--poll-interval", "0.05"]
    code = cli.main([*argv, "--wait-timeout", "10", *extra])
    captured = capsys.readouterr()
    return Result(code, captured.out, captured.err)


def first_apply(capsys: pytest.CaptureFixture[str], aws: Aws, config: Path) -> Result:
    """The first apply of a new deployment: it creates the repository and stops until the image is pushed."""
    first = deploy(capsys, aws.url, "apply", config)
    assert first.code == 1, first.out + first.err
    assert "is not in ECR. Push it, then re-run apply." in first.err
    assert "docker push" in first.err and "aws ecr get-login-password" in first.err
    cfg = load_config(config)
    aws.push_image(cfg.image.repository, cfg.image.tag)
    second = deploy(capsys, aws.url, "apply", config)
    assert second.code == 0, second.out + second.err
    return second


def test_lifecycle_apply_status_update_destroy(aws: Aws, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    v1 = write_config(tmp_path / "v1.yaml")
    first_apply(capsys, aws, v1)

    sm = aws.client("sagemaker")
    endpoint = sm.describe_endpoint(EndpointName="sg-test")
    assert endpoint["EndpointStatus"] == "InService"
    v1_config = endpoint["EndpointConfigName"]
    assert v1_config.startswith("sg-test-v1-")
    model = sm.describe_model(ModelName="sg-test-v1")
    assert model["PrimaryContainer"]["Image"] == f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/seqguard/svc:v1"
    assert model["PrimaryContainer"]["Environment"] == {"SEQGUARD_BACKEND": "embedded"}
    assert model["ExecutionRoleArn"] == ROLE_ARN
    variant = sm.describe_endpoint_config(EndpointConfigName=v1_config)["ProductionVariants"][0]
    assert (variant["InstanceType"], variant["InitialInstanceCount"]) == ("ml.c5.xlarge", 1)

    policy = json.loads(aws.client("ecr").get_lifecycle_policy(repositoryName="seqguard/svc")["lifecyclePolicyText"])
    assert policy["rules"][0]["selection"]["countNumber"] == 5

    [target] = aws.scalable_targets()
    assert target["ResourceId"] == "endpoint/sg-test/variant/AllTraffic"
    assert target["ScalableDimension"] == "sagemaker:variant:DesiredInstanceCount"
    assert (target["MinCapacity"], target["MaxCapacity"]) == (1, 3)
    [scaling] = aws.scaling_policies()
    tracking = scaling["TargetTrackingScalingPolicyConfiguration"]
    assert tracking["PredefinedMetricSpecification"]["PredefinedMetricType"] == "SageMakerVariantInvocationsPerInstance"
    assert (tracking["TargetValue"], tracking["ScaleInCooldown"], tracking["ScaleOutCooldown"]) == (600.0, 300, 60)

    alarms = aws.alarms()
    assert set(alarms) == {"sg-test-p99-model-latency", "sg-test-5xx-error-rate", "sg-test-cpu-utilization"}
    latency = alarms["sg-test-p99-model-latency"]
    assert (latency["Namespace"], latency["MetricName"], latency["ExtendedStatistic"]) == (
        "AWS/SageMaker",
        "ModelLatency",
        "p99",
    )
    assert latency["Threshold"] == 200_000  # ModelLatency is in microseconds
    rate = alarms["sg-test-5xx-error-rate"]
    assert {m["Id"] for m in rate["Metrics"]} == {"errors", "invocations", "error_rate"}
    assert alarms["sg-test-cpu-utilization"]["Namespace"] == "/aws/sagemaker/Endpoints"

    status = deploy(capsys, aws.url, "status", v1)
    assert status.code == 0, status.err
    for expected in ("sg-test: InService", v1_config, "AllTraffic: 1 running, 1 desired", "min 1, max 3",
                     "sg-test-p99-model-latency: OK", "drift         none"):  # fmt: skip
        assert expected in status.out, status.out
    as_json = json.loads(deploy(capsys, aws.url, "status", v1, "--json").out)
    assert as_json["endpoint"]["config"] == v1_config and as_json["in_sync"] is True

    # A new model version: new Model and EndpointConfig, the endpoint updated blue/green, the old ones kept.
    v2 = write_config(tmp_path / "v2.yaml", image={"tag": "v2"}, model={"version": "v2"})
    aws.push_image("seqguard/svc", "v2")
    plan = deploy(capsys, aws.url, "plan", v2)
    assert plan.code == 0, plan.err
    assert "+ create    model                 sg-test-v2" in plan.out
    assert "~ update    endpoint              sg-test" in plan.out
    update = deploy(capsys, aws.url, "apply", v2)
    assert update.code == 0, update.err
    endpoint = sm.describe_endpoint(EndpointName="sg-test")
    assert endpoint["EndpointConfigName"].startswith("sg-test-v2-")
    deployment = endpoint["LastDeploymentConfig"]
    routing = deployment["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]
    assert routing == {
        "Type": "CANARY",
        "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 20},
        "WaitIntervalInSeconds": 60,
    }
    assert [a["AlarmName"] for a in deployment["AutoRollbackConfiguration"]["Alarms"]] == [
        "sg-test-p99-model-latency",
        "sg-test-5xx-error-rate",
    ]
    assert aws.models() == ["sg-test-v1", "sg-test-v2"]  # v1 kept: re-applying v1 is a fast rollback
    assert len(aws.endpoint_configs()) == 2
    assert "seqguard/svc:v2" in deploy(capsys, aws.url, "status", v2).out

    # Rolling back is re-applying the previous config: its model and endpoint config still exist.
    rollback = deploy(capsys, aws.url, "apply", v1)
    assert rollback.code == 0, rollback.err
    assert "= no-op     model                 sg-test-v1" in rollback.out
    assert sm.describe_endpoint(EndpointName="sg-test")["EndpointConfigName"] == v1_config
    assert aws.models() == ["sg-test-v1", "sg-test-v2"]

    gone = deploy(capsys, aws.url, "destroy", v2, "--yes")
    assert gone.code == 0, gone.err
    assert "Destroy complete" in gone.out
    assert aws.is_empty()
    again = deploy(capsys, aws.url, "destroy", v2, "--yes")
    assert again.code == 0 and "Nothing to destroy" in again.out


def test_apply_twice_changes_nothing_the_second_time(
    aws: Aws, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path / "deploy.yaml")
    first_apply(capsys, aws, config)
    before = aws.client("sagemaker").describe_endpoint(EndpointName="sg-test")["LastModifiedTime"]
    second = deploy(capsys, aws.url, "apply", config)
    assert second.code == 0, second.err
    assert "No changes: deployment 'sg-test' already matches" in second.out
    assert "0 to create, 0 to update, 0 to replace, 0 to delete, 10 unchanged" in second.out
    assert "Applying" not in second.out
    assert aws.client("sagemaker").describe_endpoint(EndpointName="sg-test")["LastModifiedTime"] == before


def test_plan_on_empty_account_lists_creates_and_changes_nothing(
    aws: Aws, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = deploy(capsys, aws.url, "plan", write_config(tmp_path / "deploy.yaml"))
    assert result.code == 0, result.err
    for kind in ("ecr-repository", "ecr-lifecycle-policy", "model", "endpoint-config", "alarm", "endpoint",
                 "scalable-target", "scaling-policy"):  # fmt: skip
        assert f"+ create    {kind}" in result.out, kind
    assert "Plan: 10 to create, 0 to update, 0 to replace, 0 to delete, 0 unchanged." in result.out
    assert f"docker push {ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/seqguard/svc:v1" in result.out
    assert "Nothing was changed" in result.out
    assert aws.is_empty()


def test_serverless_variant(aws: Aws, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path / "serverless.yaml", variant=SERVERLESS_VARIANT, autoscaling=None)
    first_apply(capsys, aws, config)
    sm = aws.client("sagemaker")
    live = sm.describe_endpoint(EndpointName="sg-test")["EndpointConfigName"]
    variant = sm.describe_endpoint_config(EndpointConfigName=live)["ProductionVariants"][0]
    assert variant["ServerlessConfig"] == {"MemorySizeInMB": 2048, "MaxConcurrency": 10}
    assert "InstanceType" not in variant
    assert aws.scalable_targets() == []
    # CPU utilisation is not reported for serverless endpoints: no alarm on it.
    assert set(aws.alarms()) == {"sg-test-p99-model-latency", "sg-test-5xx-error-rate"}
    status = deploy(capsys, aws.url, "status", config)
    assert "serverless 2048 MB, max concurrency 10" in status.out
    assert "autoscaling   none" in status.out

    # Real-time → serverless cannot happen in place on SageMaker: the plan says so and apply changes nothing.
    realtime = write_config(tmp_path / "realtime.yaml")
    blocked = deploy(capsys, aws.url, "apply", realtime)
    assert blocked.code == 1
    assert "cannot turn it into a real-time endpoint in place" in blocked.out + blocked.err
    assert "nothing was changed" in blocked.err
    assert aws.models() == ["sg-test-v1"]


def test_capacity_file_overrides_autoscaling(aws: Aws, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path / "deploy.yaml")
    capacity = tmp_path / "capacity.json"
    plan = CapacityPlan.from_measurement(
        measured_max_rps_per_instance=50, target_rps=180, headroom=0.6, instance_type="ml.c5.xlarge"
    )
    plan.write(capacity)
    assert (plan.target_invocations_per_instance_per_minute, plan.min_capacity, plan.max_capacity) == (1800, 6, 12)

    aws.client("ecr").create_repository(repositoryName="seqguard/svc")  # pushed by another pipeline
    aws.push_image("seqguard/svc", "v1")
    result = deploy(capsys, aws.url, "apply", config, "--capacity", str(capacity))
    assert result.code == 0, result.err
    assert f"autoscaling from {capacity}" in result.out
    [target] = aws.scalable_targets()
    assert (target["MinCapacity"], target["MaxCapacity"]) == (6, 12)
    [policy] = aws.scaling_policies()
    tracking = policy["TargetTrackingScalingPolicyConfiguration"]
    assert tracking["TargetValue"] == 1800.0
    assert tracking["ScaleInCooldown"] == 300  # cooldowns stay as configured
    # A repository this deployment did not create is used but never deleted by destroy.
    assert deploy(capsys, aws.url, "destroy", config, "--yes").code == 0
    assert aws.repositories() == ["seqguard/svc"]


@pytest.mark.parametrize(
    ("overrides", "capacity", "expected"),
    [
        ({"variant": {**BASE_CONFIG["variant"], "kind": "realtime"}}, {"instance_type": "ml.g4dn.xlarge"},
         "instance_type ml.g4dn.xlarge was measured, but variant.instance_type is ml.c5.xlarge"),
        ({"variant": SERVERLESS_VARIANT, "autoscaling": None}, {},
         "autoscaling applies to real-time variants only"),
        ({}, {"max_capacity": 1, "min_capacity": 4}, "max_capacity: must be ≥ min_capacity (4)"),
    ],
)  # fmt: skip
def test_bad_capacity_file_exits_2(
    overrides: dict[str, Any],
    capacity: dict[str, Any],
    expected: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = write_config(tmp_path / "deploy.yaml", **overrides)
    plan = {"target_invocations_per_instance_per_minute": 900, "min_capacity": 1, "max_capacity": 4, **capacity}
    path = tmp_path / "capacity.json"
    path.write_text(json.dumps(plan))
    # A closed port: had any AWS call been made, the error would be "cannot reach", not the capacity problem.
    result = deploy(capsys, f"http://127.0.0.1:{free_port()}", "plan", config, "--capacity", str(path))
    assert result.code == 2
    assert expected in result.err, result.err


@pytest.mark.parametrize(
    ("overrides", "field", "reason"),
    [
        ({"execution_role_arn": "arn:aws:iam::12345:role/x"}, "execution_role_arn", "must be an IAM role ARN"),
        ({"variant": {**SERVERLESS_VARIANT, "memory_size_in_mb": 3000}, "autoscaling": None},
         "variant.memory_size_in_mb", "must be 1024..6144 in steps of 1024"),
        ({"variant": SERVERLESS_VARIANT}, "autoscaling", "applies to real-time variants only"),
        ({"autoscalling": {"min_capacity": 1}}, "autoscalling", "unknown key — did you mean 'autoscaling'?"),
        ({"execution_role_arn": None}, "execution_role_arn", "required but missing"),
        ({"rollout": {"canary_percent": 80}}, "rollout.canary_percent", "less than or equal to 50"),
        ({"model": {"version": "1.2.0"}}, "model.version", "SageMaker names allow no dots"),
    ],
)  # fmt: skip
def test_invalid_config_exits_2_naming_the_field_before_any_aws_call(
    overrides: dict[str, Any], field: str, reason: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path / "bad.yaml", **overrides)
    for action in ("plan", "apply", "destroy"):
        result = deploy(capsys, f"http://127.0.0.1:{free_port()}", action, config)
        assert result.code == 2, result.err
        assert f"  {field}: " in result.err and reason in result.err, result.err
        assert "cannot reach" not in result.err and "Traceback" not in result.err


def test_missing_role_refuses_before_creating_anything(
    aws: Aws, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path / "deploy.yaml", execution_role_arn=f"arn:aws:iam::{ACCOUNT}:role/not-there")
    plan = deploy(capsys, aws.url, "plan", config)
    assert plan.code == 1
    assert (
        f"blocked: execution_role_arn: execution role arn:aws:iam::{ACCOUNT}:role/not-there does not exist" in plan.out
    )
    result = deploy(capsys, aws.url, "apply", config)
    assert result.code == 1
    assert "apply refused, nothing was changed" in result.err
    assert "role/not-there does not exist" in result.err
    assert aws.is_empty()


def test_access_denied_mid_apply_reports_state_and_rerun_resumes(
    aws: Aws, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_config(tmp_path / "deploy.yaml")
    assert deploy(capsys, aws.url, "apply", config).code == 1  # creates the repository, waits for the image
    aws.push_image("seqguard/svc", "v1")

    # A deploy identity that may do everything except create endpoint configs; moto enforces IAM from now on.
    iam = aws.client("iam")
    iam.create_user(UserName="deployer")
    deny = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "*", "Resource": "*"},
            {"Effect": "Deny", "Action": "sagemaker:CreateEndpointConfig", "Resource": "*"},
        ],
    }
    iam.put_user_policy(UserName="deployer", PolicyName="no-endpoint-configs", PolicyDocument=json.dumps(deny))
    key = iam.create_access_key(UserName="deployer")["AccessKey"]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
    _moto_api(aws.url, "/moto-api/reset-auth", b"0")
    try:
        failed = deploy(capsys, aws.url, "apply", config)
    finally:
        _moto_api(aws.url, "/moto-api/reset-auth", b"inf")
    assert failed.code == 1
    err = failed.err
    assert "Traceback" not in err
    assert "SageMaker CreateEndpointConfig on endpoint-config 'sg-test-v1-" in err
    assert "access denied (AccessDenied" in err and "sagemaker:CreateEndpointConfig" in err
    done, rest = err.split("Failed:")
    assert "+ created   model                 sg-test-v1" in done
    assert "Not attempted:" in rest and "+ create    endpoint              sg-test" in rest
    assert "re-run `seqguard deploy apply`" in err
    assert aws.models() == ["sg-test-v1"] and aws.endpoint_configs() == [] and aws.endpoints() == []

    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    resumed = deploy(capsys, aws.url, "apply", config)
    assert resumed.code == 0, resumed.err
    assert "= no-op     model                 sg-test-v1" in resumed.out
    assert aws.endpoints() == ["sg-test"]


def test_aws_rejecting_a_call_mid_apply_reports_state(
    aws: Aws, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A typo that has the shape of an instance type passes local validation; SageMaker rejects it.
    typo = {**BASE_CONFIG["variant"], "instance_type": "ml.c5.xlage"}
    config = write_config(tmp_path / "deploy.yaml", variant=typo)
    assert deploy(capsys, aws.url, "apply", config).code == 1
    aws.push_image("seqguard/svc", "v1")
    failed = deploy(capsys, aws.url, "apply", config)
    assert failed.code == 1
    assert "apply stopped at endpoint-config sg-test-v1-" in failed.err
    assert "AWS rejected the request as invalid (ValidationException" in failed.err
    assert "+ created   model                 sg-test-v1" in failed.err.split("Failed:")[0]

    fixed = deploy(capsys, aws.url, "apply", write_config(tmp_path / "fixed.yaml"))
    assert fixed.code == 0, fixed.err
    assert aws.endpoints() == ["sg-test"]


def test_resource_owned_by_someone_else_blocks_apply(
    aws: Aws, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    aws.client("cloudwatch").put_metric_alarm(
        AlarmName="sg-test-p99-model-latency",
        Namespace="Other",
        MetricName="Latency",
        Statistic="Average",
        Period=60,
        EvaluationPeriods=1,
        Threshold=1.0,
        ComparisonOperator="GreaterThanThreshold",
    )
    result = deploy(capsys, aws.url, "apply", write_config(tmp_path / "deploy.yaml"))
    assert result.code == 1
    assert "blocked: alarm sg-test-p99-model-latency exists but is not tagged as this deployment's" in result.out
    assert "apply refused, nothing was changed" in result.err
    assert aws.repositories() == []
    assert aws.alarms()["sg-test-p99-model-latency"]["Namespace"] == "Other"


def test_instance_type_change_reregisters_autoscaling(
    aws: Aws, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first_apply(capsys, aws, write_config(tmp_path / "c5.yaml"))
    bigger = {**BASE_CONFIG["variant"], "instance_type": "ml.c5.2xlarge"}
    result = deploy(capsys, aws.url, "apply", write_config(tmp_path / "c5-2x.yaml", variant=bigger))
    assert result.code == 0, result.err
    lines = [line.split()[1:4] for line in result.out.splitlines() if line.startswith("  ") and "Apply" not in line]
    applied = [line for line in lines if line and line[0] in ("deleted", "updated", "created")]
    # AWS refuses an instance-type change while the variant is registered for autoscaling.
    assert applied == [
        ["created", "endpoint-config", applied[0][2]],
        ["deleted", "scaling-policy", "sg-test-invocations-per-instance"],
        ["deleted", "scalable-target", "endpoint/sg-test/variant/AllTraffic"],
        ["updated", "endpoint", "sg-test"],
        ["created", "scalable-target", "endpoint/sg-test/variant/AllTraffic"],
        ["created", "scaling-policy", "sg-test-invocations-per-instance"],
    ]
    assert len(aws.scalable_targets()) == 1 and len(aws.scaling_policies()) == 1


def test_destroy_without_yes_deletes_nothing(aws: Aws, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path / "deploy.yaml")
    first_apply(capsys, aws, config)
    result = deploy(capsys, aws.url, "destroy", config)  # stdin is not a terminal under pytest
    assert result.code == 1
    assert "- delete    endpoint              sg-test" in result.out
    assert "pass --yes" in result.err
    assert aws.endpoints() == ["sg-test"]


def test_connection_refused_is_one_clear_error(
    no_aws_env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = deploy(capsys, url, "apply", write_config(tmp_path / "deploy.yaml"), "--max-attempts", "1")
    assert result.code == 1
    assert result.err.startswith("seqguard deploy: error: STS GetCallerIdentity on the caller identity failed")
    assert f"cannot reach {url}" in result.err
    assert "Traceback" not in result.err and len(result.err.splitlines()) == 1


def test_example_configs_validate_and_gpu_plans_a_gpu_alarm(
    aws: Aws, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    configs = {p.name: load_config(p) for p in (REPO / "infra").glob("deploy*.yaml")}
    assert set(configs) == {"deploy.yaml", "deploy.serverless.yaml", "deploy.gpu.yaml"}
    assert configs["deploy.serverless.yaml"].autoscaling is None
    aws.client("iam").create_role(RoleName="SeqguardSageMakerExecution", AssumeRolePolicyDocument="{}")
    result = deploy(capsys, aws.url, "plan", REPO / "infra" / "deploy.gpu.yaml")
    assert result.code == 0, result.err
    assert "+ create    alarm                 seqguard-gpu-gpu-utilization" in result.out
    assert "GPUUtilization > 85 %" in result.out


@pytest.mark.parametrize(
    ("code", "needle"),
    [
        ("ThrottlingException", "kept throttling the request after 5 attempt(s)"),
        ("ResourceLimitExceeded", "Request an increase in Service Quotas"),
        ("AccessDeniedException", "needs permission for this action (sagemaker:CreateEndpoint)"),
        ("ExpiredTokenException", "credentials were rejected"),
    ],
)
def test_aws_error_codes_read_as_actions(code: str, needle: str) -> None:
    # Throttling and quotas cannot be provoked in moto; the translation itself is checked here.
    assert needle in explain(code, "details", "SageMaker", "CreateEndpoint", attempts=5)


def test_error_code_recovered_from_an_xml_body_on_a_json_api() -> None:
    from botocore.exceptions import ClientError

    body = "<ErrorResponse><Error><Code>AccessDenied</Code><Message>not &amp; allowed</Message></Error></ErrorResponse>"
    error = ClientError({"Error": {"Code": "403", "Message": body}}, "CreateModel")
    assert error_code_and_message(error) == ("AccessDenied", "not & allowed")
