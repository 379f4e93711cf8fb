"""Every AWS resource name a deployment uses, derived from the config in one place.

Models and endpoint configs are immutable in SageMaker, so their names carry what makes them different: the model
version label, and for endpoint configs a short digest of the variant settings (instance type, count, serverless
sizes), so changing only the instance count yields a new config instead of a name clash.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from seqguard.infra.deploy.config import DeployConfig

VARIANT_NAME = "AllTraffic"  # blue/green needs the same variant name in the old and new config: keep it fixed.
OWNER_TAG = "seqguard:deployment"
SCALABLE_DIMENSION = "sagemaker:variant:DesiredInstanceCount"


@dataclass(frozen=True)
class ResourceNames:
    deployment: str
    endpoint: str
    model: str
    endpoint_config: str
    repository: str
    scaling_policy: str
    scaling_resource_id: str
    alarm_prefix: str

    def alarm(self, suffix: str) -> str:
        return f"{self.alarm_prefix}{suffix}"

    def owns_versioned(self, resource_name: str) -> bool:
        """Whether a model/endpoint-config name has this deployment's prefix (tags decide ownership for real)."""
        return resource_name.startswith(f"{self.deployment}-")


def variant_digest(production_variant: dict[str, Any]) -> str:
    canonical = json.dumps(production_variant, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:8]


def model_name_for(config: DeployConfig) -> str:
    return f"{config.name}-{config.model.version}"


def names_for(config: DeployConfig, production_variant: dict[str, Any]) -> ResourceNames:
    model = model_name_for(config)
    return ResourceNames(
        deployment=config.name,
        endpoint=config.name,
        model=model,
        endpoint_config=f"{model}-{variant_digest(production_variant)}",
        repository=config.image.repository,
        scaling_policy=f"{config.name}-invocations-per-instance",
        scaling_resource_id=f"endpoint/{config.name}/variant/{VARIANT_NAME}",
        alarm_prefix=f"{config.name}-",
    )
