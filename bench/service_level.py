"""Service: POST /score for one entity through a real `bentoml serve`
(seqguard.infra.loadtest.processes.ServiceProcess), against the raw embedded backend (ONNX Runtime sessions of the
same repository) called in process on the same window.

The difference of the medians is the service's own overhead at batch 1. To say where it goes, each step of a
request is also timed alone (validation, windowing + encoding, the micro-batcher's wait + inference, the ensemble
scorer), and the in-process ScoringEngine is timed as served and once more with its ONNX Runtime sessions re-created
without spin-waiting (an experiment: their spinning threads compete with the Python work for the 2 cores).
"""

from __future__ import annotations

import asyncio
import http.client
import json
import time
from pathlib import Path
from typing import Any

from bench.common import THREADS, Samples, log, time_calls


def one_entity_events(users: int = 400, seed: int = 5) -> list[dict[str, Any]]:
    """A normal account of median history length from the generator, its events ending now (the service rejects
    events from the future; gaps are kept). The load tests' own payload code builds it."""
    from seqguard.generator import GeneratorConfig, generate
    from seqguard.infra.loadtest.payloads import accounts_from_frame

    data = generate(GeneratorConfig(users=users, days=2, seed=seed))
    normal = [a for a in accounts_from_frame(data.events, data.users, max_events=120) if not a.is_attack]
    normal.sort(key=lambda a: len(a.bodies))
    account = normal[len(normal) // 2]
    return account.events("bench-entity-1", time.time() - 1.0)


def _http_samples(url: str, body: bytes, budget_s: float, min_calls: int) -> Samples:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)  # one kept-alive connection, like a real client
    samples = Samples()

    def call() -> None:
        conn.request("POST", "/score", body=body, headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        data = r.read()
        if r.status != 200:
            raise RuntimeError(f"/score answered {r.status}: {data[:200]!r}")

    try:
        time_calls(call, samples, budget_s, min_calls, warmup=20)
    finally:
        conn.close()
    return samples


def run_now(coro: Any) -> Any:
    """The result of a coroutine that finishes without suspending (one entity's windows never wait), with no event
    loop to create: the steps timed here are the synchronous work alone."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    coro.close()
    raise RuntimeError("the coroutine suspended; run it on an event loop")


async def _engine_loop(engine: Any, parsed: list[Any], budget_s: float, min_calls: int) -> tuple[Samples, Samples]:
    """(lone batcher.submit times, whole-request times) for one engine; closes it. One event loop for both: the
    micro-batcher binds its queue to the loop it starts in."""
    window = (await engine.windows_from_events(parsed))[0].encoded
    lone, whole = Samples(), Samples()
    for _ in range(5):
        await engine.batcher.submit([window])
    for _ in range(min_calls // 2):
        t0 = time.perf_counter()
        await engine.batcher.submit([window])
        lone.add(time.perf_counter() - t0)

    async def once() -> None:
        engine.check_events(parsed)
        await engine.score(await engine.windows_from_events(parsed))

    for _ in range(20):
        await once()
    deadline = time.perf_counter() + budget_s
    while len(whole.times) < min_calls or time.perf_counter() < deadline:
        t0 = time.perf_counter()
        await once()
        whole.add(time.perf_counter() - t0)
    await engine.close()
    return lone, whole


def _without_spinning(engine: Any, repo: Path) -> Any:
    """The same engine with its ONNX Runtime sessions re-created with spin-waiting off (everything else as served):
    measures how much the served sessions' spinning threads cost the Python work that shares their 2 cores."""
    from bench.common import ort_session
    from seqguard.manifest import Manifest

    files = {c.name: repo / c.file for c in Manifest.load(repo).components}
    engine.backend.sessions = {name: ort_session(path, THREADS, spinning=False) for name, path in files.items()}
    return engine


def _in_process(repo: Path, events: list[dict[str, Any]], budget_s: float, min_calls: int) -> dict[str, Any]:
    from seqguard.events import Event
    from seqguard.features import pad_batch
    from seqguard.service.runtime import build_engine
    from seqguard.service.settings import ServiceSettings

    settings = ServiceSettings(repo=repo, intra_op_threads=THREADS)
    engine = build_engine(settings)
    parsed = [Event.model_validate(e) for e in events]
    windows = run_now(engine.windows_from_events(parsed))
    assert len(windows) == 1, "one entity -> one window"
    feed = pad_batch([windows[0].encoded])
    raw = Samples()
    time_calls(lambda: engine.backend.infer_sync(feed), raw, budget_s, min_calls, warmup=20)  # type: ignore[attr-defined]
    breakdown = _breakdown(engine, events, parsed, feed, min_calls)
    components = list(engine.backend.components)
    lone, whole = asyncio.run(_engine_loop(engine, parsed, budget_s, min_calls))
    # The micro-batcher waits max_wait_ms for company before a lone request goes to the backend.
    breakdown["batcher.submit (wait + infer)"] = float(lone.summary()["p50_ms"])
    _, no_spin = asyncio.run(_engine_loop(_without_spinning(build_engine(settings), repo), parsed, budget_s / 2,
                                          min_calls))
    return {"breakdown_p50_ms": breakdown, "window_tokens": len(windows[0].encoded.input_ids),
            "components": components, "raw_backend": raw.summary(), "engine_in_process": whole.summary(),
            "engine_in_process_ort_no_spinning": no_spin.summary(),
            "settings": {"max_wait_ms": settings.max_wait_ms, "max_batch": settings.max_batch}}


def _breakdown(engine: Any, events: list[dict[str, Any]], parsed: list[Any], feed: dict[str, Any], calls: int
               ) -> dict[str, float]:
    """Median of each synchronous step the service takes for one request, timed alone: where its overhead goes."""
    from seqguard.events import Event

    window = run_now(engine.windows_from_events(parsed))[0]
    logits = engine.backend.infer_sync(feed)
    features = window.encoded.features[None, :]
    steps: dict[str, Any] = {
        "validate_events (pydantic)": lambda: [Event.model_validate(e) for e in events],
        "check_events": lambda: engine.check_events(parsed),
        "windows_from_events (windowing + encode_window)": lambda: run_now(engine.windows_from_events(parsed)),
        "backend infer (raw)": lambda: engine.backend.infer_sync(feed),
        "scorer.score (ensemble, rules, detector)": lambda: engine.scorer.score(logits, features),
    }
    out = {}
    for name, fn in steps.items():
        s = Samples()
        time_calls(fn, s, 0.5, calls // 2, warmup=5)
        out[name] = float(s.summary()["p50_ms"])
    return out


def _split(http_p50: float, raw_p50: float, steps: dict[str, float]) -> dict[str, float]:
    """The overhead (/score − raw backend) by where it goes: the engine's steps timed alone (the batcher's figure
    includes one inference, taken out), and the rest (HTTP, BentoML, JSON, and contention for the cores)."""
    engine_steps = sum(v for k, v in steps.items() if k != "backend infer (raw)") - raw_p50
    return {"engine_steps_timed_alone": engine_steps, "http_bentoml_json_and_contention": http_p50 - raw_p50
            - engine_steps}


def run(repo: Path, repo_note: str, work: Path, budget_s: float = 6.0, min_calls: int = 100) -> dict[str, Any]:
    from seqguard.infra.loadtest.processes import ServiceProcess

    events = one_entity_events()
    body = json.dumps({"events": events}).encode()
    log(f"  bentoml serve on {repo} ({len(events)} events for one entity, {len(body)} bytes)")
    logs = work / "service_logs"
    logs.mkdir(parents=True, exist_ok=True)
    server = ServiceProcess(repo, logs, env={"SEQGUARD_INTRA_OP_THREADS": str(THREADS)}).start(timeout=90)
    url = server.url
    try:
        http_samples = _http_samples(url, body, budget_s, min_calls)
    finally:
        server.stop()
    # In process after the server stopped, so the two never compete for the same 2 cores.
    inproc = _in_process(repo, events, budget_s, min_calls)
    svc = http_samples.summary()
    raw, eng = inproc["raw_backend"], inproc["engine_in_process"]
    out = {"repository_source": repo_note, "events": len(events), "body_bytes": len(body), "http_score": svc,
           **inproc,
           "overhead_ms_p50": svc["p50_ms"] - raw["p50_ms"],
           "overhead_ms_p99": svc["p99_ms"] - raw["p99_ms"],
           "overhead_split_ms_p50": _split(svc["p50_ms"], raw["p50_ms"], inproc["breakdown_p50_ms"])}
    log(f"  /score p50 {svc['p50_ms']:.2f} ms p99 {svc['p99_ms']:.2f} ms; raw backend p50 {raw['p50_ms']:.2f} ms; "
        f"engine in process p50 {eng['p50_ms']:.2f} ms -> overhead {out['overhead_ms_p50']:.2f} ms")
    return out
