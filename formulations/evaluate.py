"""Exact scoring of a compute plan: optimal energy dispatch of every site for that plan.

Given a plan, the busy GPUs U and hence each site's IT load are fixed; what remains is the energy
side (constraints 5–8) of every site plus the global carbon budget (9).

- **Finite budget C**: the sites stay coupled through the one carbon row, so the energy side is
  solved as one MILP over all sites. (Pricing the carbon row and solving sites apart — a Lagrangian
  or a bisection on the carbon price — is *not* exact for a MILP: the dual gap can be positive. It
  is deliberately not used.)
- **C = inf**: the energy side is separable; each site's MILP is solved on its own, in this process or
  on the project's parallel layer (:class:`decomp.parallel.SitePool`, ``config=``/``pool=``). The sum
  of the per-site optima is the optimum of the block-diagonal MILP.

Either way the result is optimal for the plan (solved with relative gap 0, to SCIP's tolerances), so
its objective is exactly the plan's value.
"""

from __future__ import annotations

import math
import time

import numpy as np
import scipy.sparse as sp
from carbonsched.errors import InputError, NoSolutionError
from carbonsched.instances.schema import Instance

from .energy import add_energy_block, idle_energy_arrays, it_power_mw
from .plan import ComputePlan, PlanError, check_plan
from .scip_arrays import ArrayModel
from .scip_run import STATUS_MAP, configure, note_scip_status, run_scip
from .solution import Solution, Trace


def site_energy_model(inst: Instance, it_load_mw: np.ndarray, *, sites: np.ndarray | None = None,
                      carbon_allowance_t: float | None = None, carbon_price: float | None = None):
    """The energy dispatch MILP of ``sites`` (default all) for a fixed IT load profile.

    Parameters
    ----------
    inst : Instance
        Site data.
    it_load_mw : (S,T) float
        IT power P^IT in MW (rows of sites outside ``sites`` are ignored).
    sites : (n,) int, optional
        The sites modelled; one site gives the per-site energy subproblem of the decompositions.
    carbon_allowance_t : float, optional
        Emission cap of these sites in t CO2 (default: the instance's global budget ``C``).
    carbon_price : float, optional
        τ in $/t (default the instance's).

    Returns
    -------
    (ArrayModel, EnergyBlock, carbon_row_ids)
        The carbon row's right-hand side can be changed in place for a new allowance.
    """
    sites = np.arange(inst.n_sites) if sites is None else np.asarray(sites, dtype=np.int64)
    am = ArrayModel(f"{inst.name}-energy", maximize=True)
    block = add_energy_block(am, inst, sites, it_load_mw=it_load_mw, carbon_price=carbon_price)
    cap = inst.carbon_budget_t if carbon_allowance_t is None else carbon_allowance_t
    carbon_rows = np.zeros(0, np.int64)
    if math.isfinite(cap):
        cid, coef = block.emission_terms(inst)
        row = sp.csr_matrix((coef, (np.zeros(cid.size, np.int64), cid)), shape=(1, am.n_vars))
        carbon_rows = am.add_rows("carbon", row, -np.inf, cap)
    return am, block, carbon_rows


class SiteEnergySolver:
    """The energy MILP of one site without carbon row, built once and re-solved for new load profiles.

    The balance rows' sides are changed in place between solves, so the model is built once per
    site. This is the site solver of :func:`evaluate` and :class:`formulations.evaluator.Evaluator`
    when the carbon budget is infinite (and of the evaluator's exact pre-check when it is finite).

    Parameters
    ----------
    inst : Instance
        The instance.
    site : int
        Site index.
    seed : int
        SCIP random seed shift (solves are deterministic for a given seed).
    """

    def __init__(self, inst: Instance, site: int, *, seed: int = 0) -> None:
        self.inst = inst
        self.site = int(site)
        self.seed = seed
        zero = np.zeros((inst.n_sites, inst.n_periods))
        self.am, self.block, _ = site_energy_model(inst, zero, sites=np.array([self.site]),
                                                   carbon_allowance_t=math.inf)
        self.rows = self.block.balance[self.site]
        self._solved = False

    def solve(self, it_load_mw: np.ndarray, time_limit: float | None = None) -> dict:
        """Optimal dispatch of the site for IT load ``it_load_mw`` (T,) in MW.

        Returns
        -------
        dict
            ``status`` (SOLUTION.md status), ``has_solution`` (bool), ``energy`` (name -> (T,) arrays of
            SOLUTION.md's ``/energy``), ``objective`` ($, the energy terms of Z incl. τ·Em of the site),
            ``emissions_t`` (t CO2), ``seconds`` (s).
        """
        t0 = time.perf_counter()
        m = self.am.model
        if self._solved:
            m.freeTransform()
        self._solved = True
        rhs = -self.inst.sites.pue[self.site] * np.asarray(it_load_mw, dtype=np.float64)
        self.am.set_row_bounds(self.rows, lhs=rhs, rhs=rhs)
        configure(m, time_limit=time_limit, gap=0.0, seed=self.seed, catch_interrupt=True)
        m.optimize()
        status = m.getStatus()
        note_scip_status(status)  # Ctrl-C during a site solve ends the loop of solves
        out = {"status": STATUS_MAP.get(status, status), "has_solution": m.getNSols() > 0,
               "energy": None, "objective": -math.inf, "emissions_t": math.nan}
        if out["has_solution"]:
            energy = self.block.extract(self.inst, self.am.values())
            out["energy"] = {name: arr[self.site].copy() for name, arr in energy.items()}
            out["objective"] = float(m.getObjVal())
            dt = self.inst.period_hours
            s = self.inst.sites
            out["emissions_t"] = float(dt * (s.grid_co2[self.site] @ energy["grid_import"][self.site]
                                             + s.gen_co2[self.site] * energy["gen"][self.site].sum()))
        out["seconds"] = time.perf_counter() - t0
        return out


