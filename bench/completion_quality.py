"""Primal completion by allocation, and the neighbourhood step, against the LP bound and rounded LP.

For each size, the joint LP relaxation is solved (HiGHS IPM), then:

* ``rounded``: the LP rounded by :func:`decomp.rounding.round_fractional_plan`, scored by :func:`evaluate`;
* ``completion``: :func:`decomp.completion.complete_by_allocation` on a pool of ``--workers`` loky workers
  (each site's allocated MILP solved in parallel, plus one rebalance round);
* ``+ neighbourhoods``: one pass of :func:`decomp.completion.improve_by_neighbourhoods` over disjoint groups
  of ``--group-size`` sites seeded where the LP's site share exceeds the completion's.

Gaps are (LP bound − objective) / |objective|. Every solution is checked with the independent checker.
Run from the repository root::

    python -m carbonsched.bench.completion_quality --sizes 10 30 100 --wide 100

This is a benchmark, not a test: nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import time

from carbonsched.decomp.completion import (
    choose_groups,
    complete_by_allocation,
    improve_by_neighbourhoods,
    lp_site_shares,
    solution_site_shares,
)
from carbonsched.decomp.parallel import ParallelConfig, SitePool
from carbonsched.decomp.rounding import round_fractional_plan
from carbonsched.formulations.checker import check_solution
from carbonsched.formulations.evaluate import evaluate
from carbonsched.formulations.lp_relaxation import solve_lp_relaxation
from carbonsched.instances import generate


def gap(bound: float, value: float) -> float:
    return 100.0 * (bound - value) / max(1.0, abs(value))


def run(sites: int, job_sites: int, args) -> dict:
    inst = generate(sites=sites, periods=args.periods, seed=args.seed, job_sites=job_sites)
    lp = solve_lp_relaxation(inst)
    row = {"S": sites, "job_sites": min(job_sites, sites), "J": inst.n_jobs, "lp_s": lp.seconds, "lp": lp.bound}
    t0 = time.perf_counter()
    try:
        plan = round_fractional_plan(inst, lp.jm.placements, lp.jm.x, lp.jm.y, lp.values)
        rounded = evaluate(inst, plan, time_limit=args.eval_limit)
        row["rounded"], row["rounded_s"] = rounded.objective, time.perf_counter() - t0
    except Exception as exc:  # a benchmark row, not a crash: report what failed
        row["rounded"], row["rounded_s"] = float("nan"), time.perf_counter() - t0
        print(f"  rounded LP failed: {exc}")
    with SitePool(inst, ParallelConfig(n_jobs=args.workers)) as pool:
        t0 = time.perf_counter()
        sol = complete_by_allocation(inst, pool, lp, gap=args.gap, time_limit=args.site_limit)
        row["compl_s"] = time.perf_counter() - t0
        row["compl"], row["first"] = sol.objective, sol.extra["first_pass_objective"]
        assert check_solution(inst, sol).n_violations == 0
        groups = choose_groups(inst, sol, size=args.group_size,
                               value_left=lp_site_shares(lp) - solution_site_shares(inst, sol))
        t0 = time.perf_counter()
        imp = improve_by_neighbourhoods(inst, pool, sol, groups, gap=args.gap, time_limit=args.group_limit)
        row["nbh_s"] = time.perf_counter() - t0
        row["nbh"] = imp.objective
        row["groups"] = f"{imp.extra.get('neighbourhoods_improved', 0)}/{len(groups)}"
        assert check_solution(inst, imp).n_violations == 0
    return row


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m carbonsched.bench.completion_quality",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="*", type=int, default=[10, 30, 100])
    ap.add_argument("--wide", nargs="*", type=int, default=[100], help="sizes with jobs allowed at most sites")
    ap.add_argument("--periods", type=int, default=24)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--gap", type=float, default=1e-4, help="relative gap of each site / group MILP")
    ap.add_argument("--site-limit", type=float, default=60.0, help="seconds per site MILP")
    ap.add_argument("--group-size", type=int, default=3)
    ap.add_argument("--group-limit", type=float, default=30.0, help="seconds per group MILP")
    ap.add_argument("--eval-limit", type=float, default=300.0, help="seconds for scoring the rounded LP")
    args = ap.parse_args(argv)
    cases = [(s, 10) for s in args.sizes] + [(s, s) for s in args.wide]
    print("| S | allowed sites/job | J | LP bound $ | LP s | rounded LP gap % (s) | completion s | first pass gap % "
          "| completion gap % | neighbourhood s | groups improved | after neighbourhoods gap % | final $ |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for s, js in cases:
        r = run(s, js, args)
        cells = [r["S"], f"≤{r['job_sites']}", r["J"], f"{r['lp']:,.0f}", f"{r['lp_s']:.1f}",
                 f"{gap(r['lp'], r['rounded']):.2f} ({r['rounded_s']:.1f} s)", f"{r['compl_s']:.1f}",
                 f"{gap(r['lp'], r['first']):.2f}", f"{gap(r['lp'], r['compl']):.2f}", f"{r['nbh_s']:.1f}",
                 r["groups"], f"{gap(r['lp'], r['nbh']):.2f}", f"{r['nbh']:,.0f}"]
        print("| " + " | ".join(str(c) for c in cells) + " |",
              flush=True)


if __name__ == "__main__":
    main()
