"""Extension points of the decomposition methods: a hooks object whose methods do nothing by default.

Subclass :class:`DecompositionHooks` and pass an instance as ``hooks=`` to a decomposition. Each
method receives the solver and its state (bounds, incumbent, iteration); ``post_iteration`` may return
a :class:`~formulations.plan.ComputePlan`, which the method scores exactly and keeps if it improves the
incumbent.
"""

from __future__ import annotations

from typing import Any


class DecompositionHooks:
    """No-op hooks; override what you need."""

    def pre_iteration(self, solver: Any, state: Any) -> None:
        """Before each iteration."""

    def post_subproblems(self, solver: Any, state: Any, results: Any) -> None:
        """After the site subproblems of an iteration are solved."""

    def post_iteration(self, solver: Any, state: Any):
        """After each iteration; return a ComputePlan to offer it as a candidate, or None."""
        return None

    def post_solve(self, solver: Any, state: Any) -> None:
        """At the end, before the solution is returned."""
