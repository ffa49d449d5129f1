"""Naming the mandatory jobs that make an instance infeasible.

Only mandatory jobs can make the model infeasible (MODEL.md: ``ens`` keeps every energy side
feasible), so the question is a pure placement problem: constraints 1 and 3 with the mandatory jobs
alone. A job with no placement that fits by itself is named directly; otherwise a deletion filter
shrinks the set of mandatory jobs to an irreducible conflicting subset.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from carbonsched.errors import InfeasibleError
from carbonsched.instances.schema import Instance

from .joint import enumerate_placements, running_matrix
from .scip_arrays import ArrayModel


def _placeable(inst: Instance, jobs: np.ndarray, time_limit: float = 30.0) -> bool:
    """Whether ``jobs`` (indices) can all be placed together within GPU capacity."""
    pl = enumerate_placements(inst)
    keep = np.isin(pl.job, jobs)
    if not keep.any():
        return jobs.size == 0
    am = ArrayModel("placement-feasibility", maximize=False)
    am.model.hideOutput()
    am.model.setParam("limits/time", time_limit)
    x = am.add_vars("x", np.zeros(int(keep.sum())), 1.0, 0.0, "B")
    job_idx = np.searchsorted(jobs, pl.job[keep])
    am.add_rows("once", sp.csr_matrix((np.ones(x.size), (job_idx, x)), shape=(jobs.size, am.n_vars)), 1.0, 1.0)
    run = running_matrix(inst, pl)[:, np.flatnonzero(keep)].tocoo()
    cap = sp.csr_matrix((run.data, (run.row, x[run.col])), shape=(inst.n_sites * inst.n_periods, am.n_vars))
    am.add_rows("capacity", cap, -np.inf, np.repeat(inst.sites.gpus.astype(float), inst.n_periods))
    am.model.optimize()
    return am.model.getNSols() > 0


def mandatory_infeasibility(inst: Instance) -> InfeasibleError | None:
    """An InfeasibleError naming the mandatory jobs that cannot all be placed, or None when they can.

    For heuristics that failed to place a mandatory job: None means the instance is feasible (a
    placement of every mandatory job exists, and ``ens`` keeps every energy side feasible), so the
    failure is the heuristic's, not the instance's.
    """
    mandatory = np.flatnonzero(inst.jobs.mandatory)
    if _placeable(inst, mandatory):
        return None
    return diagnose_mandatory(inst)


def diagnose_mandatory(inst: Instance) -> InfeasibleError:
    """An InfeasibleError naming mandatory jobs that cannot all be placed."""
    jb = inst.jobs
    names = jb.name
    mandatory = np.flatnonzero(jb.mandatory)
    alone = [j for j in mandatory if not _placeable(inst, np.array([j]))]
    if alone:
        listed = ", ".join(str(names[j]) for j in alone)
        return InfeasibleError(f"infeasible: mandatory job(s) {listed} fit nowhere on their own "
                               "(window, allowed sites or GPU capacity)", [str(names[j]) for j in alone])
    if _placeable(inst, mandatory):
        return InfeasibleError("infeasible: SCIP proved infeasibility although the mandatory jobs can be placed; "
                               "please report this instance")
    core = list(mandatory)
    for j in list(mandatory):
        trial = np.array([q for q in core if q != j])
        if not _placeable(inst, trial):
            core = list(trial)
    listed = ", ".join(str(names[j]) for j in core)
    return InfeasibleError(f"infeasible: mandatory jobs {listed} cannot all be placed together "
                           "(GPU capacity over their windows)", [str(names[j]) for j in core])
