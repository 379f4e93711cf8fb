"""The int8 accuracy gate on AVX2-only kernels, checked on a machine that has AVX-512 VNNI (issue 13).

ONNX Runtime's MLAS picks its kernels from CPUID when the library loads. `qemu-x86_64 -cpu Haswell` (qemu-user
>= 7.2: its TCG emulates AVX2 + FMA but no AVX-512) runs the very same python, numpy and onnxruntime behind a CPUID
without AVX-512 or VNNI, so MLAS takes its AVX2 paths (u8 x s8 through VPMADDUBSW's saturating int16 pairs, fp32
through the FMA3 kernels). Under qemu-user /proc/cpuinfo is still the host's, so the child reads CPUID (numpy's
runtime dispatch table) and the parent refuses a run whose child still saw AVX-512.

- child (`python isa_check.py IN.npz OUT.npz name=file.onnx ...`, the same code natively and emulated): imports
  numpy and onnxruntime only, scores the windows with one thread, writes the logits and the CPU features it saw.
- parent (`python -m seqguard.export.isa_check --models CKPT --repo REPO`, `make isa-check`): the served int8
  files and an fp32 ONNX export of the same checkpoint, scored on the checkpoint's calibration windows natively and
  under
  emulation; per ISA the export's own int8 gate (ROC-AUC drop, same ensemble decision), across ISAs the largest
  logit and ensemble-score difference. `--control FLAVOR` adds the BERT quantized with a non-portable preset (e.g.
  avx512_vnni: 8-bit s8 weights), to show that the harness does see AVX2's saturation where it exists.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

EMULATED_CPU = "Haswell"  # AVX2, FMA3, BMI2; no AVX-512, no AVX-VNNI
QEMU = "qemu-x86_64"
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
FEATURES = ("AVX2", "FMA3", "AVX512F", "AVX512BW", "AVX512VNNI")


class IsaCheckError(RuntimeError):
    """The check could not run as intended (no emulator, or the child still saw AVX-512)."""


class EmulatorUnsupported(IsaCheckError):
    """The emulator cannot present an AVX2 CPU (qemu-user before 7.2): nothing to check with it."""


# ---------------------------------------------------------------------------------------------------------------------
# Child: numpy + onnxruntime only (python under TCG emulation is slow to import anything larger)


def cpu_features() -> dict[str, bool]:
    """What CPUID says, as numpy's runtime dispatch read it (not /proc/cpuinfo, which qemu-user passes through)."""
    from numpy.core._multiarray_umath import __cpu_features__  # type: ignore[attr-defined]

    return {k: bool(__cpu_features__.get(k, False)) for k in FEATURES}


def _child(argv: list[str]) -> None:
    import onnxruntime as ort

    src, dst, models = argv[0], argv[1], dict(a.split("=", 1) for a in argv[2:])
    with np.load(src) as data:  # an NpzFile re-reads an array on every access: once, here
        arrays = {k: data[k] for k in data.files}
    bounds = arrays["bounds"]  # the exact batches the export's gate scores (row ranges)
    out: dict[str, np.ndarray] = {}
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL  # as the service's sessions
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    so.log_severity_level = 3
    for name, path in models.items():
        session = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        feeds = [i.name for i in session.get_inputs()]
        out[name] = np.concatenate([session.run(["logits"], {k: arrays[k][a:b] for k in feeds})[0]
                                    for a, b in bounds]).astype(np.float32)
    out["__features__"] = np.array(json.dumps(cpu_features()))
    np.savez(dst, **out)


# ---------------------------------------------------------------------------------------------------------------------
# Parent


def qemu_path() -> str | None:
    return shutil.which(QEMU)


def score_files(files: dict[str, Path], inputs: dict[str, np.ndarray], bounds: list[tuple[int, int]], work: Path,
                emulate: str | None = None, timeout_s: float = 600.0) -> tuple[dict[str, np.ndarray], dict[str, bool]]:
    """Logits of every file on `inputs` (batches `bounds`) from a child python, natively or under
    `qemu-x86_64 -cpu <emulate>`; and the CPU features that child saw."""
    tag = emulate or "native"
    src, dst = work / f"in_{tag}.npz", work / f"out_{tag}.npz"
    np.savez(src, bounds=np.asarray(bounds, dtype=np.int64), **{k: inputs[k] for k in INPUTS})
    # -P: the script's folder (export/, with modules named like others) stays off sys.path.
    cmd = [sys.executable, "-P", str(Path(__file__).resolve()), str(src), str(dst),
           *(f"{k}={v}" for k, v in files.items())]
    if emulate:
        qemu = qemu_path()
        if qemu is None:
            raise EmulatorUnsupported(f"{QEMU} not found: `apt-get install -y qemu-user` (>= 7.2, for AVX2 "
                                      "emulation)")
        cmd = [qemu, "-cpu", emulate, *cmd]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env, check=False)
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-5:])
        raise IsaCheckError(f"the {tag} child failed (exit {done.returncode}): {tail}")
    with np.load(dst) as data:
        logits = {k: data[k] for k in data.files if k != "__features__"}
        features = json.loads(str(data["__features__"]))
    return logits, features


