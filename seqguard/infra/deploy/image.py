"""The commands that build the serving image and push it to ECR (this kit never runs Docker itself)."""

from __future__ import annotations

import shlex

from seqguard.infra.deploy.desired import DesiredState


def push_commands(desired: DesiredState) -> list[str]:
    image = desired.config.image
    local = f"{image.repository}:{image.tag}"
    q = shlex.quote
    return [
        f"aws ecr get-login-password --region {desired.config.region} | "
        f"docker login --username AWS --password-stdin {desired.registry}",
        # SageMaker runs linux/amd64 hosts; an image built on an arm64 laptop fails only at endpoint start.
        f"docker build --platform {image.platform} -f {q(image.dockerfile)} -t {local} {q(image.build_context)}",
        f"docker tag {local} {desired.image_uri}",
        f"docker push {desired.image_uri}",
    ]


def render_push_commands(desired: DesiredState) -> str:
    return "Build and push the image (needs Docker and the AWS CLI):\n" + "\n".join(
        f"  {c}" for c in push_commands(desired)
    )
