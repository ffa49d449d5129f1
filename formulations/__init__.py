"""Formulations: the SCIP models (joint MILP, per-site energy), plans and their exact evaluation,
the baselines, the solution object with its file format, and the independent checker."""

from .checker import CheckReport, Violation, check_solution
from .evaluate import evaluate, site_energy_model
from .evaluator import Evaluator, MoveJob, SetPlan, ShiftRouting, SwapJobs
from .heuristics_api import plan_to_scip_solution
from .joint import JointModel, build_joint_model
from .monolithic import solve_monolithic
from .plan import ComputePlan, PlanError
from .solution import Solution, SolutionError, SolveStatus, Trace, breakdown_from_arrays

__all__ = [
    "CheckReport",
    "ComputePlan",
    "Evaluator",
    "JointModel",
    "MoveJob",
    "PlanError",
    "SetPlan",
    "ShiftRouting",
    "Solution",
    "SolutionError",
    "SolveStatus",
    "SwapJobs",
    "Trace",
    "Violation",
    "breakdown_from_arrays",
    "build_joint_model",
    "check_solution",
    "evaluate",
    "plan_to_scip_solution",
    "site_energy_model",
    "solve_monolithic",
]
