"""The monolithic solve: the joint MILP in SCIP, from instance to checked, scored Solution."""

from __future__ import annotations

import logging
import math
import time

import numpy as np
from carbonsched.errors import InfeasibleError, NoSolutionError
from carbonsched.instances.schema import Instance
from carbonsched.progress import ProgressCallback, ProgressReporter

from .diagnose import diagnose_mandatory
from .energy import has_battery
from .evaluate import evaluate
from .joint import JointModel, build_joint_model
from .plan import ComputePlan
from .scip_run import configure, run_scip
from .solution import Solution, Trace

log = logging.getLogger(__name__)


def solve_monolithic(
    inst: Instance,
    *,
    time_limit: float | None = None,
    gap: float | None = 1e-6,
    threads: int = 1,
    seed: int = 0,
    progress: ProgressCallback | None = None,
    method: str = "monolithic",
    certified: bool = True,
    scored_on: Instance | None = None,
    initial: ComputePlan | None = None,
) -> Solution:
    """Build and solve the joint MILP of ``inst`` with SCIP.

    Parameters
    ----------
    inst : Instance
        The (possibly ablated) instance whose model is solved.
    time_limit : float, optional
        Wall-clock limit in seconds (model building included).
    gap : float, optional
        Relative gap at which SCIP stops (SCIP's definition, never looser than SOLUTION.md's).
    threads : int
        Threads SCIP's LP solver may use.
    seed : int
        SCIP random seed shift.
    progress : ProgressCallback, optional
        Receives a :class:`carbonsched.progress.ProgressEvent` when the model is built, at every new
        incumbent, at most every 2 s while SCIP searches (``iteration`` = B&B nodes) and at the end.
    method : str
        Name recorded in the solution.
    certified : bool
        Whether SCIP's dual bound is a valid bound for the model the solution answers to (false
        for ablations scored on the original instance).
    scored_on : Instance, optional
        Instance whose objective scores the solution (default ``inst``).
    initial : ComputePlan, optional
        A plan scored exactly (:func:`carbonsched.formulations.evaluate.evaluate`) and given to SCIP as
        its first incumbent.

    Raises
    ------
    InfeasibleError
        Mandatory jobs cannot all be placed (status 3; names them).
    NoSolutionError
        A limit was reached before any solution was found (status 4).
    """
    t0 = time.perf_counter()
    report = ProgressReporter(progress, t0)
    jm = build_joint_model(inst)
    build_seconds = time.perf_counter() - t0
    log.info("%s: joint MILP built in %.2f s (%d variables, %d rows)", inst.name, build_seconds, jm.am.n_vars,
             jm.am.n_rows)
    report("build", -math.inf, math.inf, message=f"joint MILP: {jm.am.n_vars} variables, {jm.am.n_rows} rows",
           force=True)
    remaining = None if time_limit is None else max(time_limit - build_seconds, 0.0)
    start = None if initial is None else evaluate(inst, initial, time_limit=remaining)
    # SCIP's clock starts at optimize: its limit is what the build and the scoring of the initial plan left
    # (given the limit before the scoring, a closing phase ran 2 s past a 120 s run's limit)
    remaining = None if time_limit is None else max(time_limit - (time.perf_counter() - t0), 0.0)
    configure(jm.model, time_limit=remaining, gap=gap, threads=threads, seed=seed)
    initial_primal = None
    if start is not None:
        initial_primal = seed_scip(jm, start)
        log.info("initial plan scored %.2f $; %s by SCIP", start.objective,
                 "accepted" if initial_primal is not None else "refused")
    run = run_scip(jm.model, progress=progress, t0=t0, initial_primal=initial_primal, raise_interrupt=False)
    log.info("SCIP: %s after %.2f s and %d nodes", run.scip_status, run.wall_seconds, run.nodes)
    if run.scip_status in ("infeasible", "inforunbd"):
        raise diagnose_mandatory(inst)
    if not run.has_solution:
        raise NoSolutionError(
            f"no feasible solution found before the solve stopped ({run.status}, {run.wall_seconds:.1f} s)"
        )
    sol = solution_from_model(
        jm, scored_on or inst, method=method, status=run.status, bound=run.dual if certified else math.inf,
        certified=certified, wall_seconds=run.wall_seconds, trace=Trace(**run.trace),
        extra={"build_seconds": build_seconds, "nodes": run.nodes, "scip_status": run.scip_status},
    )
    report("done", sol.objective, sol.bound, run.nodes, message=sol.status.value, force=True)
    return sol


def seed_scip(jm: JointModel, sol: Solution) -> float | None:
    """Hand a full solution to SCIP as a starting incumbent; its objective if SCIP accepted it."""
    accepted = jm.am.add_solution(jm.values_of(sol))
    return sol.objective if accepted else None


def solution_from_model(jm: JointModel, inst: Instance, **kwargs) -> Solution:
    """Read the incumbent of a solved joint model and score it on ``inst``.

    Sites whose battery the model did not have (an ablated instance) keep ``inst``'s soc0.
    """
    arrays = jm.extract(jm.am.values())
    energy = arrays.pop("energy")
    no_bat = ~has_battery(jm.inst)
    energy["soc"][no_bat] = np.asarray(inst.sites.bat_soc0_mwh)[no_bat, None]
    return Solution.from_arrays(inst, energy=energy, **arrays, **kwargs)


__all__ = ["InfeasibleError", "solve_monolithic", "solution_from_model"]
