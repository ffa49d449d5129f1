"""The monolithic solve: the joint MILP in SCIP, from instance to checked, scored Solution."""

from __future__ import annotations

import math
import time

import numpy as np
from carbonsched.errors import InfeasibleError, NoSolutionError
from carbonsched.instances.schema import Instance

from .diagnose import diagnose_mandatory
from .energy import has_battery
from .evaluate import evaluate
from .joint import JointModel, build_joint_model
from .plan import ComputePlan
from .scip_run import ProgressFn, configure, run_scip
from .solution import Solution, Trace


def solve_monolithic(
    inst: Instance,
    *,
    time_limit: float | None = None,
    gap: float | None = 1e-6,
    threads: int = 1,
    seed: int = 0,
    progress: ProgressFn | None = None,
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
    progress : callable, optional
        ``progress(seconds, primal, dual, nodes)`` at most every 2 s.
    method : str
        Name recorded in the solution.
    certified : bool
        Whether SCIP's dual bound is a valid bound for the model the solution answers to (false
        for ablations scored on the original instance).
    scored_on : Instance, optional
        Instance whose objective scores the solution (default ``inst``).
    initial : ComputePlan, optional
        A plan scored exactly (:func:`formulations.evaluate`) and given to SCIP as its first incumbent.

    Raises
    ------
    InfeasibleError
        Mandatory jobs cannot all be placed (status 3; names them).
    NoSolutionError
        A limit was reached before any solution was found (status 4).
    """
    t0 = time.perf_counter()
    jm = build_joint_model(inst)
    build_seconds = time.perf_counter() - t0
    remaining = None if time_limit is None else max(time_limit - build_seconds, 0.0)
    configure(jm.model, time_limit=remaining, gap=gap, threads=threads, seed=seed)
    initial_primal = None
    if initial is not None:
        start = evaluate(inst, initial, time_limit=remaining)
        initial_primal = seed_scip(jm, start)
    run = run_scip(jm.model, progress=progress, t0=t0, initial_primal=initial_primal)
    if run.scip_status in ("infeasible", "inforunbd"):
        raise diagnose_mandatory(inst)
    if not run.has_solution:
        raise NoSolutionError(
            f"no feasible solution found before the solve stopped ({run.status}, {run.wall_seconds:.1f} s)"
        )
    return solution_from_model(
        jm, scored_on or inst, method=method, status=run.status, bound=run.dual if certified else math.inf,
        certified=certified, wall_seconds=run.wall_seconds, trace=Trace(**run.trace),
        extra={"build_seconds": build_seconds, "nodes": run.nodes, "scip_status": run.scip_status},
    )


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
