"""Benders' two masters against monolithic SCIP where jobs may run at every site.

For each instance (``generate(sites=S, periods=T, seed=seed, job_sites=S)``, the carbon budget scaled by
``--budget-share`` so that it binds) monolithic SCIP runs to a 1e-4 gap and each Benders master
(``single-tree``: branch-and-Benders-cut; ``multi-tree``: the master MILP re-solved after every round of
cuts), without the closing phase, runs with the same time limit, one after the other in this process; with
``--default`` Benders as shipped (master and closing phase auto) runs too. The table gives each method's
seconds to a certified 1e-4 gap (— if not reached), its final gap and its distance to the best primal;
every solution goes through the checker and each Benders bound is checked against monolithic's primal.

    python -m carbonsched.bench.benders_masters --instances 6x24x0 6x24x1 8x48x2 --time-limit 300 --default
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence

from carbonsched.decomp.benders import solve_benders
from carbonsched.decomp.parallel import ParallelConfig
from carbonsched.formulations.checker import check_solution
from carbonsched.formulations.monolithic import solve_monolithic
from carbonsched.instances.generator import generate

from .decomposition_speed import time_to_gap

MASTERS = ("single-tree", "multi-tree")


def _parse(spec: str) -> tuple[int, int, int]:
    sites, periods, seed = (int(x) for x in spec.split("x"))
    return sites, periods, seed


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m carbonsched.bench.benders_masters",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--instances", nargs="+", default=["6x24x0", "8x24x1", "8x48x2", "10x24x3"],
                    help="SITESxPERIODSxSEED, jobs allowed at every site")
    ap.add_argument("--budget-share", type=float, default=0.6, help="carbon budget × this (default 0.6)")
    ap.add_argument("--time-limit", type=float, default=300.0, help="seconds per method and instance")
    ap.add_argument("--jobs", type=int, default=2, help="workers for the site LPs")
    ap.add_argument("--masters", nargs="*", default=list(MASTERS), choices=MASTERS,
                    help="masters run without the closing phase (default both)")
    ap.add_argument("--default", action="store_true",
                    help="also run Benders as shipped (master auto, closing phase auto)")
    args = ap.parse_args(argv)

    print("| instance | budget binds | method | seconds to 1e-4 | final gap | below best primal | wall s |")
    print("|---|---|---|---|---|---|---|")
    failures = 0
    for spec in args.instances:
        S, T, seed = _parse(spec)
        inst = generate(sites=S, periods=T, seed=seed, job_sites=S)
        inst.carbon_budget_t = round(args.budget_share * inst.carbon_budget_t, 3)
        runs = {}
        t = time.perf_counter()
        runs["monolithic"] = (solve_monolithic(inst, time_limit=args.time_limit, gap=1e-4), time.perf_counter() - t)
        for master in args.masters:
            t = time.perf_counter()
            # close=False: the master search itself, without the closing phase
            sol = solve_benders(inst, time_limit=args.time_limit, gap=1e-4, master=master, close=False,
                                config=ParallelConfig(n_jobs=args.jobs))
            runs[f"benders {master}"] = (sol, time.perf_counter() - t)
        if args.default:
            t = time.perf_counter()
            sol = solve_benders(inst, time_limit=args.time_limit, gap=1e-4, config=ParallelConfig(n_jobs=args.jobs))
            runs["benders (defaults)"] = (sol, time.perf_counter() - t)
        best = max(sol.objective for sol, _ in runs.values())
        binds = runs["monolithic"][0].emissions_t >= 0.999 * inst.carbon_budget_t
        for name, (sol, wall) in runs.items():
            report = check_solution(inst, sol)
            if not report.ok:
                failures += 1
                print(f"checker: {name} on {spec}: {report.format()}", file=sys.stderr)
            if sol.bound < runs["monolithic"][0].objective - 1e-6 * max(1.0, abs(best)):
                failures += 1
                print(f"invalid bound: {name} on {spec}: {sol.bound} < {runs['monolithic'][0].objective}",
                      file=sys.stderr)
            reach = time_to_gap(sol, 1e-4)
            below = (best - sol.objective) / max(1.0, abs(best))
            print(f"| {S} sites × {T} h, seed {seed} (J={inst.n_jobs}) | {'yes' if binds else 'no'} | {name} | "
                  f"{'—' if not math.isfinite(reach) else f'{reach:.1f}'} | {100 * sol.gap:.3f} % | "
                  f"{100 * below:.3f} % | {wall:.1f} |", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
