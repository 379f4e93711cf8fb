"""The scoring service end to end, through a real `bentoml serve` (and a real tritonserver / redis-server)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from seqguard.config import SequenceConfig
from seqguard.crossentity import frame_cross_features
from seqguard.features import encode_window
from seqguard.io import events_to_frame
from seqguard.scoring.scorer import Scorer
from seqguard.sequences import columns_from_frame, iter_windows, sort_for_sequences, window_index
from tests.event_cases import CASES
from tests.support import ServerProcess, start_service

pytestmark = pytest.mark.slow

NOW = time.time()


def post(url: str, body: Any, headers: dict[str, str] | None = None, raw: bytes | None = None) -> tuple[int, dict]:
    data = raw if raw is not None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        payload = e.read()
        try:
            return e.code, json.loads(payload)
        except json.JSONDecodeError:
            return e.code, {"raw": payload.decode(errors="replace")}


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def card_testing(user: str, n: int = 8, start: float = NOW - 3600) -> list[dict[str, Any]]:
    return [
        {"user_id": user, "ts": start + 15 * i, "event_type": "payment_attempt", "price": 1.0 + i % 3,
         "payment_status": "failed", "device_id": "dev-x", "event_id": f"{user}-ct-{i}"}
        for i in range(n)
    ]


def shopper(user: str, start: float = NOW - 7200) -> list[dict[str, Any]]:
    return [
        {"user_id": user, "ts": start, "event_type": "login", "device_id": "d1", "event_id": f"{user}-0"},
        {"user_id": user, "ts": start + 40, "event_type": "view", "item_id": "i1", "category_id": "c1",
         "price": 25.0, "event_id": f"{user}-1"},
        {"user_id": user, "ts": start + 130, "event_type": "add_to_cart", "item_id": "i1", "price": 25.0,
         "event_id": f"{user}-2"},
        {"user_id": user, "ts": start + 300, "event_type": "purchase", "item_id": "i1", "price": 25.0,
         "event_id": f"{user}-3"},
    ]


@pytest.fixture(scope="module")
def service_process(tiny_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, str]]:
    log_dir = tmp_path_factory.mktemp("svc")
    env = {"SEQGUARD_REPO": str(tiny_repo), "SEQGUARD_MAX_BODY_BYTES": "200000",
           "SEQGUARD_MAX_EVENTS_PER_REQUEST": "500",
           "SEQGUARD_FEEDBACK_PATH": str(log_dir / "feedback.sqlite")}  # /feedback on: the contract test covers it
    server, url = start_service(log_dir, env)
    yield server, url
    server.stop()


@pytest.fixture(scope="module")
def service(service_process: tuple[ServerProcess, str]) -> str:
    return service_process[1]


def offline_scores(repo: Path, events: list[dict[str, Any]]) -> dict[str, float]:
    """What `seqguard evaluate` computes for the same events: shared windows/encoding, ORT logits, the Scorer."""
    import onnxruntime as ort

    from seqguard.manifest import verify_repository

    manifest = verify_repository(repo)
    cfg = SequenceConfig.model_validate(manifest.sequence_config)
    frame = sort_for_sequences(events_to_frame([_event(e) for e in events]), cfg)
    ents, encs = [], []
    # Cross-entity features over the request's events, as the service computes them for a /score request.
    idx = window_index(frame, cfg, "entity")
    all_cols = columns_from_frame(frame)
    cross = frame_cross_features(frame[cfg.entity_key].to_numpy(dtype=object), all_cols, idx.start, idx.end)
    for i, (ent, _, _, cols) in enumerate(iter_windows(frame, cfg, "entity")):
        ents.append(ent)
        encs.append(encode_window(cols, cfg, cross[i]))
    from seqguard.features import pad_batch

    batch = pad_batch(encs)
    logits = {}
    for c in manifest.components:
        sess = ort.InferenceSession(str(repo / c.file), providers=["CPUExecutionProvider"])
        names = {i.name for i in sess.get_inputs()}
        logits[c.name] = sess.run(["logits"], {k: v for k, v in batch.items() if k in names})[0]
    decisions = Scorer.load(repo).score(logits, np.stack([e.features for e in encs]))
    return {ent: d.score for ent, d in zip(ents, decisions, strict=True)}


def _event(d: dict[str, Any]) -> dict[str, Any]:
    from seqguard.events import Event

    return Event.model_validate(d).model_dump()


def test_score_matches_offline_and_carries_reasons(service: str, tiny_repo: Path) -> None:
    events = card_testing("ct-1") + shopper("good-1")
    status, body = post(service + "/score", {"events": events})
    assert status == 200, body
    results = {r["entity_id"]: r for r in body["results"]}
    assert set(results) == {"ct-1", "good-1"}
    ct = results["ct-1"]
    assert ct["decision"] in ("allow", "review", "block") and 0 <= ct["score"] <= 1
    assert ct["model_version"] and ct["degraded"] is False and ct["n_events"] == 8
    assert ct["reasons"] and set(ct["component_scores"]) >= {"unsupervised"}
    # The rules see eight failed payments within two minutes.
    assert any("fail" in r["id"] or "card" in r["id"] for r in ct["rules_fired"]), ct["rules_fired"]
    offline = offline_scores(tiny_repo, events)
    for ent, score in offline.items():
        assert results[ent]["score"] == pytest.approx(score, abs=1e-5)
    # Deterministic: the same request, the same answer.
    _, again = post(service + "/score", {"events": events})
    assert [r["score"] for r in again["results"]] == [r["score"] for r in body["results"]]


def _batched_windows(url: str) -> float:
    """Windows scored in backend calls of more than one window so far (from the batch-size histogram)."""
    text = get(url + "/metrics")[1]
    count = sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith("seqguard_batch_size_count"))
    single = sum(float(line.split()[-1]) for line in text.splitlines()
                 if line.startswith('seqguard_batch_size_bucket{le="1.0"}'))
    return count - single


@pytest.fixture(scope="module")
def lingering_service(tiny_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The service with a 20 ms batcher linger, so concurrent requests reliably share backend calls, and a large-body
    threshold of 2 KB, so bodies of a few events already take the large-request lane (validated in slices)."""
    server, url = start_service(tmp_path_factory.mktemp("svc_linger"),
                                {"SEQGUARD_REPO": str(tiny_repo), "SEQGUARD_MAX_WAIT_MS": "20",
                                 "SEQGUARD_LARGE_REQUEST_BYTES": "2048"})
    yield url
    server.stop()


