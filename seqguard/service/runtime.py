"""Assemble a ScoringEngine from the Triton repository and the service settings.

The repository is verified against its manifest first: a file that does not match its recorded sha256 stops the
service before it answers anything. Everything the service needs (sequence config, scorer files, ONNX files, the
model version) comes from that one verified folder, whichever backend serves the models.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from seqguard.config import SequenceConfig
from seqguard.cpuinfo import detect_cpu_flavor
from seqguard.features import TokenSpace
from seqguard.manifest import ManifestError, verify_repository
from seqguard.scoring.scorer import Scorer
from seqguard.service.backends import Backend, CircuitBreaker, EmbeddedBackend, LocalTritonBackend, TritonBackend
from seqguard.service.engine import ScoringEngine
from seqguard.service.settings import ServiceSettings
from seqguard.service.state import Journal, JournaledStore, MemoryStateStore, RedisStateStore, StateStore

log = logging.getLogger("seqguard.runtime")


class RepositoryError(RuntimeError):
    pass


def isa_warning(manifest: Any, serving: str) -> str | None:
    """A start-up warning when the CPU serving an int8 repository is not the one its export assumed / gated on."""
    export = manifest.export
    if export.target != "cpu" or export.precision != "int8":
        return None
    isa = (export.quantization or {}).get("isa")
    if not isa:  # written before the manifest recorded ISA assumptions: only the flavour is known
        flavor = export.cpu_flavor
        if flavor and flavor != serving:
            return (f"the int8 model was quantized for {flavor} and this CPU is {serving}: its scores may differ "
                    "from the ones its accuracy gate measured; re-export with `--cpu-flavor portable`")
        return None
    if serving not in isa.get("exact_on", []):
        return (f"the int8 model ({export.cpu_flavor} preset) is exact only on {isa.get('exact_on')} and this CPU is "
                f"{serving}: its scores may differ from the ones its accuracy gate measured on "
                f"{isa.get('built_on')}; re-export with `--cpu-flavor portable`")
    if serving != isa.get("built_on"):
        return (f"serving on a {serving} CPU; the int8 model's accuracy gate ran on {isa.get('built_on')}. Its "
                f"{export.cpu_flavor} preset computes the same integers on both ({isa.get('why')}), so scores match")
    return None


def build_backend(settings: ServiceSettings, manifest: Any) -> Backend:
    repo = settings.repo
    components = manifest.component_names
    if settings.backend == "embedded":
        cfg = manifest.sequence_config_model()
        return EmbeddedBackend({c.name: repo / c.file for c in manifest.components},
                               intra_op_threads=settings.intra_op_threads,
                               vocab_size=TokenSpace.of(cfg).vocab_size, max_len=cfg.max_len)
    kwargs: dict[str, Any] = {
        "timeout_seconds": settings.triton_timeout_ms / 1000.0,
        "retries": settings.triton_retries,
        "breaker": CircuitBreaker(settings.breaker_failures, settings.breaker_cooldown_s),
    }
    if settings.backend == "triton":
        return TritonBackend(settings.triton_url, components, **kwargs)
    return LocalTritonBackend(Path(repo), components, **kwargs)


def build_store(settings: ServiceSettings, cfg: SequenceConfig) -> StateStore:
    if settings.state == "redis":
        assert settings.redis_url is not None
        redis_store = RedisStateStore(settings.redis_url, cfg, ttl_seconds=settings.state_ttl_s)
        return JournaledStore(redis_store, Journal(settings.journal_dir, settings.journal_max_bytes),
                              policy=settings.state_failure_policy)
    return MemoryStateStore(cfg, max_entities=settings.state_max_entities, ttl_seconds=settings.state_ttl_s,
                            max_bytes=settings.state_max_bytes)


def build_engine(settings: ServiceSettings, metrics: Any = None) -> ScoringEngine:
    repo = Path(settings.repo)
    if not (repo / "manifest.json").exists():
        raise RepositoryError(
            f"no model repository at {repo.resolve()} (manifest.json missing): run `make model` to build the demo "
            "model, or set SEQGUARD_REPO to a repository written by `seqguard export`"
        )
    try:
        manifest = verify_repository(repo)
    except ManifestError as e:
        raise RepositoryError(str(e)) from None
    warning = isa_warning(manifest, detect_cpu_flavor())
    if warning:
        log.warning("cpu isa: %s", warning)
    cfg = manifest.sequence_config_model()
    # The scorer's files sit in the repository root, pinned by the manifest like the models.
    scorer = Scorer.load(repo)
    missing = sorted(set(scorer.components) - set(manifest.component_names))
    if missing:
        raise RepositoryError(f"{repo}: the ensemble needs {missing}, which the repository does not serve")
    return ScoringEngine(
        settings,
        cfg,
        scorer,
        build_backend(settings, manifest),
        build_store(settings, cfg),
        model_version=manifest.model_version,
        metrics=metrics,
    )
