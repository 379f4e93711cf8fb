"""Triton python-backend model: ONNX Runtime (CPU) on the .onnx file next to it. Copied by export as <model>/1/model.py.

Config parameters (config.pbtxt `parameters`): `onnx_file` (default model.onnx), `intra_op_threads` (0 = ORT's
default). Inputs and the output are read from the model config, so this file carries no names of its own.
"""

import json
import os

import numpy as np
import triton_python_backend_utils as pb_utils


def _feed(request, input_names):
    feed = {}
    for name in input_names:
        tensor = pb_utils.get_input_tensor_by_name(request, name)
        if tensor is None:
            raise ValueError(f"input {name!r} is missing")
        feed[name] = np.ascontiguousarray(tensor.as_numpy(), dtype=np.int64)
    shapes = {arr.shape for arr in feed.values()}
    if len(shapes) != 1:
        raise ValueError(f"inputs must share one shape [batch, seq], got {sorted(shapes)}")
    return feed


def _run(session, output_name, output_dtype, feed):
    return session.run([output_name], feed)[0].astype(output_dtype, copy=False)


class TritonPythonModel:
    def initialize(self, args):
        import onnxruntime as ort

        config = json.loads(args["model_config"])
        params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        self.input_names = [i["name"] for i in config["input"]]
        self.output_name = config["output"][0]["name"]
        self.output_dtype = pb_utils.triton_string_to_numpy(config["output"][0]["data_type"])
        path = os.path.join(args["model_repository"], args["model_version"], params.get("onnx_file") or "model.onnx")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = int(params.get("intra_op_threads") or 0)
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])

    def execute(self, requests):
        responses = [None] * len(requests)
        feeds = {}
        for i, request in enumerate(requests):
            try:
                feeds[i] = _feed(request, self.input_names)
            except Exception as e:  # one malformed request must not fail the others
                responses[i] = pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(str(e)))
        # One run per sequence length: padding requests to a common length would change the RNN's logits (its
        # backward direction reads the padding), so only same-length requests share a run.
        groups = {}
        for i, feed in feeds.items():
            groups.setdefault(feed[self.input_names[0]].shape[1], []).append(i)
        for members in groups.values():
            try:
                batch = {n: np.concatenate([feeds[i][n] for i in members]) for n in self.input_names}
                logits = _run(self.session, self.output_name, self.output_dtype, batch)
                offset = 0
                for i in members:
                    rows = feeds[i][self.input_names[0]].shape[0]
                    out = pb_utils.Tensor(self.output_name, logits[offset:offset + rows])
                    responses[i] = pb_utils.InferenceResponse(output_tensors=[out])
                    offset += rows
            except Exception:
                # Find the culprit (e.g. a token id outside the vocabulary): rerun one by one.
                for i in members:
                    try:
                        logits = _run(self.session, self.output_name, self.output_dtype, feeds[i])
                        out = pb_utils.Tensor(self.output_name, logits)
                        responses[i] = pb_utils.InferenceResponse(output_tensors=[out])
                    except Exception as e:
                        responses[i] = pb_utils.InferenceResponse(output_tensors=[],
                                                                  error=pb_utils.TritonError(str(e)))
        return responses

    def finalize(self):
        self.session = None
