"""seqguard export on a tiny checkpoint trained by the real training API: repositories, configs, gates, manifest."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from seqguard.cli import main
from seqguard.contracts import ENSEMBLE_MODEL, MANIFEST_FILE, MODEL_INPUTS, ensemble_output

MODELS = ("behaviour_bert", "sequence_rnn", "unsupervised_sequence")


# ---------------------------------------------------------------------------------------------------------------------
# Shared artefacts. Cached under pytest's base temp folder by name, so test_triton.py (which imports these helpers)
# reuses the same checkpoint and repository instead of training and exporting again.


def trained_checkpoint(factory: pytest.TempPathFactory) -> Path:
    """A checkpoint trained in seconds by seqguard.train.pipeline.train_checkpoint on generated traffic. The tiny
    config is widened a little (hidden 32, 4 epochs) so the BERT head learns something: the int8 gate compares
    rankings, and an untrained head's near-constant logits rank by noise."""
    out = factory.getbasetemp() / "export_tiny_ckpt"
    if (out / "checkpoint.json").is_file():
        return out
    from seqguard.generator import GeneratorConfig, generate
    from seqguard.train.config import TINY_CONFIG, parse_train_config
    from seqguard.train.pipeline import train_checkpoint

    raw = yaml.safe_load(TINY_CONFIG.read_text())
    raw["bert"].update(hidden=32, intermediate=64, epochs=4, lr=2e-3)
    raw["rnn"].update(epochs=3)
    raw["calibration_windows"] = 160
    data = generate(GeneratorConfig(users=400, days=5, seed=1))
    train_checkpoint(data.events, parse_train_config(raw), out, progress=False, log=lambda _: None)
    return out


def exported(factory: pytest.TempPathFactory, target: str, precision: str) -> tuple[Path, str]:
    """(repository, the command's stdout) of `seqguard export` run once per target / precision."""
    repo = factory.getbasetemp() / f"export_repo_{target}_{precision}"
    log = repo.with_suffix(".stdout")
    if not (repo / MANIFEST_FILE).is_file():
        ckpt = trained_checkpoint(factory)
        import contextlib
        import io

        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            code = main(["export", "--models", str(ckpt), "--out", str(repo), "--target", target,
                         "--precision", precision])
        assert code == 0, buf.getvalue()
        log.write_text(buf.getvalue())
    return repo, log.read_text()


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return trained_checkpoint(tmp_path_factory)


@pytest.fixture(scope="module")
def cpu_repo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    return exported(tmp_path_factory, "cpu", "int8")


@pytest.fixture(scope="module")
def gpu_repo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    return exported(tmp_path_factory, "gpu", "fp16")


def parse_config(path: Path) -> model_config_pb2.ModelConfig:
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


# ---------------------------------------------------------------------------------------------------------------------
# The cpu repository


def test_cpu_int8_repository(cpu_repo: tuple[Path, str]) -> None:
    from seqguard.manifest import verify_repository

    repo, stdout = cpu_repo
    manifest = verify_repository(repo)
    assert manifest.export.target == "cpu" and manifest.export.precision == "int8"
    assert manifest.export.quantization and manifest.export.quantization["mode"] == "static"
    assert manifest.component_names == list(MODELS)
    assert [t.name for t in manifest.inputs] == [s.name for s in MODEL_INPUTS]
    for c in manifest.components:
        assert c.ensemble_output == ensemble_output(c.name)
        assert c.parity["onnx_vs_torch_max_abs"] <= 1e-4
        assert c.parity["decision_agreement"] >= 0.99
        assert c.parity["decision_basis"] == "ensemble"  # the checkpoint's stacker uses both models
        assert c.latency_ms == {}  # measured and printed (the table below), never pinned: reproducible repository
        assert (repo / c.name / "1" / "model.py").is_file()
    # The service needs only the repository: scorer files, tokenizer and sequence config are inside it.
    for name in ("ensemble.json", "rules.yaml", "unsupervised.json", "sequence_config.json", "tokenizer.json"):
        assert name in manifest.files
    assert manifest.thresholds["main"]["block"] >= manifest.thresholds["main"]["review"]
    assert manifest.sequence_config_model().config_hash() == manifest.sequence_config_hash
    # Only model folders at the top level (Triton takes every sub-folder for a model).
    assert sorted(p.name for p in repo.iterdir() if p.is_dir()) == sorted([*MODELS, ENSEMBLE_MODEL])
    # Progress lines and the summary table.
    assert "parity gate: int8 vs fp32" in stdout
    table = stdout.split("\n\n")[-1]
    assert table.splitlines()[0].split()[:3] == ["model", "precision", "graph"]
    assert all(any(line.startswith(m) and " int8 " in line for line in table.splitlines()) for m in MODELS)
    assert all(float(line.split()[-1]) > 0 for line in table.splitlines()[2:])  # ORT batch-32 ms