@dataclass
class IsaReport:
    checkpoint: str
    repo: str
    windows: int
    features: dict[str, dict[str, bool]]  # isa -> CPUID features the child saw
    gates: dict[str, dict[str, dict[str, Any]]]  # isa -> model -> the export's int8 gate figures
    across: dict[str, dict[str, float]]  # model -> max |logit diff| between the ISAs (int8, fp32)
    ensemble: dict[str, float]  # max |score diff| and same-decision share between the ISAs (int8 models)
    control: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return self.__dict__.copy()


def _export_fp32(ckpt: Any, work: Path) -> dict[str, Path]:
    from seqguard.export.onnx_export import export_model

    return {m.name: export_model(m.kind, m.path, work / "fp32" / m.name) for m in ckpt.models}


def run_check(models: Path, repo: Path, emulate: str = EMULATED_CPU, control: str | None = None,
              timeout_s: float = 1800.0, log: Any = print) -> IsaReport:
    from seqguard.export.checkpoint import Checkpoint
    from seqguard.export.parity import decider, reduced_gate
    from seqguard.manifest import verify_repository

    ckpt = Checkpoint.open(models)
    manifest = verify_repository(repo)
    if manifest.checkpoint_version != ckpt.version:
        raise IsaCheckError(f"{repo} was exported from checkpoint {manifest.checkpoint_version}, not {ckpt.version}")
    calib = ckpt.calibration()
    scorer = ckpt.scorer()
    n = len(calib)
    bounds = [(i, min(i + 64, n)) for i in range(0, n, 64)]  # Calibration.chunks(64): what the export's gate ran
    work = Path(tempfile.mkdtemp(prefix="seqguard-isa-"))
    try:
        log(f"fp32 ONNX of {ckpt.root} (the gate's reference) ...")
        files = {f"{name}.fp32": path for name, path in _export_fp32(ckpt, work).items()}
        files.update({f"{c.name}.int8": Path(repo) / c.file for c in manifest.components})
        if control:
            from seqguard.export.quantize import quantize_static_int8

            bert = next(m for m in ckpt.models if m.kind == "bert")
            dst = work / f"control_{control}.onnx"
            quantize_static_int8(files[f"{bert.name}.fp32"], dst, control, calib.chunks(64))
            files[f"{bert.name}.{control}"] = dst
        emulated = f"emulated {emulate}"
        # Emulation costs ~100x: the fp32 reference is scored natively only (the gate asks how far the int8 model,
        # on each ISA, is from the fp32 model), except the BERT's, whose float kernels' ISA difference is reported.
        bert_fp32 = {f"{m.name}.fp32" for m in ckpt.models if m.kind == "bert"}
        runs = {"native": (None, files),
                emulated: (emulate, {k: v for k, v in files.items() if not k.endswith(".fp32") or k in bert_fp32})}
        logits: dict[str, dict[str, np.ndarray]] = {}
        features: dict[str, dict[str, bool]] = {}
        for isa, (cpu, chosen) in runs.items():
            log(f"scoring {n} windows with {len(chosen)} ONNX files, {isa} ...")
            t0 = time.perf_counter()
            logits[isa], features[isa] = score_files(chosen, calib.inputs, bounds, work, cpu, timeout_s)
            log(f"  {isa}: {time.perf_counter() - t0:.0f} s")
        seen = features[emulated]
        if not seen.get("AVX2"):
            raise EmulatorUnsupported(f"the emulated child saw no AVX2 ({seen}): {QEMU} older than 7.2 emulates no "
                                      "AVX2 (qemu 7.2 or later is needed)")
        if seen.get("AVX512F") or seen.get("AVX512VNNI"):
            raise IsaCheckError(f"the emulated child saw {seen}: not an AVX2-only CPU, the check would prove nothing")
        names = [c.name for c in manifest.components]
        gates: dict[str, dict[str, dict[str, Any]]] = {}
        fp32 = {m: logits["native"][f"{m}.fp32"] for m in names}
        for isa in runs:
            gates[isa] = {}
            for m in names:
                decide, basis = decider(m, scorer, fp32, calib.features)
                gates[isa][m] = reduced_gate(m, "int8", logits[isa][f"{m}.int8"], fp32[m], calib.labels, decide,
                                             basis).figures
        across = {m: {p: float(np.abs(logits["native"][f"{m}.{p}"].astype(np.float64)
                                      - logits[emulated][f"{m}.{p}"]).max())
                      for p in ("int8", "fp32") if f"{m}.{p}" in logits[emulated]} for m in names}
        ensemble: dict[str, float] = {}
        if scorer is not None and set(scorer.components) <= set(names):
            s = {isa: scorer.score_batch({m: logits[isa][f"{m}.int8"] for m in scorer.components}, calib.features)
                 for isa in runs}
            ensemble = {"max_abs_score_diff": float(np.abs(s["native"].score - s[emulated].score).max()),
                        "same_decision": float(np.mean(s["native"].rank == s[emulated].rank))}
        report = IsaReport(str(ckpt.root), str(repo), n, features, gates, across, ensemble)
        if control:
            key = f"{bert.name}.{control}"
            report.control = {"model": bert.name, "flavor": control, "max_abs_logit_diff_between_isas": float(
                np.abs(logits["native"][key].astype(np.float64) - logits[emulated][key]).max())}
        return report
    finally:
        shutil.rmtree(work, ignore_errors=True)


