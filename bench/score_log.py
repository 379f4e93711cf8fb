"""The score log's cost on the real-time path: POST /events through two real `bentoml serve` processes of the same
repository, one without and one with the score log (sample rate 1, drift gauges on), called in alternating rounds
call by call so load from elsewhere on the machine hits both alike; and the same /events path in process (engine +
ServiceLoop) with and without the log, again call by call. The median of the paired differences is the overhead a
request pays; the target is < 0.5 ms p50 (issue 17).

    python -m bench.score_log --repo triton_repo --out bench/results/score_log.json
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import THREADS, load_average, log

TARGET_MS = 0.5


def _caller(url: str, body: bytes) -> Any:
    """A kept-alive connection, re-opened when the server closed it while the other variant's round ran."""
    host, port = url.removeprefix("http://").split(":")
    state = {"conn": http.client.HTTPConnection(host, int(port), timeout=30)}

    def call() -> None:
        for attempt in (0, 1):
            try:
                state["conn"].request("POST", "/events", body=body, headers={"Content-Type": "application/json"})
                r = state["conn"].getresponse()
                break
            except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
                state["conn"].close()
                state["conn"] = http.client.HTTPConnection(host, int(port), timeout=30)
                if attempt:
                    raise
        data = r.read()
        if r.status != 200:
            raise RuntimeError(f"/events answered {r.status}: {data[:200]!r}")

    return call, state


def alternate(a: Any, b: Any, budget_s: float, min_calls: int = 200) -> dict[str, Any]:
    """Call a, b, a, b, ... (after a warm-up) so load from elsewhere hits both alike; medians and the median of the
    paired differences (b - a), in ms."""
    ta, tb = [], []
    for _ in range(20):
        a()
        b()
    deadline = time.perf_counter() + budget_s
    while len(ta) < min_calls or time.perf_counter() < deadline:
        for fn, out in ((a, ta), (b, tb)):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
    xa, xb = np.asarray(ta) * 1e3, np.asarray(tb) * 1e3
    return {"n": len(xa), "a_p50_ms": float(np.median(xa)), "b_p50_ms": float(np.median(xb)),
            "a_p99_ms": float(np.percentile(xa, 99)), "b_p99_ms": float(np.percentile(xb, 99)),
            "paired_diff_p50_ms": float(np.median(xb - xa))}


def both_orders(off: Any, on: Any, budget_s: float) -> dict[str, Any]:
    """`alternate` once as (off, on) and once as (on, off): whichever variant runs second pays for what the first
    left behind (a flush, a GC), so the overhead is the mean of the two paired differences."""
    first, second = alternate(off, on, budget_s / 2), alternate(on, off, budget_s / 2)
    return {"off_then_on": first, "on_then_off": second,
            "without_p50_ms": (first["a_p50_ms"] + second["b_p50_ms"]) / 2,
            "with_p50_ms": (first["b_p50_ms"] + second["a_p50_ms"]) / 2,
            "overhead_ms_p50": (first["paired_diff_p50_ms"] - second["paired_diff_p50_ms"]) / 2}


