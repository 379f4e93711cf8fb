"""Reading what exists now, for the resources a deployment wants and the ones it owns.

Ownership is the `seqguard:deployment` tag, not the name prefix: deployments "shop" and "shop-eu" share a prefix,
and a resource someone created by hand under our name must be reported, not silently adopted or deleted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from seqguard.infra.deploy.aws import AwsSession
from seqguard.infra.deploy.desired import DesiredState
from seqguard.infra.deploy.errors import AwsError
from seqguard.infra.deploy.names import OWNER_TAG, SCALABLE_DIMENSION

TRANSITIONAL_ENDPOINT_STATES = frozenset({"Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting"})


@dataclass(frozen=True)
class RoleCheck:
    status: Literal["exists", "missing", "unverified"]
    detail: str


@dataclass
class CurrentState:
    role: RoleCheck
    repository: dict[str, Any] | None = None
    repository_owned: bool = False
    lifecycle_policy: dict[str, Any] | None = None
    image_pushed: bool = False
    model: dict[str, Any] | None = None
    model_owned: bool = False
    endpoint_config: dict[str, Any] | None = None
    endpoint_config_owned: bool = False
    endpoint: dict[str, Any] | None = None
    endpoint_owned: bool = False
    live_config: dict[str, Any] | None = None  # the config the endpoint runs now, if any
    scalable_target: dict[str, Any] | None = None
    scaling_policy: dict[str, Any] | None = None
    alarms: dict[str, dict[str, Any]] = field(default_factory=dict)  # owned by this deployment
    foreign_alarms: list[str] = field(default_factory=list)  # wanted names taken by someone else
    missing_rollback_alarms: list[str] = field(default_factory=list)


def caller_account(session: AwsSession) -> str:
    return str(session.call("sts", "get_caller_identity", "the caller identity")["Account"])


def check_role(session: AwsSession, role_arn: str, role_account: str, role_name: str, account: str) -> RoleCheck:
    if role_account != account:
        return RoleCheck("unverified", f"role is in account {role_account}, deploying from {account}")
    try:
        session.call("iam", "get_role", f"role '{role_name}'", RoleName=role_name)
    except AwsError as e:
        if e.code == "NoSuchEntity":
            return RoleCheck("missing", f"execution role {role_arn} does not exist in account {account}")
        if e.code in ("AccessDenied", "AccessDeniedException"):
            # Many deploy identities may pass a role without being allowed to read it; SageMaker checks it anyway.
            return RoleCheck("unverified", "not allowed to call iam:GetRole; SageMaker will check the role itself")
        raise
    return RoleCheck("exists", role_arn)


def read_current(session: AwsSession, desired: DesiredState) -> CurrentState:
    cfg = desired.config
    state = CurrentState(
        role=check_role(session, cfg.execution_role_arn, cfg.role_account, cfg.role_name, desired.account_id)
    )
    _read_repository(session, desired, state)
    _read_sagemaker(session, desired, state)
    _read_scaling(session, desired, state)
    _read_alarms(session, desired, state)
    return state


def sagemaker_owner(session: AwsSession, arn: str, resource: str) -> str | None:
    tags = session.call("sagemaker", "list_tags", resource, ResourceArn=arn).get("Tags", [])
    return _owner(tags)


def _owner(tags: list[dict[str, str]]) -> str | None:
    return next((t["Value"] for t in tags if t.get("Key") == OWNER_TAG), None)


def _read_repository(session: AwsSession, desired: DesiredState, state: CurrentState) -> None:
    name = desired.names.repository
    label = f"ecr-repository '{name}'"
    found = session.find("ecr", "describe_repositories", label, repositoryNames=[name])
    if not found:
        return
    state.repository = found["repositories"][0]
    tags = session.call("ecr", "list_tags_for_resource", label, resourceArn=state.repository["repositoryArn"])
    state.repository_owned = _owner(tags.get("tags", [])) == desired.names.deployment
    policy = session.find("ecr", "get_lifecycle_policy", f"ecr-lifecycle-policy of '{name}'", repositoryName=name)
    if policy:
        state.lifecycle_policy = json.loads(policy["lifecyclePolicyText"])
    state.image_pushed = image_pushed(session, name, desired.config.image.tag)


def image_pushed(session: AwsSession, repository: str, tag: str) -> bool:
    found = session.find(
        "ecr",
        "describe_images",
        f"image '{repository}:{tag}'",
        repositoryName=repository,
        imageIds=[{"imageTag": tag}],
    )
    return bool(found and found.get("imageDetails"))


def _read_sagemaker(session: AwsSession, desired: DesiredState, state: CurrentState) -> None:
    names = desired.names
    me = names.deployment
    state.model = session.find("sagemaker", "describe_model", f"model '{names.model}'", ModelName=names.model)
    if state.model:
        state.model_owned = sagemaker_owner(session, state.model["ModelArn"], f"model '{names.model}'") == me
    label = f"endpoint-config '{names.endpoint_config}'"
    state.endpoint_config = session.find(
        "sagemaker", "describe_endpoint_config", label, EndpointConfigName=names.endpoint_config
    )
    if state.endpoint_config:
        state.endpoint_config_owned = sagemaker_owner(session, state.endpoint_config["EndpointConfigArn"], label) == me
    label = f"endpoint '{names.endpoint}'"
    state.endpoint = session.find("sagemaker", "describe_endpoint", label, EndpointName=names.endpoint)
    if state.endpoint:
        state.endpoint_owned = sagemaker_owner(session, state.endpoint["EndpointArn"], label) == me
        live = state.endpoint.get("EndpointConfigName")
        if live:
            state.live_config = session.find(
                "sagemaker", "describe_endpoint_config", f"endpoint-config '{live}'", EndpointConfigName=live
            )


def _read_scaling(session: AwsSession, desired: DesiredState, state: CurrentState) -> None:
    rid = desired.names.scaling_resource_id
    targets = session.call(
        "application-autoscaling",
        "describe_scalable_targets",
        f"scalable-target '{rid}'",
        ServiceNamespace="sagemaker",
        ResourceIds=[rid],
        ScalableDimension=SCALABLE_DIMENSION,
    )["ScalableTargets"]
    state.scalable_target = next((t for t in targets if t["ResourceId"] == rid), None)
    policies = session.call(
        "application-autoscaling",
        "describe_scaling_policies",
        f"scaling-policy '{desired.names.scaling_policy}'",
        ServiceNamespace="sagemaker",
        ResourceId=rid,
        ScalableDimension=SCALABLE_DIMENSION,
        PolicyNames=[desired.names.scaling_policy],
    )["ScalingPolicies"]
    state.scaling_policy = next(
        (p for p in policies if p["PolicyName"] == desired.names.scaling_policy and p["ResourceId"] == rid), None
    )


def owned_alarms(session: AwsSession, prefix: str, deployment: str) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Alarms under `prefix`: those tagged for `deployment`, and the names of those that are not."""
    owned: dict[str, dict[str, Any]] = {}
    foreign: list[str] = []
    pages = session.pages(
        "cloudwatch", "describe_alarms", f"alarms named '{prefix}*'", AlarmNamePrefix=prefix, AlarmTypes=["MetricAlarm"]
    )
    for page in pages:
        for alarm in page.get("MetricAlarms", []):
            tags = session.call(
                "cloudwatch", "list_tags_for_resource", f"alarm '{alarm['AlarmName']}'", ResourceARN=alarm["AlarmArn"]
            ).get("Tags", [])
            if _owner(tags) == deployment:
                owned[alarm["AlarmName"]] = alarm
            else:
                foreign.append(alarm["AlarmName"])
    return owned, foreign


