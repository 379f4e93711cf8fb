"""seqguard's load-test users. Settings come from SEQGUARD_LT_* variables (seqguard/infra/loadtest/settings.py).

    ShopperUser   streams one account's events to POST /events, one request per event, waiting the account's
                  recorded gaps (compressed by `pace`, capped); `attack_share` of the accounts are attackers
    BatchScorer   POST /score with the recent events of `batch_entities` accounts per request
    TritonUser    raw Triton: gRPC infer on the ensemble with the tensors the service would send (mode=triton)
    ReplayUser    streams a real events file to POST /events at recorded or accelerated pace (mode=replay)

Usually started by `seqguard loadtest` (seqguard/infra/loadtest/runner.py); by hand:

    SEQGUARD_LT_STATS_OUT=reports/stats.json locust -f seqguard/infra/loadtest/locustfile.py --headless \
        -u 20 -r 5 -t 30s --host http://127.0.0.1:3000
"""

from __future__ import annotations

import json
import logging
import resource
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# Locust puts this file's folder on sys.path, not the folder the `seqguard` package lives in.
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from locust import FastHttpUser, LoadTestShape, User, constant_pacing, events, task

from seqguard.infra.loadtest.collect import Collector, write_json
from seqguard.infra.loadtest.settings import TRITON_REQUEST_NAME, LoadSettings, expected_endpoints

log = logging.getLogger("seqguard.loadtest")
SETTINGS = LoadSettings.from_env()
COLLECTOR = Collector(SETTINGS.steps, SETTINGS.stage_s, SETTINGS.spawn_rate)
# Filled once per process in the init listener (payload building is not the load generator's hot loop).
STATE: dict[str, Any] = {}

if SETTINGS.mode == "triton":
    # tritonclient's sync gRPC would block every greenlet of this process without gevent-aware gRPC.
    import grpc.experimental.gevent as grpc_gevent

    grpc_gevent.init_gevent()


@events.init.add_listener
def _build_payloads(environment: Any, **_kw: Any) -> None:
    from seqguard.infra.loadtest.payloads import AccountPool, load_replay, triton_batches

    s = SETTINGS
    if s.mode == "replay":
        assert s.replay_file is not None
        STATE["replay"] = load_replay(s.replay_file, s.replay_mapping, s.replay_speed, s.run_tag, s.run_time_s)
        return
    pool = AccountPool.from_generator(s.pool_users, seed=s.seed, max_events=s.max_events_per_account)
    STATE["pool"] = pool
    STATE["between_sessions"] = pool.think_times(s.pace, s.max_think_s)
    if s.mode == "triton":
        assert s.repo is not None
        STATE["triton_batches"] = triton_batches(pool, s.repo, s.attack_share, s.batch_entities)


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@events.test_start.add_listener
def _started(environment: Any, **_kw: Any) -> None:
    COLLECTOR.start()
    STATE["cpu_at_start"] = _cpu_seconds()


@events.quitting.add_listener
def _write_stats(environment: Any, **_kw: Any) -> None:
    meta = {
        "mode": SETTINGS.mode,
        "host": environment.host,
        "settings": SETTINGS.model_dump(exclude={"api_key"}),
        "expected_endpoints": expected_endpoints(SETTINGS),
        "peak_users": max(SETTINGS.steps) if SETTINGS.steps
        else getattr(environment.parsed_options, "num_users", None),
    }
    if "replay" in STATE:
        r = STATE["replay"]
        COLLECTOR.extra["replay"] = {"events_in_file_window": len(r), "events_sent": r.sent,
                                     "max_lag_s": round(r.max_lag_s, 3), "speed": r.speed,
                                     "stopped_at_end_of_file": bool(STATE.get("replay_quit"))}
    # On a box shared with the service, what the generator itself cost during the run is part of the result.
    meta["loadgen_cpu_s"] = round(_cpu_seconds() - STATE.get("cpu_at_start", 0.0), 2)
    summary = COLLECTOR.summary(environment, meta)
    if SETTINGS.stats_out:
        write_json(SETTINGS.stats_out, summary)
    if SETTINGS.slo_file and not SETTINGS.steps:
        # Gate here too, so a hand-run `locust -f` fails the same way `seqguard loadtest` does.
        from seqguard.infra.loadtest.slo import evaluate, load_slo

        verdict = evaluate(load_slo(SETTINGS.slo_file), summary["endpoints"], summary["expected_endpoints"])
        for v in verdict.violations:
            log.error("SLO violated: %s", v)
        if verdict.violations:
            environment.process_exit_code = 1


