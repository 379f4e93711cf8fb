"""`seqguard loadtest`: a bounded locust run against the service (or raw Triton), gated by an SLO file.

    seqguard loadtest --slo infra/slo.yaml --users 40 --spawn-rate 10 --duration 60s --start-service
    seqguard loadtest --slo infra/slo.yaml --host http://127.0.0.1:3000 --attack-share 0.05
    seqguard loadtest --slo infra/slo.yaml --target triton --start-service          # raw Triton over gRPC
    seqguard loadtest --slo infra/slo.yaml --replay events.csv --mapping map.yaml --speed 10 --host URL
    seqguard loadtest --slo infra/slo.yaml --step 4,8,16,32,64 --duration 150s --start-service   # capacity curve
    seqguard loadtest --slo infra/slo.yaml --fault --duration 40s                    # Triton stops under load

Prints measured vs allowed, writes CSV + HTML + JSON under --out, and exits 1 naming every violated threshold.
The work lives in seqguard/infra/loadtest; this module parses, validates everything before a process starts, and prints.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from seqguard.cli import CliError

DEFAULT_OUT = "reports/loadtest"
DEFAULT_REPO = "triton_repo"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "loadtest",
        help="load-test the scoring service (or raw Triton) against an SLO",
        description="A bounded, headless locust run with realistic traffic from the generator (or a replayed "
        "file). Exits 1 when any SLO threshold is violated. See docs/loadtest.md.",
    )
    p.add_argument("--slo", required=True, help="SLO YAML (infra/slo.yaml; infra/slo.smoke.yaml for CI)")
    p.add_argument("--users", type=int, default=40, help="concurrent simulated users (default 40)")
    p.add_argument("--spawn-rate", type=float, default=10.0, help="users started per second (default 10)")
    p.add_argument("--duration", default="60s", help="run time, e.g. 30s, 2m (a step run: all stages together)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--host", help="the service's base URL (http://127.0.0.1:3000) or, for --target triton, "
                       "Triton's gRPC host:port")
    where.add_argument("--start-service", action="store_true",
                       help="start the service (or, for --target triton, tritonserver) on a free port from --repo "
                       "and stop it at the end")
    p.add_argument("--repo", default=DEFAULT_REPO, help=f"model repository (default {DEFAULT_REPO})")
    p.add_argument("--target", choices=("service", "triton"), default="service",
                   help="service: ShopperUser + BatchScorer over HTTP; triton: raw gRPC infer on the ensemble")
    p.add_argument("--attack-share", type=float, default=0.05, help="share of accounts that are attackers")
    p.add_argument("--pace", type=float, default=30.0,
                   help="think times are the generator's recorded gaps divided by this (default 30)")
    p.add_argument("--max-think", type=float, default=5.0, help="cap on one think time, seconds (default 5)")
    p.add_argument("--batch-entities", type=int, default=8, help="entities per /score request or Triton infer")
    p.add_argument("--batch-events", type=int, default=32, help="recent events per entity in a /score batch")
    p.add_argument("--batch-interval", type=float, default=1.0,
                   help="seconds between a batch user's requests (BatchScorer, TritonUser; 0 = back to back)")
    p.add_argument("--shopper-weight", type=int, default=4, help="ShopperUser : BatchScorer mix (default 4:1)")
    p.add_argument("--batch-weight", type=int, default=1)
    p.add_argument("--pool-users", type=int, default=2000, help="generator accounts traffic is drawn from")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--replay", metavar="FILE", help="stream this events file (CSV / Parquet / JSONL) to /events")
    p.add_argument("--mapping", metavar="YAML", help="column mapping for --replay (seqguard.io.ColumnMapping)")
    p.add_argument("--speed", type=float, default=1.0, help="replay pace: 1 = recorded, 10 = 10x, 0 = no pauses")
    p.add_argument("--step", metavar="USERS,USERS,...", help="step mode: one equal stage per user count")
    p.add_argument("--fault", action="store_true",
                   help="start Triton and the service (backend=triton) and stop Triton for --outage under load")
    p.add_argument("--fault-at", type=float, default=None, help="seconds into the run Triton stops (default 30%%)")
    p.add_argument("--outage", type=float, default=3.0, help="seconds Triton stays down (default 3)")
    p.add_argument("--max-recovery", type=float, default=15.0,
                   help="seconds after Triton is back within which answers must be healthy again (default 15)")
    p.add_argument("--api-key", default=os.environ.get("SEQGUARD_LOADTEST_API_KEY"),
                   help="X-API-Key for the service (default $SEQGUARD_LOADTEST_API_KEY)")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"report folder (default {DEFAULT_OUT})")
    p.set_defaults(func=run)


def _check_args(args: argparse.Namespace) -> tuple[float, tuple[int, ...] | None]:
    from seqguard.infra.loadtest.runner import parse_duration

    try:
        duration = parse_duration(args.duration)
    except ValueError as e:
        raise CliError(f"--duration: {e}") from None
    if args.users < 1 or args.spawn_rate <= 0:
        raise CliError("--users must be ≥ 1 and --spawn-rate > 0")
    if not 0 <= args.attack_share <= 1:
        raise CliError(f"--attack-share must lie in [0, 1] (got {args.attack_share:g})")
    if args.pace <= 0 or args.max_think < 0 or args.speed < 0 or args.batch_interval < 0:
        raise CliError("--pace must be > 0; --max-think, --speed and --batch-interval must be ≥ 0")
    steps = None
    if args.step:
        try:
            steps = tuple(int(s) for s in args.step.split(",") if s.strip())
        except ValueError:
            raise CliError(f"--step: expected comma-separated user counts like 4,8,16 (got {args.step!r})") from None
        if not steps or min(steps) < 1:
            raise CliError("--step: user counts must be ≥ 1")
        if duration / len(steps) < 5:
            raise CliError(f"--step: {len(steps)} stages in {duration:g}s leave under 5s per stage; "
                           "give a longer --duration")
    if args.mapping and not args.replay:
        raise CliError("--mapping applies to --replay only")
    if args.replay and args.target == "triton":
        raise CliError("--replay streams events to the service's /events; it does not apply to --target triton")
    if args.fault:
        if args.host:
            raise CliError("--fault starts its own Triton and service (it must stop Triton); drop --host")
        if args.target != "service" or args.step or args.replay:
            raise CliError("--fault runs the generator's traffic against the service; no --target triton, "
                           "--step or --replay")
    elif not args.host and not args.start_service:
        raise CliError("say where to send load: --host URL, or --start-service to start one from --repo")
    if args.host and args.target == "service" and not args.host.startswith(("http://", "https://")):
        raise CliError(f"--host: the service's base URL starts with http:// (got {args.host!r})")
    return duration, steps


def run(args: argparse.Namespace) -> int:
    from seqguard.infra.loadtest.settings import LoadSettings
    from seqguard.infra.loadtest.slo import SLOError, load_slo

    duration, steps = _check_args(args)
    try:
        slo = load_slo(args.slo)
    except SLOError as e:
        raise CliError(str(e)) from None
    repo = Path(args.repo)
    needs_repo = args.start_service or args.fault or args.target == "triton"
    if needs_repo and not (repo / "manifest.json").is_file():
        raise CliError(f"{repo}: no manifest.json (build a repository with `make model` / `seqguard export`, or "
                       "point --repo at one)")
    if args.replay and not Path(args.replay).is_file():
        raise CliError(f"--replay: {args.replay} does not exist")
    mode = "triton" if args.target == "triton" else ("replay" if args.replay else "service")
    try:
        settings = LoadSettings(
            mode=mode, seed=args.seed, pool_users=args.pool_users, attack_share=args.attack_share, pace=args.pace,
            max_think_s=args.max_think, batch_entities=args.batch_entities, batch_events=args.batch_events,
            batch_interval_s=args.batch_interval,
            shopper_weight=args.shopper_weight, batch_weight=args.batch_weight,
            repo=str(repo.resolve()) if needs_repo else None, api_key=args.api_key,
            run_tag=f"lt{secrets.token_hex(3)}", run_time_s=duration, replay_file=args.replay,
            replay_mapping=args.mapping, replay_speed=args.speed, steps=steps,
            stage_s=duration / len(steps) if steps else 20.0, spawn_rate=args.spawn_rate,
        )
    except ValueError as e:
        raise CliError(str(e)) from None
    if args.replay:
        _check_replay(args.replay, args.mapping)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.fault:
        return _fault(args, settings, slo, duration, out, repo)
    with _target(args, repo, out) as host:
        from seqguard.infra.loadtest.runner import RunError
        from seqguard.infra.loadtest.runner import run as run_load

        print(f"loadtest: {mode} load on {host}: {_shape(args, steps, duration)}", flush=True)
        try:
            result = run_load(host, out, settings, args.users, args.spawn_rate, duration, slo, args.slo)
        except RunError as e:
            raise CliError(str(e), exit_code=1) from None
    if steps:
        return _capacity(result.stats, slo, args, out)
    return _report(result.stats, result.verdict, result.paths)


def _shape(args: argparse.Namespace, steps: tuple[int, ...] | None, duration: float) -> str:
    if steps:
        return f"stages of {', '.join(map(str, steps))} users, {duration / len(steps):.0f}s each"
    return f"{args.users} users (+{args.spawn_rate:g}/s) for {duration:.0f}s"


def _check_replay(path: str, mapping: str | None) -> None:
    """Read the file here once, so a bad file or mapping is one clear line, not a traceback from locust's start."""
    from seqguard.io import DataError, load_mapping, read_events

    try:
        frame, report = read_events(path, load_mapping(mapping) if mapping else None, on_error="skip")
    except DataError as e:
        raise CliError(str(e)) from None
    if frame.empty:
        raise CliError(f"--replay: no valid event in {path}:\n{report.summary()}")
    if report.rows_skipped:
        print(f"loadtest: replay skips invalid rows:\n{report.summary()}", flush=True)