def test_a_windows_score_does_not_depend_on_what_shares_its_batch(lingering_service: str) -> None:
    """The same window, scored alone and then concurrently with 31 windows of random lengths, gets bit-identical
    scores (the batcher pads each window to its own length bucket; the models are row- and padding-independent)."""
    from concurrent.futures import ThreadPoolExecutor

    service = lingering_service
    rng = np.random.default_rng(7)
    target = card_testing("det-target", n=5)
    status, alone = post(service + "/score", {"events": target})
    assert status == 200, alone
    (expected,) = alone["results"]
    batched_before = _batched_windows(service)
    for round_ in range(3):
        others = []
        for k in range(31):
            n = int(rng.integers(1, 16))  # 1..15 events: every length bucket of the tiny model
            start = NOW - 7200 - 600 * k
            others.append([{"user_id": f"det-{round_}-{k}", "ts": start + 11 * i,
                            "event_type": ["view", "add_to_cart", "login", "search"][i % 4], "item_id": f"i{i % 3}",
                            "price": float(1 + i), "event_id": f"det-{round_}-{k}-{i}"} for i in range(n)])
        bodies = [{"events": e} for e in others]
        bodies.insert(int(rng.integers(0, 32)), {"events": target})
        with ThreadPoolExecutor(32) as pool:
            answers = list(pool.map(lambda b: post(service + "/score", b), bodies))
        assert all(status == 200 for status, _ in answers)
        (got,) = next(body["results"] for _, body in answers if body["results"][0]["entity_id"] == "det-target")
        assert got["score"] == expected["score"]  # bit-equal, not approximately
        assert got["component_scores"] == expected["component_scores"]
        assert got["decision"] == expected["decision"]
    # The comparison means something only if windows really were scored together.
    assert _batched_windows(service) > batched_before


