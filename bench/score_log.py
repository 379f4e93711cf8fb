"""The score log's cost on the real-time path: POST /events through two real `bentoml serve` processes of the same
repository, one without and one with the score log (sample rate 1, drift gauges on), called in alternating rounds
(bench.common.interleaved) so load from elsewhere on the machine hits both. The difference of the p50s is the
overhead a request pays; the target is < 0.5 ms p50 (issue 17).

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

from bench.common import THREADS, interleaved, load_average, log

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


def record_cost(repo: Path, events: list[dict[str, Any]], work: Path, calls: int = 5000) -> dict[str, Any]:
    """In process: what `ServiceLoop.after_score` adds to one request (the only part on the request path), timed
    call by call with a live writer thread draining the queue."""
    import asyncio

    from bench.common import Samples
    from seqguard.events import Event
    from service.loop import ServiceLoop
    from service.runtime import build_engine
    from service.settings import ServiceSettings

    settings = ServiceSettings(repo=repo, intra_op_threads=THREADS, score_log_path=str(work / "inproc_log"))
    engine = build_engine(settings)
    windows = engine.windows_from_events([Event.model_validate(e) for e in events])

    async def go() -> Samples:
        results = await engine.score(windows)
        loop = ServiceLoop(settings, engine)
        samples = Samples()
        for i in range(calls):
            t0 = time.perf_counter()
            loop.after_score("/events", f"bench-{i}", windows, results)
            samples.add(time.perf_counter() - t0)
        await loop.close()
        await engine.close()
        return samples

    s = asyncio.run(go()).summary()
    return {"after_score_us_p50": s["p50_ms"] * 1e3, "after_score_us_p99": s["p99_ms"] * 1e3, "calls": s["n"]}


def run(repo: Path, work: Path, budget_s: float = 12.0, rounds: int = 6) -> dict[str, Any]:
    from bench.service_level import one_entity_events
    from service.score_log import read_score_log
    from tests.support import start_service

    events = one_entity_events()
    body = json.dumps({"events": events}).encode()
    work.mkdir(parents=True, exist_ok=True)
    base = {"SEQGUARD_REPO": str(repo.resolve()), "SEQGUARD_INTRA_OP_THREADS": str(THREADS)}
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
        samples = interleaved({"without_log": call_off, "with_log": call_on}, budget_s, rounds, min_calls=50)
        c1["conn"].close()
        c2["conn"].close()
    finally:
        for s in servers:
            s.stop()  # the logging service writes what it holds on shutdown
    without, with_log = samples["without_log"].summary(), samples["with_log"].summary()
    rows = len(read_score_log(log_dir))
    overhead = with_log["p50_ms"] - without["p50_ms"]
    out = {"repository": str(repo), "events": len(events), "without_log": without, "with_log": with_log,
           "overhead_ms_p50": overhead, "overhead_ms_p99": with_log["p99_ms"] - without["p99_ms"],
           "rows_logged": rows, "in_process": record_cost(repo, events, work),
           "target_ms_p50": TARGET_MS, "met": overhead < TARGET_MS,
           "load_average": {"before": load_before, "after": load_average()}}
    log(f"  in process: after_score p50 {out['in_process']['after_score_us_p50']:.1f} us, p99 "
        f"{out['in_process']['after_score_us_p99']:.1f} us")
    log(f"  /events p50 without log {without['p50_ms']:.2f} ms, with log {with_log['p50_ms']:.2f} ms -> overhead "
        f"{overhead:+.3f} ms (target < {TARGET_MS} ms); {rows} rows logged")
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
