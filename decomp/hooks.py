"""The one extension point of every decomposition: a hooks class whose methods do nothing by default.

Subclass :class:`DecompositionHooks`, override the phases you need and pass an instance as ``hooks=``
to :func:`~carbonsched.decomp.benders.solve_benders` or
:func:`~carbonsched.decomp.lagrangian.solve_lagrangian` (or to :class:`~carbonsched.decomp.engine.Hub`).
Every method receives the same :class:`~carbonsched.decomp.state.SolveState`, whichever method runs.
``post_iteration`` may return a :class:`~carbonsched.formulations.plan.ComputePlan` (or a list of
them): the engine scores each exactly and keeps it if it improves the incumbent; a plan that breaks a
constraint is rejected with the reason logged as a warning and kept in ``state.rejected``.
"""

from __future__ import annotations

from typing import Any

from carbonsched.formulations.solution import Solution

from .state import SolveState


class DecompositionHooks:
    """No-op hooks, named by phase; override what you need."""

    def pre_iteration(self, state: SolveState) -> None:
        """Before each iteration of every phase (Benders root rounds and master iterations alike)."""

    def post_subproblems(self, state: SolveState, results: Any) -> None:
        """After the site subproblems of an iteration are solved (``results``: per-site results)."""

    def post_iteration(self, state: SolveState) -> Any:
        """After each iteration of every phase; return a ComputePlan (or a list of them) to offer, or None."""
        return None

    def post_solve(self, state: SolveState, solution: Solution) -> None:
        """Once, with the final solution, before it is returned."""