@contextlib.contextmanager
def _target(args: argparse.Namespace, repo: Path, out: Path) -> Iterator[str]:
    """The URL to load: the given --host, or a server started here and stopped (by PID) afterwards."""
    if not args.start_service:
        yield args.host
        return
    if args.target == "triton":
        from seqguard.infra.loadtest.processes import start_triton
        from seqguard.processes.tritonserver import TritonError

        try:
            triton = start_triton(repo)
        except TritonError as e:
            raise CliError(f"tritonserver did not start: {e}", exit_code=1) from None
        try:
            assert triton.urls is not None
            yield triton.urls.grpc
        finally:
            triton.stop()
        return
    from seqguard.infra.loadtest.processes import ServiceProcess

    try:
        service = ServiceProcess(repo, out / "logs").start()
    except RuntimeError as e:
        raise CliError(str(e), exit_code=1) from None
    cpu = _CpuMeter(service.proc.pid if service.proc else None)
    try:
        yield service.url
    finally:
        cpu.report()
        service.stop()


class _CpuMeter:
    """CPU seconds the service's process tree used during the run: on a shared box, the split matters."""

    def __init__(self, pid: int | None) -> None:
        self.pid = pid
        self.t0 = time.monotonic()
        self.cpu0 = self._cpu()

    def _cpu(self) -> float | None:
        if self.pid is None:
            return None
        try:
            import psutil

            root = psutil.Process(self.pid)
            procs = [root, *root.children(recursive=True)]
            return sum(sum(p.cpu_times()[:2]) for p in procs if p.is_running())
        except Exception:
            return None

    def report(self) -> None:
        cpu1 = self._cpu()
        if self.cpu0 is not None and cpu1 is not None:
            wall = time.monotonic() - self.t0
            print(f"loadtest: the service used {cpu1 - self.cpu0:.1f} CPU-s in {wall:.0f}s "
                  f"({(cpu1 - self.cpu0) / wall:.2f} of {os.cpu_count()} cores)", flush=True)