def render(report: IsaReport) -> str:
    lines = [f"checkpoint {report.checkpoint}, repository {report.repo}, {report.windows} calibration windows"]
    for isa, feats in report.features.items():
        lines.append(f"  {isa}: CPUID " + " ".join(f"{k}={'yes' if v else 'no'}" for k, v in feats.items()))
    lines.append("model                  ISA                 AUC fp32  AUC int8  drop      same decision  "
                 "max|int8 logit diff| between ISAs  (fp32)")
    for m, diffs in report.across.items():
        for isa, gates in report.gates.items():
            g = gates[m]
            drop = g.get("roc_auc_drop")
            lines.append(f"{m:22s} {isa:19s} {g['roc_auc_fp32']:.4f}    {g['roc_auc_int8']:.4f}    "
                         f"{'n/a' if drop is None else f'{drop:+.4f}':8s}  {100 * g['decision_agreement']:5.1f} % "
                         f"({g['decision_basis']})  {diffs['int8']:.2e}"
                         + (f"  ({diffs['fp32']:.2e})" if "fp32" in diffs else ""))
    if report.ensemble:
        lines.append(f"ensemble (int8 models), native vs emulated: max |score diff| "
                     f"{report.ensemble['max_abs_score_diff']:.2e}, same decision "
                     f"{100 * report.ensemble['same_decision']:.1f} %")
    if report.control:
        c = report.control
        lines.append(f"control: {c['model']} with the {c['flavor']} preset, max |logit diff| between ISAs "
                     f"{c['max_abs_logit_diff_between_isas']:.2e}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m seqguard.export.isa_check", description=__doc__.split("\n\n")[0])
    p.add_argument("--models", type=Path, required=True, help="checkpoint folder the repository was exported from")
    p.add_argument("--repo", type=Path, required=True, help="int8 repository written by `seqguard export`")
    p.add_argument("--cpu", default=EMULATED_CPU, help=f"qemu CPU model to emulate (default {EMULATED_CPU})")
    p.add_argument("--control", default=None, choices=("avx512_vnni", "arm64", "avx2"),
                   help="also run the BERT quantized with this non-portable preset (saturation control)")
    p.add_argument("--json", type=Path, default=None, help="write the figures here as JSON")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds per scoring run (emulation is ~100x slower)")
    args = p.parse_args(argv)
    from seqguard.export.parity import ParityError
    from seqguard.manifest import ManifestError
    from seqguard.train.checkpoint import CheckpointError

    try:
        report = run_check(args.models, args.repo, args.cpu, args.control, args.timeout)
    except (IsaCheckError, ManifestError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except ParityError as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    print(render(report))
    if args.json:
        args.json.write_text(json.dumps(report.to_json(), indent=1) + "\n")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1].endswith(".npz"):  # the child, run by score_files
        _child(sys.argv[1:])
    else:
        sys.exit(main())