def test_a_large_body_validated_in_slices_answers_as_a_small_one(lingering_service: str) -> None:
    """Over the large-body threshold the lane validates the events itself (seqguard/service/fairness.py): the answers
    are
    the ones each entity gets in a small body, and a bad event is still reported by BentoML's own validation."""
    service = lingering_service
    # A device of each tester's own: testers sharing one would (rightly) see each other in the big body through the
    # cross-entity features (accounts per device), and the answers would differ from their small bodies by design.
    users = [[{**e, "device_id": f"dev-{k}"} for e in card_testing(f"lane-{k}", n=6)] for k in range(4)] \
        + [shopper("lane-shopper")]
    big = [e for evs in users for e in evs]
    assert len(json.dumps({"events": big})) > 2048 > max(len(json.dumps({"events": evs})) for evs in users)
    status, body = post(service + "/score", {"events": big})
    assert status == 200, body
    got = {r["entity_id"]: r for r in body["results"]}
    for evs in users:
        status, small = post(service + "/score", {"events": evs})
        assert status == 200
        (want,) = small["results"]
        assert {k: v for k, v in got[want["entity_id"]].items() if k != "request_id"} == want
    bad = [dict(e) for e in big]
    bad[7]["ts"] = "not a time"
    status, err = post(service + "/score", {"events": bad})
    assert status in (400, 422) and [d["field"] for d in err["details"]] == ["events.7.ts"], err


def test_invocations_and_ping_follow_the_sagemaker_contract(service: str) -> None:
    events = shopper("good-2")
    s1, a = post(service + "/invocations", {"events": events})
    s2, b = post(service + "/score", {"events": events})
    assert s1 == s2 == 200 and a["results"] == b["results"]
    assert get(service + "/ping")[0] == 200 and get(service + "/readyz")[0] == 200


def test_events_path_keeps_state_and_is_idempotent(service: str) -> None:
    evs = card_testing("stream-1", n=6)
    for e in evs[:3]:
        status, body = post(service + "/events", {"events": [e]})
        assert status == 200
    assert body["results"][0]["n_events"] == 3
    status, body = post(service + "/events", {"events": evs[1:]})  # two re-sent, three new
    assert body["results"][0]["n_events"] == 6
    status, body = post(service + "/events", {"events": evs})
    assert body["results"][0]["n_events"] == 6


def test_score_sequences_accepts_prebuilt_windows(service: str, tiny_repo: Path) -> None:
    from seqguard.features import FEATURE_NAMES
    from seqguard.manifest import verify_repository

    cfg = SequenceConfig.model_validate(verify_repository(tiny_repo).sequence_config)
    events = card_testing("seq-1")
    frame = sort_for_sequences(events_to_frame([_event(e) for e in events]), cfg)
    (_, _, _, cols), = list(iter_windows(frame, cfg, "entity"))
    enc = encode_window(cols, cfg)
    seq = {"entity_id": "seq-1", "input_ids": enc.input_ids.tolist(),
           "features": dict(zip(FEATURE_NAMES, enc.features.astype(float).tolist(), strict=True))}
    status, body = post(service + "/score_sequences", {"sequences": [seq]})
    assert status == 200, body
    _, direct = post(service + "/score", {"events": events})
    assert body["results"][0]["score"] == pytest.approx(direct["results"][0]["score"], abs=1e-6)
    bad = dict(seq, input_ids=[2, 99999, 3])
    status, err = post(service + "/score_sequences", {"sequences": [bad]})
    assert status == 422 and err["details"][0]["field"] == "sequences.0.input_ids"


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"events": [{"user_id": "u", "ts": "yesterday", "event_type": "view"}]}, 400, "ts"),
        ({"events": [{"user_id": "u", "ts": NOW, "event_type": "teleport"}]}, 400, "event_type"),
        ({"events": [{"user_id": "u", "ts": NOW + 86400 * 30, "event_type": "view"}]}, 422, "events.0.ts"),
        ({"events": []}, 422, "events"),
        ({"events": [{"user_id": "u", "ts": NOW, "event_type": "view"}] * 501}, 422, "events"),
        ({"evnts": []}, 400, "events"),
    ],
)
def test_bad_requests_get_clear_4xx(service: str, body: dict, status: int, field: str) -> None:
    got, err = post(service + "/score", body)
    assert got == status, err
    assert field in json.dumps(err)


