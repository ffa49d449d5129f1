"""Time per Lagrangian iteration (one round of site MILPs) against the number of workers.

One instance, the joint LP's duals as multipliers (what the Lagrangian's first iteration solves), then
``--rounds`` rounds of all site MILPs at slightly perturbed multipliers (each round different, as the
bundle's steps are), for each worker count and backend, side by side in one process. The first round
builds the site models in the workers and is reported apart; the speed-up is the median of the later
rounds against the 1-worker median. Also reported: the critical path (the slowest site) and the sum of
site solve times (the work), whose ratio bounds the speed-up any number of workers can give.

    python -m carbonsched.bench.worker_scaling --sites 100 --workers 1 2 4 --backends loky dask
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np
from carbonsched.decomp.lagrangian import lp_relaxation, make_layout
from carbonsched.decomp.parallel import ParallelConfig, SitePool
from carbonsched.formulations.site_milp import SITE_MILP_KIND, make_site_milp
from carbonsched.instances.generator import generate


def run(sites: int, periods: int, seed: int, workers: list[int], backends: list[str], rounds: int) -> list[dict]:
    inst = generate(sites=sites, periods=periods, seed=seed)
    layout = make_layout(inst)
    lp = lp_relaxation(inst, layout)
    rng = np.random.default_rng(seed)
    points = [layout.project(lp.z * (1.0 + 0.02 * rng.standard_normal(lp.z.size))) for _ in range(rounds)]
    rows = []
    for backend in backends:
        for n in workers:
            if backend == "dask" and n == 1:
                continue
            config = ParallelConfig(n_jobs=n, backend=backend)
            times, critical, work = [], [], []
            with SitePool(inst, config) as pool:
                cost = None
                for z in points:
                    mu, pi, lam_c = layout.split(z)
                    calls = {i: ((mu, pi, lam_c), {}) for i in range(inst.n_sites)}
                    t = time.perf_counter()
                    res = pool.map(SITE_MILP_KIND, make_site_milp, "solve", calls, cost=cost)
                    times.append(time.perf_counter() - t)
                    cost = {i: r.seconds for i, r in res.items()}
                    critical.append(max(cost.values()))
                    work.append(sum(cost.values()))
                peak = pool.peak_worker_mb
            rows.append({"backend": backend, "workers": n, "first": times[0],
                         "median": statistics.median(times[1:]), "critical": statistics.median(critical[1:]),
                         "work": statistics.median(work[1:]), "peak_mb": peak})
            print(f"  {backend:<6} {n} workers: first round {times[0]:.2f} s, later rounds median "
                  f"{rows[-1]['median']:.2f} s", file=sys.stderr, flush=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m carbonsched.bench.worker_scaling",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--sites", type=int, default=100)
    ap.add_argument("--periods", type=int, default=24)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--backends", nargs="+", default=["loky", "dask"], choices=["loky", "dask"])
    ap.add_argument("--rounds", type=int, default=6)
    args = ap.parse_args(argv)
    rows = run(args.sites, args.periods, args.seed, args.workers, args.backends, args.rounds)
    base = next((r["median"] for r in rows if r["workers"] == 1), rows[0]["median"])
    print(f"{args.sites} sites × {args.periods} periods, seed {args.seed}; {args.rounds - 1} timed rounds each\n")
    print("| backend | workers | first round s | round s (median) | speed-up vs 1 worker | slowest site s | "
          "site seconds summed | work / slowest site | worker peak MB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['backend']} | {r['workers']} | {r['first']:.2f} | {r['median']:.2f} | {base / r['median']:.2f} | "
              f"{r['critical']:.2f} | {r['work']:.2f} | {r['work'] / max(r['critical'], 1e-9):.1f} | "
              f"{r['peak_mb']:.0f} |")


if __name__ == "__main__":
    main()