def _headers() -> dict[str, str]:
    return {"X-API-Key": SETTINGS.api_key} if SETTINGS.api_key else {}


# The service (uvicorn) closes a keep-alive connection idle for 5 s; a request sent on it just as it closes fails
# with "connection closed". Real clients and load balancers idle out first, so a user about to wait this long
# hangs up and reconnects for its next request.
IDLE_HANG_UP_S = 3.0


class _ScoringClient(FastHttpUser):
    """Posts events and checks the answer: anything but a 200 with one result per entity is a failure."""

    abstract = True

    def before_idle(self, seconds: float) -> None:
        if seconds >= IDLE_HANG_UP_S:
            self.client.client.clientpool.close()

    def post_events(self, path: str, events_: list[dict[str, Any]], kinds: dict[str, str]) -> None:
        body = json.dumps({"events": events_})
        with self.client.post(path, data=body, headers={"Content-Type": "application/json", **_headers()},
                              catch_response=True) as resp:
            status = resp.status_code
            failed = True
            try:
                if status != 200:
                    detail = resp.error if status == 0 else (resp.text or "")  # 0: no HTTP answer at all
                    resp.failure(f"HTTP {status}: {str(detail)[:200]}")
                else:
                    results = json.loads(resp.content)["results"]
                    if len(results) != len(kinds):
                        resp.failure(f"{len(results)} results for {len(kinds)} entities")
                    else:
                        failed = False
                        COLLECTOR.on_results(results, kinds)
            except (ValueError, KeyError, TypeError) as e:
                resp.failure(f"unreadable answer: {e}")
            COLLECTOR.on_request(path, (resp.request_meta or {}).get("response_time", 0.0), failed, status)


class ShopperUser(_ScoringClient):
    """One shopper (or attacker) at a time: its events one by one, as they would happen, to the real-time path.

    One task run posts one event; the think time before the next is the wait time, so locust's graceful stop
    (which waits for a running task) never cuts a request off.
    """

    weight = max(1, SETTINGS.shopper_weight)
    abstract = SETTINGS.mode != "service" or SETTINGS.shopper_weight == 0

    def on_start(self) -> None:
        self._stream: Iterator[tuple[float, dict[str, Any]]] | None = None
        self._pending: dict[str, Any] | None = None
        self._kinds: dict[str, str] = {}
        self._think = 0.0

    def wait_time(self) -> float:
        return self._think

    def _next_account(self) -> None:
        from seqguard.infra.loadtest.payloads import new_entity_id, stream

        account = STATE["pool"].pick(SETTINGS.attack_share)
        entity = new_entity_id(SETTINGS.run_tag, account)
        self._kinds = {entity: "attack" if account.is_attack else "normal"}
        self._stream = stream(account, entity, SETTINGS.pace, SETTINGS.max_think_s)
        _, self._pending = next(self._stream)

    @task
    def post_next_event(self) -> None:
        if self._pending is None:
            self._next_account()
        assert self._pending is not None and self._stream is not None
        self.post_events("/events", [self._pending], self._kinds)
        following = next(self._stream, None)
        if following is None:  # the account is done: a pause, then the next one
            between = STATE["between_sessions"]
            self._think = float(between[int(STATE["pool"].rng.integers(len(between)))])
            self._pending = None
        else:
            self._think, self._pending = following
        self.before_idle(self._think)


