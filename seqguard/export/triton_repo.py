"""config.pbtxt for every served model and the `seqguard_ensemble`, built as Triton's own ModelConfig protobuf.

Building the protobuf (tritonclient ships Triton's model_config.proto) rather than formatting text means a config
that does not fit the schema cannot be written; `validate_config` re-parses what was written, for tests and CI.
Dims, names and types come from seqguard.contracts, never from literals here.

- cpu: python-backend models (seqguard/export/triton_model.py as 1/model.py) running ONNX Runtime on 1/model.onnx: the
  only backend the standalone tritonserver of the nvidia-pytriton wheel has.
- gpu: `onnxruntime_onnx` models with the TensorRT execution accelerator (CUDA is ORT's fallback for what
  TensorRT does not take), plus, when a TensorRT engine was built, a `tensorrt_plan` twin `<name>_plan`.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from seqguard.contracts import ENSEMBLE_MODEL, MODEL_INPUTS, MODEL_OUTPUT, TensorSpec, ensemble_output

MODEL_PY = Path(__file__).with_name("triton_model.py")
CONFIG_FILE = "config.pbtxt"
VERSION = "1"
PLAN_SUFFIX = "_plan"


def _pb():  # the generated protobuf module, imported lazily (tritonclient is heavy)
    from tritonclient.grpc import model_config_pb2

    return model_config_pb2


@dataclass(frozen=True)
class ServingSettings:
    target: str  # cpu | gpu
    precision: str  # fp32 | int8 | fp16
    max_batch_size: int = 64
    instances: int = 1
    intra_op_threads: int = 1
    preferred_batch_sizes: tuple[int, ...] = (8, 16, 32)
    max_queue_delay_us: int = 2000
    max_seq_len: int = 128  # the SequenceConfig's max_len: warm-up and TensorRT profile bounds
    trt_workspace_bytes: int = 1 << 30
    trt_cache_dir: str = "/tmp/seqguard_trt_cache"  # outside the repository: the manifest pins the repository

    def preferred(self) -> list[int]:
        return sorted({b for b in self.preferred_batch_sizes if 1 <= b <= self.max_batch_size})


def _dtype(spec: TensorSpec) -> int:
    return getattr(_pb(), f"TYPE_{spec.triton_dtype}")


def _io(cfg, inputs: tuple[TensorSpec, ...], outputs: list[tuple[str, TensorSpec]]) -> None:
    for spec in inputs:
        t = cfg.input.add()
        t.name, t.data_type = spec.name, _dtype(spec)
        t.dims.extend(spec.dims)
    for name, spec in outputs:
        t = cfg.output.add()
        t.name, t.data_type = name, _dtype(spec)
        t.dims.extend(spec.dims)


def _warmup(cfg, shapes: list[tuple[int, int]]) -> None:
    for batch, length in shapes:
        w = cfg.model_warmup.add()
        w.name, w.batch_size = f"batch{batch}_len{length}", batch
        for spec in MODEL_INPUTS:
            # Zeros are [PAD] tokens with an all-zero mask: valid for every model (no out-of-vocabulary ids).
            inp = w.inputs[spec.name]
            inp.data_type = _dtype(spec)
            inp.dims.extend([length])
            inp.zero_data = True


def _common(name: str, s: ServingSettings):
    pb = _pb()
    cfg = pb.ModelConfig(name=name, max_batch_size=s.max_batch_size)
    _io(cfg, MODEL_INPUTS, [(MODEL_OUTPUT.name, MODEL_OUTPUT)])
    cfg.version_policy.latest.num_versions = 1
    cfg.dynamic_batching.preferred_batch_size.extend(s.preferred())
    cfg.dynamic_batching.max_queue_delay_microseconds = s.max_queue_delay_us
    group = cfg.instance_group.add()
    group.count = s.instances
    group.kind = pb.ModelInstanceGroup.KIND_CPU if s.target == "cpu" else pb.ModelInstanceGroup.KIND_GPU
    return cfg


def python_model_config(name: str, s: ServingSettings, onnx_file: str = "model.onnx"):
    cfg = _common(name, s)
    cfg.backend = "python"
    cfg.parameters["onnx_file"].string_value = onnx_file
    cfg.parameters["intra_op_threads"].string_value = str(s.intra_op_threads)
    _warmup(cfg, [(1, 16), (min(8, s.max_batch_size), min(64, s.max_seq_len))])
    return cfg


def _profile(s: ServingSettings, batch: int, length: int) -> str:
    return ",".join(f"{spec.name}:{batch}x{length}" for spec in MODEL_INPUTS)


TRT_PRECISION = {"fp32": "FP32", "fp16": "FP16", "int8": "INT8"}


def onnxruntime_model_config(name: str, s: ServingSettings):
    cfg = _common(name, s)
    cfg.platform = "onnxruntime_onnx"
    cfg.default_model_filename = "model.onnx"
    trt = cfg.optimization.execution_accelerators.gpu_execution_accelerator.add()
    trt.name = "tensorrt"
    opt_batch = max(s.preferred() or [1])
    for key, value in {
        "precision_mode": TRT_PRECISION[s.precision],
        "max_workspace_size_bytes": str(s.trt_workspace_bytes),
        "trt_engine_cache_enable": "true",
        "trt_engine_cache_path": f"{s.trt_cache_dir}/{name}",
        # One profile over every batch and sequence length the service sends, so TensorRT never rebuilds an engine
        # at request time.
        "trt_profile_min_shapes": _profile(s, 1, 1),
        "trt_profile_opt_shapes": _profile(s, opt_batch, min(64, s.max_seq_len)),
        "trt_profile_max_shapes": _profile(s, s.max_batch_size, s.max_seq_len),
    }.items():
        trt.parameters[key] = value
    _warmup(cfg, [(1, s.max_seq_len), (s.max_batch_size, s.max_seq_len)])
    return cfg


def plan_model_config(name: str, s: ServingSettings):
    cfg = _common(name, s)
    cfg.platform = "tensorrt_plan"
    cfg.default_model_filename = "model.plan"
    _warmup(cfg, [(1, s.max_seq_len)])
    return cfg


def ensemble_config(components: list[str], s: ServingSettings):
    pb = _pb()
    cfg = pb.ModelConfig(name=ENSEMBLE_MODEL, platform="ensemble", max_batch_size=s.max_batch_size)
    _io(cfg, MODEL_INPUTS, [(ensemble_output(c), MODEL_OUTPUT) for c in components])
    for c in components:
        step = cfg.ensemble_scheduling.step.add()
        step.model_name, step.model_version = c, -1
        for spec in MODEL_INPUTS:
            step.input_map[spec.name] = spec.name
        step.output_map[MODEL_OUTPUT.name] = ensemble_output(c)
    return cfg


def render(cfg) -> str:
    from google.protobuf import text_format

    return text_format.MessageToString(cfg)


def validate_config(text: str):
    """Parse config.pbtxt text against Triton's schema; raises google.protobuf.text_format.ParseError."""
    from google.protobuf import text_format

    return text_format.Parse(text, _pb().ModelConfig())


