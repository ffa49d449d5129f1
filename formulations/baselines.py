"""The seven strategies of MODEL.md's comparison: joint, baselines and ablations.

Every strategy's plan is scored with Z of the *original* instance and written as a solution that is
feasible for it (assets a strategy switches off stay idle: a battery holds soc0, a generator stays
off), so one checker judges them all (no-carbon aside, for constraint 9 only).
"""

from __future__ import annotations

import math
import time

import numpy as np
from carbonsched.errors import InfeasibleError
from carbonsched.instances.schema import Instance
from carbonsched.progress import ProgressCallback

from .evaluate import evaluate
from .monolithic import solve_monolithic
from .plan import ComputePlan
from .solution import Solution

STRATEGIES = ("joint", "compute-only", "energy-only", "sequential", "no-routing", "no-battery", "no-carbon")


def ablate(inst: Instance, kind: str) -> Instance:
    """A copy of ``inst`` with the change of one ablation of MODEL.md.

    ``compute-only``: every microgrid asset off (B = E = soc0 = 0, Gmax = Gmin = 0, export limit 0);
    ``no-battery``: B = E = soc0 = 0; ``no-carbon``: C = inf and τ = 0; ``no-routing``: class k keeps
    only its lowest-latency site in S_k (ties by index), the others get latency inf (outside S_k).
    """
    out = inst.copy()
    s = out.sites
    if kind in ("compute-only", "no-battery"):
        s.bat_energy_mwh[:] = 0.0
        s.bat_power_mw[:] = 0.0
        s.bat_soc0_mwh[:] = 0.0
    if kind == "compute-only":
        s.gen_max_mw[:] = 0.0
        s.gen_min_mw[:] = 0.0
        s.grid_export_mw[:] = 0.0
    elif kind == "no-carbon":
        out.carbon_budget_t = math.inf
        out.carbon_price = 0.0
    elif kind == "no-routing":
        inf = out.inference
        slo = inst.slo_mask()
        lat = np.where(slo, inf.latency_ms, np.inf)
        best = np.argmin(lat, axis=1)  # first minimum: ties by index
        keep = np.zeros_like(slo)
        has = slo.any(axis=1)
        keep[np.flatnonzero(has), best[has]] = True
        inf.latency_ms[:] = np.where(keep, inf.latency_ms, np.inf)
    elif kind not in ("compute-only", "no-battery"):
        raise ValueError(f"unknown ablation {kind!r}")
    out.name = inst.name
    return out


def energy_only_plan(inst: Instance) -> ComputePlan:
    """The carbon- and price-agnostic compute rule of MODEL.md's energy-only baseline.

    Jobs in the order (mandatory first, then earliest deadline, then index) take the first
    (start, site) pair — starts increasing, allowed sites by index — with g_j GPUs free over the whole
    run; a job that fits nowhere is skipped (InfeasibleError if it is mandatory). Then, period by
    period and class by class, inference fills free GPUs at the sites of S_k by increasing latency
    (ties by index).
    """
    S, T, K = inst.n_sites, inst.n_periods, inst.n_classes
    jb, inf = inst.jobs, inst.inference
    free = np.repeat(inst.sites.gpus[:, None].astype(np.float64), T, axis=1)
    job_site = np.full(inst.n_jobs, -1, dtype=np.int64)
    job_start = np.full(inst.n_jobs, -1, dtype=np.int64)
    order = np.lexsort((np.arange(inst.n_jobs), jb.deadline, ~jb.mandatory))
    skipped_mandatory = []
    for j in order:
        d, g = int(jb.duration[j]), float(jb.gpus[j])
        sites = np.flatnonzero(jb.allowed[j])
        placed = False
        for s in range(int(jb.release[j]), int(jb.deadline[j]) - d + 1):
            fits = free[sites, s:s + d].min(axis=1) >= g
            if fits.any():
                i = sites[np.argmax(fits)]
                free[i, s:s + d] -= g
                job_site[j], job_start[j] = i, s
                placed = True
                break
        if not placed and jb.mandatory[j]:
            skipped_mandatory.append(str(jb.name[j]))
    if skipped_mandatory:
        raise InfeasibleError(
            f"energy-only baseline infeasible: mandatory job(s) {', '.join(skipped_mandatory)} fit nowhere "
            "under its placement rule", skipped_mandatory)
    served = np.zeros((K, S, T))
    if K:
        slo = inst.slo_mask()
        lat = np.where(slo, inf.latency_ms, np.inf)
        site_order = [np.array([i for i in np.lexsort((np.arange(S), lat[k])) if slo[k, i]], dtype=np.int64)
                      for k in range(K)]
        for t in range(T):
            for k in range(K):
                need = float(inf.demand[k, t])
                for i in site_order[k]:
                    if need <= 0:
                        break
                    take = min(need, free[i, t])
                    if take > 0:
                        served[k, i, t] = take
                        free[i, t] -= take
                        need -= take
    return ComputePlan(job_site=job_site, job_start=job_start, served=served)


def run_strategy(inst: Instance, name: str, *, time_limit: float | None = None, gap: float | None = 1e-6,
                 progress: ProgressCallback | None = None) -> Solution:
    """Run one strategy of MODEL.md's comparison on ``inst``; the result is scored on ``inst``.

    Parameters
    ----------
    inst : Instance
        The original instance.
    name : str
        One of :data:`STRATEGIES`.
    time_limit : float, optional
        Seconds for each MILP solve inside the strategy.
    gap : float, optional
        Relative gap for the MILP solves.
    progress : ProgressCallback, optional
        Passed to every :func:`~carbonsched.formulations.monolithic.solve_monolithic` call of the strategy.
    """
    t0 = time.perf_counter()
    opts = dict(time_limit=time_limit, gap=gap, progress=progress)
    if name == "joint":
        return solve_monolithic(inst, method="joint", **opts)
    if name in ("compute-only", "no-routing", "no-battery", "no-carbon"):
        sol = solve_monolithic(ablate(inst, name), method=name, certified=False, scored_on=inst, **opts)
    elif name == "energy-only":
        sol = evaluate(inst, energy_only_plan(inst), method=name, time_limit=time_limit)
    elif name == "sequential":
        first = solve_monolithic(ablate(inst, "compute-only"), certified=False, scored_on=inst, **opts)
        sol = evaluate(inst, ComputePlan.from_solution(first), method=name, time_limit=time_limit)
        sol.status = first.status if first.status.value != "optimal" else sol.status
    else:
        raise ValueError(f"unknown strategy {name!r}; choose from {', '.join(STRATEGIES)}")
    sol.wall_seconds = time.perf_counter() - t0
    return sol
