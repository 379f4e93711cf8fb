"""`seqguard capacity`: a step run's capacity result -> the autoscaling plan `seqguard deploy --capacity` reads.

    seqguard capacity --result reports/loadtest/capacity.json --target-rps 120 --headroom 0.3 --out capacity_plan.json

--headroom is the share of the measured per-instance maximum kept in reserve (0.3: instances are meant to run at
70 % of what one sustained within the SLO); the plan records the used share, as CapacityPlan defines it.
"""

from __future__ import annotations

import argparse

from seqguard.cli import CliError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "capacity",
        help="turn a load test's capacity result into autoscaling knobs (a capacity plan)",
        description="Reads the capacity.json of `seqguard loadtest --step` and writes the CapacityPlan JSON that "
        "`seqguard deploy --capacity FILE` applies. See docs/loadtest.md.",
    )
    p.add_argument("--result", required=True, help="capacity.json written by `seqguard loadtest --step`")
    p.add_argument("--target-rps", type=float, required=True, help="the requests per second to serve normally")
    p.add_argument("--headroom", type=float, default=0.3,
                   help="share of the measured maximum kept in reserve, in [0, 1) (default 0.3)")
    p.add_argument("--burst-factor", type=float, default=2.0, help="max capacity = min capacity x this (default 2)")
    p.add_argument("--instance-type", default=None,
                   help="the instance type the result was measured on (deploy refuses a plan for another type)")
    p.add_argument("--out", default="capacity_plan.json", help="plan file to write (default capacity_plan.json)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from seqguard.infra.loadtest.capacity import CapacityError, CapacityResult, plan

    if args.burst_factor < 1:
        raise CliError(f"--burst-factor must be ≥ 1 (got {args.burst_factor:g})")
    try:
        result = CapacityResult.load(args.result)
        capacity_plan = plan(result, args.target_rps, args.headroom, burst_factor=args.burst_factor,
                             instance_type=args.instance_type, source=str(args.result))
    except CapacityError as e:
        raise CliError(str(e)) from None
    capacity_plan.write(args.out)
    per_instance = capacity_plan.target_invocations_per_instance_per_minute / 60
    print(f"capacity: measured {result.max_rps_meeting_slo:.1f} rps per instance within the SLO "
          f"(p99 {result.p99_at_max_ms:.0f} ms); target {per_instance:.1f} rps per instance "
          f"({args.headroom:.0%} headroom)")
    print(f"capacity: {args.target_rps:g} rps -> min {capacity_plan.min_capacity}, max {capacity_plan.max_capacity} "
          f"instances; target tracking at {capacity_plan.target_invocations_per_instance_per_minute:g} invocations "
          f"per instance per minute")
    print(f"capacity: wrote {args.out}")
    return 0
