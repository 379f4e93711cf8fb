"""`seqguard export`: a checkpoint folder to a Triton model repository (ONNX, int8 / fp16, parity gates, manifest)."""

from __future__ import annotations

import argparse

from seqguard.cli import CliError
from seqguard.commands.arguments import add_models, add_out

PARITY_EXIT_CODE = 3  # distinct from usage errors (2): the export ran and a gate refused the result


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export a trained checkpoint to a Triton model repository (ONNX, int8/fp16, parity gates, manifest)",
        description="Export every served model of a checkpoint to ONNX, reduce its precision, check it against "
        "PyTorch and fp32 (parity gates), and write a Triton model repository with config.pbtxt files, the "
        "seqguard_ensemble and manifest.json. The repository is written to a temporary folder and moved into "
        "place only when every gate passed.",
    )
    add_models(p, "checkpoint folder written by `seqguard train`")
    add_out(p, "model repository to (re)write, e.g. triton_repo/")
    p.add_argument("--target", choices=("cpu", "gpu"), default="cpu",
                   help="cpu: python-backend models running ONNX Runtime (the wheel's tritonserver serves them); "
                   "gpu: onnxruntime_onnx models with TensorRT (+ a native plan where TensorRT and a GPU exist)")
    p.add_argument("--precision", choices=("fp32", "int8", "fp16"), default="int8",
                   help="served precision (fp16 is GPU only; default int8)")
    p.add_argument("--cpu-flavor", choices=("portable", "auto", "avx2", "avx512_vnni", "arm64"), default="portable",
                   help="int8 preset: portable (default; u8 x 7-bit s8, exact on AVX2, AVX-512 VNNI and arm64), one "
                        "kernel family by name, or auto (THIS machine's family, from /proc/cpuinfo)")
    p.add_argument("--int8-mode", choices=("dynamic", "static"), default="static",
                   help="cpu int8: static (default; calibrated on the checkpoint's validation windows, so a window's "
                        "score does not depend on its batch) or dynamic (one activation scale per batch)")
    p.add_argument("--graph-opt", choices=("auto", "none", "fused", "timed"), default="auto",
                   help="ORTOptimizer fusions for BERT on the cpu target: auto (default) = the plain graph, a rule, "
                        "so the same checkpoint and flags give a byte-identical repository; fused; or timed (fused "
                        "only if measurably faster on THIS machine; the timings go into the manifest)")
    p.add_argument("--instances", type=int, default=1, help="model instances per served model (default 1)")
    p.add_argument("--max-batch", type=int, default=64, help="Triton max_batch_size (default 64)")
    p.add_argument("--intra-op-threads", type=int, default=None,
                   help="ONNX Runtime threads per cpu instance (default: cores / (instances x models))")
    p.add_argument("--max-queue-delay-us", type=int, default=2000,
                   help="dynamic batching: longest wait for a fuller batch, microseconds (default 2000)")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default 18)")
    p.add_argument("--no-plan", action="store_true", help="gpu target: do not build a native TensorRT plan")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from seqguard.export.onnx_export import DEFAULT_OPSET, ExportError
    from seqguard.export.parity import ParityError
    from seqguard.export.pipeline import ExportOptions, ExportOptionsError, run_export, summary_table
    from seqguard.manifest import ManifestError
    from seqguard.train.checkpoint import CheckpointError

    opts = ExportOptions(
        models=args.models, out=args.out, target=args.target, precision=args.precision, cpu_flavor=args.cpu_flavor,
        int8_mode=args.int8_mode, graph_opt=args.graph_opt, opset=args.opset or DEFAULT_OPSET,
        instances=args.instances, max_batch=args.max_batch, intra_op_threads=args.intra_op_threads,
        max_queue_delay_us=args.max_queue_delay_us, build_plan=not args.no_plan,
    )
    try:
        result = run_export(opts, log=lambda line: print(line, flush=True))
    except (ExportOptionsError, CheckpointError) as e:
        raise CliError(str(e)) from None
    except ParityError as e:
        raise CliError(f"{str(e).rstrip('.')}; nothing was written to {args.out}", exit_code=PARITY_EXIT_CODE) from None
    except (ExportError, ManifestError) as e:
        raise CliError(f"{str(e).rstrip('.')}; nothing was written to {args.out}", exit_code=1) from None
    print()
    print(summary_table(result))
    return 0
