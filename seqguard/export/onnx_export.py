"""Checkpoint models to ONNX with the contract's tensor names and dynamic batch / sequence axes.

- BERT family: Optimum's `main_export` (task text-classification), with a dummy-input generator that respects
  `type_vocab_size` (ours is 1; Optimum's default draws token_type_ids from {0, 1} and the trace fails).
- The sequence RNN: `torch.onnx.export` with the TorchScript exporter (`dynamo=False`, as Optimum itself calls it
  on torch >= 2.9), same input / output names and axes.
- Graph optimisation: Optimum's ORTOptimizer (transformer fusions) for BERT-family graphs, kept only where it
  measurably helps (see pipeline); never for the GPU target, whose TensorRT cannot take the fused contrib ops.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np

from seqguard.contracts import MODEL_INPUTS, MODEL_OUTPUT

DEFAULT_OPSET = 18  # Optimum's recommendation for BERT; the GRU exports at it too (checked with ORT 1.31)
INPUT_NAMES = [t.name for t in MODEL_INPUTS]
OUTPUT_NAME = MODEL_OUTPUT.name
_AXES = {0: "batch_size", 1: "sequence_length"}


class ExportError(RuntimeError):
    """A model that did not export; the message names it."""


def load_torch_model(model_dir: Path):  # -> transformers.PreTrainedModel
    from transformers import AutoModelForSequenceClassification

    import seqguard.models  # noqa: F401 - registers the RNN with the Auto classes

    return AutoModelForSequenceClassification.from_pretrained(model_dir).eval()


def torch_logits(model, batches: list[dict[str, np.ndarray]]) -> np.ndarray:
    """The PyTorch reference: fp32 logits for each batch, concatenated."""
    import torch

    model.eval()
    out = []
    with torch.inference_mode():
        for b in batches:
            feed = {k: torch.from_numpy(np.ascontiguousarray(b[k])) for k in INPUT_NAMES}
            out.append(model(**feed).logits.float().numpy())
    return np.concatenate(out)


def _bert_onnx_config(model_dir: Path):
    from optimum.exporters.onnx.model_configs import BertOnnxConfig
    from optimum.utils.input_generators import DummyTextInputGenerator
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model_dir)
    type_vocab = int(getattr(config, "type_vocab_size", 2) or 1)

    class _Inputs(DummyTextInputGenerator):
        def generate(self, input_name: str, framework: str = "pt", int_dtype: str = "int64",
                     float_dtype: str = "fp32"):
            if input_name == "token_type_ids":
                shape = [self.batch_size, self.sequence_length]
                return self.random_int_tensor(shape, type_vocab, min_value=0, framework=framework, dtype=int_dtype)
            return super().generate(input_name, framework, int_dtype, float_dtype)

    class _Config(BertOnnxConfig):
        DUMMY_INPUT_GENERATOR_CLASSES = (_Inputs,)

    return config, _Config(config, task="text-classification")


def _quiet_exporters() -> None:
    # Optimum and transformers log deprecation / "install accelerate" notices on every export; the pipeline prints
    # its own progress lines.
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    logging.getLogger("optimum").setLevel(logging.ERROR)


def export_bert(model_dir: Path, out_dir: Path, opset: int = DEFAULT_OPSET) -> Path:
    """Optimum export of a BERT-family classifier; returns <out_dir>/model.onnx."""
    from optimum.exporters.onnx import main_export

    _quiet_exporters()
    config, onnx_config = _bert_onnx_config(model_dir)
    if config.model_type not in ("bert", "roberta", "distilbert", "xlm-roberta", "electra"):
        raise ExportError(f"{model_dir}: model_type {config.model_type!r} is not a BERT-family encoder")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about HF's mask helpers are expected and harmless
        main_export(str(model_dir), str(out_dir), task="text-classification", opset=opset, do_validation=False,
                    custom_onnx_configs={"model": onnx_config}, device="cpu")
    path = out_dir / "model.onnx"
    _check_signature(path)
    return path


def export_rnn(model_dir: Path, out_dir: Path, opset: int = DEFAULT_OPSET) -> Path:
    """TorchScript ONNX export of SequenceRNNForSequenceClassification; returns <out_dir>/model.onnx."""
    import torch

    model = load_torch_model(model_dir)

    class _Logits(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, token_type_ids):  # type: ignore[no-untyped-def]
            return self.inner(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).logits

    # eval() on the wrapper too: export restores the wrapper's mode afterwards, recursively, and a wrapper left in
    # training mode would switch dropout back on in the model we then compare against.
    wrapper = _Logits(model).eval()
    # Two rows of different lengths, so nothing in the trace specialises on a full mask.
    ids = torch.full((2, 12), 5, dtype=torch.long)
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "model.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "GRU with batch_first and variable length" advice does not apply
        torch.onnx.export(
            wrapper, (ids, mask, torch.zeros_like(ids)), str(path),
            input_names=INPUT_NAMES, output_names=[OUTPUT_NAME],
            dynamic_axes={**{n: _AXES for n in INPUT_NAMES}, OUTPUT_NAME: {0: "batch_size"}},
            opset_version=opset, dynamo=False, do_constant_folding=True,
        )
    model.config.save_pretrained(out_dir)  # ORTQuantizer and readers expect config.json next to model.onnx
    _check_signature(path)
    return path


def export_model(kind: str, model_dir: Path, out_dir: Path, opset: int = DEFAULT_OPSET) -> Path:
    if kind == "bert":
        return export_bert(model_dir, out_dir, opset)
    if kind in ("rnn", "surprise"):  # custom forward (GRU / likelihood statistics): the TorchScript exporter
        return export_rnn(model_dir, out_dir, opset)
    raise ExportError(f"{model_dir}: no ONNX exporter for model kind {kind!r}")


def _check_signature(path: Path) -> None:
    """The graph must take exactly the contract's inputs (int64, [batch, seq]) and return logits [batch, 2]."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    names = [i.name for i in graph.input]
    if names != INPUT_NAMES:
        raise ExportError(f"{path}: inputs {names}, expected {INPUT_NAMES}")
    outs = [o.name for o in graph.output]
    if outs != [OUTPUT_NAME]:
        raise ExportError(f"{path}: outputs {outs}, expected {[OUTPUT_NAME]}")
    for i in graph.input:
        dims = i.type.tensor_type.shape.dim
        if i.type.tensor_type.elem_type != onnx.TensorProto.INT64 or len(dims) != 2 or any(d.dim_value for d in dims):
            raise ExportError(f"{path}: input {i.name} must be int64 [batch, seq] with both axes dynamic")


def optimize_bert(onnx_path: Path, out_dir: Path) -> Path:
    """ORTOptimizer level 2 (attention / layer-norm / GELU fusions, CPU); returns the optimised model's path."""
    from optimum.onnxruntime import ORTOptimizer
    from optimum.onnxruntime.configuration import OptimizationConfig

    logging.getLogger("optimum").setLevel(logging.WARNING)
    optimizer = ORTOptimizer.from_pretrained(onnx_path.parent, file_names=[onnx_path.name])
    optimizer.optimize(save_dir=out_dir, optimization_config=OptimizationConfig(optimization_level=2),
                       file_suffix="optimized")
    return out_dir / f"{onnx_path.stem}_optimized.onnx"
