"""seqguard's benchmark harness: `make bench` (= `python -m bench.run --out bench/results`).

One run measures, on this machine and under the same conditions, the hardware limit, the model level (PyTorch eager
vs ONNX Runtime fp32 / fused / int8), the system level (the seeds' pipeline vs seqguard's inference path), Triton
(with and without dynamic batching), the BentoML service, and accuracy beside speed; it writes one JSON and a plot.
See BENCHMARKS.md.
"""
