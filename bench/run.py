"""`make bench`: every level in one run on this machine, one JSON, one plot, the targets judged.

    python -m bench.run --out bench/results                  # the full run (about 10 minutes on 2 cores)
    python -m bench.run --out /tmp/b --smoke --no-publish     # the harness end to end on a toy model in seconds
    python -m bench.run --levels model,system --loadtest skip # a subset

Writes <out>/bench-<UTC time>.json, <out>/latest.json, <out>/latest.png and <out>/tables.md, and (unless
--no-publish) copies the JSON and the PNG to docs/bench/latest.{json,png}. Exit code 1 when a level failed to
run; a missed target is a measurement, not a failure (the JSON and BENCHMARKS.md say which and why).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import THREADS, cpu_snapshot, load_average, log, others_share

ROOT = Path(__file__).resolve().parents[1]
LEVELS = ("machine", "peak", "model", "accuracy", "system", "triton", "service", "floor", "score_log", "loadtest",
          "spark")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("bench/results"), help="results folder (git-ignored)")
    p.add_argument("--publish", type=Path, default=Path("docs/bench"), help="where latest.json / latest.png go")
    p.add_argument("--no-publish", action="store_true", help="leave docs/bench alone")
    p.add_argument("--levels", default=",".join(LEVELS), help=f"comma-separated subset of {', '.join(LEVELS)}")
    p.add_argument("--smoke", action="store_true",
                   help="a toy BERT, tiny sizes, no MiniLM / Triton / service / load test: checks the harness only")
    p.add_argument("--models", type=Path, default=Path("models"), help="checkpoint folder (trained model if present)")
    p.add_argument("--repo", type=Path, default=Path("triton_repo"), help="Triton repository (exported if absent)")
    p.add_argument("--batches", default="1,8,32", help="model-level batch sizes")
    p.add_argument("--budget", type=float, default=2.0, help="seconds of timing per variant and batch (x2 at 32)")
    p.add_argument("--system-windows", type=int, default=4096, help="windows scored by the system level")
    p.add_argument("--triton-duration", type=float, default=6.0, help="seconds per Triton concurrency level")
    p.add_argument("--service-budget", type=float, default=6.0, help="seconds of /score timing")
    p.add_argument("--loadtest", choices=("auto", "quote", "measure", "skip"), default="auto",
                   help="sustained throughput under the SLO: quote a capacity result, else measure a short step")
    p.add_argument("--spark-sizes", default="1000000,5000000",
                   help="spark level: generated event counts scored by one process and by Spark local[2]")
    p.add_argument("--spark-skew", type=int, default=1_000_000, help="spark level: events of the one hot entity")
    p.add_argument("--no-static", action="store_true", help="skip calibrated static int8")
    p.add_argument("--no-minilm", action="store_true", help="skip the MiniLM text model at the model level")
    p.add_argument("--no-reference", action="store_true",
                   help="skip the 4x256 reference BERT (bert_config defaults) at the model level")
    return p.parse_args(argv)


class Runner:
    """Runs levels in order, records each one's result or its error, and never lets one failure stop the rest."""

    def __init__(self, results: dict[str, Any], wanted: set[str]) -> None:
        self.results = results
        self.wanted = wanted

    def level(self, name: str, fn: Callable[[], Any], key: str | None = None) -> Any:
        if name not in self.wanted:
            return None
        log(f"== {name} (load average {load_average()})")
        self.results.setdefault("level_load_average", {})[key or name] = load_average()
        t0 = time.perf_counter()
        cpu0 = cpu_snapshot()
        try:
            value = fn()
        except Exception as e:
            log(f"   {name} FAILED: {type(e).__name__}: {e}")
            self.results["errors"][key or name] = f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=6)}"
            return None
        self.results.setdefault("level_seconds", {})[key or name] = round(time.perf_counter() - t0, 1)
        share = others_share(cpu0, cpu_snapshot())
        self.results.setdefault("level_others_cpu_share", {})[key or name] = share
        if share is not None and share > 0.25:
            log(f"   note: other processes used {100 * share:.0f} % of the machine's CPU during this level")
        if value is not None:
            self.results[key or name] = value
        return value


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")


