"""Batch scoring at scale: `seqguard score` in one process vs Spark local[2], events/s and memory, 1 M -> 5 M (-> 20 M)
generated events, plus a skewed input (one entity with 1 M events).

    python -m bench.spark_level --repo triton_repo --sizes 1000000,5000000 --skew 1000000 --out bench/results/spark

Each run is a child process (`--child`), so its memory is its own: the parent samples the resident memory of the
child's whole process tree every 0.2 s (the JVM and each Spark Python worker separately). On a 2-core machine Spark
mostly adds overhead (a JVM, two shuffles, Arrow hops to Python workers); the level exists to show that the cost
grows linearly with the events and that an executor's memory stays bounded, including under a hot entity.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import load_average, log

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------------------------------
# Data: the generator's traffic, replicated under new entity ids (each replica is a distinct entity)


def base_events(work: Path, users: int = 2000, days: int = 4, seed: int = 5) -> Path:
    from seqguard.generator import GeneratorConfig, generate
    from seqguard.io import write_events

    path = work / f"base-{users}x{days}-{seed}.parquet"
    if not path.is_file():
        write_events(generate(GeneratorConfig(users=users, days=days, seed=seed)).events, path)
    return path


def scaled_events(work: Path, n_events: int, skew_events: int = 0) -> Path:
    """`n_events` rows (replicas of the base traffic), plus one hot entity of `skew_events` events over one day."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    path = work / f"events-{n_events}-skew{skew_events}.parquet"
    if path.is_file():
        return path
    base = pq.read_table(base_events(work))
    tmp = path.with_suffix(".partial")
    with pq.ParquetWriter(str(tmp), base.schema) as w:
        written, k = 0, 0
        while written < n_events:
            part = base.slice(0, min(len(base), n_events - written))
            for col in ("user_id", "event_id"):
                i = part.schema.get_field_index(col)
                part = part.set_column(i, col, pc.binary_join_element_wise(part[col], pa.scalar(f"~r{k}"), ""))
            w.write_table(part, row_group_size=250_000)
            written += len(part)
            k += 1
        if skew_events:
            w.write_table(_hot_entity(base, skew_events), row_group_size=250_000)
    tmp.replace(path)
    return path


def _hot_entity(base: Any, n: int) -> Any:
    """A click bot: one user, `n` views 50 ms apart (all within one day), items and devices cycling."""
    import pyarrow as pa

    t0 = float(np.floor(base["ts"].to_numpy().min().astype("datetime64[s]").astype(np.int64) / 86400.0) * 86400.0)
    ts = (t0 + 3600.0 + 0.05 * np.arange(n)) * 1000
    cols = {}
    for f in base.schema:
        if f.name == "user_id":
            cols[f.name] = pa.array(np.full(n, "hot-bot"), f.type)
        elif f.name == "ts":
            cols[f.name] = pa.array(np.round(ts).astype("int64"), pa.timestamp("ms", tz="UTC")).cast(f.type)
        elif f.name == "event_type":
            cols[f.name] = pa.array(np.full(n, "view"), f.type)
        elif f.name == "event_id":
            cols[f.name] = pa.array([f"hot-{i}" for i in range(n)], f.type)
        elif f.name == "item_id":
            cols[f.name] = pa.array([f"i{i % 997}" for i in range(n)], f.type)
        elif f.name == "is_anomaly":
            cols[f.name] = pa.array(np.ones(n, dtype=bool), f.type)
        elif f.name == "scenario":
            cols[f.name] = pa.array(np.full(n, "click_farm_bot"), f.type)
        else:
            cols[f.name] = pa.nulls(n, f.type)
    return pa.table(cols, schema=base.schema)


# ---------------------------------------------------------------------------------------------------------------------
# One measured run in a child process


def _tree_rss(pid: int) -> dict[str, int]:
    import psutil

    out = {"total": 0, "python_worker_max": 0, "jvm": 0, "main": 0}
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return out
    for p in procs:
        try:
            rss = p.memory_info().rss
            name = " ".join(p.cmdline()[:3])
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        out["total"] += rss
        if p.pid == pid:
            out["main"] = rss
        elif "java" in name:
            out["jvm"] += rss
        elif "pyspark" in name or "daemon" in name or "worker" in name:
            out["python_worker_max"] = max(out["python_worker_max"], rss)
    return out


def measure(engine: str, data: Path, repo: Path, out: Path, timeout_s: float = 1800.0,
            extra: list[str] | None = None) -> dict[str, Any]:
    """Run one child and sample its process tree's memory until it exits."""
    cmd = [sys.executable, "-m", "bench.spark_level", "--child", engine, "--data", str(data), "--repo", str(repo),
           "--child-out", str(out), *(extra or [])]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_WAIT_POLICY": "PASSIVE"}
    log_path = out.with_suffix(".log")
    with open(log_path, "wb") as logf:
        proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, cwd=str(ROOT), env=env)
        peak: dict[str, int] = {}
        t0 = time.perf_counter()
        while proc.poll() is None:
            for k, v in _tree_rss(proc.pid).items():
                peak[k] = max(peak.get(k, 0), v)
            if time.perf_counter() - t0 > timeout_s:
                proc.kill()
                break
            time.sleep(0.2)
    text = log_path.read_text(errors="replace")
    result: dict[str, Any] = {}
    for line in text.splitlines():
        if line.startswith("RESULT "):
            result = json.loads(line[len("RESULT "):])
    if proc.returncode != 0 or not result:
        raise RuntimeError(f"{engine} run failed (exit {proc.returncode}):\n{text[-3000:]}")
    result["peak_rss_mb"] = {k: round(v / 2**20, 1) for k, v in peak.items()}
    return result