def _write(folder: Path, cfg) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / CONFIG_FILE
    text = render(cfg)
    validate_config(text)
    path.write_text(text)
    return path


def write_model(repo: Path, name: str, onnx_src: Path, s: ServingSettings) -> Path:
    """<repo>/<name>/config.pbtxt + 1/model.onnx (+ 1/model.py on cpu); returns the served file's path."""
    folder = repo / name
    version = folder / VERSION
    version.mkdir(parents=True, exist_ok=True)
    served = version / "model.onnx"
    shutil.copyfile(onnx_src, served)
    if s.target == "cpu":
        shutil.copyfile(MODEL_PY, version / "model.py")
        _write(folder, python_model_config(name, s))
    else:
        _write(folder, onnxruntime_model_config(name, s))
    return served


def write_plan_model(repo: Path, name: str, plan_src: Path, s: ServingSettings) -> str:
    twin = name + PLAN_SUFFIX
    version = repo / twin / VERSION
    version.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(plan_src, version / "model.plan")
    _write(repo / twin, plan_model_config(twin, s))
    return twin


def write_ensemble(repo: Path, components: list[str], s: ServingSettings) -> Path:
    folder = repo / ENSEMBLE_MODEL
    version = folder / VERSION
    version.mkdir(parents=True, exist_ok=True)
    # Triton wants the version folder even though an ensemble has no weights; packagers (bentoml build, some
    # artifact stores) drop empty folders, so it carries a note and survives being copied.
    (version / "ENSEMBLE.txt").write_text(
        "The seqguard ensemble has no weights: config.pbtxt one level up routes the inputs to each model.\n"
    )
    return _write(folder, ensemble_config(components, s))