def _calibration_bert(source: Any, windows: Any) -> list[dict[str, Any]]:
    from seqguard.features import pad_batch

    if source.trained and source.checkpoint is not None:
        return source.checkpoint.calibration().chunks(64)  # exactly what the export calibrates on
    enc = windows.encoded[:128]
    return [pad_batch(enc[i:i + 32]) for i in range(0, len(enc), 32)]


def _calibration_text(source: Any, windows: Any) -> list[dict[str, Any]]:
    """MiniLM's calibration: the same windows as text (features.serialize_text), through its own tokenizer."""
    from transformers import AutoTokenizer

    from seqguard.features import serialize_text

    tok = AutoTokenizer.from_pretrained(source.path)
    texts = [serialize_text(c, windows.cfg, max_events=32) for c in windows.columns[:128]]
    out = []
    for i in range(0, len(texts), 32):
        enc = tok(texts[i:i + 32], padding="max_length", truncation=True, max_length=source.seq_len,
                  return_tensors="np")
        out.append({k: enc[k].astype("int64") for k in ("input_ids", "attention_mask", "token_type_ids")})
    return out


def _tokenizer(source: Any) -> Any:
    from seqguard.tokenizer import build_tokenizer

    if source.trained and source.checkpoint is not None:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(source.checkpoint.tokenizer_dir)
    return build_tokenizer(source.seq_cfg)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # PyTorch's OpenMP pool (libgomp reads this when torch loads, so it is set before any import of torch): with the
    # default active wait, 2 spinning threads on 2 cores shared with other jobs stall eager calls for up to ~260 ms
    # (measured here: batch-1 mean 30 ms vs median 1.4 ms); passive wait removes that (mean 1.7 ms). ONNX Runtime's
    # pools get the same treatment (bench.common.ort_session), so neither runtime spins. Override with the variable.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    wanted = {x.strip() for x in args.levels.split(",") if x.strip()}
    unknown = wanted - set(LEVELS)
    if unknown:
        print(f"bench: unknown level(s) {sorted(unknown)}; choose from {', '.join(LEVELS)}", file=sys.stderr)
        return 2
    if args.smoke:
        wanted -= {"triton", "service", "score_log", "loadtest"}
    batches = (1, 4) if args.smoke else tuple(int(b) for b in args.batches.split(","))
    budget = 0.05 if args.smoke else args.budget
    out: Path = args.out
    work = out / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    results: dict[str, Any] = {
        "schema": "seqguard-bench-v1", "started_at": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": "python -m bench.run " + " ".join(argv if argv is not None else sys.argv[1:]),
        "smoke": args.smoke, "levels": sorted(wanted, key=LEVELS.index),
        "settings": {"threads": THREADS, "batches": list(batches), "budget_s": budget,
                     "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "ort_allow_spinning": False,
                     "timing": "alternating rounds per (model, batch); throughput = batch / mean call time; "
                               "p50/p99 over individual calls"},
        "load_average": {"start": load_average()}, "errors": {},
    }
    load1 = (load_average() or [0.0])[0]
    cores = os.cpu_count() or 1
    # Other engineers' jobs share these cores: say so in the figures rather than publish a busy run as quiet.
    results["quiet_at_start"] = load1 < 0.5 * cores
    log(f"seqguard bench -> {out} (levels: {', '.join(results['levels'])}; load average {load_average()})")
    if not results["quiet_at_start"]:
        log(f"   WARNING: load average {load1:.2f} on {cores} cores: other processes are running; ratios hold within "
            "this run, absolute figures will be low (PyTorch eager suffers most: its many small parallel regions "
            "stall whenever a core is taken)")
    runner = Runner(results, wanted)

    from bench import machine, peak

    runner.level("machine", machine.machine_info)
    runner.level("peak", lambda: peak.measure(256 if args.smoke else 2048, 2 if args.smoke else 7))
    peak_gflops = (results.get("peak") or {}).get("fp32_peak_gflops")
    if peak_gflops:
        log(f"   fp32 GEMM peak {peak_gflops:.1f} GFLOP/s, int8 GEMM "
            f"{(results['peak'].get('int8_gemm') or {}).get('gops', 0):.1f} GOP/s")

    from bench import accuracy, floor, loadtest_level, score_log, service_level, sources, system_level, triton_level
    from bench import repo as repo_mod
    from bench.variants import build_variants
    from bench.windows import generate_windows
    from seqguard.export.quantize import detect_cpu_flavor

    flavor = detect_cpu_flavor()
    results["models"] = {}
    needs_bert = wanted & {"model", "accuracy", "system"}
    bert = variants = windows = None
    if needs_bert:
        def prepare_bert() -> None:
            nonlocal bert, variants, windows
            bert = sources.tiny_bert(work) if args.smoke else sources.behaviour_bert(args.models, work)
            log(f"   behaviour BERT: {bert.origin}")
            windows = generate_windows(bert.seq_cfg, users=150 if args.smoke else 2000, days=2 if args.smoke else 3,
                                       limit=96 if args.smoke else args.system_windows)
            log(f"   {len(windows)} generator windows, lengths {windows.length_stats()}")
            log(f"   building variants (int8 config: {flavor})")
            variants = build_variants(bert.path, work / "bert", flavor, _calibration_bert(bert, windows),
                                      include_static=not args.no_static)

        first = next(lv for lv in ("model", "accuracy", "system") if lv in wanted)
        runner.level(first, prepare_bert, key="prepare_behaviour_bert")
    if bert is not None and variants is not None:
        runner.level("model", lambda: _model(results, bert, variants, batches, budget, peak_gflops),
                     key="model_behaviour_bert")
        runner.level("accuracy", lambda: accuracy.run(bert, variants))
        runner.level("system", lambda: system_level.run(bert, variants, windows, _tokenizer(bert),
                                                        passes=1 if args.smoke else 2))
    if "model" in wanted and not args.smoke and not args.no_reference and windows is not None:
        runner.level("model", lambda: _reference(results, work, flavor, windows, batches, budget, peak_gflops,
                                                 not args.no_static), key="model_behaviour_bert_4x256")
    if "model" in wanted and not args.smoke and not args.no_minilm:
        runner.level("model", lambda: _minilm(results, work, flavor, windows, batches, budget, peak_gflops,
                                              not args.no_static), key="model_minilm")

    serving = [lv for lv in ("triton", "service", "floor", "score_log", "loadtest") if lv in wanted]
    if serving:
        resolved = runner.level(serving[0], lambda: repo_mod.resolve(args.repo, args.models, work),
                                key="resolve_repo")
        if resolved is not None:
            repo, note = resolved
            results.pop("resolve_repo", None)
            log(f"   repository: {repo} ({note})")
            repo_windows = _repo_windows(repo, windows)
            runner.level("triton", lambda: triton_level.run(repo, note, work, repo_windows,
                                                            duration_s=args.triton_duration))
            runner.level("service", lambda: service_level.run(repo, note, work, budget_s=args.service_budget))
            # seqguard against a trivial BentoML endpoint with the same schema, pinned cores (issue 13's ratios).
            runner.level("floor", lambda: floor.run(repo, work / "floor"))
            # The score log's cost on /events, paired calls against a service without it (issue 17: < 0.5 ms p50).
            runner.level("score_log", lambda: score_log.run(repo, work / "score_log"))
            runner.level("loadtest", lambda: loadtest_level.run(ROOT, repo.resolve(), out.resolve(), args.loadtest))

    if "spark" in wanted:
        from bench import spark_level

        sizes = (20_000,) if args.smoke else tuple(int(x) for x in args.spark_sizes.split(",") if x)
        skew = 10_000 if args.smoke else args.spark_skew

        def spark_run() -> dict[str, Any]:
            spark_repo, _ = repo_mod.resolve(args.repo, args.models, work)
            return spark_level.run(spark_repo.resolve(), work / "spark", sizes, skew)

        runner.level("spark", spark_run)

    if "peak" in wanted and needs_bert and not args.smoke:
        # Measured again at the end: a burst of outside load during the first measurement would understate the
        # roof and flatter every fraction of it; the higher of the two is the roof used.
        runner.level("peak", lambda: _repeak(results), key="peak_again")
    _apply_peak(results)
    from bench.targets import evaluate

    results["targets"] = evaluate(results)
    results["load_average"]["end"] = load_average()
    # The 15-minute figure at the end covers nearly the whole run: the best single number for "how busy was it".
    results["load_average"]["run_15min_at_end"] = (load_average() or [None, None, None])[2]
    results["duration_s"] = round(time.perf_counter() - t0, 1)
    return _write(results, args, out)


