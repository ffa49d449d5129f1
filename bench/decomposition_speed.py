"""Monolithic SCIP against the Benders and Lagrangian decompositions: certified gap over time.

For each instance size (sites; 24 hourly periods; 3 jobs per site; the generator's default classes)
every method runs once with the same wall-clock limit, one after the other in this process (the machine
is shared and noisy: the ratios of one run are what to compare). From each method's unified trace the
script reads the time at which the certified gap (bound − primal)/max(1, |primal|) first reaches 1 % and
0.1 %, and prints one markdown table with the ratios decomposition / monolithic; every final solution
goes through the checker. The traces are written to an HDF5 file for plots (``--plot`` draws them).

    python -m carbonsched.bench.decomposition_speed --sites 10 30 100 --time-limit 120 --jobs 2
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np
from carbonsched.formulations.checker import check_solution
from carbonsched.formulations.solution import Solution
from carbonsched.instances.generator import generate

METHODS = ("monolithic", "benders", "lagrangian", "lagrangian-close", "lagrangian-parallel", "scip-benders")


def time_to_gap(sol: Solution, target: float) -> float:
    """First trace time (s) with certified gap ≤ ``target``; inf if never."""
    tr = sol.trace
    if tr is None or not sol.certified:
        return math.inf
    primal, dual = tr.primal, tr.dual
    with np.errstate(invalid="ignore"):
        gap = (dual - primal) / np.maximum(1.0, np.abs(primal))
    ok = np.flatnonzero(np.isfinite(gap) & (gap <= target))
    return float(tr.seconds[ok[0]]) if ok.size else math.inf


def run_method(method: str, inst, time_limit: float, jobs: int) -> Solution:
    if method == "monolithic":
        from carbonsched.formulations.monolithic import solve_monolithic

        return solve_monolithic(inst, time_limit=time_limit, gap=1e-4)
    if method == "scip-benders":
        from carbonsched.decomp.scip_benders import solve_scip_benders

        return solve_scip_benders(inst, time_limit=time_limit, gap=1e-4)
    from carbonsched.decomp.parallel import ParallelConfig

    config = ParallelConfig(n_jobs=jobs)
    if method == "benders":
        from carbonsched.decomp.benders import solve_benders

        return solve_benders(inst, time_limit=time_limit, gap=1e-4, config=config, close=False)
    from carbonsched.decomp.lagrangian import solve_lagrangian

    # lagrangian: the decomposition alone; lagrangian-close: as shipped (closing phase and primal side auto);
    # lagrangian-parallel: the per-site parallel primal side at any size, no closing phase
    if method == "lagrangian-parallel":
        return solve_lagrangian(inst, time_limit=time_limit, gap=1e-4, config=config, close=False, primal="parallel")
    return solve_lagrangian(inst, time_limit=time_limit, gap=1e-4, config=config,
                            close=None if method == "lagrangian-close" else False)


def _fmt(x: float) -> str:
    return "—" if not math.isfinite(x) else f"{x:.1f}"


def _ratio(a: float, b: float) -> str:
    if math.isfinite(a) and math.isfinite(b) and b > 0:
        return f"{a / b:.2f}"
    if math.isfinite(a) and not math.isfinite(b):
        return "< 1 (mono never)"
    return "—"


def plot_traces(traces: dict, sites: Sequence[int], methods: Sequence[str], path: Path) -> None:
    """Bound and primal over time, as the gap to the best primal any method found, one panel per size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(sites), figsize=(5 * len(sites), 4), squeeze=False)
    for ax, n_sites in zip(axes[0], sites, strict=True):
        here = {m: traces[(n_sites, m)] for m in methods if (n_sites, m) in traces}
        best = max((float(np.max(tr.primal)) for tr in here.values() if len(tr)), default=math.nan)
        scale = max(1.0, abs(best))
        for method, tr in here.items():
            with np.errstate(invalid="ignore"):
                bound_gap = np.where(np.isfinite(tr.dual), (tr.dual - best) / scale, np.nan)
                primal_gap = np.where(np.isfinite(tr.primal), (best - tr.primal) / scale, np.nan)
            line = ax.step(tr.seconds, np.maximum(bound_gap, 1e-6), where="post", label=f"{method}: bound − best")[0]
            ax.step(tr.seconds, np.maximum(primal_gap, 1e-6), where="post", linestyle="--", color=line.get_color(),
                    label=f"{method}: best − primal")
        ax.set_yscale("log")
        ax.set_title(f"S = {n_sites} (relative to the best primal {best:,.0f} $)", fontsize=9)
        ax.set_xlabel("seconds")
        ax.set_ylabel("relative distance")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def replot(h5: Path, png: Path) -> None:
    """Redraw the plot from a traces file written by an earlier run."""
    from carbonsched.formulations.solution import Trace

    traces, sites, methods = {}, [], []
    with h5py.File(h5, "r") as f:
        for skey in f:
            n_sites = int(skey[1:])
            sites.append(n_sites)
            for method in f[skey]:
                g = f[skey][method]
                traces[(n_sites, method)] = Trace(**{k: g[k][()] for k in ("seconds", "primal", "dual", "iteration")})
                if method not in methods:
                    methods.append(method)
    plot_traces(traces, sorted(sites), [m for m in METHODS if m in methods], png)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m carbonsched.bench.decomposition_speed",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--sites", type=int, nargs="+", default=[10, 30, 100])
    ap.add_argument("--time-limit", type=float, default=120.0, help="seconds per method and size")
    ap.add_argument("--jobs", type=int, default=2, help="workers for the decompositions")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--periods", type=int, default=24)
    ap.add_argument("--job-sites", type=int, default=10,
                    help="allowed sites per job at most (default 10, the generator's; 0: every site)")
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--out", type=Path, default=Path("decomposition_speed.h5"), help="traces (HDF5)")
    ap.add_argument("--plot", type=Path, help="write a PNG of bound and primal over time per size")
    ap.add_argument("--replot", type=Path, help="only redraw --plot from this traces file")
    args = ap.parse_args(argv)
    if args.replot is not None:
        replot(args.replot, args.plot or Path("decomposition_speed.png"))
        return 0

    rows = []
    traces: dict[tuple[int, str], Solution] = {}
    for n_sites in args.sites:
        inst = generate(sites=n_sites, periods=args.periods, seed=args.seed,
                        job_sites=args.job_sites or n_sites)
        for method in args.methods:
            t = time.perf_counter()
            print(f"[S={n_sites}] {method} ...", flush=True)
            try:
                sol = run_method(method, inst, args.time_limit, args.jobs)
            except Exception as exc:  # a failed run is a result too: report it, go on
                print(f"[S={n_sites}] {method} failed: {exc}", flush=True)
                rows.append((n_sites, method, None, time.perf_counter() - t))
                continue
            report = check_solution(inst, sol)
            if not report.ok:
                print(report.format())
                return 1
            traces[(n_sites, method)] = sol
            rows.append((n_sites, method, sol, time.perf_counter() - t))
            print(f"[S={n_sites}] {method}: Z {sol.objective:,.0f}  bound {sol.bound:,.0f}  gap {100 * sol.gap:.3f}%  "
                  f"({time.perf_counter() - t:.0f} s)", flush=True)

    print()
    print("| S | method | final primal $ | final bound $ | certified gap | t(1 %) s | t(0.1 %) s | "
          "t(1 %) / monolithic | wall s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n_sites, method, sol, wall in rows:
        if sol is None:
            print(f"| {n_sites} | {method} | failed | | | | | | {wall:.0f} |")
            continue
        mono = traces.get((n_sites, "monolithic"))
        t1, t01 = time_to_gap(sol, 0.01), time_to_gap(sol, 0.001)
        ratio = _ratio(t1, time_to_gap(mono, 0.01)) if mono is not None and method != "monolithic" else ""
        gap = f"{100 * sol.gap:.3f} %" if math.isfinite(sol.gap) else "inf"
        print(f"| {n_sites} | {method} | {sol.objective:,.0f} | {sol.bound:,.0f} | {gap} | {_fmt(t1)} | "
              f"{_fmt(t01)} | {ratio} | {wall:.0f} |")

    with h5py.File(args.out, "w") as f:
        for (n_sites, method), sol in traces.items():
            g = f.create_group(f"S{n_sites}/{method}")
            for k, v in sol.trace.to_arrays().items():
                g[k] = v
            g.attrs.update(objective=sol.objective, bound=sol.bound, gap=sol.gap, certified=sol.certified)
    print(f"\ntraces written to {args.out}")
    if args.plot:
        plot_traces({k: sol.trace for k, sol in traces.items()}, args.sites, args.methods, args.plot)
        print(f"plot written to {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