def _child(args: argparse.Namespace) -> int:
    import resource

    out = Path(args.child_out)
    if args.child == "single":
        from seqguard.batch_score import BatchScorer, score_file

        scorer = BatchScorer(args.repo, threads=2)
        t0 = time.perf_counter()
        s = score_file(scorer, args.data, out.with_suffix(".parquet"), progress=False, chunk_rows=args.chunk_rows)
        seconds = time.perf_counter() - t0
        res = {"engine": "single process", "events": s.rows_ok, "rows_out": s.rows_out, "seconds": seconds,
               "buckets": s.buckets, "startup_s": 0.0}
    else:
        from seqguard.spark import get_session, score_path

        t0 = time.perf_counter()
        spark = get_session(args.master, app="seqguard-bench", conf={
            "spark.ui.enabled": "false", "spark.driver.memory": args.driver_memory,
            "spark.sql.shuffle.partitions": str(args.partitions)})
        spark.sparkContext.setLogLevel("ERROR")
        startup = time.perf_counter() - t0
        t0 = time.perf_counter()
        summary = score_path(str(args.data), args.repo, out, spark=spark)
        seconds = time.perf_counter() - t0
        rows_ok = int(summary.split(", kept ")[1].split(",")[0])
        import pyarrow.dataset as ds

        res = {"engine": f"spark {args.master}", "events": rows_ok, "rows_out": ds.dataset(out).count_rows(),
               "seconds": seconds, "startup_s": startup, "driver_memory": args.driver_memory,
               "shuffle_partitions": args.partitions}
    res["events_per_s"] = res["events"] / res["seconds"]
    res["self_maxrss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print("RESULT " + json.dumps(res), flush=True)
    return 0


# ---------------------------------------------------------------------------------------------------------------------
# The level


def run(repo: Path, work: Path, sizes: tuple[int, ...] = (1_000_000, 5_000_000), skew: int = 1_000_000,
        engines: tuple[str, ...] = ("single", "spark")) -> dict[str, Any]:
    work.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"repo": str(repo), "runs": [], "load_average_start": load_average(),
                               "cores": os.cpu_count()}
    for n in sizes:
        data = scaled_events(work, n)
        for engine in engines:
            log(f"   spark level: {engine} on {n:,} events (load average {load_average()})")
            r = measure(engine, data, repo, work / f"out-{engine}-{n}")
            r["size"] = n
            results["runs"].append(r)
            log(f"      {r['events_per_s']:,.0f} events/s in {r['seconds']:.1f}s; peak RSS {r['peak_rss_mb']}")
    if skew:
        data = scaled_events(work, sizes[0] if sizes else 100_000, skew)
        for engine in engines:
            log(f"   spark level: {engine} with one entity of {skew:,} events")
            r = measure(engine, data, repo, work / f"out-{engine}-skew")
            r["size"], r["hot_entity_events"] = r["events"], skew
            results.setdefault("skew", []).append(r)
            log(f"      {r['events_per_s']:,.0f} events/s; peak RSS {r['peak_rss_mb']}")
    results["load_average_end"] = load_average()
    return results


def table(results: dict[str, Any]) -> str:
    lines = ["| engine | events | seconds | events/s | startup s | peak RSS total MB | JVM MB | largest Python "
             "worker MB | main process MB |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in [*results["runs"], *results.get("skew", [])]:
        m = r["peak_rss_mb"]
        label = r["engine"] + (f" (hot entity {r['hot_entity_events']:,})" if "hot_entity_events" in r else "")
        lines.append(f"| {label} | {r['events']:,} | {r['seconds']:.1f} | {r['events_per_s']:,.0f} | "
                     f"{r['startup_s']:.1f} | {m.get('total', 0):,.0f} | {m.get('jvm', 0):,.0f} | "
                     f"{m.get('python_worker_max', 0):,.0f} | {m.get('main', 0):,.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.spark_level", description=__doc__.split("\n\n")[0])
    p.add_argument("--repo", type=Path, default=Path("triton_repo"), help="model repository (seqguard export)")
    p.add_argument("--sizes", default="1000000,5000000", help="comma-separated event counts")
    p.add_argument("--skew", type=int, default=1_000_000, help="events of the hot entity (0: no skew run)")
    p.add_argument("--engines", default="single,spark")
    p.add_argument("--out", type=Path, default=Path("bench/results/spark"))
    p.add_argument("--child", choices=("single", "spark"), help=argparse.SUPPRESS)
    p.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--child-out", help=argparse.SUPPRESS)
    p.add_argument("--master", default="local[2]")
    p.add_argument("--driver-memory", default="1g", help="local mode: the one JVM's heap (driver = executor)")
    p.add_argument("--partitions", type=int, default=16, help="spark.sql.shuffle.partitions (= entity buckets)")
    p.add_argument("--chunk-rows", type=int, default=1_000_000, help="single process: rows per chunk")
    args = p.parse_args(argv)
    if args.child:
        return _child(args)
    sizes = tuple(int(x) for x in args.sizes.split(",") if x)
    res = run(args.repo, args.out / "work", sizes, args.skew, tuple(args.engines.split(",")))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "spark_level.json").write_text(json.dumps(res, indent=1) + "\n")
    print(table(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
