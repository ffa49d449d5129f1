"""The LP relaxation of the joint model, solved by HiGHS's interior-point method (through scipy).

Both decompositions start from it: its optimum is a valid upper bound on Z, the duals of the coupling
rows warm-start the Lagrangian multipliers, its solution rounded is a first plan, and its energy-side
values give Benders a good first separation point. Interior point with crossover because at 100 sites
SCIP's dual simplex on this LP does not finish in minutes, while HiGHS's IPM takes about 10 s
(docs/decomposition.md).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from carbonsched.instances.schema import Instance
from scipy.optimize import linprog

from .diagnose import diagnose_mandatory
from .joint import JointModel, build_joint_model


@dataclass
class JointLP:
    """Outcome of :func:`solve_lp_relaxation`.

    Attributes
    ----------
    jm : JointModel
        The joint model (ids of every variable and row family).
    optimal : bool
        Whether the LP was solved to optimality (otherwise nothing below is meaningful).
    bound : float
        LP optimum, $ (a valid upper bound on the optimal Z; ``inf`` if not optimal).
    values : (n,) float
        LP solution by variable id.
    row_duals : (m,) float
        ∂Z/∂(row side) by row id, $ per unit of the row.
    reduced_costs : (n,) float
        ∂Z/∂(variable) at the duals, by variable id, $ per unit (≤ 0 for a variable at its lower bound).
    seconds : float
        Wall time including the model build, s.
    """

    jm: JointModel
    optimal: bool
    bound: float
    values: np.ndarray
    row_duals: np.ndarray
    reduced_costs: np.ndarray
    seconds: float

    def values_at(self, ids: np.ndarray) -> np.ndarray:
        """LP values at an id array of any shape, 0 where the id is −1 (no such variable)."""
        return np.where(ids >= 0, self.values[np.maximum(ids, 0)], 0.0)

    def site_emissions(self) -> np.ndarray:
        """(S,) emissions of each site in the LP solution, t CO2."""
        inst, ids = self.jm.inst, self.jm.energy.ids
        s, dt = inst.sites, inst.period_hours
        return dt * ((s.grid_co2 * self.values_at(ids["grid_import"])).sum(axis=1)
                     + s.gen_co2 * self.values_at(ids["gen"]).sum(axis=1))


def solve_lp_relaxation(inst: Instance, *, time_limit: float | None = None,
                        fixed_placements: np.ndarray | None = None) -> JointLP:
    """Solve the LP relaxation of the joint model of ``inst``.

    Parameters
    ----------
    inst : Instance
        The instance.
    time_limit : float, optional
        Seconds for building and solving; past it the result is not optimal.
    fixed_placements : (P,) float, optional
        Values at which every placement variable x (in the model's placement order) is fixed: the LP
        then optimizes routing and a relaxed dispatch for those placements (its bound is not a bound on
        the model's optimum).

    Raises
    ------
    InfeasibleError
        The LP is infeasible: the mandatory jobs cannot all be placed (names them).
    """
    t0 = time.perf_counter()
    jm = build_joint_model(inst, name=f"{inst.name}-lp", record=True)
    a, lhs, rhs, lb, ub, obj = jm.am.recorded_arrays()
    if fixed_placements is not None:
        lb, ub = lb.copy(), ub.copy()
        lb[jm.x] = ub[jm.x] = np.asarray(fixed_placements, dtype=np.float64)
    n, m = a.shape[1], a.shape[0]
    failed = JointLP(jm, False, math.inf, np.zeros(n), np.zeros(m), np.zeros(n), 0.0)
    left = None if time_limit is None else time_limit - (time.perf_counter() - t0)
    if left is not None and left <= 0.0:
        failed.seconds = time.perf_counter() - t0
        return failed
    eq = lhs == rhs
    up = ~eq & np.isfinite(rhs)
    lo = ~eq & np.isfinite(lhs)
    options = {"presolve": True, "disp": False}
    if left is not None:
        options["time_limit"] = max(left, 0.01)
    res = linprog(-obj, A_ub=sp.vstack([a[up], -a[lo]], format="csr"), b_ub=np.concatenate([rhs[up], -lhs[lo]]),
                  A_eq=a[eq], b_eq=rhs[eq], bounds=np.column_stack([lb, ub]), method="highs-ipm", options=options)
    if res.status == 2:
        raise diagnose_mandatory(inst)
    if res.status != 0:
        failed.seconds = time.perf_counter() - t0
        return failed
    # ∂Z/∂(row side) = −∂(−Z)/∂b; a "≥ lhs" part was passed as −row ≤ −lhs
    n_up = int(up.sum())
    dual = np.zeros(m)
    dual[eq] = -res.eqlin.marginals
    dual[up] -= res.ineqlin.marginals[:n_up]
    dual[lo] += res.ineqlin.marginals[n_up:]
    reduced = obj - a.T @ dual
    return JointLP(jm, True, float(-res.fun), np.asarray(res.x, dtype=np.float64), dual, reduced,
                   time.perf_counter() - t0)
