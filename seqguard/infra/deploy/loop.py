"""The feedback loop's side of a deployment: drift metrics + alarms, and promotion only on `seqguard compare`'s word.

Drift. `seqguard drift --publish-to ENDPOINT` puts the report's maximum feature PSI and score PSI into CloudWatch
(namespace `Seqguard/Drift`, dimension EndpointName): the same numbers the service's Prometheus gauges carry, from
the same PSI function. With `alarms.drift_psi` set, the deployment owns two alarms on them (infra/prometheus/
seqguard_drift.rules.yml is the Prometheus twin over the gauges). Drift alarms never roll a deploy back: drift is
the traffic changing, not the release misbehaving.

Promotion. `seqguard deploy apply --promote compare.json` refuses, before any AWS call, unless the comparison says
the challenger wins; it then applies the config (whose model.version / image name the challenger) through the
usual canary, with the comparison's evidence in the tags of everything it creates and, after the rollout, on the
endpoint itself.
"""

from __future__ import annotations

import re
from typing import Any

from seqguard.infra.deploy.aws import AwsSession
from seqguard.infra.deploy.errors import DeployError

DRIFT_NAMESPACE = "Seqguard/Drift"
FEATURE_PSI_METRIC = "MaxFeaturePSI"
SCORE_PSI_METRIC = "ScorePSI"
FEATURE_PSI_ALARM = "drift-feature-psi"
SCORE_PSI_ALARM = "drift-score-psi"
EVIDENCE_PREFIX = "seqguard:promotion:"
_TAG_VALUE_BAD = re.compile(r"[^\w .:/=+\-@]")


class PromotionRefused(DeployError):
    exit_code = 1


def publish_drift(session: AwsSession, endpoint: str, result: dict[str, Any]) -> list[dict[str, Any]]:
    dims = [{"Name": "EndpointName", "Value": endpoint}]
    data = [{"MetricName": FEATURE_PSI_METRIC, "Dimensions": dims, "Value": float(result["max_feature_psi"]),
             "Unit": "None"},
            {"MetricName": SCORE_PSI_METRIC, "Dimensions": dims, "Value": float(result["score_psi"]), "Unit": "None"}]
    session.call("cloudwatch", "put_metric_data", f"drift metrics of {endpoint}", Namespace=DRIFT_NAMESPACE,
                 MetricData=data)
    return data


def _value(v: Any) -> str:
    text = f"{v:.4f}" if isinstance(v, float) else str(v)
    return _TAG_VALUE_BAD.sub("_", text)[:256]


def evidence_tags(result: dict[str, Any]) -> dict[str, str]:
    """The comparison, as tags (AWS tag values: letters, digits, space and _ . : / = + - @; at most 256)."""
    if not result.get("challenger_wins"):
        raise PromotionRefused(
            "promotion refused, nothing was changed: the comparison says the champion wins\n  "
            + "\n  ".join(result.get("reasons", [])))
    key = f"recall_at_{result['rule']['fpr']:g}_fpr"
    champ, chall = result["champion"], result["challenger"]
    fpr, data = result["rule"]["fpr"], result["data"]
    return {
        EVIDENCE_PREFIX + "verdict": "challenger wins",
        EVIDENCE_PREFIX + "champion": _value(champ["version"]),
        EVIDENCE_PREFIX + "challenger": _value(chall["version"]),
        EVIDENCE_PREFIX + "entity-pr-auc": _value(f"champion={champ['entity']['pr_auc']:.4f} "
                                                  f"challenger={chall['entity']['pr_auc']:.4f}"),
        EVIDENCE_PREFIX + "entity-recall": _value(f"champion={champ['entity'][key]:.4f} "
                                                  f"challenger={chall['entity'][key]:.4f} at fpr={fpr:g}"),
        EVIDENCE_PREFIX + "data": _value(f"{data['entities']} entities fingerprint={data['fingerprint']}"),
        EVIDENCE_PREFIX + "compared": _value(result["created"]),
    }


def tag_endpoint(session: AwsSession, endpoint: str, tags: dict[str, str]) -> None:
    """update_endpoint carries no tags: the endpoint gets the evidence of the release it now serves."""
    desc = session.call("sagemaker", "describe_endpoint", f"endpoint '{endpoint}'", EndpointName=endpoint)
    session.call("sagemaker", "add_tags", f"endpoint '{endpoint}'", ResourceArn=desc["EndpointArn"],
                 Tags=[{"Key": k, "Value": v} for k, v in tags.items()])
