"""Failures the deploy commands report as one message. The CLI maps `exit_code` onto its own error type."""

from __future__ import annotations


class DeployError(Exception):
    """Base class: a message meant for the person running the command, never a traceback."""

    exit_code = 1


class ConfigError(DeployError):
    """The config or capacity file is wrong; nothing was sent to AWS."""

    exit_code = 2


class AwsError(DeployError):
    """An AWS call failed; the message names the operation and the resource."""

    def __init__(self, message: str, *, code: str = "", operation: str = "", resource: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.operation = operation
        self.resource = resource


class PlanBlocked(DeployError):
    """The current account state conflicts with the config in a way apply must not paper over."""
