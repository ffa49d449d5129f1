"""Shipped placement heuristics, written only against the public API (living examples of docs/api.md).

- :func:`greedy.solve_greedy` — carbon- and price-aware greedy placement, scored exactly.
- :func:`local_search.solve_local_search` — job moves, swaps and routing shifts on an
  :class:`carbonsched.formulations.evaluator.Evaluator`.
"""

from .greedy import greedy_plan, solve_greedy
from .local_search import solve_local_search

__all__ = ["greedy_plan", "solve_greedy", "solve_local_search"]