ERROR_KEYS = {"error", "details", "request_id"}


@pytest.mark.parametrize("content_type", ["multipart/form-data", "application/x-www-form-urlencoded", "text/plain",
                                          "application/vnd.bentoml+pickle"])
@pytest.mark.parametrize("route", ["/score", "/events", "/score_sequences"])
def test_wrong_content_types_get_415(service: str, route: str, content_type: str) -> None:
    status, err = post(service + route, None, {"Content-Type": content_type}, raw=b"x")
    assert status == 415 and set(err) == ERROR_KEYS, err
    assert err["details"] == [{"field": "Content-Type", "reason": "must be application/json"}]


def test_every_error_body_has_one_schema(service: str) -> None:
    cases = [
        ("/score", b'{"events": [{"user_id": "u", "ts": "x", "event_type": "view"}]}'),  # BentoML's own 400
        ("/score", b"{not json"),
        ("/score", b"[]"),
        ("/score", b'{"events": []}'),  # ours, 422
        ("/score_sequences", b'{"sequences": [{"entity_id": "s", "input_ids": [1, 2], "features": {}}]}'),
    ]
    for route, raw in cases:
        status, err = post(service + route, None, raw=raw)
        assert 400 <= status < 500 and set(err) == ERROR_KEYS, (route, raw, status, err)
        assert all(set(d) == {"field", "reason"} for d in err["details"]), err
    status, err = post(service + "/score", {"events": [{"user_id": "u", "ts": "x", "event_type": "view"}]})
    assert status == 400 and err["details"] == [{"field": "events.0.ts", "reason": "cannot parse as ISO 8601 or epoch "
                                                                                    "time"}]


def test_event_limits_answer_over_http_as_for_files(service: str) -> None:
    """tests/event_cases.py's table, over HTTP (tests/test_events_limits.py runs it on files and the model): every
    refused case in one request, each named by its place and field with the files' reason; the accepted ones score."""
    refused = [c for c in CASES if c.error]
    status, err = post(service + "/score", {"events": [c.event for c in refused]})
    assert status == 400, err
    assert sorted((d["field"], d["reason"]) for d in err["details"]) == sorted(
        (f"events.{i}.{c.error[0]}", c.error[1]) for i, c in enumerate(refused) if c.error)
    accepted = [c for c in CASES if c.ok is not None]
    status, body = post(service + "/score", {"events": [c.event for c in accepted]})
    assert status == 200, body
    users = {c.ok.get("user_id", c.event["user_id"]) for c in accepted if c.ok is not None}
    assert {r["entity_id"] for r in body["results"]} == users  # stripped, integer as text, long one clipped


