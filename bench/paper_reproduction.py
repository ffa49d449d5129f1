"""Reproduction of the paper's comparisons (MODEL.md, "The paper's comparisons").

Runs the seven strategies of :data:`formulations.baselines.STRATEGIES` on

1. the ``paper`` preset, seed 0 (the full comparison table);
2. the ``paper`` preset, seeds 0-4 (per strategy: mean and min/max of the change of Z against joint
   and of emissions; how often joint beats compute-only and energy-only);
3. two larger settings, each MILP under a time limit: ``small`` (10 sites) seed 0 and a 20-site
   instance built by size (``generate(sites=20)``), seed 0;
4. a sweep of on-site renewable capacity on the ``paper`` preset, seed 0: every ``renewable_mw`` scaled
   by 0, 0.5, 1, 2, 3, 4 with everything else (the carbon budget included) unchanged; joint,
   compute-only and sequential only.

Every solution is checked with :func:`formulations.checker.check_solution` against the instance it
was scored on (no-carbon without constraint 9); an invalid solution stops the script with the
checker's report and exit status 1.

Each comparison is one task; tasks run in ``--jobs`` worker processes (SCIP single-threaded in each),
longest first. Time limits are per MILP solve (the sequential strategy solves the compute-only MILP
and then one energy dispatch, each under the limit).

Run from the repository root::

    python -m carbonsched.bench.paper_reproduction                 # full run, markdown on stdout (~10 min, 2 cores)
    python -m carbonsched.bench.paper_reproduction --quick         # smoke run: seeds 0-1, 3 sweep points, no larger
    python -m carbonsched.bench.paper_reproduction --out /tmp/repro.md --json /tmp/repro.json

Progress goes to stderr. This is a benchmark, not a test: it asserts validity, never a finding.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import statistics
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

#: Renewable-capacity scale factors of the full sweep.
DEFAULT_FACTORS: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0, 3.0, 4.0)
#: Seeds of the paper preset.
DEFAULT_SEEDS: tuple[int, ...] = (0, 1, 2, 3, 4)
#: Strategies run in the sweep.
SWEEP_STRATEGIES: tuple[str, ...] = ("joint", "compute-only", "sequential")
#: Emissions closer than this (t) count as equal.
EMISSIONS_TOL_T = 0.05
#: Relative Z difference below which two strategies count as equal.
BENEFIT_TOL = 1e-6


class InvalidSolutionError(RuntimeError):
    """A strategy's solution failed the checker."""


@dataclass(frozen=True)
class Case:
    """One comparison: an instance (by generator arguments) and the strategies to run on it.

    Attributes
    ----------
    key : str
        Unique label of the task.
    preset : str or None
        Generator preset; None builds by size from ``sites``.
    seed : int
        Generator seed.
    sites : int or None
        S when ``preset`` is None.
    renewable_scale : float
        Factor applied to every ``renewable_mw`` entry after generation.
    strategies : tuple of str
        Strategies to run, in MODEL.md's order.
    time_limit : float or None
        Seconds per MILP solve.
    """

    key: str
    preset: str | None
    seed: int
    sites: int | None = None
    renewable_scale: float = 1.0
    strategies: tuple[str, ...] = ()
    time_limit: float | None = None

    def instance(self) -> Any:
        """Generate the instance of this case (deterministic for the seed).

        Returns
        -------
        instances.schema.Instance
            The generated instance, with ``renewable_mw`` scaled by ``renewable_scale`` (on a copy).
        """
        from carbonsched.instances import generate

        if self.preset is None:
            inst = generate(sites=self.sites, seed=self.seed, name=f"sites{self.sites}-seed{self.seed}")
        else:
            inst = generate(self.preset, seed=self.seed)
        if self.renewable_scale != 1.0:
            inst = inst.copy()
            inst.sites.renewable_mw[...] = inst.sites.renewable_mw * self.renewable_scale
            inst.name = f"{inst.name}-re{self.renewable_scale:g}"
        return inst


