"""Removing everything a deployment created, as a plan of deletions run by the same executor as apply.

Only resources tagged for this deployment are deleted. Order matters: autoscaling is deregistered before the
endpoint goes, the endpoint before the configs and models it runs, and the ECR repository (with its images) last.
"""

from __future__ import annotations

from seqguard.infra.deploy.aws import AwsSession
from seqguard.infra.deploy.config import DeployConfig
from seqguard.infra.deploy.plan import Action, Change, Plan, make_plan
from seqguard.infra.deploy.state import owned_alarms, owned_versions


def build_destroy_plan(session: AwsSession, config: DeployConfig, keep_repository: bool = False) -> Plan:
    current_plan = make_plan(session, config)
    d, current = current_plan.desired, current_plan.current
    assert current is not None
    plan = Plan(desired=d, current=current)
    names = d.names
    if current.endpoint is not None and not current.endpoint_owned:
        plan.notes.append(f"endpoint {names.endpoint} is not tagged as this deployment's: left alone")
    mine = current.endpoint is None or current.endpoint_owned
    if mine and current.scaling_policy is not None:
        plan.changes.append(Change("scaling-policy", names.scaling_policy, Action.DELETE))
    if mine and current.scalable_target is not None:
        plan.changes.append(Change("scalable-target", names.scaling_resource_id, Action.DELETE))
    if current.endpoint is not None and current.endpoint_owned:
        plan.changes.append(
            Change("endpoint", names.endpoint, Action.DELETE, current.endpoint.get("EndpointStatus", ""))
        )
    models, configs = owned_versions(session, config.name)
    plan.changes += [Change("endpoint-config", n, Action.DELETE) for n in configs]
    plan.changes += [Change("model", n, Action.DELETE) for n in models]
    alarms, _ = owned_alarms(session, names.alarm_prefix, config.name)
    plan.changes += [Change("alarm", n, Action.DELETE) for n in sorted(alarms)]
    if current.repository is not None:
        if not current.repository_owned:
            plan.notes.append(f"ECR repository {names.repository} was not created by this deployment: kept")
        elif keep_repository:
            plan.notes.append(f"ECR repository {names.repository} kept (--keep-repository)")
        else:
            images = "with all its images"
            plan.changes.append(Change("ecr-repository", names.repository, Action.DELETE, images))
    return plan