class BatchScorer(_ScoringClient):
    """A batch client: the recent events of several accounts per /score request, at a steady pace."""

    weight = max(1, SETTINGS.batch_weight)
    abstract = SETTINGS.mode != "service" or SETTINGS.batch_weight == 0
    wait_time = constant_pacing(SETTINGS.batch_interval_s)

    @task
    def score_batch(self) -> None:
        from seqguard.infra.loadtest.payloads import score_batch

        events_, kinds = score_batch(STATE["pool"], SETTINGS.attack_share, SETTINGS.batch_entities,
                                     SETTINGS.run_tag, last=SETTINGS.batch_events)
        self.post_events("/score", events_, kinds)
        self.before_idle(SETTINGS.batch_interval_s)


class ReplayUser(_ScoringClient):
    """Posts the replayed file's events (one schedule shared by all ReplayUsers) to /events when each is due."""

    abstract = SETTINGS.mode != "replay"

    def on_start(self) -> None:
        self._pending: tuple[float, dict[str, Any]] | None = None

    def wait_time(self) -> float:
        # Idle users look again shortly: others may still be sending the file's last events.
        return max(0.0, self._pending[0] - time.time()) if self._pending else 0.5

    @task
    def post_due_event(self) -> None:
        schedule = STATE["replay"]
        if self._pending is not None:
            due, event = self._pending
            lag = max(0.0, time.time() - due)
            self.post_events("/events", [event], {event["user_id"]: "replay"})
            schedule.mark_sent(lag)  # only now: the run ends when nothing is outstanding, not while this is in flight
        self._pending = schedule.next()
        self.before_idle(self.wait_time())
        if schedule.finished:
            log.warning("replay: every event of the file was sent; stopping")
            STATE["replay_quit"] = True
            self.environment.runner.quit()


class TritonUser(User):
    """Raw Triton over gRPC: the ensemble with the tensors `seqguard.features.encode_window` builds."""

    abstract = SETTINGS.mode != "triton"
    wait_time = constant_pacing(SETTINGS.batch_interval_s)

    def on_start(self) -> None:
        import tritonclient.grpc as grpcclient

        from seqguard.contracts import ENSEMBLE_MODEL, ensemble_output, infer_inputs
        from seqguard.manifest import Manifest

        assert SETTINGS.repo is not None and self.host
        self.model = ENSEMBLE_MODEL
        self.client = grpcclient.InferenceServerClient(self.host.split("://", 1)[-1])
        outputs = [ensemble_output(c) for c in Manifest.load(SETTINGS.repo).component_names]
        self.requests = []
        for batch in STATE["triton_batches"]:
            inputs = infer_inputs(batch, grpcclient)
            self.requests.append((inputs, [grpcclient.InferRequestedOutput(o) for o in outputs]))
        self.i = 0

    @task
    def infer(self) -> None:
        inputs, outputs = self.requests[self.i % len(self.requests)]
        self.i += 1
        start = time.perf_counter()
        exc: Exception | None = None
        try:
            self.client.infer(self.model, inputs, outputs=outputs, client_timeout=10.0)
        except Exception as e:  # tritonclient raises InferenceServerException for every failure kind
            exc = e
        ms = (time.perf_counter() - start) * 1000.0
        self.environment.events.request.fire(request_type="grpc", name=TRITON_REQUEST_NAME, response_time=ms,
                                             response_length=0, exception=exc, context={})
        COLLECTOR.on_request(TRITON_REQUEST_NAME, ms, exc is not None, "error" if exc else "ok")

    def on_stop(self) -> None:
        self.client.close()


if SETTINGS.steps:

    class StepShape(LoadTestShape):
        """Step mode: each stage holds its user count for `stage_s`; the collector measures each stage apart."""

        def tick(self) -> tuple[int, float] | None:
            COLLECTOR.start()
            assert COLLECTOR.t0 is not None
            stage = COLLECTOR.stage_index(time.time() - COLLECTOR.t0)
            if stage is None:
                return None
            assert SETTINGS.steps is not None
            return SETTINGS.steps[stage], SETTINGS.spawn_rate
