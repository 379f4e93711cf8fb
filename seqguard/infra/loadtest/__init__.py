"""Load tests for seqguard's scoring service and for raw Triton: locust users, SLO gates, capacity steps, faults.

    locustfile  the users (ShopperUser, BatchScorer, TritonUser, ReplayUser) and the stats they write at the end
    settings    every knob of a run, passed to the locust subprocess as SEQGUARD_LT_* environment variables
    payloads    realistic event payloads from the generator (or a replayed file), timestamps shifted to "now"
    slo         the SLO file (per-endpoint percentiles, error rate, throughput) and its evaluation
    runner      runs locust headless as a subprocess, applies the SLO, prints measured vs allowed
    capacity    step runs -> the highest throughput that meets the SLO -> a CapacityPlan for `seqguard deploy`
    fault       stops Triton under load and measures what the service's clients saw
    processes   the service / Triton processes a run starts for itself (stopped by PID)
"""
