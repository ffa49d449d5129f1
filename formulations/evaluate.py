"""Exact scoring of a compute plan: optimal energy dispatch of every site for that plan.

Given a plan, the busy GPUs U and hence each site's IT load are fixed; what remains is the energy
side (constraints 5–8) of every site plus the global carbon budget (9). With a finite budget the
sites stay coupled through one row, so they are solved as one MILP; with no budget the problem is
separable and the same model is simply block-diagonal. The result is optimal for the plan (the
energy MILP is solved to SCIP's optimality tolerance), so its objective is exactly the plan's value.
"""

from __future__ import annotations

import math
import time

import numpy as np
import scipy.sparse as sp

from instances.errors import NoSolutionError
from instances.schema import Instance

from .energy import add_energy_block, it_power_mw
from .plan import ComputePlan, check_plan
from .scip_arrays import ArrayModel
from .scip_run import configure, run_scip
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


def evaluate(
    inst: Instance,
    plan: ComputePlan,
    *,
    method: str = "evaluate",
    time_limit: float | None = None,
    check: bool = True,
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
        Seconds for the energy MILP (default none: solved to optimality).
    check : bool
        Check the plan's compute constraints first (raises PlanError).

    Returns
    -------
    Solution
        Status ``optimal`` when the dispatch is proven optimal for the plan; ``bound`` is inf (a
        plan's value says nothing about the optimum of the model).
    """
    t0 = time.perf_counter()
    if check:
        check_plan(inst, plan)
    load = it_power_mw(inst, plan.busy_gpus(inst))
    am, block, _ = site_energy_model(inst, load)
    configure(am.model, time_limit=time_limit, gap=0.0)
    run = run_scip(am.model, t0=t0)
    if not run.has_solution:
        raise NoSolutionError(f"energy dispatch found no solution before the solve stopped ({run.status})")
    energy = block.extract(inst, am.values())
    return Solution.from_arrays(
        inst, method=method, status=run.status, job_site=plan.job_site, job_start=plan.job_start,
        served=plan.served, unserved=plan.unserved(inst), energy=energy, bound=math.inf, certified=False,
        wall_seconds=time.perf_counter() - t0, trace=Trace(**run.trace),
    )