def in_process(repo: Path, events: list[dict[str, Any]], work: Path, budget_s: float) -> dict[str, Any]:
    """The /events path in process (state append, windows, batcher + ONNX Runtime, scorer) without and with
    `ServiceLoop.after_score` (score log + drift monitor, writer thread live), alternating call by call; plus the
    cost of the after_score call alone."""
    import asyncio

    from seqguard.events import Event
    from seqguard.service.loop import ServiceLoop
    from seqguard.service.runtime import build_engine
    from seqguard.service.settings import ServiceSettings

    settings = ServiceSettings(repo=repo, intra_op_threads=THREADS, score_log_path=str(work / "inproc_log"),
                               score_log_flush_s=1.0)
    engine = build_engine(settings)
    parsed = [Event.model_validate(e) for e in events]
    out: dict[str, Any] = {}

    async def go() -> None:
        loop = ServiceLoop(settings, engine)
        aio = asyncio.get_running_loop()

        async def request(with_log: bool) -> None:
            windows = await engine.windows_from_state(parsed)
            results = await engine.score(windows)
            if with_log:
                loop.after_score("/events", "bench", windows, results)

        def sync(with_log: bool) -> Any:
            return lambda: asyncio.run_coroutine_threadsafe(request(with_log), aio).result()

        out["events_path"] = await asyncio.to_thread(both_orders, sync(False), sync(True), budget_s)
        windows = await engine.windows_from_state(parsed)
        results = await engine.score(windows)
        alone = []
        for i in range(5000):
            t0 = time.perf_counter()
            loop.after_score("/events", f"bench-{i}", windows, results)
            alone.append(time.perf_counter() - t0)
        out["after_score_us_p50"] = float(np.median(alone) * 1e6)
        out["after_score_us_p99"] = float(np.percentile(alone, 99) * 1e6)
        await loop.close()
        await engine.close()

    asyncio.run(go())
    return out


def run(repo: Path, work: Path, budget_s: float = 12.0) -> dict[str, Any]:
    from bench.service_level import one_entity_events
    from seqguard.infra.loadtest.processes import start_service
    from seqguard.service.score_log import read_score_log

    events = one_entity_events()
    body = json.dumps({"events": events}).encode()
    work.mkdir(parents=True, exist_ok=True)
    # No SIGTERM drain: the servers stop between measurements, not under live traffic.
    base = {"SEQGUARD_REPO": str(repo.resolve()), "SEQGUARD_INTRA_OP_THREADS": str(THREADS), "SEQGUARD_DRAIN_S": "0"}
    log_dir = work / "score_log"
    servers = []
    try:
        off, off_url = start_service(work, base)
        servers.append(off)
        on, on_url = start_service(work, {**base, "SEQGUARD_SCORE_LOG_PATH": str(log_dir),
                                          "SEQGUARD_SCORE_LOG_FLUSH_S": "1"})
        servers.append(on)
        (call_off, c1), (call_on, c2) = _caller(off_url, body), _caller(on_url, body)
        load_before = load_average()
        http = both_orders(call_off, call_on, budget_s)
        c1["conn"].close()
        c2["conn"].close()
    finally:
        for s in servers:
            s.stop()  # the logging service writes what it holds on shutdown
    rows = len(read_score_log(log_dir))
    inproc = in_process(repo, events, work, budget_s)
    overhead = http["overhead_ms_p50"]
    out = {"repository": str(repo), "events": len(events), "http_events": http, "rows_logged_http": rows,
           "in_process": inproc, "overhead_ms_p50": overhead, "target_ms_p50": TARGET_MS, "met": overhead < TARGET_MS,
           "load_average": {"before": load_before, "after": load_average()}}
    ev = inproc["events_path"]
    log(f"  in process /events path p50 {ev['without_p50_ms']:.3f} ms without, {ev['with_p50_ms']:.3f} ms with the "
        f"log; overhead {ev['overhead_ms_p50']:+.3f} ms; after_score alone p50 {inproc['after_score_us_p50']:.1f} us")
    log(f"  HTTP /events p50 {http['without_p50_ms']:.2f} ms without, {http['with_p50_ms']:.2f} ms with; overhead "
        f"{overhead:+.3f} ms (target < {TARGET_MS} ms; {rows} rows logged)")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.score_log", description=__doc__.split("\n\n")[0])
    p.add_argument("--repo", type=Path, default=Path("triton_repo"))
    p.add_argument("--work", type=Path, default=Path("bench/results/score_log_work"))
    p.add_argument("--out", type=Path, default=Path("bench/results/score_log.json"))
    p.add_argument("--budget", type=float, default=12.0, help="seconds of timed calls per variant")
    args = p.parse_args(argv)
    if not (args.repo / "manifest.json").is_file():
        print(f"bench.score_log: {args.repo} is not a model repository (make model)", file=sys.stderr)
        return 2
    result = run(args.repo, args.work, args.budget)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
