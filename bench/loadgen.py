"""A closed-loop HTTP load generator for the floor level, run as its own process (pinned to its own core).

    taskset -c 1 python -m bench.loadgen --url http://127.0.0.1:3000 --kind events --concurrency 8 --seconds 8

Each of `concurrency` threads holds one kept-alive connection and sends the next request when the previous one is
answered. Request kinds:
- events: one fresh event (unique event_id, timestamp now) of one of 1,000 users per request (`/events`);
- score:  one entity x 32 events per request (`/score`, stateless);
- large:  `--entities` entities x `--per-entity` events per request (`/score`; the fairness probe's big requests).
Prints one JSON line: requests, errors (by status), rps, and latency percentiles in ms.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import threading
import time
from typing import Any

import numpy as np

KINDS = ("login", "view", "search", "add_to_cart", "view", "view")


def event(user: str, i: int, ts: float, tag: str) -> dict[str, Any]:
    kind = KINDS[i % len(KINDS)]
    e: dict[str, Any] = {"user_id": user, "ts": ts, "event_type": kind, "event_id": f"{tag}-{user}-{i}",
                         "device_id": f"d-{user}", "ip": "203.0.113.7", "country": "DE"}
    if kind in ("view", "add_to_cart"):
        e.update(item_id=f"item-{i % 7}", category_id=f"c{i % 5}", price=float(10 + i % 40))
    return e


class Bodies:
    """Request bodies of one kind; `next()` is thread-safe and cheap next to a request."""

    def __init__(self, kind: str, entities: int, per_entity: int) -> None:
        self.kind = kind
        self.counter = itertools.count()
        self.tag = f"lg{time.time_ns()}"
        self.fixed: bytes | None = None
        if kind == "score":
            now = time.time() - 600
            self.fixed = json.dumps({"events": [event("score-user", i, now + 10 * i, self.tag)
                                                for i in range(32)]}).encode()
        elif kind == "large":
            now = time.time() - 3600
            self.fixed = json.dumps({"events": [event(f"big-{u}", i, now + 30 * i + u * 1e-3, self.tag)
                                                for u in range(entities) for i in range(per_entity)]}).encode()

    @property
    def path(self) -> str:
        return "/events" if self.kind == "events" else "/score"

    def next(self) -> bytes:
        if self.fixed is not None:
            return self.fixed
        n = next(self.counter)
        return json.dumps({"events": [event(f"user-{n % 1000}", n, time.time() - 1.0, self.tag)]}).encode()


def run(url: str, bodies: Bodies, concurrency: int, seconds: float, warmup_s: float = 1.0) -> dict[str, Any]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    start = time.perf_counter()
    t_measure = start + warmup_s
    t_end = t_measure + seconds
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    errors: dict[str, int] = {}
    degraded = [0] * concurrency  # answered 200 with at least one degraded result (overloaded, backend away, ...)
    lock = threading.Lock()

    def worker(k: int) -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        try:
            while True:
                body = bodies.next()
                t0 = time.perf_counter()
                if t0 >= t_end:
                    return
                try:
                    conn.request("POST", bodies.path, body=body, headers={"Content-Type": "application/json"})
                    r = conn.getresponse()
                    data = r.read()
                    status = r.status
                except (OSError, http.client.HTTPException) as e:
                    status = type(e).__name__
                    conn.close()
                    conn = http.client.HTTPConnection(host, int(port), timeout=60)
                t1 = time.perf_counter()
                if t0 >= t_measure:
                    if status == 200:
                        latencies[k].append(t1 - t0)
                        degraded[k] += b'"degraded":true' in data  # a byte search: parsing would load the client
                    else:
                        with lock:
                            errors[str(status)] = errors.get(str(status), 0) + 1
        finally:
            conn.close()

    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lat = np.array([x for per in latencies for x in per]) * 1000.0
    n = len(lat)
    return {"kind": bodies.kind, "path": bodies.path, "concurrency": concurrency, "seconds": seconds,
            "requests": n, "errors": errors, "degraded_responses": sum(degraded), "rps": n / seconds,
            **{f"p{q}_ms": (float(np.percentile(lat, q)) if n else None) for q in (50, 90, 99)},
            "mean_ms": float(lat.mean()) if n else None}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__.split("\n\n")[0])
    p.add_argument("--url", required=True)
    p.add_argument("--kind", choices=("events", "score", "large"), default="events")
    p.add_argument("--concurrency", type=int, default=1)
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--entities", type=int, default=1000)
    p.add_argument("--per-entity", type=int, default=5)
    args = p.parse_args(argv)
    bodies = Bodies(args.kind, args.entities, args.per_entity)
    print(json.dumps(run(args.url, bodies, args.concurrency, args.seconds, args.warmup)), flush=True)


if __name__ == "__main__":
    main()
