"""Pre-flight for `bentoml serve`, `make serve` and the container: settings, the repository against its manifest, and
the state store's durability, checked once with a clean one-line error before any worker starts.

    python -m seqguard.service.check    # exit 0: bentoml serve will load; exit 2: the message says what to fix

`bentoml serve` runs the same checks in its main process (an `on_deployment` hook of the service), so a broken
repository stops the server within seconds, naming the file, instead of a worker restarting forever.
"""

from __future__ import annotations

import logging
import sys

from seqguard.config import SequenceConfig
from seqguard.manifest import ManifestError, verify_repository
from seqguard.service.settings import ServiceSettings, SettingsError

log = logging.getLogger("seqguard.check")


class PreflightError(RuntimeError):
    pass


def preflight(settings: ServiceSettings | None = None) -> str:
    """A one-line summary of what will be served; raises PreflightError saying what to fix. Durability warnings that
    the policy lets through are logged loudly (level error), once per start."""
    try:
        settings = settings or ServiceSettings.from_env()
        if not (settings.repo / "manifest.json").exists():
            raise PreflightError(
                f"no model repository at {settings.repo.resolve()} (manifest.json missing): run `make model`, or set "
                "SEQGUARD_REPO to a repository written by `seqguard export`"
            )
        manifest = verify_repository(settings.repo)
    except (SettingsError, ManifestError) as e:
        raise PreflightError(str(e)) from None
    if settings.state == "redis":
        _check_redis(settings, manifest.sequence_config_model())
    from seqguard.service.loop import check_loop_settings

    try:
        check_loop_settings(settings, manifest)  # shadow repository, feedback store, score log (issue 17)
    except ValueError as e:
        raise PreflightError(str(e)) from None
    names = ", ".join(manifest.component_names) or "(none)"
    return (f"{settings.repo} verified; model {manifest.model_version}; components {names}; "
            f"backend {settings.backend}; state {settings.state}")


def _check_redis(settings: ServiceSettings, cfg: SequenceConfig) -> None:
    from seqguard.service.state import RedisStateStore

    assert settings.redis_url is not None
    store = RedisStateStore(settings.redis_url, cfg, timeout_seconds=2.0)
    try:
        problems, notes = store.persistence_problems()
    finally:
        store.close()
    for note in notes:
        log.warning("state store: %s", note)
    for problem in problems:
        if settings.redis_persistence == "require":
            raise PreflightError(f"{problem}; or set SEQGUARD_REDIS_PERSISTENCE=warn to accept the risk")
        log.error("state store NOT DURABLE: %s (SEQGUARD_REDIS_PERSISTENCE=warn)", problem)


def main() -> int:
    from seqguard.service.observability import setup_logging

    setup_logging()
    try:
        summary = preflight()
    except PreflightError as e:
        print(f"seqguard service: {e}", file=sys.stderr)
        return 2
    print(f"seqguard service: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