def make_site_energy_solver(inst: Instance, site: int, seed: int = 0) -> SiteEnergySolver:
    """Factory for :class:`decomp.parallel.SitePool` (module level, so that it pickles)."""
    return SiteEnergySolver(inst, site, seed=seed)


#: Cache key of the per-site energy solvers on a SitePool.
SITE_ENERGY_KIND = "evaluate-energy"


def solve_sites_separately(inst: Instance, it_load_mw: np.ndarray, sites, *, time_limit: float | None = None,
                           pool=None, solvers: dict[int, SiteEnergySolver] | None = None) -> dict[int, dict]:
    """Per-site energy MILPs (no carbon row) for ``sites``; results of :meth:`SiteEnergySolver.solve` by site.

    Parameters
    ----------
    inst : Instance
        The instance.
    it_load_mw : (S,T) float
        IT power P^IT, MW.
    sites : iterable of int
        Sites to solve.
    time_limit : float, optional
        Seconds per site solve.
    pool : decomp.parallel.SitePool, optional
        Solve on its workers (site models stay alive there between calls).
    solvers : dict, optional
        In-process site solvers to reuse (filled on first use); ignored with ``pool``.
    """
    sites = [int(i) for i in sites]
    if pool is not None:
        calls = {i: ((it_load_mw[i],), {"time_limit": time_limit}) for i in sites}
        return pool.map(SITE_ENERGY_KIND, make_site_energy_solver, "solve", calls)
    solvers = {} if solvers is None else solvers
    out = {}
    for i in sites:
        if i not in solvers:
            solvers[i] = SiteEnergySolver(inst, i)
        out[i] = solvers[i].solve(it_load_mw[i], time_limit=time_limit)
    return out


def _worst_status(statuses) -> str:
    statuses = list(statuses)
    for st in ("interrupted", "time_limit", "iteration_limit", "gap_limit"):
        if st in statuses:
            return st
    return "optimal"


def evaluate(
    inst: Instance,
    plan: ComputePlan,
    *,
    method: str = "evaluate",
    time_limit: float | None = None,
    check: bool = True,
    config=None,
    pool=None,
) -> Solution:
    """Score ``plan`` exactly: optimal energy dispatch for it, global carbon budget respected.

    Parameters
    ----------
    inst : Instance
        The instance.
    plan : ComputePlan
        Job placements and inference routing; unserved demand is λ − Σ_i y.
    method : str
        Name recorded in the solution.
    time_limit : float, optional
        Seconds for the energy MILP (per site when C = inf; default none: solved to optimality).
    check : bool
        Check the plan's compute constraints first (raises PlanError naming the job/class/site/period).
    config : decomp.parallel.ParallelConfig, optional
        With C = inf, solve the per-site energy MILPs on a pool of this configuration (started and
        stopped inside the call; pass ``pool`` to reuse one across calls). Ignored when C is finite.
    pool : decomp.parallel.SitePool, optional
        An open pool to run the per-site solves on (C = inf only).

    Returns
    -------
    Solution
        Status ``optimal`` when the dispatch is proven optimal for the plan; ``bound`` is inf (a
        plan's value says nothing about the optimum of the model), ``certified`` False.

    Raises
    ------
    PlanError
        The plan breaks a compute constraint (only with ``check``).
    NoSolutionError
        A time limit stopped the energy solve before any dispatch was found.
    """
    if not isinstance(plan, ComputePlan):
        raise PlanError(f"plan: must be a ComputePlan (got {type(plan).__name__})")
    if time_limit is not None and (isinstance(time_limit, bool) or not isinstance(time_limit, (int, float))
                                   or not time_limit >= 0):
        raise InputError(f"time_limit: must be a number >= 0 s or None (got {time_limit!r})")
    t0 = time.perf_counter()
    if check:
        check_plan(inst, plan)
    load = it_power_mw(inst, plan.busy_gpus(inst))
    if math.isfinite(inst.carbon_budget_t):
        am, block, _ = site_energy_model(inst, load)
        configure(am.model, time_limit=time_limit, gap=0.0)
        run = run_scip(am.model, t0=t0, record_trace=False)
        if not run.has_solution:
            raise NoSolutionError(f"energy dispatch found no solution before the solve stopped ({run.status})")
        energy = block.extract(inst, am.values())
        status = run.status
    else:
        own_pool = None
        if pool is None and config is not None and (config.n_jobs > 1 or config.backend == "dask"):
            from carbonsched.decomp.parallel import SitePool

            pool = own_pool = SitePool(inst, config)
        try:
            res = solve_sites_separately(inst, load, range(inst.n_sites), time_limit=time_limit, pool=pool)
        finally:
            if own_pool is not None:
                own_pool.close()
        missing = [inst.sites.name[i] for i, r in res.items() if not r["has_solution"]]
        if missing:
            raise NoSolutionError(f"energy dispatch of site(s) {', '.join(map(str, missing))} found no solution "
                                  "before the solve stopped")
        energy = idle_energy_arrays(inst)
        for i, r in res.items():
            for name, row in r["energy"].items():
                energy[name][i] = row
        status = _worst_status(r["status"] for r in res.values())
    sol = Solution.from_arrays(
        inst, method=method, status=status, job_site=plan.job_site, job_start=plan.job_start,
        served=plan.served, unserved=plan.unserved(inst), energy=energy, bound=math.inf, certified=False,
        wall_seconds=time.perf_counter() - t0,
    )
    # one trace row: the plan's value Z (the energy MILP's own objective is only part of Z)
    sol.trace = Trace()
    sol.trace.append(sol.wall_seconds, sol.objective, math.inf, 0)
    return sol
