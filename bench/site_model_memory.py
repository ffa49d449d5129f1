"""Resident memory of the site models a worker caches, per model, on one instance.

Builds ``--models`` site MILPs of the instance in this process, solves them ``--solves`` times at random
multipliers (each solve from the last one's values, as the Lagrangian's iterations do), then builds and
solves as many site energy models (the exact scorer's); resident memory is read after glibc's
``malloc_trim`` at each step, as the workers do after each task. An empty SCIP model is the baseline.

    python -m carbonsched.bench.site_model_memory --sites 1000 --periods 24 --models 100
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import pyscipopt
from carbonsched.decomp.parallel import resident_mb, trim_heap
from carbonsched.formulations.evaluate import SiteEnergySolver
from carbonsched.formulations.site_milp import SiteMILP
from carbonsched.instances.generator import generate


def _per_model(before_mb: float, n: int) -> float:
    trim_heap()
    return (resident_mb() - before_mb) / n


def run(sites: int, periods: int, seed: int, models: int, solves: int) -> list[tuple[str, float]]:
    """Rows (what, MB per model)."""
    inst = generate(sites=sites, periods=periods, seed=seed)
    n = min(models, inst.n_sites)
    rows = []
    trim_heap()
    before = resident_mb()
    empty = []
    for _ in range(n):
        m = pyscipopt.Model()
        m.hideOutput()
        empty.append(m)
    rows.append(("an empty SCIP model", _per_model(before, n)))
    del empty
    trim_heap()
    before = resident_mb()
    site_milps = [SiteMILP(inst, i) for i in range(n)]
    rows.append(("a site MILP, built", _per_model(before, n)))
    rng = np.random.default_rng(seed)
    J, K, T = inst.n_jobs, inst.n_classes, inst.n_periods
    starts: dict[int, np.ndarray] = {}
    for _ in range(solves):
        mu, pi, lam_c = rng.uniform(0, 2000, J), rng.uniform(0, 300, (K, T)), float(rng.uniform(0, 50))
        for i, model in enumerate(site_milps):
            starts[i] = model.solve(mu, pi, lam_c, gap=1e-4, start=starts.get(i)).values
    rows.append((f"a site MILP after {solves} solves", _per_model(before, n)))
    trim_heap()
    before = resident_mb()
    energy = [SiteEnergySolver(inst, i) for i in range(n)]
    for model in energy:
        model.solve(np.full(T, 1.0))
    rows.append(("a site energy model (exact scorer), built and solved", _per_model(before, n)))
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sites", type=int, default=1000)
    ap.add_argument("--periods", type=int, default=24)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--models", type=int, default=100, help="site models of each kind to build")
    ap.add_argument("--solves", type=int, default=8, help="solves of each site MILP")
    args = ap.parse_args(argv)
    print(f"{args.sites} sites x {args.periods} periods, seed {args.seed}, {args.models} models of each kind")
    print("| what | MB per model |\n|---|---|")
    for what, mb in run(args.sites, args.periods, args.seed, args.models, args.solves):
        print(f"| {what} | {mb:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