def test_rejected_requests_log_one_line_without_identifiers(service_process: tuple[ServerProcess, str]) -> None:
    server, url = service_process
    markers = {"user_id": "MARKERuser7731", "device_id": "MARKERdev7731", "ip": "198.51.100.77" + "9" * 200,
               "coupon_code": "MARKERcoupon7731", "session_id": "MARKERacct7731"}
    text = "MARKERcard4111111111111111 MARKERmail7731@example.com"
    bad = [
        {"events": [{**markers, "ts": "not a time", "event_type": "view", "text": text}]},  # 400 from BentoML
        {"events": [{**markers, "ip": "198.51.100.77", "ts": NOW + 86400 * 30, "event_type": "login"}]},  # ours, 422
    ]
    ids = []
    for i, body in enumerate(bad):
        rid = f"logtest-{i}-{int(NOW)}"
        status, err = post(url + "/events", body, {"X-Request-ID": rid})
        assert 400 <= status < 500 and err["request_id"] == rid, err
        ids.append(rid)
    time.sleep(0.5)
    log = server.log_path.read_text(errors="replace")
    for value in [*markers.values(), "198.51.100.77", "4111111111111111", "MARKERmail7731", "MARKER"]:
        assert value not in log, f"{value!r} reached the service log"
    for rid in ids:
        lines = [json.loads(line) for line in log.splitlines() if rid in line and line.startswith("{")]
        assert len(lines) == 1, lines  # one line per rejected request...
        line = lines[0]
        assert line["message"] == "request rejected" and line["route"] == "/events" and line["status"] in (400, 422)
        assert line["error_fields"] and all(f.startswith("events.0.") for f in line["error_fields"])  # ...with names
    assert "Traceback" not in log


def test_payload_limit_and_garbage(service: str) -> None:
    big = {"events": [{"user_id": "u", "ts": NOW, "event_type": "search", "text": "x" * 900}] * 300}
    status, err = post(service + "/score", big)
    assert status == 413 and "bytes" in err["error"]
    status, _ = post(service + "/score", None, raw=b"{not json")
    assert 400 <= status < 500


def test_metrics_and_openapi(service: str) -> None:
    post(service + "/score", {"events": shopper("m-1")})
    status, text = get(service + "/metrics")
    assert status == 200
    for series in ("seqguard_score", "seqguard_decisions_total", "seqguard_backend_latency_seconds"):
        assert series in text
    status, spec = get(service + "/docs.json")
    doc = json.loads(spec)
    paths = doc["paths"]
    assert {"/score", "/events", "/score_sequences"} <= set(paths)
    for route in ("/score", "/events", "/score_sequences"):
        responses = paths[route]["post"]["responses"]
        assert {"200", "400", "401", "403", "413", "415", "422", "429", "503"} <= set(responses), responses
        assert "500" not in responses
        assert responses["503"]["headers"]["Retry-After"] and responses["429"]["headers"]["Retry-After"]
        ref = responses["422"]["content"]["application/json"]["schema"]["$ref"]
        assert ref == "#/components/schemas/ErrorResponse"
    assert doc["components"]["schemas"]["ErrorResponse"]["required"] == ["error", "details", "request_id"]
    # The 200 answers are the typed models the APIs declare (output_spec), errors included beside them.
    schemas = doc["components"]["schemas"]
    for route, model in (("/score", "ScoreResponse"), ("/feedback", "FeedbackResponse")):
        ok = paths[route]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
        ok = schemas[ok["$ref"].rsplit("/", 1)[-1]] if "$ref" in ok else ok
        assert ok["title"].startswith(model) and "request_id" in ok["required"], ok


def test_api_keys(tiny_repo: Path, tmp_path: Path) -> None:
    server, url = start_service(tmp_path, {"SEQGUARD_REPO": str(tiny_repo), "SEQGUARD_API_KEYS": "k1,k2"})
    try:
        body = {"events": shopper("auth-1")}
        assert post(url + "/score", body)[0] == 401
        assert post(url + "/score", body, {"X-API-Key": "nope"})[0] == 403
        assert post(url + "/score", body, {"X-API-Key": "k2"})[0] == 200
        assert post(url + "/score", body, {"Authorization": "Bearer k1"})[0] == 200
        assert get(url + "/ping")[0] == 200  # health stays public for the load balancer
    finally:
        server.stop()
    log = (tmp_path / next(p.name for p in tmp_path.iterdir() if p.name.startswith("service-"))).read_text()
    assert "auth-1" not in log  # identifiers never reach the logs in clear