@dataclass
class StrategyResult:
    """The scores of one strategy's checked solution.

    Attributes
    ----------
    status : str
        Solve status (for sequential: the compute-only MILP's when it did not finish optimal).
    objective : float
        Z on the original instance, $.
    emissions_t : float
        Emissions, t CO2.
    wall_seconds : float
        Wall time of the strategy, s.
    gap : float or None
        Relative gap of the strategy's own MILP at the end of its solve (joint: the certified gap of
        the solution; compute-only and the ablations: (dual − primal) / max(1, |primal|) of the ablated
        model; None for energy-only and sequential, which end in an exact dispatch).
    breakdown : dict of str to float
        The terms of Z, $.
    own_bound : float or None
        Final dual bound of the strategy's own MILP, $, when it is a bound on the optimal Z of a
        restriction of the joint model scored the same way (joint, compute-only, no-routing,
        no-battery); None otherwise.
    """

    status: str
    objective: float
    emissions_t: float
    wall_seconds: float
    gap: float | None
    breakdown: dict[str, float]
    own_bound: float | None = None


@dataclass
class CaseResult:
    """A finished comparison.

    Attributes
    ----------
    case : Case
        What was run.
    instance_name : str
        Name of the instance.
    dims : dict of str to int
        S, T, J, K.
    budget_t : float
        Carbon budget C, t.
    renewable_mwh : float
        On-site renewable energy available over the horizon, MWh.
    load_demanded_mwh : float
        Facility energy of the all-grid plan (all demanded work served), MWh.
    table : str
        :func:`formulations.compare.format_comparison` output.
    results : dict of str to StrategyResult
        By strategy name.
    wall_seconds : float
        Wall time of the whole comparison (generation, solves, checks), s.
    """

    case: Case
    instance_name: str
    dims: dict[str, int]
    budget_t: float
    renewable_mwh: float
    load_demanded_mwh: float
    table: str
    results: dict[str, StrategyResult] = field(default_factory=dict)
    wall_seconds: float = 0.0


def _own_gap(name: str, sol: Any) -> float | None:
    """Gap of a strategy's own MILP (see :class:`StrategyResult`)."""
    if name == "joint":
        return float(sol.gap)
    if name in ("energy-only", "sequential") or sol.trace is None or len(sol.trace) == 0:
        return None
    primal, dual = float(sol.trace.primal[-1]), float(sol.trace.dual[-1])
    if not (math.isfinite(primal) and math.isfinite(dual)):
        return math.inf
    return (dual - primal) / max(1.0, abs(primal))


def _own_bound(name: str, sol: Any) -> float | None:
    """Final dual bound of a restriction's own MILP (see :class:`StrategyResult`)."""
    if name not in ("joint", "compute-only", "no-routing", "no-battery") or sol.trace is None or len(sol.trace) == 0:
        return None
    return float(sol.trace.dual[-1])


def run_case(case: Case) -> CaseResult:
    """Run and check one comparison (executed in a worker process).

    Parameters
    ----------
    case : Case
        The comparison to run.

    Returns
    -------
    CaseResult

    Raises
    ------
    InvalidSolutionError
        A solution failed the checker (the message holds the checker's report).
    """
    from carbonsched.formulations.checker import check_solution
    from carbonsched.formulations.compare import format_comparison, run_comparison
    from carbonsched.instances.summary import summarize

    t0 = time.perf_counter()
    inst = case.instance()
    summary = summarize(inst)
    sols = run_comparison(inst, strategies=case.strategies, time_limit=case.time_limit)
    out = CaseResult(
        case=case, instance_name=inst.name,
        dims={"S": inst.n_sites, "T": inst.n_periods, "J": inst.n_jobs, "K": inst.n_classes},
        budget_t=float(inst.carbon_budget_t), renewable_mwh=float(summary["renewable_mwh"]),
        load_demanded_mwh=float(summary["load_demanded_mwh"]), table=format_comparison(inst, sols),
    )
    for name, sol in sols.items():
        report = check_solution(inst, sol, carbon=(name != "no-carbon"))
        if not report.ok:
            raise InvalidSolutionError(f"{inst.name}: strategy {name} failed the checker\n{report.format()}")
        out.results[name] = StrategyResult(
            status=sol.status.value, objective=float(sol.objective), emissions_t=float(sol.emissions_t),
            wall_seconds=float(sol.wall_seconds), gap=_own_gap(name, sol), breakdown=dict(sol.breakdown),
            own_bound=_own_bound(name, sol),
        )
    out.wall_seconds = time.perf_counter() - t0
    return out