def _report(stats: dict[str, Any], verdict: Any, paths: Any) -> int:
    from seqguard.infra.loadtest.slo import table

    print(table(verdict, stats["endpoints"]))
    res = stats.get("results") or {}
    if stats.get("mode") != "triton":
        print(f"\n5xx answers: {stats.get('server_errors_5xx', 0)}; entities scored: {res.get('entities_scored', 0)}; "
              f"degraded: {(res.get('degraded_share') or 0) * 100:.1f} %")
    if stats.get("replay"):
        r = stats["replay"]
        pace = (f"at {r['speed']:g}x; the generator ran up to {r['max_lag_s']:.2f}s behind schedule" if r["speed"]
                else "as fast as the users could send")
        print(f"replay: {r['events_sent']} events sent {pace}")
    _print_loadgen(stats)
    for e in (stats.get("errors") or [])[:5]:
        print(f"error x{e['occurrences']}: {e['method']} {e['name']}: {e['error'][:160]}")
    print(f"\nreports: {paths.json}, {paths.html}, {paths.csv_prefix}_stats.csv")
    if verdict.violations:
        print("loadtest: SLO violated: " + "; ".join(str(v) for v in verdict.violations), file=sys.stderr)
        return 1
    print("loadtest: SLO met")
    return 0


def _print_loadgen(stats: dict[str, Any]) -> None:
    cpu, wall = stats.get("loadgen_cpu_s"), stats.get("duration_s")
    if cpu is not None and wall:
        print(f"load generator: {cpu:.1f} CPU-s in {wall:.0f}s ({cpu / wall:.2f} of {os.cpu_count()} cores, "
              "taken from the service on a shared box)")