def _repeak(results: dict[str, Any]) -> None:
    from bench.peak import fp32_gemm_peak

    again = fp32_gemm_peak()
    if results.get("peak"):
        results["peak"]["fp32_gemm_again"] = again
        results["peak"]["fp32_peak_gflops"] = max(results["peak"]["fp32_peak_gflops"], again["gflops"])
        if isinstance(results["peak"].get("int8_gemm"), dict) and "gops" in results["peak"]["int8_gemm"]:
            results["peak"]["int8_over_fp32_gemm"] = (results["peak"]["int8_gemm"]["gops"]
                                                      / results["peak"]["fp32_peak_gflops"])
    log(f"   fp32 GEMM again: {again['gflops']:.1f} GFLOP/s")


def _apply_peak(results: dict[str, Any]) -> None:
    peak = (results.get("peak") or {}).get("fp32_peak_gflops")
    for m in (results.get("models") or {}).values():
        for rows in m.get("batches", {}).values():
            for row in rows.values():
                row["peak_fraction"] = row["gflops"] / peak if peak else None


def _model(results: dict[str, Any], source: Any, variants: Any, batches: tuple[int, ...], budget: float,
           peak_gflops: float | None) -> None:
    from bench import model_level

    log(f"   {source.label}: {', '.join(n for n, v in variants.items() if not v.error)}")
    results["models"][source.name] = model_level.run(source, variants, batches, budget, peak_gflops)


