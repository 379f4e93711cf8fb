"""`seqguard export`: checkpoint folder -> ONNX -> int8 / fp16 -> parity gates -> Triton repository + manifest.

Modules, in pipeline order: checkpoint (read what `train` wrote), onnx_export, quantize, parity (gates + latency),
triton_repo (config.pbtxt, python-backend model.py, the ensemble), manifest (what the service pins), pipeline
(the whole run, written to a temporary folder and moved into place only when every gate passed).
"""
