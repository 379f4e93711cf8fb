"""The diff between the wanted state and what exists: an ordered list of changes, plus anything that blocks apply.

The order of `Plan.changes` is the order apply executes them in: repository → model → endpoint config → alarms
(auto-rollback needs them before the update) → endpoint → autoscaling (AWS registers a variant only once the
endpoint is InService) → removal of alarms no longer wanted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from seqguard.infra.deploy.aws import AwsSession
from seqguard.infra.deploy.config import DeployConfig
from seqguard.infra.deploy.desired import DesiredState, build_desired
from seqguard.infra.deploy.state import TRANSITIONAL_ENDPOINT_STATES, CurrentState, caller_account, read_current


class Action(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    REPLACE = "replace"
    DELETE = "delete"
    NOOP = "no-op"


_SYMBOL = {Action.CREATE: "+", Action.UPDATE: "~", Action.REPLACE: "±", Action.DELETE: "-", Action.NOOP: "="}
_PAST = {Action.CREATE: "created", Action.UPDATE: "updated", Action.REPLACE: "replaced", Action.DELETE: "deleted"}


@dataclass(frozen=True)
class Change:
    resource: str
    name: str
    action: Action
    detail: str = ""

    def line(self, past: bool = False) -> str:
        verb = _PAST.get(self.action, "unchanged") if past else str(self.action)
        detail = f"  {self.detail}" if self.detail else ""
        return f"  {_SYMBOL[self.action]} {verb:<9} {self.resource:<21} {self.name}{detail}"


@dataclass
class Plan:
    desired: DesiredState
    current: CurrentState | None = None
    changes: list[Change] = field(default_factory=list)
    blockers: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    image_pushed: bool = False
    # Keep the autoscaled instance count through an update instead of dropping back to initial_instance_count.
    retain_instance_count: bool = False

    @property
    def pending(self) -> list[Change]:
        return [c for c in self.changes if c.action is not Action.NOOP]

    def summary(self) -> str:
        counts = {a: sum(1 for c in self.changes if c.action is a) for a in Action}
        return (
            f"{counts[Action.CREATE]} to create, {counts[Action.UPDATE]} to update, "
            f"{counts[Action.REPLACE]} to replace, {counts[Action.DELETE]} to delete, {counts[Action.NOOP]} unchanged"
        )


def make_plan(session: AwsSession, config: DeployConfig) -> Plan:
    """Read the account and diff it against `config`; changes nothing."""
    desired = build_desired(config, caller_account(session))
    return build_plan(desired, read_current(session, desired))


def build_plan(desired: DesiredState, current: CurrentState) -> Plan:
    plan = Plan(desired=desired, current=current, image_pushed=current.image_pushed, notes=list(desired.notes))
    _check_role(plan, current)
    _repository(plan, current)
    _model(plan, current)
    _endpoint_config(plan, current)
    _alarms(plan, current)
    scaling_removed_early = _endpoint(plan, current)
    _scaling(plan, current, scaling_removed_early)
    _obsolete_alarms(plan, current)
    return plan


def _check_role(plan: Plan, current: CurrentState) -> None:
    if current.role.status == "missing":
        plan.blockers.append(f"execution_role_arn: {current.role.detail}; create the role or fix the ARN")
    elif current.role.status == "unverified":
        plan.notes.append(f"execution role not verified: {current.role.detail}")


def _repository(plan: Plan, current: CurrentState) -> None:
    d = plan.desired
    name = d.names.repository
    scan = "scan on push" if d.config.image.scan_on_push else "no scan on push"
    settings = f"{d.repository['imageTagMutability'].lower()} tags, {scan}"
    keep = f"keep the newest {d.config.image.keep_last_images} images"
    if current.repository is None:
        plan.changes.append(Change("ecr-repository", name, Action.CREATE, settings))
        plan.changes.append(Change("ecr-lifecycle-policy", name, Action.CREATE, keep))
        return
    if not current.repository_owned:
        plan.notes.append(f"ECR repository {name} was not created by this deployment: used as is, kept by destroy")
        plan.changes.append(Change("ecr-repository", name, Action.NOOP, "exists, not managed by this deployment"))
        return
    same = (
        current.repository.get("imageTagMutability") == d.repository["imageTagMutability"]
        and current.repository.get("imageScanningConfiguration", {}).get("scanOnPush") == d.config.image.scan_on_push
    )
    if same:
        plan.changes.append(Change("ecr-repository", name, Action.NOOP))
    else:
        plan.changes.append(Change("ecr-repository", name, Action.UPDATE, settings))
    if current.lifecycle_policy is None:
        plan.changes.append(Change("ecr-lifecycle-policy", name, Action.CREATE, keep))
    elif current.lifecycle_policy != d.lifecycle_policy:
        plan.changes.append(Change("ecr-lifecycle-policy", name, Action.UPDATE, keep))
    else:
        plan.changes.append(Change("ecr-lifecycle-policy", name, Action.NOOP))


def _model(plan: Plan, current: CurrentState) -> None:
    d = plan.desired
    name = d.names.model
    env = ", ".join(f"{k}={v}" for k, v in d.model["PrimaryContainer"]["Environment"].items())
    detail = f"image {d.image_uri}" + (f", env {env}" if env else "")
    if current.model is None:
        plan.changes.append(Change("model", name, Action.CREATE, detail))
        if not plan.image_pushed:
            plan.notes.append(
                f"image {d.image_uri} is not in ECR yet: push it (commands below) before apply can create the model"
            )
        return
    if not current.model_owned:
        plan.blockers.append(
            f"model {name} exists but is not tagged as this deployment's; choose another model.version or name"
        )
        return
    differs = _model_differences(d.model, current.model)
    if differs:
        plan.blockers.append(
            f"model {name} already exists with a different {', '.join(differs)}; SageMaker models are immutable, "
            "so give this build a new model.version"
        )
        return
    plan.changes.append(Change("model", name, Action.NOOP))


def _model_differences(want: dict[str, Any], have: dict[str, Any]) -> list[str]:
    w, h = want["PrimaryContainer"], have.get("PrimaryContainer", {})
    differs = []
    if w["Image"] != h.get("Image"):
        differs.append(f"image ({h.get('Image')} → {w['Image']})")
    if w.get("Environment", {}) != (h.get("Environment") or {}):
        differs.append("environment")
    if w.get("ModelDataUrl") != h.get("ModelDataUrl"):
        differs.append("model data_url")
    if want["ExecutionRoleArn"] != have.get("ExecutionRoleArn"):
        differs.append("execution role")
    return differs


def _endpoint_config(plan: Plan, current: CurrentState) -> None:
    d = plan.desired
    name = d.names.endpoint_config
    if current.endpoint_config is None:
        detail = describe_variant(_variant(d.endpoint_config))
        plan.changes.append(Change("endpoint-config", name, Action.CREATE, detail))
    elif not current.endpoint_config_owned:
        plan.blockers.append(f"endpoint config {name} exists but is not tagged as this deployment's")
    else:
        plan.changes.append(Change("endpoint-config", name, Action.NOOP))


def _alarms(plan: Plan, current: CurrentState) -> None:
    for name in current.foreign_alarms:
        plan.blockers.append(f"alarm {name} exists but is not tagged as this deployment's; rename or delete it")
    for name in current.missing_rollback_alarms:
        region = plan.desired.config.region
        plan.blockers.append(f"rollout.auto_rollback_alarms: alarm {name!r} does not exist in {region}")
    for spec in plan.desired.alarms:
        if spec.name in current.foreign_alarms:
            continue
        have = current.alarms.get(spec.name)
        if have is None:
            plan.changes.append(Change("alarm", spec.name, Action.CREATE, spec.summary))
        elif not matches(_normalise_alarm(spec.request), _normalise_alarm(have)):
            plan.changes.append(Change("alarm", spec.name, Action.UPDATE, spec.summary))
        else:
            plan.changes.append(Change("alarm", spec.name, Action.NOOP))


def _endpoint(plan: Plan, current: CurrentState) -> bool:
    """Add the endpoint change; returns True when autoscaling had to be removed ahead of it."""
    d = plan.desired
    name = d.names.endpoint
    target = d.names.endpoint_config
    endpoint = current.endpoint
    if endpoint is None:
        plan.changes.append(Change("endpoint", name, Action.CREATE, f"running {target}"))
        return False
    if not current.endpoint_owned:
        plan.blockers.append(f"endpoint {name} exists but is not tagged as this deployment's; choose another name")
        return False
    status = endpoint.get("EndpointStatus", "")
    live_name = endpoint.get("EndpointConfigName", "")
    live_variant = _variant(current.live_config) if current.live_config else {}
    want_variant = _variant(d.endpoint_config)
    if live_variant and ("ServerlessConfig" in live_variant) != ("ServerlessConfig" in want_variant):
        kinds = ("serverless", "real-time") if "ServerlessConfig" in live_variant else ("real-time", "serverless")
        plan.blockers.append(
            f"endpoint {name} is {kinds[0]}; SageMaker cannot turn it into a {kinds[1]} endpoint in place — "
            "run `seqguard deploy destroy` first, or deploy under another name"
        )
        return False
    if status in TRANSITIONAL_ENDPOINT_STATES:
        plan.notes.append(f"endpoint {name} is {status}; apply waits for it to settle before changing anything")
    if status == "Failed":
        reason = endpoint.get("FailureReason", "no reason given")
        removed = _remove_scaling_first(plan, current, "endpoint is re-created")
        detail = f"endpoint is Failed ({reason}); re-create on {target}"
        plan.changes.append(Change("endpoint", name, Action.REPLACE, detail))
        return removed
    if live_name == target:
        plan.changes.append(Change("endpoint", name, Action.NOOP, f"running {target}"))
        return False
    removed = False
    if live_variant.get("InstanceType") and live_variant.get("InstanceType") != want_variant.get("InstanceType"):
        # AWS refuses an instance-type change on a variant registered with Application Auto Scaling.
        removed = _remove_scaling_first(plan, current, "instance type changes")
    plan.retain_instance_count = current.scalable_target is not None and not removed and d.scalable_target is not None
    change = f"{live_name} → {target}"
    if plan.retain_instance_count:
        # RetainAllVariantProperties: the new fleet starts at today's autoscaled count, not initial_instance_count.
        want_variant.pop("InitialInstanceCount", None)
        live_variant.pop("InitialInstanceCount", None)
    diff = _variant_diff(live_variant, want_variant)
    if plan.retain_instance_count:
        diff += "; instance count stays as autoscaled"
    plan.changes.append(Change("endpoint", name, Action.UPDATE, f"{change} ({diff}); {describe_rollout(d)}"))
    return removed


def _remove_scaling_first(plan: Plan, current: CurrentState, why: str) -> bool:
    d = plan.desired
    if current.scalable_target is None:
        return False
    if current.scaling_policy is not None:
        plan.changes.append(Change("scaling-policy", d.names.scaling_policy, Action.DELETE, f"{why}; re-added after"))
    plan.changes.append(Change("scalable-target", d.names.scaling_resource_id, Action.DELETE, f"{why}; re-added after"))
    return True


def _scaling(plan: Plan, current: CurrentState, removed_early: bool) -> None:
    d = plan.desired
    target_have = None if removed_early else current.scalable_target
    policy_have = None if removed_early else current.scaling_policy
    if d.scalable_target is None:
        if policy_have is not None:
            plan.changes.append(Change("scaling-policy", d.names.scaling_policy, Action.DELETE, "autoscaling removed"))
        if target_have is not None:
            plan.changes.append(
                Change("scalable-target", d.names.scaling_resource_id, Action.DELETE, "autoscaling removed")
            )
        return
    a = d.config.autoscaling
    assert a is not None and d.scaling_policy is not None
    bounds = f"min {a.min_capacity}, max {a.max_capacity} instances"
    if target_have is None:
        plan.changes.append(Change("scalable-target", d.names.scaling_resource_id, Action.CREATE, bounds))
    elif (target_have["MinCapacity"], target_have["MaxCapacity"]) != (a.min_capacity, a.max_capacity):
        was = f"was min {target_have['MinCapacity']}, max {target_have['MaxCapacity']}"
        plan.changes.append(Change("scalable-target", d.names.scaling_resource_id, Action.UPDATE, f"{bounds} ({was})"))
    else:
        plan.changes.append(Change("scalable-target", d.names.scaling_resource_id, Action.NOOP, bounds))
    policy = (
        f"target {a.target_invocations_per_instance_per_minute:g} invocations/instance/min, "
        f"cooldown in {a.scale_in_cooldown_seconds} s / out {a.scale_out_cooldown_seconds} s"
    )
    want = d.scaling_policy["TargetTrackingScalingPolicyConfiguration"]
    if policy_have is None:
        plan.changes.append(Change("scaling-policy", d.names.scaling_policy, Action.CREATE, policy))
    elif not matches(want, policy_have.get("TargetTrackingScalingPolicyConfiguration", {})):
        plan.changes.append(Change("scaling-policy", d.names.scaling_policy, Action.UPDATE, policy))
    else:
        plan.changes.append(Change("scaling-policy", d.names.scaling_policy, Action.NOOP, policy))


def _obsolete_alarms(plan: Plan, current: CurrentState) -> None:
    wanted = {a.name for a in plan.desired.alarms}
    for name in sorted(set(current.alarms) - wanted):
        plan.changes.append(Change("alarm", name, Action.DELETE, "no longer in the config"))


def describe_variant(variant: dict[str, Any]) -> str:
    if "ServerlessConfig" in variant:
        s = variant["ServerlessConfig"]
        provisioned = f", provisioned {s['ProvisionedConcurrency']}" if s.get("ProvisionedConcurrency") else ""
        return f"serverless {s['MemorySizeInMB']} MB, max concurrency {s['MaxConcurrency']}{provisioned}"
    return f"{variant.get('InstanceType')} × {variant.get('InitialInstanceCount')}, model {variant.get('ModelName')}"


def describe_rollout(d: DesiredState) -> str:
    r = d.config.rollout
    policy = d.deployment_config["BlueGreenUpdatePolicy"]
    shift = (
        f"canary {r.canary_percent} % then bake {r.wait_interval_seconds} s"
        if r.strategy == "canary"
        else f"all at once then bake {r.wait_interval_seconds} s"
    )
    rollback = ", ".join(d.rollback_alarm_names) or "no alarms"
    return f"blue/green: {shift}, old fleet kept {policy['TerminationWaitInSeconds']} s, auto-rollback on {rollback}"


def _variant(endpoint_config: dict[str, Any] | None) -> dict[str, Any]:
    variants = (endpoint_config or {}).get("ProductionVariants") or [{}]
    return dict(variants[0])


def _variant_diff(old: dict[str, Any], new: dict[str, Any]) -> str:
    if not old:
        return describe_variant(new)
    parts = []
    for key, label in (
        ("ModelName", "model"),
        ("InstanceType", "instance type"),
        ("InitialInstanceCount", "instances"),
        ("ServerlessConfig", "serverless"),
    ):
        if old.get(key) != new.get(key):
            parts.append(f"{label} {_short(old.get(key))} → {_short(new.get(key))}")
    return "; ".join(parts) or "same variant settings"


def _short(value: Any) -> str:
    if isinstance(value, dict):
        return "/".join(f"{k}={v}" for k, v in value.items())
    return str(value)


def matches(want: Any, have: Any) -> bool:
    """Whether `have` (as AWS returns it) already carries every value in `want` (what we would send).

    AWS answers with extra fields and omits false/empty ones, so this is a subset comparison, with an absent field
    equal to False/None/[]/{}.
    """
    if isinstance(want, dict):
        if not isinstance(have, dict):
            return have is None and not any(want.values())
        return all(matches(v, have.get(k)) if k in have else v in (False, None, [], {}) for k, v in want.items())
    if isinstance(want, list):
        if not isinstance(have, list) or len(want) != len(have):
            return False
        return all(matches(w, h) for w, h in zip(want, have, strict=True))
    if isinstance(want, int | float) and isinstance(have, int | float) and not isinstance(want, bool):
        return float(want) == float(have)
    return bool(want == have)


def _normalise_alarm(alarm: dict[str, Any]) -> dict[str, Any]:
    """Dimension order is not meaningful to CloudWatch; sort it on both sides before comparing."""
    out = dict(alarm)
    out.pop("AlarmName", None)
    if "Dimensions" in out:
        out["Dimensions"] = sorted(out["Dimensions"], key=lambda x: x["Name"])
    if out.get("Metrics"):
        metrics = []
        for m in out["Metrics"]:
            m = dict(m)
            if "MetricStat" in m:
                stat = dict(m["MetricStat"])
                metric = dict(stat["Metric"])
                metric["Dimensions"] = sorted(metric.get("Dimensions", []), key=lambda x: x["Name"])
                stat["Metric"] = metric
                m["MetricStat"] = stat
            metrics.append(m)
        out["Metrics"] = metrics
    return out


def render_plan(plan: Plan, header: str) -> str:
    lines = [header]
    lines += [c.line() for c in plan.changes]
    for note in plan.notes:
        lines.append(f"note: {note}")
    for blocker in plan.blockers:
        lines.append(f"blocked: {blocker}")
    lines.append(f"Plan: {plan.summary()}.")
    return "\n".join(lines)
