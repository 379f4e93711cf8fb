"""The Triton repository's manifest: what `seqguard export` wrote, and the check the service runs before serving it.

manifest.json (repository root) pins every file by sha256 and size, and carries what the service needs besides the
models: the SequenceConfig (and its hash), the tokenizer hash, the ensemble / rules / detector contents, thresholds,
evaluation figures, export settings, library versions and the served components with their tensor names.
`verify_repository` refuses a repository whose files differ from it in any way (missing, changed or unexpected),
listing every difference, so a half-copied or hand-edited repository never serves.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from seqguard.config import SequenceConfig
from seqguard.contracts import ENSEMBLE_MODEL, MANIFEST_FILE

MANIFEST_FORMAT = "seqguard-triton-repo-v1"
# Not part of the pinned content: the manifest itself, the tracked README, and what Python writes next to a
# python-backend model.py when Triton imports it.
IGNORED_NAMES = frozenset({MANIFEST_FILE, "README.md"})
IGNORED_DIRS = frozenset({"__pycache__"})
# What the service loads from the repository root (never subfolders: Triton takes every subfolder for a model).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


class ManifestError(ValueError):
    """A repository that does not match its manifest (or has none); the message lists every problem."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FileEntry(_Model):
    sha256: str
    size: int


class TensorEntry(_Model):
    name: str
    datatype: str  # Triton spelling: INT64, FP32
    dims: list[int]  # without the batch dimension


class ComponentEntry(_Model):
    """One served sequence model: a Triton model of the same name, fed by the ensemble."""

    name: str
    kind: str  # bert | rnn
    triton_model: str
    backend: str  # python (ORT inside Triton's python backend) | onnxruntime | tensorrt
    precision: Literal["fp32", "int8", "fp16"]
    file: str  # repository-relative path of the served ONNX file
    size_bytes: int
    ensemble_output: str
    # A native TensorRT twin (gpu target, TensorRT and a GPU present at export): its Triton model name and the
    # TensorRT version / GPU it was built for (an engine runs only there).
    plan: dict[str, str] | None = None
    quantization: dict[str, Any] | None = None  # settings and the integer nodes the served graph really has
    parity: dict[str, Any] = Field(default_factory=dict)
    latency_ms: dict[str, float] = Field(default_factory=dict)


class ExportSettings(_Model):
    target: Literal["cpu", "gpu"]
    precision: Literal["fp32", "int8", "fp16"]
    cpu_flavor: str | None = None
    int8_mode: str | None = None  # dynamic | static
    quantization: dict[str, Any] | None = None
    opset: int
    graph_optimization: dict[str, str] = Field(default_factory=dict)  # model -> none | fused
    max_batch_size: int
    instances: int
    intra_op_threads: int | None = None
    preferred_batch_sizes: list[int]
    max_queue_delay_us: int


class Manifest(_Model):
    format: Literal["seqguard-triton-repo-v1"] = MANIFEST_FORMAT
    created_at: str
    model_version: str  # what every service answer reports
    checkpoint_version: str
    sequence_config: dict[str, Any]
    sequence_config_hash: str
    tokenizer_hash: str
    tokenizer_files: list[str]
    ensemble_file: str
    ensemble: dict[str, Any]
    rules_file: str
    rules: Any
    unsupervised_file: str
    unsupervised: dict[str, Any]
    thresholds: dict[str, dict[str, float]]
    evaluation: dict[str, Any]
    export: ExportSettings
    versions: dict[str, str]
    ensemble_model: str = ENSEMBLE_MODEL
    inputs: list[TensorEntry]
    output: TensorEntry
    components: list[ComponentEntry]
    files: dict[str, FileEntry] = Field(default_factory=dict)
    repo_digest: str = ""  # sha256 over the sorted file entries: one id for the whole content

    def sequence_config_model(self) -> SequenceConfig:
        return SequenceConfig.model_validate(self.sequence_config)

    @property
    def component_names(self) -> list[str]:
        return [c.name for c in self.components]

    @classmethod
    def load(cls, repo: str | Path) -> Manifest:
        path = Path(repo) / MANIFEST_FILE
        if not path.is_file():
            raise ManifestError(f"{path}: no manifest (is {repo} a repository written by `seqguard export`?)")
        try:
            return cls.model_validate_json(path.read_text())
        except (ValidationError, ValueError) as e:
            raise ManifestError(f"{path}: not a valid seqguard manifest: {e}") from None


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _ignored(rel: Path) -> bool:
    return rel.as_posix() in IGNORED_NAMES or any(part in IGNORED_DIRS for part in rel.parts) or rel.suffix == ".pyc"


def scan_files(repo: str | Path) -> dict[str, FileEntry]:
    """Every pinned file under `repo` (relative POSIX path -> sha256, size)."""
    root = Path(repo)
    out: dict[str, FileEntry] = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if p.is_file() and not _ignored(rel):
            out[rel.as_posix()] = FileEntry(sha256=sha256_file(p), size=p.stat().st_size)
    return out


def digest_files(files: dict[str, FileEntry]) -> str:
    blob = json.dumps({k: [v.sha256, v.size] for k, v in sorted(files.items())}, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()


def write_manifest(repo: str | Path, manifest: Manifest) -> Manifest:
    """Pin the repository's current files into `manifest` and write it to <repo>/manifest.json."""
    files = scan_files(repo)
    final = manifest.model_copy(update={"files": files, "repo_digest": digest_files(files)})
    (Path(repo) / MANIFEST_FILE).write_text(final.model_dump_json(indent=1) + "\n")
    return final


def verify_repository(repo: str | Path) -> Manifest:
    """The repository's manifest, after checking that every file matches it exactly; raises ManifestError listing
    every missing, changed and unexpected file (and any inconsistency inside the manifest)."""
    root = Path(repo)
    if not root.is_dir():
        raise ManifestError(f"{root}: model repository not found")
    manifest = Manifest.load(root)
    actual = scan_files(root)
    problems: list[str] = []
    for rel, want in sorted(manifest.files.items()):
        got = actual.get(rel)
        if got is None:
            problems.append(f"missing: {rel}")
        elif got != want:
            how = "size" if got.size != want.size else "sha256"
            problems.append(f"changed: {rel} ({how} differs from the manifest)")
    problems += [f"unexpected: {rel}" for rel in sorted(set(actual) - set(manifest.files))]
    if manifest.files and digest_files(manifest.files) != manifest.repo_digest:
        problems.append("manifest: repo_digest does not match its own file list (manifest edited by hand?)")
    if manifest.sequence_config_model().config_hash() != manifest.sequence_config_hash:
        problems.append("manifest: sequence_config does not match sequence_config_hash")
    tok = manifest.files.get("tokenizer.json")
    if tok is None or tok.sha256 != manifest.tokenizer_hash:
        problems.append("manifest: tokenizer.json is not the tokenizer the manifest pins (tokenizer_hash)")
    for c in manifest.components:
        if c.file not in manifest.files:
            problems.append(f"manifest: component {c.name} names {c.file}, which the manifest does not pin")
    served = [manifest.ensemble_model, *(c.triton_model for c in manifest.components),
              *(c.plan["model"] for c in manifest.components if c.plan and "model" in c.plan)]
    # Version folders can be empty (the ensemble's), so no pinned file proves they exist; Triton needs them.
    problems += [f"missing: {m}/1/ (Triton model version folder)" for m in served if not (root / m / "1").is_dir()]
    if problems:
        raise ManifestError(f"{root} does not match its manifest ({len(problems)} problem(s)):\n  "
                            + "\n  ".join(problems))
    return manifest
