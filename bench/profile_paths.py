"""Where a request's time goes inside the service: the `/events` and `/score` paths in process, under cProfile.

    python -m bench.profile_paths --repo triton_repo --out docs/bench                 # profile_*.txt summaries
    py-spy record -o docs/bench/profile_events.svg -- python -m bench.profile_paths --repo triton_repo --only events

Each request goes through what the HTTP handler runs after BentoML has read the body: pydantic validation of the
body (the one conversion at the edge), the engine's checks, windows (state append for `/events`), the
micro-batcher and ONNX Runtime, the scorer, and the response model's JSON. BentoML's own HTTP / routing cost is
what the floor level's trivial endpoint measures; it is not repeated here.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import os
import pstats
import sys
import time
from pathlib import Path
from typing import Any

from bench.loadgen import Bodies


async def _drive(engine: Any, kind: str, n: int) -> float:
    from pydantic import TypeAdapter

    from seqguard.events import Event
    from seqguard.service.schemas import ScoreResponse

    adapter = TypeAdapter(list[Event])
    bodies = Bodies(kind, 1, 32)
    t0 = time.perf_counter()
    for _ in range(n):
        events = adapter.validate_python(json.loads(bodies.next())["events"])
        engine.check_events(events)
        windows = (await engine.windows_from_state(events) if kind == "events"
                   else await engine.windows_from_events(events))
        results = await engine.score(windows)
        ScoreResponse.model_validate({"request_id": "r", "results": results}).model_dump_json()
    return (time.perf_counter() - t0) / n


def profile(repo: Path, kind: str, n: int) -> tuple[float, str]:
    from seqguard.service.runtime import build_engine
    from seqguard.service.settings import ServiceSettings

    engine = build_engine(ServiceSettings(repo=repo, intra_op_threads=1))

    async def main() -> tuple[float, str]:
        await _drive(engine, kind, 50)  # warm-up: sessions, caches, first allocations
        prof = cProfile.Profile()
        prof.enable()
        per_request = await _drive(engine, kind, n)
        prof.disable()
        await engine.close()
        buf = io.StringIO()
        stats = pstats.Stats(prof, stream=buf).strip_dirs()
        stats.sort_stats("cumulative").print_stats(35)
        stats.sort_stats("tottime").print_stats(25)
        return per_request, buf.getvalue()

    return asyncio.run(main())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.profile_paths", description=__doc__.split("\n\n")[0])
    p.add_argument("--repo", type=Path, default=Path("triton_repo"))
    p.add_argument("--out", type=Path, default=None, help="write profile_<kind>.txt here")
    p.add_argument("--only", choices=("events", "score"), default=None)
    p.add_argument("--requests", type=int, default=500)
    args = p.parse_args(argv)
    os.environ.setdefault("SEQGUARD_LOG_LEVEL", "WARNING")
    for kind in [args.only] if args.only else ["events", "score"]:
        per_request, text = profile(args.repo, kind, args.requests)
        what = "1 event" if kind == "events" else "1 entity x 32 events"
        head = (f"# /{kind} in process, {args.requests} requests at concurrency 1 ({what} each)\n"
                f"# {1000 * per_request:.3f} ms per request under cProfile (its overhead included)\n")
        print(head + text[:4000])
        if args.out:
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / f"profile_{kind}.txt").write_text(head + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
