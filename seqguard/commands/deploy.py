"""`seqguard deploy plan|apply|status|destroy`: the SageMaker endpoint, its autoscaling and alarms, from one YAML.

The config (and the capacity plan, if given) is validated in full before the first AWS call, so a typo costs
milliseconds, not a half-created deployment. The work itself lives in `seqguard.infra.deploy`; this module only parses
arguments, prints, and turns `DeployError`s into `CliError`s.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

from seqguard.cli import CliError
from seqguard.infra.deploy.apply import execute, refuse_if_blocked
from seqguard.infra.deploy.aws import AwsSession
from seqguard.infra.deploy.capacity_plan import apply_capacity_plan, load_capacity_plan
from seqguard.infra.deploy.config import DeployConfig, load_config
from seqguard.infra.deploy.destroy import build_destroy_plan
from seqguard.infra.deploy.errors import DeployError, PlanBlocked
from seqguard.infra.deploy.image import render_push_commands
from seqguard.infra.deploy.plan import Plan, make_plan, render_plan
from seqguard.infra.deploy.state import TRANSITIONAL_ENDPOINT_STATES
from seqguard.infra.deploy.status import collect_status, render_status
from seqguard.infra.deploy.waiters import WaitSettings, wait_deleted, wait_in_service

DEFAULT_CONFIG = "infra/deploy.yaml"


def register(sub: argparse._SubParsersAction) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=DEFAULT_CONFIG, help=f"deploy YAML (default {DEFAULT_CONFIG})")
    common.add_argument(
        "--capacity", default=None, help="capacity plan JSON whose autoscaling knobs override the config's"
    )
    common.add_argument(
        "--endpoint-url", default=None, help="send every AWS call to this URL (moto_server, LocalStack)"
    )
    common.add_argument(
        "--max-attempts", type=int, default=5, help="attempts per AWS call, with backoff on throttling (default 5)"
    )
    common.add_argument(
        "--wait-timeout", type=float, default=3600.0, help="seconds to wait for the endpoint to settle (default 3600)"
    )
    common.add_argument("--poll-interval", type=float, default=15.0, help="seconds between status polls (default 15)")

    p = sub.add_parser(
        "deploy",
        help="deploy the service to a SageMaker endpoint with autoscaling and alarms",
        description="Plan, apply, inspect or destroy the cloud deployment described by a deploy YAML. "
        "See docs/deploy.md.",
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    actions.add_parser("plan", parents=[common], help="show what apply would change; changes nothing")
    ap = actions.add_parser("apply", parents=[common], help="create or update everything; safe to re-run")
    ap.add_argument("--promote", default=None, metavar="COMPARE_JSON",
                    help="promote a challenger: refuse unless this `seqguard compare` result says it wins, roll it "
                    "out through the canary, and record the evidence in the deployment's tags")
    st = actions.add_parser("status", parents=[common], help="endpoint, variant, config, scaling and alarms now")
    st.add_argument("--json", action="store_true", help="print the status as JSON")
    de = actions.add_parser("destroy", parents=[common], help="delete everything this deployment created")
    de.add_argument("--yes", action="store_true", help="delete without asking")
    de.add_argument("--keep-repository", action="store_true", help="keep the ECR repository and its images")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.max_attempts < 1:
        raise CliError(f"--max-attempts must be ≥ 1, got {args.max_attempts}")
    if args.wait_timeout <= 0 or args.poll_interval <= 0:
        raise CliError("--wait-timeout and --poll-interval must be positive")
    try:
        config = _load(args)
        # Only now, with a valid config, is anything sent to AWS.
        session = AwsSession(config.region, endpoint_url=args.endpoint_url, max_attempts=args.max_attempts)
        return _ACTIONS[args.action](args, config, session)
    except DeployError as e:
        raise CliError(str(e), exit_code=e.exit_code) from None


def _load(args: argparse.Namespace) -> DeployConfig:
    config = load_config(args.config)
    if args.capacity:
        config = apply_capacity_plan(config, load_capacity_plan(args.capacity), source=f"capacity plan {args.capacity}")
    return config


def _wait_settings(args: argparse.Namespace) -> WaitSettings:
    return WaitSettings(timeout_s=args.wait_timeout, poll_s=args.poll_interval)


def _header(verb: str, plan: Plan, args: argparse.Namespace) -> str:
    d = plan.desired
    where = f" via {args.endpoint_url}" if args.endpoint_url else ""
    knobs = f", autoscaling from {args.capacity}" if args.capacity else ""
    return f"{verb} for deployment {d.config.name!r} in {d.config.region} (account {d.account_id}{where}{knobs}):"


def _plan(args: argparse.Namespace, config: DeployConfig, session: AwsSession) -> int:
    plan = make_plan(session, config)
    print(render_plan(plan, _header("Plan", plan, args)))
    if not plan.image_pushed:
        print(render_push_commands(plan.desired))
    if plan.blockers:
        raise PlanBlocked(f"the plan is blocked ({len(plan.blockers)} problem(s) above); apply would refuse")
    print("Nothing was changed (plan only).")
    return 0


def _promotion(args: argparse.Namespace, config: DeployConfig) -> tuple[DeployConfig, dict[str, str] | None]:
    """With --promote: the evidence tags (or a refusal), before any AWS call."""
    if not getattr(args, "promote", None):
        return config, None
    from seqguard.compare import load_compare
    from seqguard.infra.deploy.errors import ConfigError
    from seqguard.infra.deploy.loop import evidence_tags

    if config.rollout.strategy != "canary":
        raise ConfigError("--promote rolls the challenger out through the canary: set rollout.strategy: canary")
    try:
        evidence = evidence_tags(load_compare(args.promote))
    except ValueError as e:
        raise ConfigError(f"--promote: {e}") from None
    return config.model_copy(update={"tags": {**config.tags, **evidence}}), evidence


def _apply(args: argparse.Namespace, config: DeployConfig, session: AwsSession) -> int:
    wait = _wait_settings(args)
    config, evidence = _promotion(args, config)
    plan = make_plan(session, config)
    endpoint = plan.current.endpoint if plan.current else None
    if endpoint and endpoint.get("EndpointStatus") in TRANSITIONAL_ENDPOINT_STATES:
        name, status = endpoint["EndpointName"], endpoint["EndpointStatus"]
        print(f"endpoint {name} is {status}; waiting for it to settle")
        if status == "Deleting":
            wait_deleted(session, name, wait)
        else:
            wait_in_service(session, name, wait)
        plan = make_plan(session, config)
    print(render_plan(plan, _header("Plan", plan, args)))
    refuse_if_blocked(plan)
    if not plan.pending:
        if evidence:
            from seqguard.infra.deploy.loop import PromotionRefused

            raise PromotionRefused(f"nothing to promote: deployment {config.name!r} already runs what {args.config} "
                                   "describes; set model.version (and the image tag) to the challenger's release")
        print(f"No changes: deployment {config.name!r} already matches {args.config}.")
        return 0
    print("Applying:")
    done = execute(plan, session, wait, log=print)
    if evidence:
        from seqguard.infra.deploy.loop import tag_endpoint

        tag_endpoint(session, plan.desired.names.endpoint, evidence)
        print(f"Promoted: {evidence['seqguard:promotion:challenger']} replaces "
              f"{evidence['seqguard:promotion:champion']}; evidence tagged on the endpoint and its new resources.")
    print(f"Apply complete: {len(done)} change(s). Check it with `seqguard deploy status --config {args.config}`.")
    return 0


def _status(args: argparse.Namespace, config: DeployConfig, session: AwsSession) -> int:
    status = collect_status(session, config)
    print(json.dumps(status, indent=2, default=str) if args.json else render_status(status))
    return 0


def _destroy(args: argparse.Namespace, config: DeployConfig, session: AwsSession) -> int:
    plan = build_destroy_plan(session, config, keep_repository=args.keep_repository)
    print(render_plan(plan, _header("Destroy", plan, args)))
    if not plan.pending:
        print(f"Nothing to destroy for deployment {config.name!r}.")
        return 0
    if not args.yes and not _confirm(config.name):
        raise CliError("destroy cancelled: pass --yes to delete without a prompt (nothing was deleted)", exit_code=1)
    done = execute(plan, session, _wait_settings(args), log=print, command="destroy")
    print(f"Destroy complete: {len(done)} resource(s) deleted.")
    return 0


def _confirm(name: str) -> bool:
    if not sys.stdin.isatty():
        return False
    answer = input(f"Delete everything above? Type the deployment name ({name}) to confirm: ")
    return answer.strip() == name


_ACTIONS: dict[str, Callable[[argparse.Namespace, DeployConfig, AwsSession], int]] = {
    "plan": _plan,
    "apply": _apply,
    "status": _status,
    "destroy": _destroy,
}