def _capacity(stats: dict[str, Any], slo: Any, args: argparse.Namespace, out: Path) -> int:
    from seqguard.infra.loadtest.capacity import CapacityError, analyse, plot, stage_table

    notes = [f"load generator (locust) and service share this machine's {os.cpu_count()} CPUs",
             f"traffic: ShopperUser:BatchScorer {args.shopper_weight}:{args.batch_weight}, "
             f"{args.batch_entities} entities per batch, attack share {args.attack_share:g}, pace {args.pace:g}"]
    try:
        result = analyse(stats, slo, args.slo, notes)
    except CapacityError as e:
        raise CliError(str(e), exit_code=1) from None
    result.write(out / "capacity.json")
    png = plot(result, out / "capacity.png", slo)
    print(stage_table(result))
    _print_loadgen(stats)
    print(f"\nreports: {out / 'capacity.json'}, {png}, {out / 'loadtest.html'}")
    if result.max_rps_meeting_slo is None:
        print("loadtest: no stage met the SLO: " + "; ".join(result.stages[0].violations), file=sys.stderr)
        return 1
    print(f"loadtest: highest throughput meeting the SLO: {result.max_rps_meeting_slo:.1f} rps at "
          f"{result.stages[result.best_stage or 0].users} users (p99 {result.p99_at_max_ms:.0f} ms)")
    return 0


def _fault(args: argparse.Namespace, settings: Any, slo: Any, duration: float, out: Path, repo: Path) -> int:
    from seqguard.infra.loadtest.fault import FaultOptions, fault_table, run_fault
    from seqguard.infra.loadtest.runner import RunError, RunPaths
    from seqguard.infra.loadtest.slo import figures_table

    opts = FaultOptions(repo=repo, out=out, users=args.users, spawn_rate=args.spawn_rate, duration_s=duration,
                        fault_at_s=args.fault_at if args.fault_at is not None else max(3.0, 0.3 * duration),
                        outage_s=args.outage, max_recovery_s=args.max_recovery)
    try:
        opts.check()
        stats = run_fault(opts, settings, slo, args.slo)
    except (ValueError, RunError) as e:
        raise CliError(str(e), exit_code=2 if isinstance(e, ValueError) else 1) from None
    except RuntimeError as e:  # a server that would not start
        raise CliError(str(e), exit_code=1) from None
    print(figures_table(stats["endpoints"]))
    print()
    print(fault_table(stats["fault"]))
    paths = RunPaths(out)
    print(f"\nreports: {paths.json}, {paths.html}")
    if not stats["fault"]["passed"]:
        print("loadtest: fault run failed: " + "; ".join(stats["fault"]["problems"]), file=sys.stderr)
        return 1
    print("loadtest: fault run passed")
    return 0