def test_cpu_configs(cpu_repo: tuple[Path, str]) -> None:
    repo, _ = cpu_repo
    for name in MODELS:
        cfg = parse_config(repo / name / "config.pbtxt")
        assert cfg.name == name and cfg.backend == "python"
        assert [(i.name, i.data_type, list(i.dims)) for i in cfg.input] == [
            (s.name, model_config_pb2.TYPE_INT64, [-1]) for s in MODEL_INPUTS]
        assert [(o.name, list(o.dims)) for o in cfg.output] == [("logits", [2])]
        assert cfg.max_batch_size == 64
        assert list(cfg.dynamic_batching.preferred_batch_size) == [8, 16, 32]
        assert cfg.dynamic_batching.max_queue_delay_microseconds == 2000
        assert cfg.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
        assert int(cfg.parameters["intra_op_threads"].string_value) >= 1
        assert len(cfg.model_warmup) == 2 and cfg.version_policy.latest.num_versions == 1
    ens = parse_config(repo / ENSEMBLE_MODEL / "config.pbtxt")
    assert ens.platform == "ensemble"
    assert [o.name for o in ens.output] == [ensemble_output(m) for m in MODELS]
    assert [s.model_name for s in ens.ensemble_scheduling.step] == list(MODELS)
    for step in ens.ensemble_scheduling.step:
        assert dict(step.input_map) == {s.name: s.name for s in MODEL_INPUTS}
        assert dict(step.output_map) == {"logits": ensemble_output(step.model_name)}


def test_portable_int8_gate(cpu_repo: tuple[Path, str]) -> None:
    """The default int8 export is the portable preset, never one picked from the build CPU: static QDQ (a window's
    result does not depend on its batch), weights within what AVX2's u8s8 kernel multiplies exactly, so AVX2-only
    and AVX-512 VNNI CPUs compute the same integers; the accuracy gate held, and the manifest says what it assumes."""
    import onnx
    from onnx import numpy_helper

    from seqguard.export.quantize import AVX2_EXACT_WEIGHTS
    from seqguard.manifest import verify_repository

    repo, stdout = cpu_repo
    manifest = verify_repository(repo)
    assert manifest.export.cpu_flavor == "portable" and manifest.export.int8_mode == "static"
    isa = manifest.export.quantization["isa"]
    assert {"avx2", "avx512_vnni"} <= set(isa["exact_on"]) and isa["batch_independent"] is True
    assert isa["built_on"] in ("avx2", "avx512_vnni", "arm64")
    assert "auto picked" not in stdout
    quantized = 0
    for c in manifest.components:
        assert c.parity["roc_auc_drop"] is None or c.parity["roc_auc_drop"] <= 0.005
        assert c.parity["decision_agreement"] >= 0.99
        graph = onnx.load(str(repo / c.file)).graph
        for init in graph.initializer:
            if init.data_type != onnx.TensorProto.INT8:
                continue
            w = numpy_helper.to_array(init).astype(np.int32)
            assert AVX2_EXACT_WEIGHTS[0] <= w.min() and w.max() <= AVX2_EXACT_WEIGHTS[1]
            if w.ndim == 2 and w.shape[0] >= 2:
                # AVX2's VPMADDUBSW: u8 activation x s8 weight, adjacent K pairs summed in saturating int16. Worst
                # case (activation 255 on both) must stay below 32767 for the result to be exact.
                k = w.shape[0] // 2 * 2
                pair = 255 * (np.abs(w[0:k:2]) + np.abs(w[1:k:2]))
                assert pair.max() <= 32767
                quantized += 1
        recorded = (c.quantization or {}).get("int8_weight_range")
        if any(i.data_type == onnx.TensorProto.INT8 and i.dims for i in graph.initializer):
            assert recorded and AVX2_EXACT_WEIGHTS[0] <= recorded[0] and recorded[1] <= AVX2_EXACT_WEIGHTS[1]
    assert quantized > 0  # the BERT's MatMuls really are int8