def _reference(results: dict[str, Any], work: Path, flavor: str, windows: Any, batches: tuple[int, ...],
               budget: float, peak_gflops: float | None, static: bool) -> None:
    from bench import model_level, sources
    from bench.variants import build_variants

    src = sources.bert_reference(work)
    log(f"   {src.label}: {src.origin}; building variants")
    calibration = _calibration_bert(src, windows) if static else None
    variants = build_variants(src.path, work / "reference_variants", flavor, calibration, include_static=static)
    results["models"][src.name] = model_level.run(src, variants, batches, budget, peak_gflops)


def _minilm(results: dict[str, Any], work: Path, flavor: str, windows: Any, batches: tuple[int, ...], budget: float,
            peak_gflops: float | None, static: bool) -> None:
    from bench import model_level, sources
    from bench.variants import build_variants

    src = sources.minilm(work)
    log(f"   MiniLM: {src.origin}; building variants")
    calibration = _calibration_text(src, windows) if (static and windows is not None) else None
    variants = build_variants(src.path, work / "minilm_variants", flavor, calibration, include_static=static)
    results["models"][src.name] = model_level.run(src, variants, batches, budget, peak_gflops)


def _repo_windows(repo: Path, windows: Any) -> list[Any]:
    """Windows encoded with the repository's own SequenceConfig (it may differ from the benchmarked BERT's)."""
    from bench.windows import generate_windows
    from seqguard.manifest import Manifest

    cfg = Manifest.load(repo).sequence_config_model()
    if windows is not None and windows.cfg.config_hash() == cfg.config_hash():
        return windows.encoded
    return generate_windows(cfg, users=600, days=2, limit=1024).encoded


def _write(results: dict[str, Any], args: argparse.Namespace, out: Path) -> int:
    from bench.plot import plot
    from bench.report import render

    out.mkdir(parents=True, exist_ok=True)
    stamp = results["started_at"].replace(":", "").replace("-", "")
    text = json.dumps(results, indent=1, default=_json_default, allow_nan=False) + "\n"
    (out / f"bench-{stamp}.json").write_text(text)
    (out / "latest.json").write_text(text)
    png = None
    try:
        png = plot(results, out / "latest.png")
    except Exception as e:  # a plot failure must not lose the figures
        log(f"plot failed: {type(e).__name__}: {e}")
    tables = render(results)
    (out / "tables.md").write_text(tables)
    print("\n" + tables, flush=True)
    if not args.no_publish:
        pub: Path = args.publish
        pub.mkdir(parents=True, exist_ok=True)
        (pub / "latest.json").write_text(text)
        if png is not None:
            shutil.copyfile(png, pub / "latest.png")
        log(f"published {pub / 'latest.json'}" + (f" and {pub / 'latest.png'}" if png else ""))
    shutil.rmtree(out / "work", ignore_errors=True)  # ONNX files and repository copies: hundreds of MB
    summary = ", ".join(f"{t['key']}: {t['status']}" for t in results["targets"])
    log(f"done in {results['duration_s']:.0f}s; {summary}")
    if results["errors"]:
        log(f"levels that failed: {', '.join(results['errors'])}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
