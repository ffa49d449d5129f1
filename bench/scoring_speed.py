"""Exact scoring of a plan: the one joint energy MILP against the carbon-price search, in-process and on workers.

For each size (``generate(sites=S, periods=24, seed=0)``, the generator's own carbon budget, which binds
for the energy-only plan at every size measured) the energy-only plan is scored three times, side by side
in one run: ``evaluate(..., exact_joint=True)`` (one MILP over all sites), ``evaluate`` in this process
(the price search, sites one after another) and ``evaluate`` on a pool of ``--jobs`` loky workers. Each
result goes through the checker. Prints one markdown table: seconds (median of ``--repeat`` runs; the
pool is started once per size and its start-up is not timed), price-search rounds, per-site solves, what
proved the value, the certificate gap and the objective difference to the joint MILP.

    python -m carbonsched.bench.scoring_speed --sites 10 30 100 --jobs 2 --repeat 1
"""

from __future__ import annotations

import argparse
import statistics
import time

from carbonsched.decomp.parallel import ParallelConfig, SitePool
from carbonsched.formulations.baselines import energy_only_plan
from carbonsched.formulations.checker import check_solution
from carbonsched.formulations.evaluate import evaluate
from carbonsched.instances.generator import generate


def _timed(fn, repeat: int):
    times, sol = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        sol = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), sol


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sites", type=int, nargs="+", default=[10, 30, 100])
    ap.add_argument("--periods", type=int, default=24)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    print("| sites | method | seconds | ratio to joint | rounds | site solves | proved by | certificate gap $ "
          "| Z − Z_joint $ |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n in args.sites:
        inst = generate(sites=n, periods=args.periods, seed=args.seed)
        plan = energy_only_plan(inst)
        rows = []
        t_joint, ref = _timed(lambda: evaluate(inst, plan, exact_joint=True), args.repeat)  # noqa: B023
        rows.append(("joint MILP", t_joint, ref))
        t_one, one = _timed(lambda: evaluate(inst, plan), args.repeat)  # noqa: B023
        rows.append(("price search, in-process", t_one, one))
        with SitePool(inst, ParallelConfig(n_jobs=args.jobs)) as pool:
            t_pool, par = _timed(lambda: evaluate(inst, plan, pool=pool), args.repeat)  # noqa: B023
        rows.append((f"price search, {args.jobs} workers", t_pool, par))
        for label, secs, sol in rows:
            report = check_solution(inst, sol)
            if not report.ok:
                raise SystemExit(f"{label} at {n} sites fails the checker: {report}")
            ex = sol.extra
            print(f"| {n} | {label} | {secs:.2f} | {secs / t_joint:.2f} | {ex.get('price_rounds', '')} "
                  f"| {ex.get('site_solves', '')} | {ex['scoring']}{' (exact)' if ex['proven_exact'] else ''} "
                  f"| {ex['certificate_gap']:.2g} | {sol.objective - ref.objective:.2g} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