def test_served_int8_close_to_torch(cpu_repo: tuple[Path, str], ckpt: Path) -> None:
    """The int8 files in the repository score the calibration windows like the checkpoint's PyTorch models."""
    from seqguard.export.checkpoint import Checkpoint
    from seqguard.export.parity import ort_logits, ort_session

    calib = Checkpoint.open(ckpt).calibration()
    for name in MODELS:
        got = ort_logits(ort_session(cpu_repo[0] / name / "1" / "model.onnx"), calib.chunks())
        ref = calib.saved_logits[name]
        if name == "unsupervised_sequence":
            # [-step, z - step]: z is a sum of standardised log-likelihood statistics, whose int8 error is a few
            # tenths of a standard deviation on this 16-wide toy; what the ensemble uses is its rank (percentile).
            # The step (a reason's argmax) may move between near-ties.
            from scipy.stats import spearmanr

            z_got, z_ref = got[:, 1] - got[:, 0], ref[:, 1] - ref[:, 0]
            assert spearmanr(z_got, z_ref).statistic > 0.95
            assert np.abs(z_got - z_ref).max() < 1.0
            assert (np.rint(got[:, 0]) == np.rint(ref[:, 0])).mean() >= 0.7
            continue
        assert np.abs(got - ref).max() < 0.05


# ---------------------------------------------------------------------------------------------------------------------
# The gpu repository (written and validated here; served by NVIDIA's Triton image)


def test_gpu_repository(gpu_repo: tuple[Path, str]) -> None:
    from seqguard.manifest import verify_repository

    repo, stdout = gpu_repo
    manifest = verify_repository(repo)
    assert manifest.export.target == "gpu" and manifest.export.precision == "fp16"
    for name in MODELS:
        cfg = parse_config(repo / name / "config.pbtxt")
        assert cfg.platform == "onnxruntime_onnx" and cfg.default_model_filename == "model.onnx"
        assert cfg.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
        (trt,) = cfg.optimization.execution_accelerators.gpu_execution_accelerator
        assert trt.name == "tensorrt"
        assert trt.parameters["precision_mode"] == "FP16"
        assert trt.parameters["trt_engine_cache_enable"] == "true"
        assert int(trt.parameters["max_workspace_size_bytes"]) > 0
        assert trt.parameters["trt_profile_max_shapes"].startswith("input_ids:64x32")  # max_len of max_events 15
        assert not (repo / name / "1" / "model.py").exists()
    parse_config(repo / ENSEMBLE_MODEL / "config.pbtxt")
    from seqguard.export.tensorrt_plan import unavailable_reason

    reason = unavailable_reason()
    if reason is not None:
        assert f"skipped: {reason}" in stdout
        assert not any(p.name.endswith("_plan") for p in repo.iterdir())


def test_gpu_int8_and_plan_configs_parse() -> None:
    from seqguard.export.triton_repo import (
        ServingSettings,
        onnxruntime_model_config,
        plan_model_config,
        render,
        validate_config,
    )

    s = ServingSettings(target="gpu", precision="int8", max_batch_size=32, instances=2, max_seq_len=128)
    cfg = validate_config(render(onnxruntime_model_config("behaviour_bert", s)))
    assert cfg.optimization.execution_accelerators.gpu_execution_accelerator[0].parameters["precision_mode"] == "INT8"
    assert cfg.instance_group[0].count == 2
    plan = validate_config(render(plan_model_config("behaviour_bert_plan", s)))
    assert plan.platform == "tensorrt_plan" and plan.default_model_filename == "model.plan"


# ---------------------------------------------------------------------------------------------------------------------
# Bad inputs


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().err


def test_missing_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "no_such_checkpoint"
    code, err = _run(["export", "--models", str(missing), "--out", str(tmp_path / "repo")], capsys)
    assert code == 2
    assert str(missing) in err and "Traceback" not in err
    assert not (tmp_path / "repo").exists()


