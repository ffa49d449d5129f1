"""Bound bookkeeping shared by iterative methods: best bound, best solution, the unified trace.

A decomposition proves upper bounds (maximization) and finds feasible solutions as it iterates; this
keeps the best of each, the SOLUTION.md trace rows and the gap, in one place.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
from carbonsched.formulations.solution import Solution, Trace, compute_gap


@dataclass
class BoundTracker:
    """Best proven upper bound and best feasible solution of a maximization, with the trace.

    Attributes
    ----------
    t0 : float
        ``time.perf_counter()`` at the start of the solve, s.
    bound : float
        Best (smallest) proven upper bound on the optimal Z, $ (``inf`` before the first).
    incumbent : Solution or None
        Best feasible solution found, scored exactly.
    """

    t0: float = field(default_factory=time.perf_counter)
    bound: float = math.inf
    incumbent: Solution | None = None
    _rows: list[tuple[float, float, float, int]] = field(default_factory=list)

    @property
    def primal(self) -> float:
        """Z of the incumbent, $ (``-inf`` without one)."""
        return -math.inf if self.incumbent is None else float(self.incumbent.objective)

    @property
    def gap(self) -> float:
        """SOLUTION.md gap (bound − primal) / max(1, |primal|), ``inf`` while either is missing."""
        return compute_gap(self.primal, self.bound)

    @property
    def seconds(self) -> float:
        """Wall time since ``t0``, s."""
        return time.perf_counter() - self.t0

    def offer_bound(self, bound: float) -> bool:
        """Record a proven upper bound; True when it improves the best one."""
        if bound < self.bound:
            self.bound = float(bound)
            return True
        return False

    def offer_solution(self, sol: Solution) -> bool:
        """Record a feasible, exactly scored solution; True when it improves the incumbent."""
        if sol.objective > self.primal:
            self.incumbent = sol
            return True
        return False

    def record(self, iteration: int) -> None:
        """Append a trace row (seconds, best primal, best bound, iteration)."""
        self._rows.append((self.seconds, self.primal, self.bound, int(iteration)))

    def extend(self, trace: Trace | None, *, offset: float, iteration: int, best: float = math.inf) -> None:
        """Append another phase's trace rows (its seconds shifted by ``offset``), merged with the best so far.

        A row's primal is the better of the phase's and the incumbent's, its bound the tighter of the
        phase's and the best proven bound; neither the phase's bound nor its solutions are adopted here.
        ``best`` caps the phase's primal values ($): the objective of the solution it returned, which is
        recomputed from its arrays and can sit float noise (1e-11 $) below the solver's own value, so that
        the trace never claims more than the phase delivered and stays monotone.
        """
        if trace is None:
            return
        primal = self.primal
        for s, p, d in zip(trace.seconds, trace.primal, trace.dual, strict=True):
            primal = max(primal, min(float(p), best))  # SCIP's own rows can differ by float noise too
            self._rows.append((offset + float(s), primal, min(self.bound, float(d)), int(iteration)))

    @property
    def n_rows(self) -> int:
        """Trace rows recorded so far."""
        return len(self._rows)

    def resume(self, trace: Trace, seconds: float, bound: float) -> None:
        """Continue a run stopped at ``seconds`` (s): its trace rows first, its proven ``bound`` ($), the clock
        counting from ``seconds``."""
        self.t0 -= float(seconds)
        self._rows = [(float(s), float(p), float(d), int(i)) for s, p, d, i in
                      zip(trace.seconds, trace.primal, trace.dual, trace.iteration, strict=True)] + self._rows
        self.offer_bound(bound)

    def trace(self) -> Trace:
        """The unified trace of the rows recorded so far."""
        if not self._rows:
            return Trace()
        s, p, d, it = (np.asarray(c) for c in zip(*self._rows, strict=True))
        return Trace(seconds=s, primal=p, dual=d, iteration=it.astype(np.int64))
