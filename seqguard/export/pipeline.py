"""The whole export: checkpoint -> ONNX -> precision -> gates -> Triton repository + manifest, all or nothing.

Everything is written into a hidden sibling of the output folder and moved into place only after every gate passed
and the finished repository verified against its own manifest, so a failed export never leaves a repository that
looks valid (the previous one, if any, stays as it was).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from seqguard.export.checkpoint import Calibration, Checkpoint, ModelEntry
from seqguard.export.manifest import build_manifest, content_time
from seqguard.export.onnx_export import (
    DEFAULT_OPSET,
    ExportError,
    export_model,
    load_torch_model,
    optimize_bert,
    torch_logits,
)
from seqguard.export.parity import (
    GateReport,
    ParityError,
    decider,
    fp32_gate,
    latency_ms,
    ort_logits,
    ort_session,
    reduced_gate,
)
from seqguard.export.quantize import (
    AVX2_EXACT_WEIGHTS,
    CPU_FLAVORS,
    PORTABLE,
    convert_fp16,
    detect_cpu_flavor,
    int8_weight_range,
    quantize_dynamic_int8,
    quantize_static_int8,
    quantized_ops,
)
from seqguard.export.triton_repo import ServingSettings, write_ensemble, write_model, write_plan_model
from seqguard.manifest import MANIFEST_FILE, verify_repository

Log = Callable[[str], None]
PRECISIONS = ("fp32", "int8", "fp16")
TARGETS = ("cpu", "gpu")
GRAPH_OPTS = ("auto", "none", "fused", "timed")
# `auto` is a rule on the flags, never a clock, so that the same checkpoint and flags give the same repository: the
# plain graph, for every model, target and precision. Why plain: static QDQ int8 (the CPU default) and TensorRT cannot
# take the fused contrib ops at all, and where the fused graph is possible (BERT, fp32 or dynamic int8, CPU) it was
# not faster where it matters: at batch 32 with one thread, fused / plain = 0.99 (16 wide), 1.20 (32 wide) and
# 1.22 fp32 / 1.10 dynamic int8 on the demo BERT (2 x 128), on an AVX-512 VNNI EPYC (docs/reproducible_export.md).
# The build machine is not the serving machine either, so a timing taken here says little about the CPU that serves.
AUTO_GRAPH = "none"
FUSED_MIN_GAIN = 0.10  # `--graph-opt timed`: keep a fused graph only when it is at least this much faster


class ExportOptionsError(ValueError):
    """Options that contradict each other (e.g. fp16 for the CPU target)."""


@dataclass
class ExportOptions:
    models: Path
    out: Path
    target: str = "cpu"
    precision: str = "int8"
    # The int8 preset: "portable" (valid and exact on AVX2, AVX-512 VNNI and arm64), or one CPU family by name;
    # "auto" (the build machine's family) only when asked for, never by default.
    cpu_flavor: str = PORTABLE
    # cpu only; the gpu target's int8 is always static QDQ (what TensorRT consumes). Static by default: dynamic int8
    # takes one activation scale per batch, so a window's score would depend on what shares its batch.
    int8_mode: str = "static"
    # auto = AUTO_GRAPH (a rule); none / fused by name; timed = measured on this machine at batch 32 and recorded in
    # the manifest, the one choice that makes the repository depend on the clock (named, never the default).
    graph_opt: str = "auto"
    opset: int = DEFAULT_OPSET
    instances: int = 1
    max_batch: int = 64
    intra_op_threads: int | None = None
    max_queue_delay_us: int = 2000
    build_plan: bool = True

    def check(self) -> None:
        if self.target not in TARGETS:
            raise ExportOptionsError(f"unknown target {self.target!r}; one of {', '.join(TARGETS)}")
        if self.precision not in PRECISIONS:
            raise ExportOptionsError(f"unknown precision {self.precision!r}; one of {', '.join(PRECISIONS)}")
        if self.precision == "fp16" and self.target == "cpu":
            raise ExportOptionsError("fp16 is GPU only; "
                                     "use --target gpu, or --precision int8 / fp32 for the CPU")
        if self.cpu_flavor not in ("auto", *CPU_FLAVORS):
            raise ExportOptionsError(f"unknown cpu flavour {self.cpu_flavor!r}; one of auto, {', '.join(CPU_FLAVORS)}")
        if self.int8_mode not in ("dynamic", "static"):
            raise ExportOptionsError(f"unknown int8 mode {self.int8_mode!r}; dynamic or static")
        if self.graph_opt not in GRAPH_OPTS:
            raise ExportOptionsError(f"unknown graph optimisation {self.graph_opt!r}; one of {', '.join(GRAPH_OPTS)}")
        if self.instances < 1 or self.max_batch < 1 or self.max_queue_delay_us < 0:
            raise ExportOptionsError("--instances and --max-batch must be >= 1, the queue delay >= 0")
        if self.opset < 14:
            raise ExportOptionsError(f"opset {self.opset} is too old for these models (>= 14; 18 is the default)")


@dataclass
class ModelResult:
    name: str
    kind: str
    precision: str
    size_bytes: int
    graph: str  # none | fused
    parity: dict[str, Any]
    latency: dict[str, float]
    quantization: dict[str, Any] | None = None
    plan: dict[str, str] | None = None
    graph_timing: dict[str, float] | None = None  # --graph-opt timed: the measurements that chose the graph


@dataclass
class ExportResult:
    repo: Path
    models: list[ModelResult]
    manifest: Any
    seconds: float
    notes: list[str] = field(default_factory=list)


def _step(log: Log, what: str) -> Callable[[], None]:
    t0 = time.perf_counter()
    log(f"  {what} ...")

    def done() -> None:
        log(f"  {what}: done in {time.perf_counter() - t0:.1f}s")

    return done


def _min_latency(session: Any, feed: dict[str, np.ndarray], runs: int = 5) -> float:
    # Minimum, not median: on a shared machine other processes only ever add time.
    names = [i.name for i in session.get_inputs()]
    feed = {n: feed[n] for n in names}
    session.run(["logits"], feed)
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        session.run(["logits"], feed)
        best = min(best, time.perf_counter() - t0)
    return best * 1000.0


class _ModelExport:
    """One model through the pipeline, in a work folder outside the repository."""

    def __init__(self, entry: ModelEntry, opts: ExportOptions, settings: ServingSettings, calib: Calibration,
                 work: Path, flavor: str | None, log: Log) -> None:
        self.entry, self.opts, self.settings, self.calib = entry, opts, settings, calib
        self.work = work / entry.name
        self.flavor = flavor
        self.log = log
        self.batches = calib.chunks(64)
        self.graph_timing: dict[str, float] | None = None

    def reduce(self, fp32: Path, tag: str) -> tuple[Path, dict[str, Any] | None]:
        """The served-precision file made from the fp32 graph `fp32`."""
        p = self.opts.precision
        if p == "fp32":
            return fp32, None
        dst = self.work / f"{tag}_{p}.onnx"
        if p == "fp16":
            return dst, convert_fp16(fp32, dst)
        if self.opts.target == "gpu":
            return dst, quantize_static_int8(fp32, dst, "tensorrt", self.batches)
        flavor = self.flavor or PORTABLE
        if self.opts.int8_mode == "static":
            quant = quantize_static_int8(fp32, dst, flavor, self.batches)
        else:
            quant = quantize_dynamic_int8(fp32, dst, flavor)
        if flavor == PORTABLE:
            # The portability promise, checked on the file: every int8 weight within what AVX2 multiplies exactly.
            span = int8_weight_range(dst)
            quant["int8_weight_range"] = list(span) if span else None
            if span and (span[0] < AVX2_EXACT_WEIGHTS[0] or span[1] > AVX2_EXACT_WEIGHTS[1]):
                raise ExportError(f"{self.entry.name}: int8 weights span {span}, outside {AVX2_EXACT_WEIGHTS}: the "
                                  "portable preset would saturate on AVX2 CPUs")
        return dst, quant

    def choose_graph(self, raw: Path) -> tuple[Path, str, Path, dict[str, Any] | None]:
        """(fp32 graph, "none"|"fused", served file, quantization settings): fused only for BERT on the CPU when
        named, or in timed mode when the served-precision fused model is clearly faster at batch 32 here."""
        served, quant = self.reduce(raw, "plain")
        mode = AUTO_GRAPH if self.opts.graph_opt == "auto" else self.opts.graph_opt
        static = self.opts.precision == "int8" and self.opts.int8_mode == "static"
        if self.opts.target != "cpu" or self.entry.kind != "bert" or mode == "none" or (static and mode == "timed"):
            # Static QDQ wants the plain graph: calibration cannot type the fused contrib ops' tensors.
            return raw, "none", served, quant
        try:
            fused = optimize_bert(raw, self.work / "fused")
            fused_served, fused_quant = self.reduce(fused, "fused")
        except Exception as e:
            if mode == "fused":
                raise ExportError(f"{self.entry.name}: the fused graph could not be built / quantized: {e}") from e
            self.log(f"  graph optimisation: fused graph failed ({type(e).__name__}: {e}); keeping the plain one")
            return raw, "none", served, quant
        if mode == "fused":
            return fused, "fused", fused_served, fused_quant
        feed = self.calib.repadded(list(range(32)))
        threads = self.settings.intra_op_threads
        t_plain = _min_latency(ort_session(served, threads), feed)
        t_fused = _min_latency(ort_session(fused_served, threads), feed)
        keep = t_fused <= (1.0 - FUSED_MIN_GAIN) * t_plain
        self.graph_timing = {"plain_batch32": t_plain, "fused_batch32": t_fused}
        self.log(f"  graph optimisation (timed): plain {t_plain:.1f} ms, fused {t_fused:.1f} ms at batch 32 -> "
                 f"{'fused' if keep else 'plain'} (recorded in the manifest; this repository depends on the timing)")
        return (fused, "fused", fused_served, fused_quant) if keep else (raw, "none", served, quant)

    def run(self, scorer: Any | None, fp32_logits: dict[str, np.ndarray]) -> tuple[ModelResult, Path]:
        e, opts = self.entry, self.opts
        self.log(f"{e.name} ({e.kind})")
        done = _step(self.log, f"ONNX export, opset {opts.opset}")
        raw = export_model(e.kind, e.path, self.work / "onnx", opts.opset)
        done()
        done = _step(self.log, f"graph / precision ({opts.precision}, graph optimisation {opts.graph_opt})")
        fp32_path, graph, served, quant = self.choose_graph(raw)
        if opts.precision == "int8" and quant is not None:
            quant = {**quant, "quantized_ops": quantized_ops(served)}
            covered = sum(quant["quantized_ops"].values())
            self.log(f"  int8 nodes: {quant['quantized_ops'] or 'none'}"
                     + ("" if covered else " (no operator of this graph is quantizable in this mode: it stays fp32)"))
        done()

        done = _step(self.log, "parity gate: fp32 ONNX vs PyTorch")
        ref = torch_logits(load_torch_model(e.path), self.batches)
        onnx32 = ort_logits(ort_session(fp32_path), self.batches)
        report = fp32_gate(e.name, onnx32, ref, self.calib.saved_logits.get(e.name))
        fp32_logits[e.name] = onnx32
        done()
        if served != fp32_path:
            done = _step(self.log, f"parity gate: {opts.precision} vs fp32")
            low = ort_logits(ort_session(served), self.batches)
            decide, basis = decider(e.name, scorer, fp32_logits, self.calib.features)
            reduced = reduced_gate(e.name, opts.precision, low, onnx32, self.calib.labels, decide, basis)
            report = GateReport({**report.figures, **reduced.figures})
            done()

        threads = self.settings.intra_op_threads
        session = ort_session(served, threads)
        lat = {f"batch{b}": latency_ms(session, self.calib.repadded(list(range(b)))) for b in (1, 32)}
        self.log(f"  ORT latency ({threads} thread(s)): batch 1 {lat['batch1']:.2f} ms, "
                 f"batch 32 {lat['batch32']:.2f} ms")
        result = ModelResult(e.name, e.kind, opts.precision, served.stat().st_size, graph, report.figures, lat, quant,
                             graph_timing=self.graph_timing)
        return result, served


def _plan(entry: ModelEntry, served: Path, opts: ExportOptions, settings: ServingSettings, repo: Path, work: Path,
          log: Log) -> dict[str, str] | None:
    from seqguard.export.tensorrt_plan import build_plan, unavailable_reason

    reason = unavailable_reason()
    if reason is not None:
        log(f"  TensorRT plan for {entry.name}: skipped: {reason} (the onnxruntime_onnx model with the TensorRT "
            "accelerator is written and validated)")
        return None
    done = _step(log, f"TensorRT plan for {entry.name}")
    plan = work / entry.name / "model.plan"
    info = build_plan(served, plan, opts.precision, settings.max_batch_size, settings.max_seq_len,
                      max(settings.preferred() or [1]), settings.trt_workspace_bytes)
    info["model"] = write_plan_model(repo, entry.name, plan, settings)
    done()
    return info


def _copy_service_files(ckpt: Checkpoint, repo: Path) -> None:
    """What the service needs besides the models, as files in the repository root (a subfolder would be taken
    for a model by Triton)."""
    from seqguard.contracts import DETECTOR_FILE, ENSEMBLE_FILE, RULES_FILE, SEQUENCE_CONFIG_FILE
    from seqguard.manifest import TOKENIZER_FILES

    for name in (SEQUENCE_CONFIG_FILE, ENSEMBLE_FILE, RULES_FILE, DETECTOR_FILE):
        shutil.copyfile(ckpt.root / name, repo / name)
    from seqguard.drift import DRIFT_REFERENCE_FILE, DRIFT_SAMPLE_FILE

    for name in (DRIFT_REFERENCE_FILE, DRIFT_SAMPLE_FILE):  # the service's drift gauges read the reference
        if (ckpt.root / name).is_file():
            shutil.copyfile(ckpt.root / name, repo / name)
    for name in TOKENIZER_FILES:
        src = ckpt.tokenizer_dir / name
        if src.is_file():
            shutil.copyfile(src, repo / name)


def _check_out(out: Path) -> None:
    """Refuse to replace a folder that is not a seqguard repository (or the empty tracked triton_repo/)."""
    if not out.exists():
        return
    if not out.is_dir():
        raise ExportOptionsError(f"--out {out} exists and is not a folder")
    content = {p.name for p in out.iterdir()}
    if content - {"README.md", ".gitignore"} and MANIFEST_FILE not in content:
        raise ExportOptionsError(f"--out {out} is not empty and holds no {MANIFEST_FILE}: refusing to replace it "
                                 "(choose an empty or new folder, or a repository seqguard export wrote)")


def _swap_into_place(tmp: Path, out: Path) -> None:
    for keep in ("README.md", ".gitignore"):
        if (out / keep).is_file() and not (tmp / keep).exists():
            shutil.copy2(out / keep, tmp / keep)
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.rename(out, old)
        os.rename(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, out)


def run_export(opts: ExportOptions, log: Log = print) -> ExportResult:
    t0 = time.perf_counter()
    opts.check()
    out = opts.out.resolve()
    _check_out(out)
    ckpt = Checkpoint.open(opts.models)  # CheckpointError names the missing path
    try:
        created_at = content_time(ckpt)
    except ValueError as e:
        raise ExportOptionsError(str(e)) from None
    calib = ckpt.calibration()
    flavor = None
    if opts.target == "cpu":
        flavor = detect_cpu_flavor() if opts.cpu_flavor == "auto" else opts.cpu_flavor
        if opts.cpu_flavor == "auto" and opts.precision == "int8":
            log(f"cpu flavour: auto picked {flavor} from THIS machine's CPU; the int8 model assumes that kernel "
                f"family (the manifest records it; `--cpu-flavor {PORTABLE}` is valid on every CPU)")
    cores = os.cpu_count() or 1
    # Every model of the ensemble runs at once for each request: split the cores among model instances.
    threads = opts.intra_op_threads or max(1, cores // (opts.instances * len(ckpt.models)))
    settings = ServingSettings(
        target=opts.target, precision=opts.precision, max_batch_size=opts.max_batch, instances=opts.instances,
        intra_op_threads=threads, max_queue_delay_us=opts.max_queue_delay_us,
        max_seq_len=ckpt.sequence_config.max_len,
    )
    log(f"export {ckpt.root} (checkpoint {ckpt.version}): {len(ckpt.models)} model(s) "
        f"[{', '.join(m.name for m in ckpt.models)}], target {opts.target}, precision {opts.precision}"
        + (f", cpu flavour {flavor}" if flavor else ""))
    log(f"calibration: {len(calib)} validation windows ({int((calib.labels == 1).sum())} anomalous)")

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; Triton may run as another user (containers)
    work = Path(tempfile.mkdtemp(prefix="seqguard-export-"))
    try:
        scorer = ckpt.scorer()
        fp32_logits: dict[str, np.ndarray] = dict(calib.saved_logits)
        results: list[ModelResult] = []
        for entry in ckpt.models:
            model = _ModelExport(entry, opts, settings, calib, work, flavor, log)
            try:
                result, served = model.run(scorer, fp32_logits)
            except (ParityError, ExportError):
                raise
            except Exception as e:  # a library failure: one line naming the model, not a traceback
                raise ExportError(f"{entry.name}: {type(e).__name__}: {e}") from e
            write_model(tmp, entry.name, served, settings)
            if opts.target == "gpu" and opts.build_plan:
                result.plan = _plan(entry, served, opts, settings, tmp, work, log)
            results.append(result)
        write_ensemble(tmp, [m.name for m in ckpt.models], settings)
        _copy_service_files(ckpt, tmp)
        manifest = build_manifest(tmp, ckpt, opts, settings, flavor, results, created_at)
        verify_repository(tmp)  # the finished repository must pass the service's own start-up check
        _swap_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(work)
    elapsed = time.perf_counter() - t0
    log(f"wrote {out} in {elapsed:.1f}s ({len(manifest.files)} files pinned in {MANIFEST_FILE}, "
        f"model version {manifest.model_version})")
    return ExportResult(out, results, manifest, elapsed)


def summary_table(result: ExportResult) -> str:
    rows = [("model", "precision", "graph", "size", "parity", "ORT b1 ms", "ORT b32 ms")]
    for m in result.models:
        rows.append((m.name, m.precision, m.graph, _size(m.size_bytes), _parity_text(m.parity),
                     f"{m.latency['batch1']:.2f}", f"{m.latency['batch32']:.2f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _size(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def _parity_text(p: dict[str, Any]) -> str:
    parts = [f"|Δ| vs torch {p['onnx_vs_torch_max_abs']:.1e}"]
    if "decision_agreement" in p:
        drop = p.get("roc_auc_drop")
        parts.append("AUC drop n/a" if drop is None else f"AUC drop {drop:+.4f}")
        parts.append(f"same decision {100 * p['decision_agreement']:.1f}% ({p['decision_basis']})")
    return ", ".join(parts)
