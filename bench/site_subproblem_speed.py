"""Lagrangian site subproblems under SCIP's presolve and separation settings, and with or without a start.

For each instance, each site's :class:`formulations.site_milp.SiteMILP` is solved in place at a sequence
of multiplier vectors: the LP-relaxation duals of the warm start, then ``--points − 1`` perturbations of
them (each multiplier × (1 + 1 % normal noise), seeded), as a multiplier loop would visit them. The table
reports the summed solve time over all sites and points for each variant:

* ``default``: SCIP's default presolving and separation;
* ``fast-presolve``: fast presolving, default separation;
* ``shipped``: what :class:`SiteMILP` does (fast presolving, plus fast separation up to
  ``FAST_SEPARATION_MAX_PERIODS`` periods), each solve given the previous point's solution as its start;
* ``shipped-no-start``: the same without the start.

The variants run one after another in the same process (interleaved per instance), so compare within a
row. Every variant must reach the same optimal values; the script checks that.

Run from the repository root::

    python -m carbonsched.bench.site_subproblem_speed --presets paper small medium
    python -m carbonsched.bench.site_subproblem_speed --sizes 5x168 --time-limit 30

This is a benchmark, not a test: nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import math

import numpy as np
from carbonsched.decomp.lagrangian import lp_relaxation, make_layout
from carbonsched.formulations.site_milp import FAST_SEPARATION_MAX_PERIODS, SiteMILP
from carbonsched.instances import generate
from carbonsched.instances.schema import Instance
from pyscipopt import SCIP_PARAMSETTING

VARIANTS = ("default", "fast-presolve", "shipped", "shipped-no-start")


def multiplier_points(inst: Instance, n: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """The LP duals and ``n − 1`` seeded 1 % perturbations of them, as (μ, π, λ_C)."""
    layout = make_layout(inst)
    z = lp_relaxation(inst, layout).z
    rng = np.random.default_rng(seed)
    points = [z] + [layout.project(z * (1.0 + 0.01 * rng.standard_normal(z.size))) for _ in range(n - 1)]
    return [layout.split(p) for p in points]


def run_variant(inst: Instance, variant: str, points, time_limit: float | None) -> tuple[float, list[float]]:
    """Summed solve seconds over sites and points, and the optimal values (site-major)."""
    total, values = 0.0, []
    for site in range(inst.n_sites):
        sub = SiteMILP(inst, site)
        m = sub.am.model
        if variant in ("default", "fast-presolve"):
            m.setPresolve(SCIP_PARAMSETTING.FAST if variant == "fast-presolve" else SCIP_PARAMSETTING.DEFAULT)
            m.setSeparating(SCIP_PARAMSETTING.DEFAULT)
            m.setParam("limits/maxorigsol", 10)  # SCIP's default: earlier solutions are re-offered
        start = None
        for mu, pi, lam in points:
            res = sub.solve(mu, pi, lam, time_limit=time_limit, start=start)
            total += res.seconds
            values.append(res.value if res.status == "optimal" else math.nan)
            if variant == "shipped":
                start = res.values
    return total, values


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m carbonsched.bench.site_subproblem_speed",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--presets", nargs="*", default=["paper", "small", "medium"])
    ap.add_argument("--sizes", nargs="*", default=[], help="SxT instances (jobs 8·S, classes 4)")
    ap.add_argument("--points", type=int, default=3, help="multiplier vectors per site")
    ap.add_argument("--time-limit", type=float, default=None, help="seconds per site solve")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    instances = [generate(preset=p, seed=args.seed) for p in args.presets]
    for size in args.sizes:
        s, t = (int(v) for v in size.split("x"))
        instances.append(generate(sites=s, periods=t, jobs=8 * s, classes=4, seed=args.seed))
    print(f"summed site solve time, s ({args.points} multiplier points per site; fast separation up to "
          f"{FAST_SEPARATION_MAX_PERIODS} periods)\n")
    print("| instance | S | T | " + " | ".join(VARIANTS) + " | default / shipped |")
    print("|---|---|---|" + "---|" * (len(VARIANTS) + 1))
    for inst in instances:
        points = multiplier_points(inst, args.points, args.seed)
        seconds, reference = {}, None
        for variant in VARIANTS:
            seconds[variant], values = run_variant(inst, variant, points, args.time_limit)
            if reference is None:
                reference = values
            else:  # same optima whatever the settings (where both solved to optimality)
                both = ~np.isnan(reference) & ~np.isnan(values)
                assert np.allclose(np.array(reference)[both], np.array(values)[both], rtol=1e-6, atol=1e-4), variant
        cells = " | ".join(f"{seconds[v]:.2f}" for v in VARIANTS)
        ratio = seconds["default"] / max(seconds["shipped"], 1e-9)
        print(f"| {inst.name} | {inst.n_sites} | {inst.n_periods} | {cells} | {ratio:.2f}× |", flush=True)


if __name__ == "__main__":
    main()