def test_redis_state_survives_restart_and_outage(tiny_repo: Path, tmp_path: Path, redis_server: str) -> None:
    # The session redis-server runs without persistence: accepted here only under the warn policy.
    env = {"SEQGUARD_REPO": str(tiny_repo), "SEQGUARD_STATE": "redis", "SEQGUARD_REDIS_URL": redis_server,
           "SEQGUARD_REDIS_PERSISTENCE": "warn", "SEQGUARD_JOURNAL_DIR": str(tmp_path / "journal")}
    evs = card_testing("redis-1", n=6)
    server, url = start_service(tmp_path, env)
    try:
        assert post(url + "/events", {"events": evs[:4]})[1]["results"][0]["n_events"] == 4
    finally:
        server.stop()
    server, url = start_service(tmp_path, env)  # a new replica (or the same one, restarted)
    try:
        assert post(url + "/events", {"events": evs[3:]})[1]["results"][0]["n_events"] == 6
    finally:
        server.stop()
    dead = {**env, "SEQGUARD_REDIS_URL": "redis://127.0.0.1:1/0"}
    server, url = start_service(tmp_path, dead)
    try:
        status, body = post(url + "/events", {"events": evs[:2]})
        assert status == 200
        r = body["results"][0]
        assert r["degraded"] is True and "state_store_unavailable" in r["degraded_reasons"]
        assert "events_journaled" in r["degraded_reasons"]  # kept locally, replayed once Redis answers
        assert "seqguard_state_store_errors_total" in get(url + "/metrics")[1]
    finally:
        server.stop()


def test_triton_backend_degrades_and_recovers(tiny_repo: Path, tmp_path: Path) -> None:
    from seqguard.processes.tritonserver import TritonProcess, free_port

    ports = {"http_port": free_port(), "grpc_port": free_port(), "metrics_port": free_port()}
    triton = TritonProcess(tiny_repo, **ports)
    triton.start()
    assert triton.urls is not None
    env = {"SEQGUARD_REPO": str(tiny_repo), "SEQGUARD_BACKEND": "triton", "SEQGUARD_TRITON_URL": triton.urls.grpc,
           "SEQGUARD_TRITON_TIMEOUT_MS": "500", "SEQGUARD_BREAKER_COOLDOWN_S": "1"}
    server, url = start_service(tmp_path, env)
    try:
        events = card_testing("tri-1") + shopper("tri-2")
        status, healthy = post(url + "/score", {"events": events})
        assert status == 200 and not any(r["degraded"] for r in healthy["results"])
        offline = offline_scores(tiny_repo, events)
        for r in healthy["results"]:
            assert r["score"] == pytest.approx(offline[r["entity_id"]], abs=1e-5)
        triton.stop()
        for _ in range(3):
            status, body = post(url + "/score", {"events": events})
            assert status == 200, body  # never a 5xx
            assert all(r["degraded"] and "model_backend_unavailable" in r["degraded_reasons"] for r in body["results"])
        assert get(url + "/readyz")[0] == 503
        triton.start()
        deadline = time.time() + 30
        while time.time() < deadline:
            status, body = post(url + "/score", {"events": events})
            if status == 200 and not any(r["degraded"] for r in body["results"]):
                break
            time.sleep(0.5)
        assert [r["score"] for r in body["results"]] == [r["score"] for r in healthy["results"]]
    finally:
        server.stop()
        triton.stop()


