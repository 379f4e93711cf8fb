"""Pre-flight for `make serve` / container start: settings and repository checked with a clean one-line error.

    python -m service.check    # exit 0: bentoml serve will load; exit 2: the message says what to fix
"""

from __future__ import annotations

import sys

from seqguard.manifest import ManifestError, verify_repository
from service.settings import ServiceSettings, SettingsError


def main() -> int:
    try:
        settings = ServiceSettings.from_env()
        manifest = verify_repository(settings.repo)
    except (SettingsError, ManifestError) as e:
        print(f"seqguard service: {e}", file=sys.stderr)
        return 2
    names = ", ".join(manifest.component_names) or "(none)"
    print(f"seqguard service: {settings.repo} verified; model {manifest.model_version}; components {names}; "
          f"backend {settings.backend}; state {settings.state}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
