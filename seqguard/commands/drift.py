"""`seqguard drift`: the score log against the checkpoint's training reference -> drift.json + drift.html."""

from __future__ import annotations

import argparse
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from seqguard.cli import CliError
from seqguard.commands.arguments import add_models, add_out

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)([mhd])$")


def parse_since(text: str | None, now: datetime | None = None) -> datetime | None:
    """ISO 8601 (a date, or a time with an offset; naive means UTC) or a look-back like 30m, 24h, 7d."""
    if not text:
        return None
    m = _RELATIVE.match(text.strip())
    if m:
        unit = {"m": "minutes", "h": "hours", "d": "days"}[m.group(2)]
        return (now or datetime.now(UTC)) - timedelta(**{unit: float(m.group(1))})
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise CliError(f"--since: {text!r} is neither ISO 8601 (2026-11-30T00:00:00Z) nor a look-back (24h, 7d)"
                       ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "drift",
        help="compare the score log's live windows with the training reference (PSI, scores, decisions)",
        description="Read the service's score log (a folder, a file or s3://bucket/prefix), compare its windows' "
        "aggregate features and scores with the drift reference saved in the checkpoint (or the repository "
        "exported from it), and write OUT/drift.json, OUT/drift.html and OUT/evidently.html. PSI is the same "
        "function as the service's seqguard_feature_psi / seqguard_score_psi gauges.",
    )
    add_models(p, "checkpoint folder or Triton repository")
    p.add_argument("--log", required=True, help="score log: folder, Parquet file or s3://bucket/prefix")
    p.add_argument("--since", default=None, help="only rows from then on: ISO 8601 or a look-back (24h, 7d)")
    add_out(p, "report folder (default reports/drift)", default=Path("reports/drift"))
    p.add_argument("--threshold", type=float, default=None, help="PSI above which a column counts as drifted "
                   "(default 0.25)")
    p.add_argument("--no-evidently", action="store_true", help="skip Evidently's per-column HTML report")
    p.add_argument("--fail-on-drift", action="store_true", help="exit 1 when anything drifted (for cron / CI)")
    p.add_argument("--publish-to", metavar="ENDPOINT", default=None, help="put the max feature PSI and the score "
                   "PSI into CloudWatch for this SageMaker endpoint (the deployment's drift alarms watch them)")
    p.add_argument("--region", default=None, help="AWS region for --publish-to (default: the AWS environment's)")
    p.add_argument("--endpoint-url", default=None, help="send the CloudWatch call to this URL (moto_server)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from seqguard.drift import PSI_ALERT, DriftError, load_reference, load_reference_sample
    from seqguard.drift_report import write_drift_report
    from seqguard.service.score_log import log_features, read_score_log

    threshold = PSI_ALERT if args.threshold is None else args.threshold
    if not threshold > 0:
        raise CliError(f"--threshold must be positive, got {threshold}")
    since = parse_since(args.since)
    try:
        ref = load_reference(args.models)
        sample = None if args.no_evidently else load_reference_sample(args.models)
        frame = read_score_log(args.log, since)
        if not len(frame):
            raise DriftError(f"the score log has no primary rows{' since ' + since.isoformat() if since else ''}")
        versions = sorted(frame["model_version"].astype(str).unique())
        meta = {"log": str(args.log), "since": since.isoformat() if since else None, "model_versions": versions,
                "live_from": frame["ts"].min().isoformat(), "live_to": frame["ts"].max().isoformat()}
        result = write_drift_report(args.out, ref, sample, log_features(frame), frame["score"].to_numpy(),
                                    frame["decision"].to_numpy(), threshold, meta, not args.no_evidently)
    except DriftError as e:
        raise CliError(str(e)) from None
    except OSError as e:
        raise CliError(f"cannot read or write: {e}") from None
    if args.publish_to:
        _publish(args, result)
    top = list(result["feature_psi"].items())[:3]
    print(f"wrote {args.out / 'drift.json'} and drift.html: {result['live_windows']:,} live windows, score PSI "
          f"{result['score_psi']:.3f}, top features " + ", ".join(f"{k} {v:.3f}" for k, v in top))
    if result["alert"]:
        print(f"DRIFT: {len(result['drifted_features'])} feature(s) over PSI {threshold}"
              + (f" ({', '.join(result['drifted_features'][:5])})" if result["drifted_features"] else "")
              + (f"; score PSI {result['score_psi']:.3f}" if result["score_psi"] > threshold else ""))
        return 1 if args.fail_on_drift else 0
    print("no drift above the threshold")
    return 0


def _publish(args: argparse.Namespace, result: dict) -> None:
    import os

    from seqguard.infra.deploy.aws import AwsSession
    from seqguard.infra.deploy.errors import DeployError
    from seqguard.infra.deploy.loop import publish_drift

    region = args.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if not region:
        raise CliError("--publish-to needs --region (or AWS_REGION)")
    try:
        publish_drift(AwsSession(region, endpoint_url=args.endpoint_url), args.publish_to, result)
    except DeployError as e:
        raise CliError(str(e), exit_code=e.exit_code) from None
    print(f"published drift metrics for endpoint {args.publish_to} to CloudWatch")