def test_fail_closed_policy_refuses_with_503(tiny_repo: Path, tmp_path: Path) -> None:
    import sys

    from seqguard.processes.tritonserver import free_port
    from tests.support import http_ok

    env = {"SEQGUARD_REPO": str(tiny_repo), "SEQGUARD_BACKEND": "triton",
           "SEQGUARD_TRITON_URL": f"127.0.0.1:{free_port()}", "SEQGUARD_FAILURE_POLICY": "fail_closed",
           "SEQGUARD_TRITON_TIMEOUT_MS": "300", "BENTOML_HOME": str(tmp_path / "bh"), "BENTOML_DO_NOT_TRACK": "true",
           "SEQGUARD_DRAIN_S": "0"}
    port = free_port()
    bentoml = str(Path(sys.executable).parent / "bentoml")
    proc = ServerProcess([bentoml, "serve", "service.service:Seqguard", "--host", "127.0.0.1", "--port", str(port)],
                         tmp_path / "closed.log", env=env)
    try:
        # Not ready (no Triton behind it), yet alive: /livez answers and /score refuses clearly.
        proc.wait_ready(lambda: http_ok(f"http://127.0.0.1:{port}/livez"), timeout=90)
        assert get(f"http://127.0.0.1:{port}/readyz")[0] == 503
        status, body = post(f"http://127.0.0.1:{port}/score", {"events": shopper("closed-1")})
        assert status == 503 and "fail_closed" in body["error"]
    finally:
        proc.stop()


# ---------------------------------------------------------------------------------------------------------------------
# The API contract: schemathesis, every check, a fixed seed, every endpoint of the service's own OpenAPI document.


def test_api_contract_schemathesis_all_checks(service: str, tmp_path: Path) -> None:
    import subprocess
    import sys

    st = Path(sys.executable).parent / "schemathesis"
    config = Path(__file__).parent / "schemathesis.toml"
    out = subprocess.run(
        [str(st), "--config-file", str(config), "run", service + "/docs.json", "--checks", "all", "--seed", "1",
         "--max-examples", "15", "--generation-database", "none", "--report", "junit",
         "--report-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=240, cwd=tmp_path,  # its cache folder goes there, not in the repo
    )
    summary = out.stdout[-3000:]
    failures = out.stdout[out.stdout.find("FAILURES"):][:4000]
    assert out.returncode == 0, failures  # any 5xx, schema violation or undocumented status fails here
    assert "Selected: 8/8" in summary and "Tested: 8" in summary, summary  # 7 + /feedback (issue 17)
    import re

    generated = re.search(r"(\d+) generated", summary)
    assert generated and int(generated.group(1)) >= 300, summary


def test_local_triton_backend_is_supervised(tiny_repo: Path, tmp_path: Path) -> None:
    import os
    import signal
    import subprocess

    env = {"SEQGUARD_REPO": str(tiny_repo), "SEQGUARD_BACKEND": "local_triton", "SEQGUARD_TRITON_TIMEOUT_MS": "2000"}
    server, url = start_service(tmp_path, env, timeout=150)
    try:
        events = card_testing("lt-1")
        status, body = post(url + "/score", {"events": events})
        assert status == 200 and not body["results"][0]["degraded"]
        offline = offline_scores(tiny_repo, events)
        assert body["results"][0]["score"] == pytest.approx(offline["lt-1"], abs=1e-5)
        children = subprocess.run(["pgrep", "-f", f"model-repository={tiny_repo.resolve()}"], capture_output=True,
                                  text=True).stdout.split()
        assert children, "no tritonserver child found"
        for pid in children:
            os.kill(int(pid), signal.SIGKILL)
        deadline = time.time() + 90
        recovered = False
        while time.time() < deadline:
            status, body = post(url + "/score", {"events": events})
            assert status == 200  # degraded meanwhile, never a 5xx
            if not body["results"][0]["degraded"]:
                recovered = True
                break
            time.sleep(1)
        assert recovered, "the supervisor did not bring tritonserver back"
    finally:
        server.stop()
    leftover = subprocess.run(["pgrep", "-f", f"model-repository={tiny_repo.resolve()}"], capture_output=True,
                              text=True).stdout.split()
    assert not leftover, "tritonserver outlived the service"
