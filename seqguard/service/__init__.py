"""The serving machinery behind the BentoML app (service/service.py, `bentoml serve service.service:Seqguard`).

    settings       SEQGUARD_* variables, validated once at start-up
    check          the pre-flight (`python -m seqguard.service.check`): settings, repository, state store
    runtime        builds the ScoringEngine on a verified repository
    engine         events -> windows -> micro-batched inference -> the Scorer's decision
    batcher        the micro-batcher (length buckets, round-robin over waiting requests)
    backends       embedded ONNX Runtime | Triton gRPC | local tritonserver
    state          per-entity state: memory | Redis
    score_log      the score log and drift gauges; loop: feedback, shadow challenger
    http           the gateway middleware (limits, API keys, /ping and /invocations aliases, draining)
    observability  logging and Prometheus metrics; openapi, schemas: the documented API; fairness: large bodies
"""
