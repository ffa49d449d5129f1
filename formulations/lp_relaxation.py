"""The LP relaxation of the joint model, solved by HiGHS's interior-point method (through scipy).

Both decompositions start from it: its optimum is a valid upper bound on Z, the duals of the coupling
rows warm-start the Lagrangian multipliers, its solution rounded is a first plan, and its energy-side
values give Benders a good first separation point. Interior point with crossover because at 100 sites
SCIP's dual simplex on this LP does not finish in minutes, while HiGHS's IPM takes about 10 s
(docs/decomposition.md).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from carbonsched.instances.schema import Instance
from scipy.optimize import linprog

from .diagnose import diagnose_mandatory
from .joint import JointModel, build_joint_model
from .scip_run import run_interruptibly

log = logging.getLogger(__name__)


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
    pricing_rounds : int
        LPs solved (1 without pricing, 0 when none was).
    placements_in : int
        Placements in the last LP (−1: all, no pricing).
    """

    jm: JointModel
    optimal: bool
    bound: float
    values: np.ndarray
    row_duals: np.ndarray
    reduced_costs: np.ndarray
    seconds: float
    pricing_rounds: int = 1
    placements_in: int = -1

    def values_at(self, ids: np.ndarray) -> np.ndarray:
        """LP values at an id array of any shape, 0 where the id is −1 (no such variable)."""
        return np.where(ids >= 0, self.values[np.maximum(ids, 0)], 0.0)

    def site_emissions(self) -> np.ndarray:
        """(S,) emissions of each site in the LP solution, t CO2."""
        inst, ids = self.jm.inst, self.jm.energy.ids
        s, dt = inst.sites, inst.period_hours
        return dt * ((s.grid_co2 * self.values_at(ids["grid_import"])).sum(axis=1)
                     + s.gen_co2 * self.values_at(ids["gen"]).sum(axis=1))


#: With pricing, each job starts with its placements at this many sites (the cheapest by energy price);
#: on instances whose jobs may run at no more sites than this, pricing solves the full LP at once.
PRICING_SITES = 10
#: Pricing rounds add, per job, at most this many placements of positive reduced cost (the best ones).
PRICING_COLUMNS_PER_JOB = 40
#: A placement prices out when its reduced cost exceeds this share of its job's value ($).
PRICING_TOLERANCE = 1e-7


def initial_columns(inst: Instance, jm: JointModel, sites_per_job: int | None = None) -> np.ndarray:
    """(P,) bool: the placements a priced LP starts with.

    Every placement of a mandatory job (they must fit), and for each other job its placements at the
    ``sites_per_job`` (default :data:`PRICING_SITES`) allowed sites with the lowest mean energy cost per busy
    GPU (grid price plus carbon priced at τ, facility power): where the LP is likely to put it.
    """
    sites_per_job = PRICING_SITES if sites_per_job is None else sites_per_job
    pl, s = jm.placements, inst.sites
    mw_per_gpu = s.pue * ((s.gpu_busy_kw - s.gpu_idle_kw) / 1000.0)[:, None]
    site_cost = (mw_per_gpu * (s.price_buy + inst.carbon_price * s.grid_co2)).mean(axis=1)
    pair = pl.job.astype(np.int64) * inst.n_sites + pl.site
    pairs, first = np.unique(pair, return_index=True)
    pair_job = pl.job[first]
    order = np.lexsort((site_cost[pl.site[first]], pair_job))  # by job, then cost
    job_sorted = pair_job[order]
    starts = np.searchsorted(job_sorted, job_sorted, side="left")
    rank = np.empty(order.size, dtype=np.int64)
    rank[order] = np.arange(order.size) - starts
    keep_pair = rank < sites_per_job
    active = keep_pair[np.searchsorted(pairs, pair)]
    return active | inst.jobs.mandatory[pl.job]


def _highs(a, lhs, rhs, lb, ub, obj, left):
    eq = lhs == rhs
    up = ~eq & np.isfinite(rhs)
    lo = ~eq & np.isfinite(lhs)
    options = {"presolve": True, "disp": False}
    if left is not None:
        options["time_limit"] = max(left, 0.01)
    res = run_interruptibly(linprog, -obj, A_ub=sp.vstack([a[up], -a[lo]], format="csr"),
                         b_ub=np.concatenate([rhs[up], -lhs[lo]]), A_eq=a[eq], b_eq=rhs[eq],
                         bounds=np.column_stack([lb, ub]), method="highs-ipm", options=options)
    if res.status != 0:
        return res, None
    # ∂Z/∂(row side) = −∂(−Z)/∂b; a "≥ lhs" part was passed as −row ≤ −lhs
    n_up = int(up.sum())
    dual = np.zeros(a.shape[0])
    dual[eq] = -res.eqlin.marginals
    dual[up] -= res.ineqlin.marginals[:n_up]
    dual[lo] += res.ineqlin.marginals[n_up:]
    return res, dual


