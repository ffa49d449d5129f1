"""LP rounding: a capacity-feasible compute plan from a fractional solution of any model with x and y."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from carbonsched.formulations.joint import Placements, compute_arrays, enumerate_placements
from carbonsched.formulations.lp_relaxation import solve_lp_relaxation
from carbonsched.formulations.plan import ComputePlan
from carbonsched.instances.schema import Instance

#: Placements with a smaller LP value are not tried in the greedy pass (mandatory jobs still are).
MIN_FRACTION = 0.05
#: A job the greedy pass left out, whose placements carry at least this LP mass in all, tries every one of
#: its placements in the second pass (cheapest estimated energy first).
SECOND_PASS_MASS = 0.5


def energy_cost_per_gpu(inst: Instance) -> np.ndarray:
    """Estimated $ per busy GPU and period (S,T): facility power at grid price, carbon priced at τ."""
    s = inst.sites
    mw_per_gpu = s.pue * ((s.gpu_busy_kw - s.gpu_idle_kw) / 1000.0)[:, None]
    return mw_per_gpu * inst.period_hours * (s.price_buy + inst.carbon_price * s.grid_co2)


def round_fractional_plan(inst: Instance, placements: Placements, x: np.ndarray, y: np.ndarray,
                          values: np.ndarray) -> ComputePlan:
    """A feasible plan from a fractional solution (Benders master LP, joint LP relaxation).

    Placements are taken greedily by decreasing x value (each job once, within GPU capacity over its
    whole run). A second pass gives the jobs left out whose LP mass is at least
    :data:`SECOND_PASS_MASS` (mandatory jobs always, first) every placement of theirs, by decreasing x and
    then cheapest estimated energy: the LP spreads many jobs over several sites and starts in pieces below
    :data:`MIN_FRACTION`, which the first pass never tries (at 100 sites it placed 207 of the 245 jobs the
    LP schedules). Then the fractional routing is scaled down where it no longer fits beside the jobs or
    exceeds the demand.

    Parameters
    ----------
    inst : Instance
        The instance.
    placements : Placements
        The model's placement list; ``x`` holds their variable ids.
    x : (P,) int array
        Variable ids of the placements.
    y : (K, S, T) int array
        Variable ids of the routing (−1 where absent).
    values : (n,) float array
        The fractional solution, by variable id.
    """
    pl, jb = placements, inst.jobs
    free = np.repeat(inst.sites.gpus[:, None].astype(np.float64), inst.n_periods, axis=1)
    job_site = np.full(inst.n_jobs, -1, dtype=np.int64)
    job_start = np.full(inst.n_jobs, -1, dtype=np.int64)
    xv = values[x] if pl.size else np.zeros(0)

    def place(p: int) -> bool:
        j, i, s = pl.job[p], pl.site[p], pl.start[p]
        d, g = jb.duration[j], jb.gpus[j]
        if job_site[j] >= 0 or free[i, s:s + d].min() < g:
            return False
        free[i, s:s + d] -= g
        job_site[j], job_start[j] = i, s
        return True

    for p in np.argsort(-xv, kind="stable"):
        if xv[p] < MIN_FRACTION:
            break
        place(int(p))
    mass = np.zeros(inst.n_jobs)
    if pl.size:
        np.add.at(mass, pl.job, xv)
    left = np.flatnonzero((job_site < 0) & (jb.mandatory | (mass >= SECOND_PASS_MASS)))
    if left.size:
        cost = energy_cost_per_gpu(inst)
        prefix = np.concatenate([np.zeros((inst.n_sites, 1)), np.cumsum(cost, axis=1)], axis=1)
        run_cost = (prefix[pl.site, pl.start + jb.duration[pl.job]] - prefix[pl.site, pl.start]) * jb.gpus[pl.job]
        order = left[np.lexsort((np.arange(left.size), -mass[left], ~jb.mandatory[left]))]
        for j in order:
            mine = np.flatnonzero(pl.job == j)
            for p in mine[np.lexsort((run_cost[mine], -xv[mine]))]:
                if place(int(p)):
                    break
    _, _, served = compute_arrays(inst, pl, x, y, values)
    load = served.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        fit = np.where(load > free, np.maximum(free, 0.0) / load, 1.0)
    served *= fit[None] * (1 - 1e-12)
    total = served.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        served *= np.where(total > inst.inference.demand, inst.inference.demand / total, 1.0)[:, None, :]
    return ComputePlan(job_site=job_site, job_start=job_start, served=served)


def route_by_lp(inst: Instance, plan: ComputePlan, *, time_limit: float | None = None,
                budget_share: float = 1.0) -> ComputePlan | None:
    """``plan``'s placements with the routing of the joint LP relaxation at those placements.

    Rounding keeps the placements an LP chose but only scales its routing down where the jobs now stand;
    demand that could move to another site within its SLO is lost. Re-solving the LP with the placements
    fixed re-routes every class over the sites' free GPUs at (relaxed) energy prices, in one LP. Returns
    None if that LP is not solved within ``time_limit`` s.
    """
    pl = enumerate_placements(inst)
    fixed = ((plan.job_site[pl.job] == pl.site) & (plan.job_start[pl.job] == pl.start)).astype(np.float64)
    routed = inst if budget_share == 1.0 or not math.isfinite(inst.carbon_budget_t) else \
        dataclasses.replace(inst, carbon_budget_t=budget_share * inst.carbon_budget_t)
    lp = solve_lp_relaxation(routed, time_limit=time_limit, fixed_placements=fixed)
    if not lp.optimal:
        return None
    jm = lp.jm
    _, _, served = compute_arrays(inst, jm.placements, jm.x, jm.y, lp.values)
    free = ComputePlan(plan.job_site, plan.job_start, np.zeros_like(served)).free_gpus(inst)
    load = served.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        served *= np.where(load > free, np.maximum(free, 0.0) / load, 1.0)[None] * (1 - 1e-12)
    total = served.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        served *= np.where(total > inst.inference.demand, inst.inference.demand / total, 1.0)[:, None, :]
    return ComputePlan(job_site=plan.job_site.copy(), job_start=plan.job_start.copy(), served=served)
