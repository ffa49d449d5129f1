"""The peer: SCIP's built-in Benders decomposition on the same split as :mod:`carbonsched.decomp.benders`.

The master is :func:`carbonsched.formulations.benders_master.build_benders_master` with θ fixed at 0 (SCIP adds its
own auxiliary variables, one per site). Subproblem i is the energy side of site i
(:func:`carbonsched.formulations.energy.add_energy_block`) whose copies of the master quantities — busy GPUs U, the
commitment binaries γ, β, on, su and the allowance e_i — carry the master's variable names, which is how
SCIP's default Benders links them. The copies are continuous: fixed by the master, they leave an LP, on
which SCIP's classical optimality and feasibility cuts are exact, so the dual bound is certified.

Three settings are needed for that, each found by comparing against the monolithic optimum on the test
instances (docs/decomposition.md):

- both master and subproblems minimize −Z, because SCIP's auxiliary variables bound subproblem
  objectives from below;
- the master's dual reductions are off: the allowances e_i have no objective in the master and appear
  only in Σ e_i ≤ C, so presolve would fix them at 0;
- the MIR strengthening of optimality cuts (``benders/default/benderscut/optimality/mir``) is off: with
  it on, SCIP 10 produced cuts that cut off the optimum (e.g. a bound of 66 $ against an optimum of
  253 $ on the binding-budget edge case).

SCIP documents that its Benders is only heuristic when a subproblem keeps integer variables while the
linking variables are continuous; this split never does that, and ``certified`` is nonetheless checked
against SCIP's criterion (continuous variables, linear rows) so that a change that breaks it cannot pass
silently.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time

import numpy as np
import scipy.sparse as sp
from carbonsched.errors import NoSolutionError
from carbonsched.formulations.benders_master import BendersMaster, build_benders_master
from carbonsched.formulations.diagnose import diagnose_mandatory
from carbonsched.formulations.energy import add_energy_block
from carbonsched.formulations.evaluate import evaluate
from carbonsched.formulations.scip_arrays import ArrayModel
from carbonsched.formulations.scip_run import configure, run_scip
from carbonsched.formulations.solution import Solution, SolveStatus, Trace, compute_gap
from carbonsched.instances.schema import Instance
from carbonsched.progress import ProgressCallback, ProgressEvent, ProgressReporter

log = logging.getLogger(__name__)

#: Energy-side commitment variables that live in the master (BendersMaster attribute = EnergyBlock key).
_LINKED = ("bat_charging", "grid_importing", "gen_on", "gen_start")
#: Share of the time limit SCIP may use; the rest is kept for the exact scoring of its plan.
SCIP_SHARE = 0.85
#: Rows that involve master variables only: they stay in the master.
_MASTER_ONLY_ROWS = ("startup", "min_up", "min_down")


def site_energy_subproblem(inst: Instance, master: BendersMaster, site: int) -> ArrayModel:
    """Energy side of ``site`` as an LP whose linking variables are named as in ``master``.

    Parameters
    ----------
    inst : Instance
        The instance.
    master : BendersMaster
        The master whose variable names the linking copies take.
    site : int
        Site index.

    Returns
    -------
    ArrayModel
        A minimization of −φ_i ($): the negated energy value of the site.
    """
    S, T = inst.n_sites, inst.n_periods
    master_vars = master.am.variables()
    am = ArrayModel(f"{inst.name}-site{site}", maximize=True)
    busy = np.full((S, T), -1, dtype=np.int64)
    busy[site] = am.add_vars("U", np.zeros(T), float(inst.sites.gpus[site]), 0.0, "C")
    block = add_energy_block(am, inst, np.array([site]), busy_gpu_ids=busy)
    link_ids = [busy[site]]
    master_ids = [master.compute.busy[site]]
    for kind in _LINKED:
        sub_row, master_row = block.ids[kind][site], getattr(master, kind)[site]
        if not np.array_equal(sub_row >= 0, master_row >= 0):
            raise AssertionError(f"site {site}: master and subproblem disagree on which {kind} variables exist")
        link_ids.append(sub_row[sub_row >= 0])
        master_ids.append(master_row[master_row >= 0])
    su = block.ids["gen_start"][site]
    if (su >= 0).any():
        am.set_var_data(su[su >= 0], obj=0.0)  # start-up costs are paid in the master
    if math.isfinite(inst.carbon_budget_t):
        e = am.add_vars("e", np.zeros(1), inst.carbon_budget_t, 0.0, "C")
        cid, coef = block.emission_terms(inst)
        row = sp.csr_matrix((np.concatenate([coef, [-1.0]]),
                             (np.zeros(cid.size + 1, np.int64), np.concatenate([cid, e]))), shape=(1, am.n_vars))
        am.add_rows("allowance", row, -np.inf, 0.0)
        link_ids.append(e)
        master_ids.append(master.allowance[site:site + 1])
    link = np.concatenate(link_ids).astype(np.int64)
    am.rename_vars(link, [master_vars[int(i)].name for i in np.concatenate(master_ids)])
    model = am.model
    for cons in model.getConss():
        if cons.name.startswith(_MASTER_ONLY_ROWS):
            model.delCons(cons)
    for var in am.variables():  # fixed by the master: continuous copies leave an LP
        if var.vtype() != "CONTINUOUS":
            model.chgVarType(var, "C")
    _minimize_negated(am)
    return am


def _minimize_negated(am: ArrayModel) -> None:
    """max Z → min −Z."""
    obj = np.array([var.getObj() for var in am.variables()])
    nonzero = np.flatnonzero(obj)
    am.set_var_data(nonzero, obj=-obj[nonzero])
    am.model.setMinimize()


def solve_scip_benders(inst: Instance, *, time_limit: float | None = None, gap: float = 1e-4, seed: int = 0,
                       progress: ProgressCallback | None = None) -> Solution:
    """Solve with SCIP's default Benders on the commitment-in-master split.

    Parameters
    ----------
    inst : Instance
        The instance.
    time_limit : float, optional
        Wall-clock limit, s, for the whole call (building, SCIP and the exact scoring of the plan).
    gap : float
        Relative gap at which SCIP stops.
    seed : int
        SCIP's random seed shift.
    progress : ProgressCallback, optional
        Receives a :class:`carbonsched.progress.ProgressEvent` in benefit terms ($): when the models
        are built, at every new incumbent of SCIP and at most every 2 s while it searches
        (``iteration`` = B&B nodes), when the plan is scored and at the end.

    Returns
    -------
    Solution
        ``objective`` is the exact value of the master's plan (:func:`carbonsched.formulations.evaluate.evaluate`),
        which is at least SCIP's own primal value; ``bound`` is SCIP's dual bound.
    """
    t0 = time.perf_counter()
    report = ProgressReporter(progress, t0)
    master = build_benders_master(inst)
    master.am.set_var_data(master.theta, obj=0.0, lb=0.0, ub=0.0)
    subproblems = {i: site_energy_subproblem(inst, master, i) for i in range(inst.n_sites)}
    for sub in subproblems.values():
        sub.model.hideOutput()
    _minimize_negated(master.am)
    model = master.model
    # a list of subproblems crashes PySCIPOpt 6.3; a dict works
    model.initBendersDefault({i: sub.model for i, sub in subproblems.items()})
    # SCIP gets the time left minus a reserve for scoring its plan exactly (an energy MILP per site)
    remaining = None if time_limit is None else max(SCIP_SHARE * time_limit - (time.perf_counter() - t0), 0.0)
    configure(model, time_limit=remaining, gap=gap, seed=seed)
    model.setParam("misc/allowstrongdualreds", False)
    model.setParam("misc/allowweakdualreds", False)
    model.setParam("benders/default/benderscut/optimality/mir", False)
    log.info("%s: Benders master and %d site subproblems built in %.2f s", inst.name, len(subproblems),
             time.perf_counter() - t0)
    report("build", -math.inf, math.inf, message=f"master and {len(subproblems)} site LPs", force=True)

    def negated(event: ProgressEvent) -> None:  # SCIP minimizes −Z
        assert progress is not None
        progress(dataclasses.replace(event, primal=-event.primal, bound=-event.bound))

    try:
        run = run_scip(model, progress=None if progress is None else negated, t0=t0, raise_interrupt=False)
    except Exception as exc:  # noqa: BLE001 - PySCIPOpt raises a bare Exception for a SCIP error code
        if not str(exc).startswith("SCIP"):
            raise
        # SCIP's Benders stops the whole solve on an LP error in a subproblem (seen on 6 sites × 24 h with
        # jobs at every site): the run has no result to keep
        raise NoSolutionError(f"scip-benders: SCIP stopped with an error ({exc}); try --method benders") from None
    log.info("SCIP Benders: %s after %.2f s and %d nodes", run.scip_status, run.wall_seconds, run.nodes)
    if run.scip_status in ("infeasible", "inforunbd"):
        raise diagnose_mandatory(inst)
    if not run.has_solution:
        raise NoSolutionError(f"scip-benders found no solution before it stopped ({run.status})")
    convex = all(_subproblem_is_convex(sub) for sub in subproblems.values())
    plan = master.plan(master.am.values())
    left = None if time_limit is None else max(time_limit - (time.perf_counter() - t0), 1.0)
    report("scoring", -run.primal, -run.dual, run.nodes, message="exact evaluation of the master's plan",
           force=True)
    sol = evaluate(inst, plan, method="scip-benders", time_limit=left)
    sol.status = SolveStatus(run.status) if run.status in SolveStatus._value2member_map_ else SolveStatus.TIME_LIMIT
    sol.bound = -run.dual
    sol.gap = compute_gap(sol.objective, sol.bound)
    sol.certified = bool(convex and math.isfinite(sol.bound))
    sol.wall_seconds = time.perf_counter() - t0
    tr = run.trace
    sol.trace = Trace(seconds=tr["seconds"], primal=-tr["primal"], dual=-tr["dual"], iteration=tr["iteration"])
    sol.trace.append(sol.wall_seconds, max(sol.objective, float(-tr["primal"][-1])), sol.bound, run.nodes)
    report("done", sol.objective, sol.bound, run.nodes, message=sol.status.value, force=True)
    return sol


def _subproblem_is_convex(sub: ArrayModel) -> bool:
    """SCIP's criterion: a subproblem with integer variables or non-linear rows makes its Benders heuristic."""
    model = sub.model
    return all(v.vtype() == "CONTINUOUS" for v in model.getVars()) and all(
        c.getConshdlrName() == "linear" for c in model.getConss())