def solve_lp_relaxation(inst: Instance, *, time_limit: float | None = None, pricing: bool = False) -> JointLP:
    """Solve the LP relaxation of the joint model of ``inst``.

    Parameters
    ----------
    inst : Instance
        The instance.
    time_limit : float, optional
        Seconds for building and solving; past it the result is not optimal.
    pricing : bool, optional
        Solve by pricing placements in (column generation): start from :func:`initial_columns`, price every
        other placement at the LP's duals (reduced cost c − Aᵀy), add the best that price out, and repeat
        until none does. The bound is the restricted optimum plus every left-out placement's positive
        reduced cost (weak duality, x ≤ 1), so it is valid after any round and equal to the LP's at the
        end; a time limit that stops the pricing keeps the last round's LP and its (valid, looser) bound.
        Off by default: measured, it loses (docs/decomposition.md) — a restricted LP costs nearly as much
        as the full one, because the energy side, not the placements, makes the LP large.

    Raises
    ------
    InfeasibleError
        The LP is infeasible: the mandatory jobs cannot all be placed (names them).
    """
    t0 = time.perf_counter()
    jm = build_joint_model(inst, name=f"{inst.name}-lp", record=True)
    a, lhs, rhs, lb, ub, obj = jm.am.recorded_arrays()
    x = jm.x
    active = initial_columns(inst, jm) if pricing else np.ones(x.size, dtype=bool)
    pricing = bool(pricing) and not active.all()
    n, m = a.shape[1], a.shape[0]
    failed = JointLP(jm, False, math.inf, np.zeros(n), np.zeros(m), np.zeros(n), 0.0, 0)
    rounds, last = 0, None
    while True:
        left = None if time_limit is None else time_limit - (time.perf_counter() - t0)
        if left is not None and left <= 0.0:
            break
        ub_now = ub
        if pricing:
            ub_now = ub.copy()
            ub_now[x[~active]] = 0.0
        res, dual = _highs(a, lhs, rhs, lb, ub_now, obj, left)
        if res.status == 2:  # left-out placements are never needed for feasibility (mandatory jobs keep all)
            raise diagnose_mandatory(inst)
        if dual is None:
            break
        rounds += 1
        reduced = obj - a.T @ dual
        bound = float(-res.fun)
        if pricing:
            rc = reduced[x]
            bound += float(np.maximum(rc[~active], 0.0).sum())  # weak duality with x ≤ 1
        last = JointLP(jm, True, bound, np.asarray(res.x, dtype=np.float64), dual, reduced, 0.0, rounds,
                       int(active.sum()) if pricing else -1)
        if not pricing:
            break
        tol = PRICING_TOLERANCE * np.maximum(1.0, inst.jobs.value[jm.placements.job])
        prices_out = ~active & (rc > tol)
        log.debug("LP pricing round %d: %d of %d placements in, %d price out; bound %.2f (restricted %.2f)",
                  rounds, int(active.sum()), active.size, int(prices_out.sum()), bound, -res.fun)
        if not prices_out.any():
            break
        active |= _best_per_job(jm.placements.job, rc, prices_out, PRICING_COLUMNS_PER_JOB)
    if last is None:
        failed.seconds = time.perf_counter() - t0
        return failed
    last.seconds = time.perf_counter() - t0
    return last


def _best_per_job(job: np.ndarray, score: np.ndarray, candidate: np.ndarray, per_job: int) -> np.ndarray:
    """(P,) bool: among ``candidate`` placements, the ``per_job`` of highest ``score`` of each job."""
    idx = np.flatnonzero(candidate)
    order = idx[np.lexsort((-score[idx], job[idx]))]
    j = job[order]
    rank = np.arange(order.size) - np.searchsorted(j, j, side="left")
    out = np.zeros(job.size, dtype=bool)
    out[order[rank < per_job]] = True
    return out
