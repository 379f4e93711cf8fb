"""Child processes seqguard starts for itself (tritonserver, `bentoml serve`, test servers): one supervisor.

Not part of the domain core: the core never starts a process. Stages (the service's local-Triton backend, the load
tests), the CLI, the benchmarks and the tests build on it; see docs/architecture.md.
"""