def test_missing_model_folder(ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "ckpt"
    shutil.copytree(ckpt, broken)
    shutil.rmtree(broken / "sequence_rnn")
    code, err = _run(["export", "--models", str(broken), "--out", str(tmp_path / "repo")], capsys)
    assert code == 2
    assert str(broken / "sequence_rnn") in err


def test_unknown_precision(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["export", "--models", str(tmp_path), "--out", str(tmp_path / "r"), "--precision", "int4"])
    assert e.value.code == 2
    assert "invalid choice: 'int4'" in capsys.readouterr().err


def test_fp16_on_cpu_is_refused(ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _run(["export", "--models", str(ckpt), "--out", str(tmp_path / "repo"), "--target", "cpu",
                      "--precision", "fp16"], capsys)
    assert code == 2 and "fp16 is GPU only" in err


def test_refuses_to_replace_a_foreign_folder(ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("not a model repository")
    code, err = _run(["export", "--models", str(ckpt), "--out", str(out)], capsys)
    assert code == 2 and "refusing to replace" in err
    assert (out / "notes.txt").read_text() == "not a model repository"


def test_parity_gate_failure(ckpt: Path, cpu_repo: tuple[Path, str], tmp_path: Path,
                             capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A weight corrupted in the exported ONNX is caught by the fp32 gate: exit 3, the message names the model,
    metric, value and threshold, and the previous repository is left exactly as it was."""
    import onnx
    from onnx import numpy_helper

    import seqguard.export.pipeline as pipeline
    from seqguard.manifest import verify_repository

    real_export = pipeline.export_model

    def corrupting_export(kind: str, model_dir: Path, out_dir: Path, opset: int) -> Path:
        path = real_export(kind, model_dir, out_dir, opset)
        if kind == "bert":
            model = onnx.load(str(path))
            init = max(model.graph.initializer, key=lambda t: int(np.prod(t.dims)))  # the embedding matrix
            arr = numpy_helper.to_array(init).copy()
            arr *= 1.5
            init.CopyFrom(numpy_helper.from_array(arr, init.name))
            onnx.save(model, str(path))
        return path

    monkeypatch.setattr(pipeline, "export_model", corrupting_export)
    out = tmp_path / "repo"
    shutil.copytree(cpu_repo[0], out)
    before = verify_repository(out).repo_digest
    code, err = _run(["export", "--models", str(ckpt), "--out", str(out)], capsys)
    assert code == 3, err
    assert "behaviour_bert" in err and "onnx_vs_torch_max_abs" in err and "0.0001" in err
    assert "nothing was written" in err
    assert verify_repository(out).repo_digest == before  # untouched
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".repo.")]  # no temporary leftovers


def test_reduced_gate_fails_on_flipped_decisions() -> None:
    from seqguard.export.parity import ParityError, reduced_gate

    rng = np.random.default_rng(0)
    fp32 = rng.normal(size=(200, 2)).astype(np.float32)
    low = fp32.copy()
    low[:10] = low[:10, ::-1]  # 5 % of the windows change class
    labels = (fp32[:, 1] > fp32[:, 0]).astype(np.int64)
    with pytest.raises(ParityError) as e:
        reduced_gate("m", "int8", low, fp32, labels, lambda lg: np.argmax(lg, axis=1), "argmax")
    assert e.value.metric in ("roc_auc_drop", "decision_agreement") and e.value.model == "m"


# ---------------------------------------------------------------------------------------------------------------------
# Manifest verification


def test_manifest_catches_changed_missing_and_unexpected_files(cpu_repo: tuple[Path, str], tmp_path: Path) -> None:
    from seqguard.manifest import ManifestError, verify_repository

    repo = tmp_path / "repo"
    shutil.copytree(cpu_repo[0], repo)
    (repo / "sequence_rnn" / "1" / "__pycache__").mkdir(exist_ok=True)  # what Triton's import leaves: ignored
    (repo / "sequence_rnn" / "1" / "__pycache__" / "model.cpython-311.pyc").write_bytes(b"x")
    verify_repository(repo)
    with open(repo / "behaviour_bert" / "1" / "model.onnx", "ab") as f:
        f.write(b"\0")
    (repo / "rules.yaml").unlink()
    (repo / "extra.bin").write_bytes(b"?")
    with pytest.raises(ManifestError) as e:
        verify_repository(repo)
    msg = str(e.value)
    assert "changed: behaviour_bert/1/model.onnx" in msg
    assert "missing: rules.yaml" in msg
    assert "unexpected: extra.bin" in msg


def test_manifest_missing(tmp_path: Path) -> None:
    from seqguard.manifest import ManifestError, verify_repository

    with pytest.raises(ManifestError, match="no manifest"):
        verify_repository(tmp_path)


def test_tokenizer_loads_from_repository(cpu_repo: tuple[Path, str], ckpt: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(cpu_repo[0]))
    ref = AutoTokenizer.from_pretrained(str(ckpt / "tokenizer"))
    assert tok.get_vocab() == ref.get_vocab()


# ---------------------------------------------------------------------------------------------------------------------
# CPU flavour


@pytest.mark.parametrize(("flags", "machine", "flavor"), [
    ("fpu sse avx avx2 fma", "x86_64", "avx2"),
    ("avx2 avx512f avx512bw", "x86_64", "avx2"),  # AVX-512 without VNNI: the avx2 (u8 weight) preset
    ("avx2 avx512f avx512_vnni", "x86_64", "avx512_vnni"),
    ("", "aarch64", "arm64"),
])
def test_detect_cpu_flavor(flags: str, machine: str, flavor: str) -> None:
    from seqguard.export.quantize import detect_cpu_flavor

    assert detect_cpu_flavor(f"processor\t: 0\nflags\t\t: {flags}\n", machine) == flavor
