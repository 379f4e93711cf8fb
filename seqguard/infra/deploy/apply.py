"""Executing a plan, one change at a time in the plan's order.

Nothing is rolled back on failure: every step is one idempotent AWS call against a name derived from the config, so
the next apply re-reads the account and carries on where this one stopped. The failure message says exactly which
steps finished, which failed and which were not attempted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from seqguard.infra.deploy.aws import AwsSession
from seqguard.infra.deploy.desired import DesiredState, lifecycle_policy_text
from seqguard.infra.deploy.errors import DeployError, PlanBlocked
from seqguard.infra.deploy.image import render_push_commands
from seqguard.infra.deploy.names import SCALABLE_DIMENSION
from seqguard.infra.deploy.plan import Change, Plan
from seqguard.infra.deploy.state import image_pushed
from seqguard.infra.deploy.waiters import WaitSettings, wait_deleted, wait_in_service

Log = Callable[[str], None]


class ImageNotPushed(DeployError):
    pass


class ApplyFailed(DeployError):
    def __init__(
        self, cause: DeployError, done: list[Change], failed: Change, remaining: list[Change], command: str
    ) -> None:
        self.command = command
        self.cause = cause
        self.done = done
        self.failed = failed
        self.remaining = remaining
        self.exit_code = cause.exit_code
        super().__init__(self._report())

    def _report(self) -> str:
        lines = [f"{self.command} stopped at {self.failed.resource} {self.failed.name}: {self.cause}"]
        if self.done:
            lines.append("Done before the failure (kept; nothing is rolled back):")
            lines += [c.line(past=True) for c in self.done]
        else:
            lines.append("Nothing was changed before the failure.")
        lines.append("Failed:")
        lines.append(self.failed.line())
        if self.remaining:
            lines.append("Not attempted:")
            lines += [c.line() for c in self.remaining]
        lines.append(
            f"Fix the cause and re-run `seqguard deploy {self.command}`: it re-reads the account and resumes "
            "from here (finished steps show as no-op)."
        )
        return "\n".join(lines)


def refuse_if_blocked(plan: Plan) -> None:
    if plan.blockers:
        raise PlanBlocked("apply refused, nothing was changed:\n" + "\n".join(f"  - {b}" for b in plan.blockers))


def execute(plan: Plan, session: AwsSession, wait: WaitSettings, log: Log, command: str = "apply") -> list[Change]:
    """Run every pending change of `plan`; returns them, or raises ApplyFailed with a state report."""
    refuse_if_blocked(plan)
    steps = _Steps(plan, session, wait, log)
    pending = plan.pending
    done: list[Change] = []
    for i, change in enumerate(pending):
        try:
            steps.run(change)
        except DeployError as e:
            raise ApplyFailed(e, done, change, pending[i + 1 :], command) from None
        except KeyboardInterrupt:
            # The CLI prints only "interrupted"; say what state the account was left in first.
            finished = ", ".join(f"{c.resource} {c.name}" for c in done) or "nothing"
            log(f"interrupted during {change.resource} {change.name}; finished before it: {finished}.")
            log(f"Re-run `seqguard deploy {command}` to resume (AWS finishes any call already accepted).")
            raise
        done.append(change)
        log(change.line(past=True))
    return done


@dataclass
class _Steps:
    plan: Plan
    session: AwsSession
    wait: WaitSettings
    log: Log

    def run(self, change: Change) -> None:
        handler = getattr(self, f"_{change.resource.replace('-', '_')}_{change.action.name.lower()}", None)
        if handler is None:  # a plan/apply mismatch is a bug here, not a user error
            raise AssertionError(f"no step for {change.action} {change.resource}")
        handler(change)

    @property
    def d(self) -> DesiredState:
        return self.plan.desired

    def _label(self, change: Change) -> str:
        return f"{change.resource} '{change.name}'"

    # ECR
    def _ecr_repository_create(self, c: Change) -> None:
        self.session.call("ecr", "create_repository", self._label(c), **self.d.repository, tags=self.d.tags)

    def _ecr_repository_update(self, c: Change) -> None:
        name = self.d.repository["repositoryName"]
        self.session.call(
            "ecr",
            "put_image_tag_mutability",
            self._label(c),
            repositoryName=name,
            imageTagMutability=self.d.repository["imageTagMutability"],
        )
        self.session.call(
            "ecr",
            "put_image_scanning_configuration",
            self._label(c),
            repositoryName=name,
            imageScanningConfiguration=self.d.repository["imageScanningConfiguration"],
        )

    def _ecr_lifecycle_policy_create(self, c: Change) -> None:
        self.session.call(
            "ecr",
            "put_lifecycle_policy",
            self._label(c),
            repositoryName=self.d.names.repository,
            lifecyclePolicyText=lifecycle_policy_text(self.d.lifecycle_policy),
        )

    _ecr_lifecycle_policy_update = _ecr_lifecycle_policy_create

    def _ecr_repository_delete(self, c: Change) -> None:
        # force: the images go with the repository; destroy lists this before asking for --yes.
        self.session.find("ecr", "delete_repository", self._label(c), repositoryName=c.name, force=True)

    # SageMaker model and endpoint config
    def _model_create(self, c: Change) -> None:
        image = self.d.config.image
        # SageMaker accepts a model whose image does not exist and fails only when the endpoint starts, minutes later.
        if not image_pushed(self.session, image.repository, image.tag):
            raise ImageNotPushed(
                f"image {self.d.image_uri} is not in ECR. Push it, then re-run apply.\n{render_push_commands(self.d)}"
            )
        self.session.call("sagemaker", "create_model", self._label(c), **self.d.model, Tags=self.d.tags)

    def _endpoint_config_create(self, c: Change) -> None:
        self.session.call(
            "sagemaker", "create_endpoint_config", self._label(c), **self.d.endpoint_config, Tags=self.d.tags
        )

    def _model_delete(self, c: Change) -> None:
        self.session.find("sagemaker", "delete_model", self._label(c), ModelName=c.name)

    def _endpoint_config_delete(self, c: Change) -> None:
        self.session.find("sagemaker", "delete_endpoint_config", self._label(c), EndpointConfigName=c.name)

    # CloudWatch
    def _alarm_create(self, c: Change) -> None:
        spec = next(a for a in self.d.alarms if a.name == c.name)
        self.session.call("cloudwatch", "put_metric_alarm", self._label(c), **spec.request, Tags=self.d.tags)

    _alarm_update = _alarm_create

    def _alarm_delete(self, c: Change) -> None:
        self.session.call("cloudwatch", "delete_alarms", self._label(c), AlarmNames=[c.name])

    # Endpoint
    def _endpoint_create(self, c: Change) -> None:
        self.session.call(
            "sagemaker",
            "create_endpoint",
            self._label(c),
            EndpointName=c.name,
            EndpointConfigName=self.d.names.endpoint_config,
            Tags=self.d.tags,
        )
        self._wait(c.name)

    def _endpoint_update(self, c: Change) -> None:
        self.session.call(
            "sagemaker",
            "update_endpoint",
            self._label(c),
            EndpointName=c.name,
            EndpointConfigName=self.d.names.endpoint_config,
            DeploymentConfig=self.d.deployment_config,
            RetainAllVariantProperties=self.plan.retain_instance_count,
        )
        self._wait(c.name)

    def _endpoint_replace(self, c: Change) -> None:
        self.session.call("sagemaker", "delete_endpoint", self._label(c), EndpointName=c.name)
        wait_deleted(self.session, c.name, self.wait)
        self._endpoint_create(c)

    def _endpoint_delete(self, c: Change) -> None:
        self.session.find("sagemaker", "delete_endpoint", self._label(c), EndpointName=c.name)
        wait_deleted(self.session, c.name, self.wait)

    def _wait(self, name: str) -> None:
        def progress(status: str, remaining: float) -> None:
            self.log(f"    … endpoint {name} is {status} ({remaining:.0f} s left of --wait-timeout)")

        wait_in_service(self.session, name, self.wait, expect_config=self.d.names.endpoint_config, on_poll=progress)

    # Application Auto Scaling
    def _scalable_target_create(self, c: Change) -> None:
        assert self.d.scalable_target is not None
        self.session.call(
            "application-autoscaling", "register_scalable_target", self._label(c), **self.d.scalable_target
        )

    _scalable_target_update = _scalable_target_create

    def _scalable_target_delete(self, c: Change) -> None:
        self.session.call(
            "application-autoscaling",
            "deregister_scalable_target",
            self._label(c),
            ServiceNamespace="sagemaker",
            ResourceId=self.d.names.scaling_resource_id,
            ScalableDimension=SCALABLE_DIMENSION,
        )

    def _scaling_policy_create(self, c: Change) -> None:
        assert self.d.scaling_policy is not None
        self.session.call("application-autoscaling", "put_scaling_policy", self._label(c), **self.d.scaling_policy)

    _scaling_policy_update = _scaling_policy_create

    def _scaling_policy_delete(self, c: Change) -> None:
        self.session.call(
            "application-autoscaling",
            "delete_scaling_policy",
            self._label(c),
            PolicyName=c.name,
            ServiceNamespace="sagemaker",
            ResourceId=self.d.names.scaling_resource_id,
            ScalableDimension=SCALABLE_DIMENSION,
        )
