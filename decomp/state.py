"""The one state object every decomposition shares with its hooks and primal heuristics."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from carbonsched.formulations.solution import Solution, compute_gap
from carbonsched.instances.schema import Instance


@dataclass
class SolveState:
    """What every hook and heuristic sees, for every method.

    Attributes
    ----------
    inst : Instance
        The instance.
    method : str
        ``benders``, ``lagrangian``, ...
    phase : str
        What the method is doing (``start``, ``lp``, ``root``, ``master``, ``iteration``, ``closing``,
        ``done``).
    iteration : int
        The method's iteration counter.
    seconds : float
        Wall time since the start, s.
    bound : float
        Best proven upper bound on the optimal Z, $.
    incumbent : Solution or None
        Best feasible solution, scored exactly.
    results : object
        The last per-site subproblem results (method-specific: ``SiteResult`` by site for the
        Lagrangian, site-LP results for Benders), or None.
    info : dict
        Method-specific figures (``lagrangian_bound``, ``lp_bound``, ``cuts``, ``multipliers``, ...).
    rejected : list of (str, str)
        (source, reason) of every offered plan that broke a constraint.
    """

    inst: Instance
    method: str
    phase: str = "start"
    iteration: int = 0
    seconds: float = 0.0
    bound: float = math.inf
    incumbent: Solution | None = None
    results: Any = None
    info: dict[str, Any] = field(default_factory=dict)
    rejected: list[tuple[str, str]] = field(default_factory=list)

    @property
    def primal(self) -> float:
        """Z of the incumbent, $ (``-inf`` without one)."""
        return -math.inf if self.incumbent is None else float(self.incumbent.objective)

    @property
    def gap(self) -> float:
        """SOLUTION.md gap, ``inf`` while either side is missing."""
        return compute_gap(self.primal, self.bound)
