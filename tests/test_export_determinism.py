"""The same checkpoint and flags give a byte-identical repository (issue 16): exported twice, every file compared,
manifest.json included; `created_at` comes from the content, never from the clock."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from types import SimpleNamespace

import pytest

from seqguard.cli import main
from seqguard.manifest import MANIFEST_FILE, Manifest, verify_repository
from tests.test_export import MODELS, exported, trained_checkpoint


def repo_bytes(root: Path) -> dict[str, bytes]:
    """Every file of a repository by relative path, manifest.json included; __pycache__ (what Triton's import of a
    python-backend model.py leaves) is not content."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts}


def assert_identical(a: Path, b: Path) -> None:
    fa, fb = repo_bytes(a), repo_bytes(b)
    assert sorted(fa) == sorted(fb), f"file lists differ: {sorted(set(fa) ^ set(fb))}"
    differ = [rel for rel in fa if fa[rel] != fb[rel]]
    assert not differ, f"files differ between two exports of the same checkpoint and flags: {differ}"
    assert Manifest.load(a).repo_digest == Manifest.load(b).repo_digest


def cli_export(ckpt: Path, out: Path, *flags: str) -> str:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(["export", "--models", str(ckpt), "--out", str(out), *flags])
    assert code == 0, buf.getvalue()
    return buf.getvalue()


def test_default_int8_export_is_byte_identical(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    """The CPU default (portable static int8, `--graph-opt auto`): calibration, quantization, gates and manifest
    give the same bytes on a second run (the first is test_export's cached repository)."""
    from seqguard.export.checkpoint import Checkpoint
    from seqguard.export.manifest import content_time

    first, _ = exported(tmp_path_factory, "cpu", "int8")
    ckpt = trained_checkpoint(tmp_path_factory)
    second = tmp_path / "repo"
    stdout = cli_export(ckpt, second, "--target", "cpu", "--precision", "int8")
    assert_identical(first, second)
    manifest = verify_repository(second)
    assert manifest.created_at == content_time(Checkpoint.open(ckpt))
    # auto is a rule (the plain graph), not a timing; no latency figure is pinned in the repository.
    assert manifest.export.graph_optimization == {m: "none" for m in MODELS}
    assert all(c.latency_ms == {} for c in manifest.components)
    assert "graph optimisation (timed)" not in stdout
    assert "ORT latency" in stdout  # still measured and printed


def test_fused_graph_export_is_byte_identical(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """The tiny checkpoint exported twice with ORTOptimizer's fused BERT graph (fp32): the optimiser's output, too,
    is the same file."""
    a, b = tmp_path / "a", tmp_path / "b"
    for out in (a, b):
        cli_export(tiny_checkpoint, out, "--precision", "fp32", "--graph-opt", "fused")
    assert verify_repository(a).export.graph_optimization["behaviour_bert"] == "fused"
    assert_identical(a, b)


def test_timed_graph_choice_is_recorded(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """`--graph-opt timed` (the only clock-dependent choice, never the default) writes the measurements that chose
    the graph into the manifest, and the choice follows them."""
    from seqguard.export.pipeline import FUSED_MIN_GAIN

    out = tmp_path / "repo"
    stdout = cli_export(tiny_checkpoint, out, "--precision", "fp32", "--graph-opt", "timed")
    manifest = verify_repository(out)
    bert = next(c for c in manifest.components if c.kind == "bert")
    t = bert.latency_ms
    assert t["plain_batch32"] > 0 and t["fused_batch32"] > 0
    chosen = "fused" if t["fused_batch32"] <= (1 - FUSED_MIN_GAIN) * t["plain_batch32"] else "none"
    assert manifest.export.graph_optimization[bert.name] == chosen
    assert all(c.latency_ms == {} for c in manifest.components if c.kind != "bert")  # nothing timed for the GRUs
    assert "depends on the timing" in stdout


def _ckpt(tmp_path: Path, created: object) -> SimpleNamespace:
    (tmp_path / "checkpoint.json").write_text("{}")
    return SimpleNamespace(root=tmp_path, index={} if created is None else {"created": created})


@pytest.mark.parametrize(("env", "created", "expect"), [
    ({"SOURCE_DATE_EPOCH": "0"}, "2026-11-30T14:00:29+00:00", "1970-01-01T00:00:00Z"),
    ({"SOURCE_DATE_EPOCH": " 1764511229 "}, None, "2025-11-30T14:00:29Z"),
    ({}, "2026-11-30T14:00:29+00:00", "2026-11-30T14:00:29Z"),
    ({"SOURCE_DATE_EPOCH": ""}, "2026-11-30T16:00:29+02:00", "2026-11-30T14:00:29Z"),  # empty = unset
    ({}, "2026-11-30T14:00:29", "2026-11-30T14:00:29Z"),  # no zone: UTC, as training writes it
])
def test_created_at_is_the_contents_time(tmp_path: Path, env: dict[str, str], created: str | None,
                                         expect: str) -> None:
    from seqguard.export.manifest import content_time

    assert content_time(_ckpt(tmp_path, created), env) == expect  # type: ignore[arg-type]


def test_created_at_without_a_checkpoint_time_is_the_files_time(tmp_path: Path) -> None:
    import os

    from seqguard.export.manifest import content_time

    ckpt = _ckpt(tmp_path, "not a date")
    os.utime(tmp_path / "checkpoint.json", (86400, 86400))
    assert content_time(ckpt, {}) == "1970-01-02T00:00:00Z"  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["yesterday", "-5", "1.5", "99999999999999999999"])
def test_bad_source_date_epoch_is_refused(value: str, tiny_checkpoint: Path, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", value)
    out = tmp_path / "repo"
    code = main(["export", "--models", str(tiny_checkpoint), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and f"SOURCE_DATE_EPOCH={value!r}" in err and "Traceback" not in err
    assert not out.exists() and not (out / MANIFEST_FILE).exists()
