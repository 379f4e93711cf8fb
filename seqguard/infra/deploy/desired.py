"""The wanted state of a deployment, expressed as the AWS API requests that would create it.

Keeping the requests themselves (not a parallel description) means the plan compares exactly what apply sends.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from seqguard.infra.deploy.config import DeployConfig, RealtimeVariant, ServerlessVariant
from seqguard.infra.deploy.names import (
    OWNER_TAG,
    SCALABLE_DIMENSION,
    VARIANT_NAME,
    ResourceNames,
    model_name_for,
    names_for,
)

SAGEMAKER_NAMESPACE = "AWS/SageMaker"
ENDPOINT_INSTANCE_NAMESPACE = "/aws/sagemaker/Endpoints"  # CPU/GPU/memory utilisation live here, not in AWS/SageMaker


@dataclass(frozen=True)
class AlarmSpec:
    name: str
    request: dict[str, Any]  # put_metric_alarm arguments, without Tags
    summary: str


@dataclass(frozen=True)
class DesiredState:
    config: DeployConfig
    names: ResourceNames
    account_id: str
    registry: str
    image_uri: str
    tags: list[dict[str, str]]
    repository: dict[str, Any]
    lifecycle_policy: dict[str, Any]
    model: dict[str, Any]
    endpoint_config: dict[str, Any]
    deployment_config: dict[str, Any]
    scalable_target: dict[str, Any] | None
    scaling_policy: dict[str, Any] | None
    alarms: tuple[AlarmSpec, ...]
    notes: list[str] = field(default_factory=list)

    @property
    def is_serverless(self) -> bool:
        return isinstance(self.config.variant, ServerlessVariant)

    @property
    def instance_type(self) -> str | None:
        v = self.config.variant
        return v.instance_type if isinstance(v, RealtimeVariant) else None

    @property
    def rollback_alarm_names(self) -> list[str]:
        return [a["AlarmName"] for a in self.deployment_config.get("AutoRollbackConfiguration", {}).get("Alarms", [])]


def registry_host(account_id: str, region: str) -> str:
    suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"{account_id}.dkr.ecr.{region}.{suffix}"


def build_desired(config: DeployConfig, account_id: str) -> DesiredState:
    registry = registry_host(account_id, config.region)
    image_uri = f"{registry}/{config.image.repository}:{config.image.tag}"
    tags = [{"Key": OWNER_TAG, "Value": config.name}] + [{"Key": k, "Value": v} for k, v in sorted(config.tags.items())]
    variant = _production_variant(config)
    names = names_for(config, variant)
    alarms, notes = _alarms(config, names)
    return DesiredState(
        config=config,
        names=names,
        account_id=account_id,
        registry=registry,
        image_uri=image_uri,
        tags=tags,
        repository={
            "repositoryName": config.image.repository,
            "imageTagMutability": "IMMUTABLE" if config.image.immutable_tags else "MUTABLE",
            "imageScanningConfiguration": {"scanOnPush": config.image.scan_on_push},
        },
        lifecycle_policy=lifecycle_policy(config.image.keep_last_images),
        model=_model(config, names, image_uri),
        endpoint_config={"EndpointConfigName": names.endpoint_config, "ProductionVariants": [variant]},
        deployment_config=_deployment_config(config, names),
        scalable_target=_scalable_target(config, names),
        scaling_policy=_scaling_policy(config, names),
        alarms=tuple(alarms),
        notes=notes,
    )


def lifecycle_policy(keep_last: int) -> dict[str, Any]:
    return {
        "rules": [
            {
                "rulePriority": 1,
                "description": f"keep the newest {keep_last} images",
                "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": keep_last},
                "action": {"type": "expire"},
            }
        ]
    }


def lifecycle_policy_text(policy: dict[str, Any]) -> str:
    return json.dumps(policy, sort_keys=True)


def _model(config: DeployConfig, names: ResourceNames, image_uri: str) -> dict[str, Any]:
    container: dict[str, Any] = {"Image": image_uri, "Environment": dict(sorted(config.environment.items()))}
    if config.model.data_url:
        container["ModelDataUrl"] = config.model.data_url
    return {"ModelName": names.model, "ExecutionRoleArn": config.execution_role_arn, "PrimaryContainer": container}


def _production_variant(config: DeployConfig) -> dict[str, Any]:
    model_name = model_name_for(config)
    v = config.variant
    if isinstance(v, RealtimeVariant):
        return {
            "VariantName": VARIANT_NAME,
            "ModelName": model_name,
            "InstanceType": v.instance_type,
            "InitialInstanceCount": v.initial_instance_count,
            "InitialVariantWeight": 1.0,
        }
    serverless: dict[str, Any] = {"MemorySizeInMB": v.memory_size_in_mb, "MaxConcurrency": v.max_concurrency}
    if v.provisioned_concurrency is not None:
        serverless["ProvisionedConcurrency"] = v.provisioned_concurrency
    return {"VariantName": VARIANT_NAME, "ModelName": model_name, "ServerlessConfig": serverless}


def _deployment_config(config: DeployConfig, names: ResourceNames) -> dict[str, Any]:
    r = config.rollout
    if r.strategy == "canary":
        routing: dict[str, Any] = {
            "Type": "CANARY",
            "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": r.canary_percent},
            "WaitIntervalInSeconds": r.wait_interval_seconds,
        }
    else:
        routing = {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": r.wait_interval_seconds}
    policy: dict[str, Any] = {
        "TrafficRoutingConfiguration": routing,
        "TerminationWaitInSeconds": r.termination_wait_seconds,
    }
    if r.max_execution_timeout_seconds is not None:
        policy["MaximumExecutionTimeoutInSeconds"] = r.max_execution_timeout_seconds
    rollback = r.auto_rollback_alarms
    if rollback is None:
        rollback = [names.alarm(LATENCY_ALARM), names.alarm(ERRORS_ALARM)]
    deployment: dict[str, Any] = {"BlueGreenUpdatePolicy": policy}
    if rollback:
        deployment["AutoRollbackConfiguration"] = {"Alarms": [{"AlarmName": n} for n in rollback]}
    return deployment


def _scalable_target(config: DeployConfig, names: ResourceNames) -> dict[str, Any] | None:
    a = config.autoscaling
    if a is None:
        return None
    return {
        "ServiceNamespace": "sagemaker",
        "ResourceId": names.scaling_resource_id,
        "ScalableDimension": SCALABLE_DIMENSION,
        "MinCapacity": a.min_capacity,
        "MaxCapacity": a.max_capacity,
    }


def _scaling_policy(config: DeployConfig, names: ResourceNames) -> dict[str, Any] | None:
    a = config.autoscaling
    if a is None:
        return None
    return {
        "PolicyName": names.scaling_policy,
        "ServiceNamespace": "sagemaker",
        "ResourceId": names.scaling_resource_id,
        "ScalableDimension": SCALABLE_DIMENSION,
        "PolicyType": "TargetTrackingScaling",
        "TargetTrackingScalingPolicyConfiguration": {
            "TargetValue": float(a.target_invocations_per_instance_per_minute),
            "PredefinedMetricSpecification": {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"},
            "ScaleInCooldown": a.scale_in_cooldown_seconds,
            "ScaleOutCooldown": a.scale_out_cooldown_seconds,
            "DisableScaleIn": a.disable_scale_in,
        },
    }


LATENCY_ALARM = "p99-model-latency"
ERRORS_ALARM = "5xx-error-rate"
CPU_ALARM = "cpu-utilization"
GPU_ALARM = "gpu-utilization"


def _alarms(config: DeployConfig, names: ResourceNames) -> tuple[list[AlarmSpec], list[str]]:
    a = config.alarms
    dims = [{"Name": "EndpointName", "Value": names.endpoint}, {"Name": "VariantName", "Value": VARIANT_NAME}]
    window = f"{a.evaluation_periods} × {a.period_seconds} s"
    common: dict[str, Any] = {
        "EvaluationPeriods": a.evaluation_periods,
        "ComparisonOperator": "GreaterThanThreshold",
        "TreatMissingData": "notBreaching",  # an idle endpoint emits no datapoints; that is not an incident
        "ActionsEnabled": bool(a.actions),
        "AlarmActions": list(a.actions),
        "OKActions": list(a.actions),
    }
    if a.datapoints_to_alarm is not None:
        common["DatapointsToAlarm"] = a.datapoints_to_alarm

    def single(suffix: str, namespace: str, metric: str, threshold: float, description: str, **stat: Any) -> AlarmSpec:
        name = names.alarm(suffix)
        request = {
            "AlarmName": name,
            "AlarmDescription": f"seqguard {names.deployment}: {description}",
            "Namespace": namespace,
            "MetricName": metric,
            "Dimensions": dims,
            "Period": a.period_seconds,
            "Threshold": float(threshold),
            **stat,
            **common,
        }
        return AlarmSpec(name, request, f"{description} over {window}")

    specs = [
        # ModelLatency is reported in microseconds.
        single(
            LATENCY_ALARM,
            SAGEMAKER_NAMESPACE,
            "ModelLatency",
            a.latency_p99_ms * 1000,
            f"p99 ModelLatency > {a.latency_p99_ms:g} ms",
            ExtendedStatistic="p99",
        ),
        _error_rate_alarm(names, dims, a.period_seconds, a.error_5xx_rate_percent, common, window),
    ]
    notes: list[str] = []
    if a.drift_psi is not None:
        specs += _drift_alarms(names, a.drift_psi, a.drift_period_seconds, common)
    v = config.variant
    if isinstance(v, RealtimeVariant):
        if v.is_gpu and a.gpu_utilization_percent is not None:
            specs.append(
                single(
                    GPU_ALARM,
                    ENDPOINT_INSTANCE_NAMESPACE,
                    "GPUUtilization",
                    a.gpu_utilization_percent,
                    f"average GPUUtilization > {a.gpu_utilization_percent:g} % (sum over GPUs)",
                    Statistic="Average",
                )
            )
        if a.cpu_utilization_percent is not None:
            specs.append(
                single(
                    CPU_ALARM,
                    ENDPOINT_INSTANCE_NAMESPACE,
                    "CPUUtilization",
                    a.cpu_utilization_percent,
                    f"average CPUUtilization > {a.cpu_utilization_percent:g} % (sum over vCPUs)",
                    Statistic="Average",
                )
            )
        if not v.is_gpu and a.gpu_utilization_percent is not None:
            notes.append(f"alarms.gpu_utilization_percent is ignored: {v.instance_type} has no GPU")
    elif a.cpu_utilization_percent is not None or a.gpu_utilization_percent is not None:
        notes.append("alarms.cpu/gpu_utilization_percent are ignored: serverless endpoints do not report them")
    return specs, notes


def _drift_alarms(names: ResourceNames, threshold: float, period: int, common: dict[str, Any]) -> list[AlarmSpec]:
    from seqguard.infra.deploy.loop import (
        DRIFT_NAMESPACE,
        FEATURE_PSI_ALARM,
        FEATURE_PSI_METRIC,
        SCORE_PSI_ALARM,
        SCORE_PSI_METRIC,
    )

    specs = []
    for suffix, metric, what in ((FEATURE_PSI_ALARM, FEATURE_PSI_METRIC, "max feature PSI"),
                                 (SCORE_PSI_ALARM, SCORE_PSI_METRIC, "score PSI")):
        description = f"{what} vs the training reference > {threshold:g}"
        request = {
            "AlarmName": names.alarm(suffix),
            "AlarmDescription": f"seqguard {names.deployment}: {description} (published by seqguard drift)",
            "Namespace": DRIFT_NAMESPACE,
            "MetricName": metric,
            "Dimensions": [{"Name": "EndpointName", "Value": names.endpoint}],
            "Period": period,
            "Statistic": "Maximum",
            "Threshold": float(threshold),
            **common,
            "EvaluationPeriods": 1,  # one drift report over the threshold is the signal
        }
        request.pop("DatapointsToAlarm", None)
        specs.append(AlarmSpec(names.alarm(suffix), request, f"{description} in a {period} s period"))
    return specs


def _error_rate_alarm(
    names: ResourceNames, dims: list[dict[str, str]], period: int, percent: float, common: dict[str, Any], window: str
) -> AlarmSpec:
    # A rate, not a count: 5 errors mean nothing at 10k rpm and everything at 10 rpm.
    def stat(metric_id: str, metric: str) -> dict[str, Any]:
        return {
            "Id": metric_id,
            "MetricStat": {
                "Metric": {"Namespace": SAGEMAKER_NAMESPACE, "MetricName": metric, "Dimensions": dims},
                "Period": period,
                "Stat": "Sum",
            },
            "ReturnData": False,
        }

    name = names.alarm(ERRORS_ALARM)
    description = f"Invocation5XXErrors / Invocations > {percent:g} %"
    request = {
        "AlarmName": name,
        "AlarmDescription": f"seqguard {names.deployment}: {description}",
        "Metrics": [
            stat("errors", "Invocation5XXErrors"),
            stat("invocations", "Invocations"),
            {
                "Id": "error_rate",
                "Expression": "IF(invocations > 0, 100 * errors / invocations, 0)",
                "Label": "5XX error rate (%)",
                "ReturnData": True,
            },
        ],
        "Threshold": float(percent),
        **common,
    }
    return AlarmSpec(name, request, f"{description} over {window}")
