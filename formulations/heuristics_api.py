"""Bridges from user compute plans to SCIP: a plan as a full solution of the joint model.

Use :func:`plan_to_scip_solution` inside a PySCIPOpt ``Heur`` attached to the joint model
(:func:`formulations.build_joint_model`) to submit a plan of your own while SCIP branches; the
energy dispatch is filled in optimally by :func:`formulations.evaluate`.
"""

from __future__ import annotations

from .evaluate import evaluate
from .joint import JointModel
from .plan import ComputePlan
from .solution import Solution


def plan_to_scip_solution(jm: JointModel, plan: ComputePlan | Solution, heur=None, *,
                          time_limit: float | None = None):
    """A SCIP solution of the joint model ``jm`` for ``plan``, with its optimal energy dispatch.

    Parameters
    ----------
    jm : JointModel
        The joint model (``jm.model`` is the PySCIPOpt ``Model``).
    plan : ComputePlan or Solution
        A compute plan (scored exactly with :func:`formulations.evaluate`; PlanError if it breaks a
        compute constraint) or an already scored full Solution of ``jm.inst``.
    heur : pyscipopt.Heur, optional
        The heuristic the solution is credited to (pass ``self`` from ``heurexec``).
    time_limit : float, optional
        Seconds for the energy dispatch of a plan.

    Returns
    -------
    pyscipopt.scip.Solution
        A solution in the space of the original problem (variables as created by the builder); hand
        it to ``model.trySol(sol)`` (inside a heuristic) or ``model.addSol(sol)`` (before solving),
        then free it with ``model.freeSol(sol)`` if it was only tried.
    """
    sol = plan if isinstance(plan, Solution) else evaluate(jm.inst, plan, time_limit=time_limit)
    model = jm.model
    stage = model.getStage()
    # Before the transformation (stage PROBLEM = 1) createSol is already in the original space; later,
    # an original-space solution keeps presolve's fixings and aggregations out of the user's way.
    start = model.createSol(heur) if stage <= 1 else model.createOrigSol(heur)
    for var, val in zip(jm.am.variables(), jm.values_of(sol), strict=True):
        if val != 0.0:
            model.setSolVal(start, var, float(val))
    return start


__all__ = ["plan_to_scip_solution"]
