"""LP rounding: a capacity-feasible compute plan from a fractional solution of any model with x and y."""

from __future__ import annotations

import numpy as np
from carbonsched.formulations.joint import Placements, compute_arrays
from carbonsched.formulations.plan import ComputePlan
from carbonsched.instances.schema import Instance

#: Placements with a smaller LP value are not tried in the greedy pass (mandatory jobs still are).
MIN_FRACTION = 0.05


def round_fractional_plan(inst: Instance, placements: Placements, x: np.ndarray, y: np.ndarray,
                          values: np.ndarray) -> ComputePlan:
    """A feasible plan from a fractional solution (Benders master LP, joint LP relaxation).

    Placements are taken greedily by decreasing x value (each job once, within GPU capacity over its
    whole run), mandatory jobs left over take the first placement that fits, and the fractional routing
    is scaled down where it no longer fits beside the jobs or exceeds the demand.

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
    for j in np.flatnonzero(jb.mandatory & (job_site < 0)):
        for p in np.flatnonzero(pl.job == j):
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
