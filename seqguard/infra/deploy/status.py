"""What is deployed now: endpoint, variant, live config and model, autoscaling, alarms, and drift from the config."""

from __future__ import annotations

from typing import Any

from seqguard.infra.deploy.aws import AwsSession
from seqguard.infra.deploy.config import DeployConfig
from seqguard.infra.deploy.plan import describe_variant, make_plan
from seqguard.infra.deploy.state import owned_versions


def collect_status(session: AwsSession, config: DeployConfig) -> dict[str, Any]:
    plan = make_plan(session, config)
    d, current = plan.desired, plan.current
    assert current is not None
    endpoint = current.endpoint if current.endpoint_owned else None
    status: dict[str, Any] = {
        "deployment": config.name,
        "region": config.region,
        "account": d.account_id,
        "endpoint": None,
        "live_model": None,
        "autoscaling": None,
        "alarms": [],
        "image": {"uri": d.image_uri, "pushed": current.image_pushed},
        "in_sync": not plan.pending and not plan.blockers,
        "pending_changes": [c.line().strip() for c in plan.pending],
        "blockers": plan.blockers,
    }
    if endpoint is not None:
        live = current.live_config or {}
        variants = []
        for v in endpoint.get("ProductionVariants", []):
            variants.append(
                {
                    "name": v.get("VariantName"),
                    "current_instance_count": v.get("CurrentInstanceCount"),
                    "desired_instance_count": v.get("DesiredInstanceCount"),
                    "serverless": v.get("CurrentServerlessConfig"),
                }
            )
        live_variant = (live.get("ProductionVariants") or [{}])[0]
        status["endpoint"] = {
            "name": endpoint["EndpointName"],
            "status": endpoint.get("EndpointStatus"),
            "failure_reason": endpoint.get("FailureReason"),
            "config": endpoint.get("EndpointConfigName"),
            "config_summary": describe_variant(live_variant) if live_variant else None,
            "variants": variants,
            "last_modified": str(endpoint.get("LastModifiedTime", "")),
            "last_deployment": endpoint.get("LastDeploymentConfig"),
        }
        model_name = live_variant.get("ModelName")
        if model_name:
            model = session.find("sagemaker", "describe_model", f"model '{model_name}'", ModelName=model_name)
            if model:
                container = model.get("PrimaryContainer", {})
                status["live_model"] = {
                    "name": model_name,
                    "image": container.get("Image"),
                    "environment": container.get("Environment", {}),
                }
    if current.scalable_target is not None:
        t = current.scalable_target
        policy = (current.scaling_policy or {}).get("TargetTrackingScalingPolicyConfiguration", {})
        status["autoscaling"] = {
            "resource_id": t["ResourceId"],
            "min_capacity": t["MinCapacity"],
            "max_capacity": t["MaxCapacity"],
            "policy": (current.scaling_policy or {}).get("PolicyName"),
            "target_invocations_per_instance_per_minute": policy.get("TargetValue"),
            "scale_in_cooldown_seconds": policy.get("ScaleInCooldown"),
            "scale_out_cooldown_seconds": policy.get("ScaleOutCooldown"),
        }
    for name, alarm in sorted(current.alarms.items()):
        status["alarms"].append({"name": name, "state": alarm.get("StateValue"), "reason": alarm.get("StateReason")})
    models, configs = owned_versions(session, config.name)
    status["versions"] = {"models": models, "endpoint_configs": configs}
    return status


def render_status(s: dict[str, Any]) -> str:
    lines = [f"Deployment {s['deployment']} in {s['region']} (account {s['account']})"]
    row = "  {:<14}{}".format
    ep = s["endpoint"]
    if ep is None:
        lines.append(row("endpoint", "not deployed (run `seqguard deploy apply`)"))
    else:
        failure = f" — {ep['failure_reason']}" if ep.get("failure_reason") else ""
        lines.append(row("endpoint", f"{ep['name']}: {ep['status']}{failure}"))
        lines.append(row("config", f"{ep['config']} ({ep['config_summary']})"))
        for v in ep["variants"]:
            if v.get("serverless"):
                sv = v["serverless"]
                size = f"serverless {sv.get('MemorySizeInMB')} MB, max concurrency {sv.get('MaxConcurrency')}"
                lines.append(row("variant", f"{v['name']}: {size}"))
            else:
                counts = f"{v['current_instance_count']} running, {v['desired_instance_count']} desired"
                lines.append(row("variant", f"{v['name']}: {counts}"))
        if ep.get("last_deployment"):
            routing = ep["last_deployment"].get("BlueGreenUpdatePolicy", {}).get("TrafficRoutingConfiguration", {})
            lines.append(row("last update", f"blue/green {routing.get('Type', '?').lower().replace('_', ' ')}"))
    if s["live_model"]:
        m = s["live_model"]
        env = ", ".join(f"{k}={v}" for k, v in m["environment"].items())
        lines.append(row("model", f"{m['name']}: {m['image']}" + (f" ({env})" if env else "")))
    a = s["autoscaling"]
    if a:
        lines.append(
            row(
                "autoscaling",
                f"min {a['min_capacity']}, max {a['max_capacity']}; policy {a['policy'] or 'none'}: target "
                f"{a['target_invocations_per_instance_per_minute']} invocations/instance/min, cooldown in "
                f"{a['scale_in_cooldown_seconds']} s / out {a['scale_out_cooldown_seconds']} s",
            )
        )
    else:
        lines.append(row("autoscaling", "none"))
    for i, alarm in enumerate(s["alarms"]):
        lines.append(row("alarms" if i == 0 else "", f"{alarm['name']}: {alarm['state']}"))
    if not s["alarms"]:
        lines.append(row("alarms", "none"))
    versions = s["versions"]["endpoint_configs"]
    if versions:
        lines.append(row("versions", ", ".join(versions)))
    lines.append(row("image", f"{s['image']['uri']} ({'pushed' if s['image']['pushed'] else 'not pushed'})"))
    if s["in_sync"]:
        lines.append(row("drift", "none: matches the config"))
    else:
        lines.append(row("drift", f"{len(s['pending_changes'])} pending change(s); run `seqguard deploy plan`"))
        for b in s["blockers"]:
            lines.append(row("", f"blocked: {b}"))
    return "\n".join(lines)
