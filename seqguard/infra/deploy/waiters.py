"""Polling an endpoint until it settles, with a deadline and a clear message for every way it can end.

boto3's built-in waiters know only attempts and delays, and report a failed endpoint as a generic WaiterError;
here the deadline is in seconds and a Failed endpoint or a rolled-back update is named as such.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from seqguard.infra.deploy.aws import AwsSession
from seqguard.infra.deploy.errors import DeployError

_BROKEN = frozenset({"Failed", "OutOfService", "UpdateRollbackFailed"})


@dataclass(frozen=True)
class WaitSettings:
    timeout_s: float = 3600.0
    poll_s: float = 15.0


class WaitTimeout(DeployError):
    pass


class EndpointBroken(DeployError):
    pass


def wait_in_service(
    session: AwsSession,
    name: str,
    settings: WaitSettings,
    expect_config: str | None = None,
    on_poll: Callable[[str, float], None] | None = None,
) -> dict[str, Any]:
    """Wait until endpoint `name` is InService; with `expect_config`, also check the update was not rolled back."""
    deadline = time.monotonic() + settings.timeout_s
    while True:
        desc = session.call("sagemaker", "describe_endpoint", f"endpoint '{name}'", EndpointName=name)
        status = desc.get("EndpointStatus", "")
        if status == "InService":
            live = desc.get("EndpointConfigName")
            if expect_config and live != expect_config:
                why = desc.get("FailureReason") or "an auto-rollback alarm fired or the new fleet failed"
                raise EndpointBroken(
                    f"endpoint {name} is InService but runs {live}, not {expect_config}: "
                    f"the blue/green update was rolled back ({why})"
                )
            return desc
        if status in _BROKEN:
            raise EndpointBroken(f"endpoint {name} is {status}: {desc.get('FailureReason') or 'no reason given'}")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise WaitTimeout(
                f"endpoint {name} is still {status} after {settings.timeout_s:g} s (--wait-timeout). AWS carries on "
                "regardless: follow it with `seqguard deploy status`, then re-run apply to finish the remaining steps"
            )
        if on_poll:
            on_poll(status, remaining)
        time.sleep(min(settings.poll_s, remaining))


def wait_deleted(session: AwsSession, name: str, settings: WaitSettings) -> None:
    deadline = time.monotonic() + settings.timeout_s
    while True:
        desc = session.find("sagemaker", "describe_endpoint", f"endpoint '{name}'", EndpointName=name)
        if desc is None:
            return
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise WaitTimeout(
                f"endpoint {name} is still {desc.get('EndpointStatus')} after {settings.timeout_s:g} s; "
                "re-run destroy once it is gone"
            )
        time.sleep(min(settings.poll_s, remaining))