def _read_alarms(session: AwsSession, desired: DesiredState, state: CurrentState) -> None:
    owned, foreign = owned_alarms(session, desired.names.alarm_prefix, desired.names.deployment)
    state.alarms = owned
    wanted = {a.name for a in desired.alarms}
    state.foreign_alarms = sorted(n for n in foreign if n in wanted)
    external = [n for n in desired.rollback_alarm_names if n not in wanted]
    if external:
        found = session.call("cloudwatch", "describe_alarms", "the rollout.auto_rollback_alarms", AlarmNames=external)
        present = {a["AlarmName"] for a in found.get("MetricAlarms", []) + found.get("CompositeAlarms", [])}
        state.missing_rollback_alarms = [n for n in external if n not in present]


def owned_versions(session: AwsSession, deployment: str) -> tuple[list[str], list[str]]:
    """Names of the models and endpoint configs tagged for `deployment`, oldest first."""
    prefix = f"{deployment}-"

    def owned(operation: str, key: str, name_key: str, arn_key: str, kind: str) -> list[str]:
        found = []
        for page in session.pages("sagemaker", operation, f"{kind}s named '{prefix}*'", NameContains=deployment):
            for item in page.get(key, []):
                name = item[name_key]
                if (
                    name.startswith(prefix)
                    and sagemaker_owner(session, item[arn_key], f"{kind} '{name}'") == deployment
                ):
                    found.append((item.get("CreationTime"), name))
        return [n for _, n in sorted(found, key=lambda t: (t[0] is None, t[0], t[1]))]

    models = owned("list_models", "Models", "ModelName", "ModelArn", "model")
    configs = owned(
        "list_endpoint_configs", "EndpointConfigs", "EndpointConfigName", "EndpointConfigArn", "endpoint-config"
    )
    return models, configs