# ------------------------------------------------------------------------------------------- tables
def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub markdown table (first column left-aligned, the others right-aligned)."""
    align = ["---"] + ["---:"] * (len(header) - 1)
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _money(x: float) -> str:
    text = f"{x:,.0f}"
    return "0" if text == "-0" else text


def _pct(x: float) -> str:
    return f"{x:+.2f}%"


def _gap(x: float | None) -> str:
    if x is None:
        return "-"
    if not math.isfinite(x):
        return "inf"
    return f"{100 * max(x, 0.0):.3f}%"


def dz_pct(z: float, z_joint: float) -> float:
    """Change of Z against joint, % of |Z_joint| (the ``dZ vs joint`` column of the comparison).

    Parameters
    ----------
    z, z_joint : float
        Z of the strategy and of joint, $.

    Returns
    -------
    float
        100 · (z − z_joint) / max(1, |z_joint|).
    """
    return 100.0 * (z - z_joint) / max(1.0, abs(z_joint))


def status_table(res: CaseResult) -> str:
    """Per-strategy status, own-MILP gap and bound, Z, emissions and wall time of one comparison.

    The last column says whether joint's Z is proven better than the best this restriction could
    reach (its own MILP's bound is below joint's Z), whatever the time limit cut short.
    """
    zj = res.results["joint"].objective
    rows = []
    for name, r in res.results.items():
        proven = "-"
        if name != "joint" and r.own_bound is not None:
            proven = "yes" if r.own_bound < zj else "no (within gaps)"
        bound = "-" if r.own_bound is None else _money(r.own_bound)
        rows.append([name, r.status, _gap(r.gap), bound, _money(r.objective), f"{r.emissions_t:,.1f}",
                     f"{r.wall_seconds:.1f}", proven])
    return _md_table(["strategy", "status", "gap of own MILP", "own bound $", "Z $", "CO2 t", "wall s",
                      "joint proven better"], rows)


def seeds_section(cases: Sequence[CaseResult]) -> tuple[str, dict[str, Any]]:
    """Statistics over the seeds of the paper preset.

    Parameters
    ----------
    cases : sequence of CaseResult
        One full comparison per seed.

    Returns
    -------
    str
        Markdown: per-seed table, per-strategy statistics and the head-to-head counts.
    dict
        The same figures, for the JSON output.
    """
    names = list(cases[0].results)
    per_seed = []
    for c in cases:
        zj = c.results["joint"].objective
        row = [str(c.case.seed), f"{c.budget_t:,.1f}", _money(zj)]
        row += [_pct(dz_pct(c.results[n].objective, zj)) for n in names if n != "joint"]
        row += [" / ".join(f"{c.results[n].emissions_t:.1f}" for n in names)]
        row += [" ".join(sorted({c.results[n].status for n in names}))]
        per_seed.append(row)
    header = (["seed", "C t", "Z joint $"] + [f"dZ {n}" for n in names if n != "joint"]
              + ["CO2 t (" + " / ".join(names) + ")", "statuses"])
    stats: dict[str, Any] = {}
    rows = []
    for n in names:
        dz = [dz_pct(c.results[n].objective, c.results["joint"].objective) for c in cases]
        em = [c.results[n].emissions_t for c in cases]
        use = [100 * c.results[n].emissions_t / c.budget_t for c in cases]
        stats[n] = {"dz_pct": dz, "emissions_t": em, "budget_use_pct": use}
        rows.append([n, f"{statistics.fmean(dz):+.2f}%", f"{min(dz):+.2f}% / {max(dz):+.2f}%",
                     f"{statistics.fmean(em):.1f}", f"{min(em):.1f} / {max(em):.1f}",
                     f"{statistics.fmean(use):.1f}%"])
    head = []
    counts: dict[str, Any] = {}
    for other in ("compute-only", "energy-only", "sequential"):
        if other not in names:
            continue
        better = equal = worse = lower = same = higher = 0
        for c in cases:
            zj, zo = c.results["joint"].objective, c.results[other].objective
            if zj - zo > BENEFIT_TOL * max(1.0, abs(zj)):
                better += 1
            elif zo - zj > BENEFIT_TOL * max(1.0, abs(zj)):
                worse += 1
            else:
                equal += 1
            ej, eo = c.results["joint"].emissions_t, c.results[other].emissions_t
            if ej < eo - EMISSIONS_TOL_T:
                lower += 1
            elif ej > eo + EMISSIONS_TOL_T:
                higher += 1
            else:
                same += 1
        n_cases = len(cases)
        counts[other] = {"z_higher": better, "z_equal": equal, "z_lower": worse,
                         "em_lower": lower, "em_equal": same, "em_higher": higher}
        head.append([other, f"{better}/{n_cases}", f"{equal}/{n_cases}", f"{worse}/{n_cases}",
                     f"{lower}/{n_cases}", f"{same}/{n_cases}", f"{higher}/{n_cases}"])
    text = "\n\n".join([
        "Per seed (dZ = change of Z against joint, % of |Z joint|; CO2 in the order of the header):",
        _md_table(header, per_seed),
        "Per strategy over the seeds:",
        _md_table(["strategy", "dZ mean", "dZ min / max", "CO2 mean t", "CO2 min / max t", "budget use mean"], rows),
        f"Joint against each baseline (seeds where joint's Z is higher / equal / lower; emissions lower / "
        f"within {EMISSIONS_TOL_T} t / higher):",
        _md_table(["baseline", "Z higher", "Z equal", "Z lower", "CO2 lower", "CO2 equal", "CO2 higher"], head),
    ])
    return text, {"per_strategy": stats, "joint_vs": counts}


def sweep_section(cases: Sequence[CaseResult]) -> tuple[str, list[dict[str, Any]]]:
    """The renewable-capacity sweep: the gain of joint over compute-only and sequential per factor.

    Parameters
    ----------
    cases : sequence of CaseResult
        One comparison (at least joint, compute-only, sequential) per factor, in factor order.

    Returns
    -------
    str
        Markdown table.
    list of dict
        The same figures, for the JSON output.
    """
    rows, data = [], []
    for c in cases:
        r = c.results
        zj, zc, zs = r["joint"].objective, r["compute-only"].objective, r["sequential"].objective
        gain_c, gain_s = zj - zc, zj - zs
        data.append({
            "factor": c.case.renewable_scale, "renewable_mwh": c.renewable_mwh,
            "renewable_share": c.renewable_mwh / c.load_demanded_mwh, "budget_t": c.budget_t,
            "z": {n: r[n].objective for n in r}, "emissions_t": {n: r[n].emissions_t for n in r},
            "ens_cost": {n: r[n].breakdown["ens_cost"] for n in r},
            "gain_vs_compute_only": gain_c, "gain_vs_sequential": gain_s,
            "statuses": {n: r[n].status for n in r},
        })
        rows.append([
            f"{c.case.renewable_scale:g}", f"{c.renewable_mwh:,.0f} ({c.renewable_mwh / c.load_demanded_mwh:.0%})",
            _money(zj), _money(zc), _money(zs),
            f"{_money(gain_c)} ({100 * gain_c / max(1.0, abs(zc)):+.2f}%)",
            f"{_money(gain_s)} ({100 * gain_s / max(1.0, abs(zs)):+.2f}%)",
            " / ".join(f"{r[n].emissions_t:.1f}" for n in SWEEP_STRATEGIES),
            " / ".join(_money(-r[n].breakdown["ens_cost"]) for n in SWEEP_STRATEGIES),
            " ".join(sorted({r[n].status for n in r})),
        ])
    header = ["RE x", "RE MWh (share of demanded)", "Z joint $", "Z compute-only $", "Z sequential $",
              "joint − compute-only $ (%)", "joint − sequential $ (%)",
              "CO2 t (joint / c-o / seq)", "ENS $ (joint / c-o / seq)", "statuses"]
    note = (f"Carbon budget C = {cases[0].budget_t:,.1f} t at every factor. Gains in % are of the baseline's "
            "|Z|.")
    return _md_table(header, rows) + "\n\n" + note, data


# --------------------------------------------------------------------------------------------- main
def plan_cases(quick: bool, time_limit: float, seeds: Sequence[int], factors: Sequence[float],
               larger: bool) -> tuple[list[Case], list[Case], list[Case]]:
    """The tasks of a run: (seed cases, larger cases, sweep cases); factor 1 reuses the seed-0 case.

    Parameters
    ----------
    quick : bool
        Unused beyond the defaults already applied to the other arguments (kept for clarity in logs).
    time_limit : float
        Seconds per MILP solve.
    seeds : sequence of int
        Seeds of the paper preset.
    factors : sequence of float
        Renewable scale factors of the sweep.
    larger : bool
        Whether to run the two larger settings.

    Returns
    -------
    tuple of three lists of Case
    """
    from carbonsched.formulations.baselines import STRATEGIES

    del quick
    seed_cases = [Case(f"paper-s{s}", "paper", s, strategies=STRATEGIES, time_limit=time_limit) for s in seeds]
    larger_cases = []
    if larger:
        larger_cases = [Case("small-s0", "small", 0, strategies=STRATEGIES, time_limit=time_limit),
                        Case("sites20-s0", None, 0, sites=20, strategies=STRATEGIES, time_limit=time_limit)]
    sweep_cases = [Case(f"paper-s0-re{f:g}", "paper", 0, renewable_scale=f, strategies=SWEEP_STRATEGIES,
                        time_limit=time_limit) for f in factors if f != 1.0]
    return seed_cases, larger_cases, sweep_cases


def run_all(cases: Sequence[Case], jobs: int) -> dict[str, CaseResult]:
    """Run every case in ``jobs`` worker processes (in the given order of submission).

    Raises
    ------
    InvalidSolutionError
        From the first case whose solution failed the checker.
    """
    done: dict[str, CaseResult] = {}
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn")) as pool:
        futures = {pool.submit(run_case, c): c for c in cases}
        for fut in as_completed(futures):
            res = fut.result()
            done[res.case.key] = res
            st = ", ".join(f"{n} {r.status}" for n, r in res.results.items() if r.status != "optimal")
            print(f"[{time.perf_counter() - t0:7.1f}s] {res.case.key:18s} done in {res.wall_seconds:6.1f}s"
                  f"{'  (' + st + ')' if st else ''}", file=sys.stderr, flush=True)
    return done


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; returns the exit status."""
    ap = argparse.ArgumentParser(prog="python -m carbonsched.bench.paper_reproduction",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: seeds 0-1, sweep 0/1/4, no larger settings, 20 s per MILP")
    ap.add_argument("--time-limit", type=float, default=None, help="seconds per MILP (default 60, quick 20)")
    ap.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    ap.add_argument("--seeds", type=int, nargs="+", default=None, help="paper-preset seeds (default 0-4)")
    ap.add_argument("--factors", type=float, nargs="+", default=None,
                    help="renewable scale factors (default 0 0.5 1 2 3 4); 1 is always included")
    ap.add_argument("--no-larger", action="store_true", help="skip the small and 20-site settings")
    ap.add_argument("--out", type=Path, default=None, help="also write the markdown report to this file")
    ap.add_argument("--json", type=Path, default=None, help="write the figures as JSON to this file")
    args = ap.parse_args(argv)

    time_limit = args.time_limit if args.time_limit is not None else (20.0 if args.quick else 60.0)
    seeds = args.seeds if args.seeds is not None else ([0, 1] if args.quick else list(DEFAULT_SEEDS))
    if 0 not in seeds:
        seeds = [0, *seeds]
    factors = args.factors if args.factors is not None else ([0.0, 1.0, 4.0] if args.quick else list(DEFAULT_FACTORS))
    factors = sorted(set(factors) | {1.0})
    larger = not (args.quick or args.no_larger)

    seed_cases, larger_cases, sweep_cases = plan_cases(args.quick, time_limit, seeds, factors, larger)
    t0 = time.perf_counter()
    try:
        # Longest first so the pool stays busy to the end.
        done = run_all([*larger_cases, *seed_cases, *sweep_cases], args.jobs)
    except InvalidSolutionError as exc:
        print(f"INVALID SOLUTION: {exc}", file=sys.stderr)
        return 1
    wall = time.perf_counter() - t0

    import platform

    import pyscipopt

    base = done["paper-s0"]
    parts = [
        "# Paper reproduction: results",
        f"Command: `python -m carbonsched.bench.paper_reproduction{' --quick' if args.quick else ''}` "
        f"(time limit {time_limit:g} s per MILP, {args.jobs} worker processes). Wall time {wall:.0f} s. "
        f"Python {platform.python_version()}, PySCIPOpt {pyscipopt.__version__}. Every solution passed the "
        "checker (no-carbon without constraint 9).",
        "## 1. paper preset, seed 0",
        "```\n" + base.table + "\n```",
        status_table(base),
    ]
    seed_results = [done[c.key] for c in seed_cases]
    seeds_md, seeds_json = seeds_section(seed_results)
    parts += [f"## 2. paper preset, seeds {', '.join(map(str, seeds))}", seeds_md]
    larger_json = {}
    if larger_cases:
        parts.append(f"## 3. Larger settings ({time_limit:g} s per MILP)")
        for c in larger_cases:
            res = done[c.key]
            d = res.dims
            parts += [f"### {res.instance_name} (S={d['S']} T={d['T']} J={d['J']} K={d['K']}, C = "
                      f"{res.budget_t:,.1f} t; comparison wall {res.wall_seconds:.0f} s)",
                      "```\n" + res.table + "\n```", status_table(res)]
            larger_json[c.key] = {n: asdict(r) for n, r in res.results.items()}
    sweep = sorted([*(done[c.key] for c in sweep_cases), base], key=lambda r: r.case.renewable_scale)
    sweep_md, sweep_json = sweep_section(sweep)
    parts += ["## 4. Renewable-capacity sweep (paper preset, seed 0)", sweep_md]
    report = "\n\n".join(parts) + "\n"
    print(report)
    if args.out is not None:
        args.out.write_text(report)
    if args.json is not None:
        payload = {
            "wall_seconds": wall, "time_limit": time_limit, "jobs": args.jobs,
            "paper_seed0": {n: asdict(r) for n, r in base.results.items()},
            "seeds": seeds_json,
            "per_seed": {c.case.seed: {n: asdict(r) for n, r in c.results.items()} for c in seed_results},
            "larger": larger_json, "sweep": sweep_json,
        }
        args.json.write_text(json.dumps(payload, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
