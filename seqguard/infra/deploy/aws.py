"""boto3 clients for one region, and the one place AWS failures become a readable message.

Every call goes through `AwsSession.call`, which names the operation and the resource in the error, so a failure
deep inside apply reads "SageMaker CreateEndpointConfig on endpoint-config 'x' failed: access denied ..." rather
than a botocore traceback.
"""

from __future__ import annotations

import html
import os
import re
from collections.abc import Iterator
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
    ProfileNotFound,
    ReadTimeoutError,
)

from seqguard.infra.deploy.errors import AwsError

_NOT_FOUND_CODES = frozenset(
    {
        "RepositoryNotFoundException",
        "LifecyclePolicyNotFoundException",
        "ImageNotFoundException",
        "NoSuchEntity",
        "ResourceNotFound",
        "ResourceNotFoundException",
    }
)
# SageMaker and Application Auto Scaling report a missing resource as a ValidationException; only the text differs.
_NOT_FOUND_TEXT = ("Could not find", "No scaling policy found", "No scalable target found")
_ACCESS_CODES = frozenset({"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "UnauthorizedException"})
_QUOTA_CODES = frozenset({"ResourceLimitExceeded", "LimitExceededException", "ServiceQuotaExceededException"})
_THROTTLE_CODES = frozenset(
    {"Throttling", "ThrottlingException", "TooManyRequestsException", "RequestLimitExceeded", "SlowDown"}
)
_CREDENTIAL_CODES = frozenset(
    {
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "ExpiredToken",
        "ExpiredTokenException",
        "SignatureDoesNotMatch",
    }
)
_INVALID_CODES = frozenset(
    {"ValidationException", "ValidationError", "InvalidParameterException", "InvalidParameterValue"}
)


class AwsSession:
    """Clients for one region, optionally all pointed at one URL (moto_server, LocalStack)."""

    def __init__(self, region: str, endpoint_url: str | None = None, max_attempts: int = 5) -> None:
        self.region = region
        self.endpoint_url = endpoint_url
        self.max_attempts = max_attempts
        credentials: dict[str, str] = {}
        if endpoint_url and not (os.environ.get("AWS_ACCESS_KEY_ID") or os.environ.get("AWS_PROFILE")):
            # An emulator accepts any key; real credentials are still used when the environment has them.
            credentials = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
        try:
            self._session = boto3.session.Session(region_name=region, **credentials)
        except ProfileNotFound as e:
            raise AwsError(f"AWS profile not found: {e}") from None
        self._config = Config(
            retries={"max_attempts": max_attempts, "mode": "standard"},  # standard mode backs off on throttling
            connect_timeout=5,
            read_timeout=60,
            user_agent_extra="seqguard-deploy",
        )
        self._clients: dict[str, Any] = {}

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self._session.client(service, endpoint_url=self.endpoint_url, config=self._config)
        return self._clients[service]

    def call(self, service: str, operation: str, resource: str, **kwargs: Any) -> dict[str, Any]:
        """Run one API call; any failure becomes an AwsError naming the operation and `resource`."""
        client = self.client(service)
        try:
            return getattr(client, operation)(**kwargs)
        except ClientError as e:
            raise self._client_error(client, operation, resource, e) from None
        except (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError, ConnectionClosedError) as e:
            where = self.endpoint_url or f"the {self.region} endpoint of {self._label(client, operation)[0]}"
            raise AwsError(
                f"{self._what(client, operation, resource)} failed: cannot reach {where} "
                f"after {self.max_attempts} attempt(s) ({type(e).__name__}: {e}). "
                "Check --endpoint-url, the network and the region.",
                code=type(e).__name__,
                operation=self._label(client, operation)[1],
                resource=resource,
            ) from None
        except (NoCredentialsError, PartialCredentialsError) as e:
            raise AwsError(
                f"{self._what(client, operation, resource)} failed: no usable AWS credentials ({e}). "
                "Set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.",
                code=type(e).__name__,
            ) from None
        except BotoCoreError as e:
            raise AwsError(f"{self._what(client, operation, resource)} failed: {e}", code=type(e).__name__) from None

    def pages(
        self, service: str, operation: str, resource: str, token: str = "NextToken", **kwargs: Any
    ) -> Iterator[dict[str, Any]]:
        """Every page of a list/describe call, each fetched through `call`."""
        while True:
            page = self.call(service, operation, resource, **kwargs)
            yield page
            next_token = page.get(token)
            if not next_token:
                return
            kwargs[token] = next_token

    def find(self, service: str, operation: str, resource: str, **kwargs: Any) -> dict[str, Any] | None:
        """Like `call`, but a 'does not exist' answer is None instead of an error."""
        try:
            return self.call(service, operation, resource, **kwargs)
        except AwsError as e:
            if is_not_found(e.code, str(e)):
                return None
            raise

    def _label(self, client: Any, operation: str) -> tuple[str, str]:
        return client.meta.service_model.service_id, client.meta.method_to_api_mapping.get(operation, operation)

    def _what(self, client: Any, operation: str, resource: str) -> str:
        service, api = self._label(client, operation)
        return f"{service} {api} on {resource}"

    def _client_error(self, client: Any, operation: str, resource: str, e: ClientError) -> AwsError:
        code, message = error_code_and_message(e)
        service, api = self._label(client, operation)
        why = explain(code, message, service, api, self.max_attempts)
        return AwsError(
            f"{self._what(client, operation, resource)} failed: {why}",
            code=code,
            operation=api,
            resource=resource,
        )


def is_not_found(code: str, message: str) -> bool:
    return code in _NOT_FOUND_CODES or (code in _INVALID_CODES and any(t in message for t in _NOT_FOUND_TEXT))


def error_code_and_message(e: ClientError) -> tuple[str, str]:
    err = e.response.get("Error", {})
    code, message = str(err.get("Code", "")), str(err.get("Message", ""))
    # Some endpoints (emulators, proxies) answer a JSON API with an XML or HTML body; botocore then sees only the
    # HTTP status. Recover the real code so AccessDenied still reads as AccessDenied.
    inner_code = re.search(r"<Code>([^<]+)</Code>", message)
    if inner_code:
        code = inner_code.group(1)
        inner_message = re.search(r"<Message>([^<]*)</Message>", message)
        message = html.unescape(inner_message.group(1)) if inner_message else ""
    elif "<" in message:
        message = re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", message))).strip()
    return code, message[:400]


def explain(code: str, message: str, service: str, api: str, attempts: int) -> str:
    detail = f"{code}: {message}" if message else code
    if code in _ACCESS_CODES:
        return (
            f"access denied ({detail}). The identity running the deploy needs permission for this action "
            f"({_iam_action(service, api)})."
        )
    if code in _QUOTA_CODES:
        return (
            f"an account quota is exhausted ({detail}). Request an increase in Service Quotas "
            "(for endpoints: '<instance type> for endpoint usage'), or choose another instance type."
        )
    if code in _THROTTLE_CODES:
        return f"AWS kept throttling the request after {attempts} attempt(s) ({detail}). Wait a minute and re-run."
    if code in _CREDENTIAL_CODES:
        return f"the AWS credentials were rejected ({detail}). Refresh them (aws sso login, new keys) and re-run."
    if code in _INVALID_CODES:
        return f"AWS rejected the request as invalid ({detail})."
    if code.isdigit():
        return f"the endpoint answered HTTP {code} ({message or 'no details'})."
    return detail


def _iam_action(service: str, api: str) -> str:
    prefix = {"SageMaker": "sagemaker", "ECR": "ecr", "CloudWatch": "cloudwatch", "IAM": "iam", "STS": "sts"}.get(
        service, "application-autoscaling" if service == "Application Auto Scaling" else service.lower()
    )
    return f"{prefix}:{api}"
