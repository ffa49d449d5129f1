"""Monolithic SCIP against the Benders and Lagrangian decompositions: certified gap over time.

For each instance size (sites; 24 hourly periods; 3 jobs per site; the generator's default classes)
every method runs once with the same wall-clock limit, one after the other in this process (the machine
is shared and noisy: the ratios of one run are what to compare). From each method's unified trace the
script reads the time at which the certified gap (bound − primal)/max(1, |primal|) first reaches 1 % and
0.1 %, and prints one markdown table with the ratios decomposition / monolithic; every final solution
goes through the checker. The traces are written to an HDF5 file for plots (``--plot`` draws them).

    python -m bench.decomposition_speed --sites 10 30 100 --time-limit 120 --jobs 2
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

from formulations.checker import check_solution
from formulations.solution import Solution
from instances.generator import generate

METHODS = ("monolithic", "benders", "lagrangian")


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
        from formulations.monolithic import solve_monolithic

        return solve_monolithic(inst, time_limit=time_limit, gap=1e-4)
    from decomp.parallel import ParallelConfig

    config = ParallelConfig(n_jobs=jobs)
    if method == "benders":
        from decomp.benders import solve_benders

        return solve_benders(inst, time_limit=time_limit, gap=1e-4, config=config)
    from decomp.lagrangian import solve_lagrangian

    return solve_lagrangian(inst, time_limit=time_limit, gap=1e-4, config=config)


def _fmt(x: float) -> str:
    return "—" if not math.isfinite(x) else f"{x:.1f}"


def _ratio(a: float, b: float) -> str:
    if math.isfinite(a) and math.isfinite(b) and b > 0:
        return f"{a / b:.2f}"
    if math.isfinite(a) and not math.isfinite(b):
        return "< 1 (mono never)"
    return "—"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.decomposition_speed", description=__doc__.splitlines()[0])
    ap.add_argument("--sites", type=int, nargs="+", default=[10, 30, 100])
    ap.add_argument("--time-limit", type=float, default=120.0, help="seconds per method and size")
    ap.add_argument("--jobs", type=int, default=2, help="workers for the decompositions")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--out", type=Path, default=Path("decomposition_speed.h5"), help="traces (HDF5)")
    ap.add_argument("--plot", type=Path, help="write a PNG of bound and primal over time per size")
    args = ap.parse_args(argv)

    rows = []
    traces: dict[tuple[int, str], Solution] = {}
    for n_sites in args.sites:
        inst = generate(sites=n_sites, periods=24, seed=args.seed)
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
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, len(args.sites), figsize=(5 * len(args.sites), 4), squeeze=False)
        for ax, n_sites in zip(axes[0], args.sites, strict=True):
            for method in args.methods:
                sol = traces.get((n_sites, method))
                if sol is None:
                    continue
                tr = sol.trace
                line = ax.step(tr.seconds, np.where(np.isfinite(tr.dual), tr.dual, np.nan), where="post",
                               label=f"{method} bound")[0]
                ax.step(tr.seconds, np.where(np.isfinite(tr.primal), tr.primal, np.nan), where="post",
                        linestyle="--", color=line.get_color(), label=f"{method} primal")
            ax.set_title(f"S = {n_sites}")
            ax.set_xlabel("seconds")
            ax.set_ylabel("Z ($)")
            finite = [v for m in args.methods if (n_sites, m) in traces
                      for v in (traces[(n_sites, m)].objective,)]
            if finite:
                top = max(finite)
                ax.set_ylim(top - 0.1 * abs(top), top + 0.1 * abs(top))
            ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(args.plot, dpi=110)
        print(f"plot written to {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
