"""An LP kept alive between solves in HiGHS: rows appended, bounds and right-hand sides changed in place.

The bundle master of the Lagrangian grows by one cut per site and iteration. Rebuilt from scratch by
``scipy.optimize.linprog`` each iteration it took 18–28 s per iteration at 300 sites after 35 iterations,
against 4–5 s for the site MILPs. Kept alive, only the new cuts and the moved box are passed to HiGHS.
The dual simplex from the last basis was measured no faster than a fresh solve (the box moves every
column bound); the interior point without crossover was 3–4 times faster on the same masters, so the
bundle uses it (docs/decomposition.md, "Multiplier updates"). The routing LP of a plan (the joint LP with
its placements fixed) changes only placement bounds from one plan to the next, and there the dual simplex
from the last basis is about ten times faster than a fresh solve.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from carbonsched.formulations.scip_run import run_interruptibly

try:
    import highspy
except ImportError:  # pragma: no cover - a core dependency; the message names the fix
    highspy = None


log = logging.getLogger(__name__)


@contextlib.contextmanager
def _stdout_silenced() -> Iterator[None]:
    """Silence file descriptor 1 (HiGHS prints a banner from C++ when the first solver object is made)."""
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no stdout to silence
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def new_highs() -> highspy.Highs:
    """A quiet, single-threaded HiGHS object."""
    if highspy is None:  # pragma: no cover
        raise RuntimeError("highspy is not installed: pip install 'highspy>=1.7'")
    with _stdout_silenced():
        h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("threads", 1)
    return h


@dataclass
class MasterSolution:
    """An optimal solution of :class:`MasterLP`: the columns' values and reduced costs (``col_dual``, ∂objective/∂x),
    the objective, the rows' activities and duals."""

    x: np.ndarray
    objective: float
    row_activity: np.ndarray
    row_dual: np.ndarray
    col_dual: np.ndarray


class MasterLP:
    """min c·x subject to rows·x ≤ upper (or a range, see :meth:`add_rows`) and lower ≤ x ≤ upper bounds, in
    one HiGHS object (the bundle master, and the routing LP of :class:`decomp.rounding.PlacementRouter`).

    Parameters
    ----------
    cost, lower, upper : (n,) float
        Objective and column bounds (±inf allowed).
    interior : bool
        Solve by HiGHS's interior-point method without crossover (each solve from scratch) instead of
        the dual simplex from the last basis.
    """

    def __init__(self, cost: np.ndarray, lower: np.ndarray, upper: np.ndarray, *, interior: bool = False) -> None:
        self.n = int(cost.size)
        self.h = new_highs()
        self.interior = interior
        if interior:
            # no crossover: a point of the optimal face to about 1e-8, without the vertex
            self.h.setOptionValue("solver", "ipm")
            self.h.setOptionValue("run_crossover", "off")
        self.h.addVars(self.n, np.asarray(lower, np.float64), np.asarray(upper, np.float64))
        self.h.changeColsCost(self.n, np.arange(self.n, dtype=np.int32), np.asarray(cost, np.float64))
        self.rows = 0
        self.row_upper = np.zeros(0)
        self.time_limited = False

    def add_rows(self, a: sp.csr_matrix, upper: np.ndarray, lower: np.ndarray | None = None) -> np.ndarray:
        """Append the rows lower ≤ a·x ≤ upper (no lower side by default); returns their indices."""
        a = sp.csr_matrix(a)
        m = a.shape[0]
        if m == 0:
            return np.zeros(0, dtype=np.int64)
        lower = np.full(m, -np.inf) if lower is None else np.asarray(lower, np.float64)
        self.h.addRows(m, lower, np.asarray(upper, np.float64), int(a.nnz),
                       a.indptr[:-1].astype(np.int32), a.indices.astype(np.int32), a.data.astype(np.float64))
        first, self.rows = self.rows, self.rows + m
        self.row_upper = np.concatenate([self.row_upper, np.asarray(upper, np.float64)])
        return np.arange(first, self.rows, dtype=np.int64)

    def set_row_upper(self, row: int, upper: float) -> None:
        """Change the right-hand side of one row (of a row without a lower side)."""
        self.h.changeRowBounds(int(row), -np.inf, float(upper))
        self.row_upper[int(row)] = float(upper)

    def set_col_bounds(self, cols: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> None:
        """Change the bounds of the columns ``cols``."""
        cols = np.asarray(cols, dtype=np.int32)
        self.h.changeColsBounds(int(cols.size), cols, np.asarray(lower, np.float64), np.asarray(upper, np.float64))

    @property
    def status_text(self) -> str:
        """HiGHS's model status of the last solve, in words."""
        return self.h.modelStatusToString(self.h.getModelStatus())

    @property
    def seconds(self) -> float:
        """Seconds HiGHS has spent solving this LP so far, s."""
        return float(self.h.getRunTime())

    def solve(self, time_limit: float | None = None) -> MasterSolution | None:
        """Solve (the simplex from the last basis, the interior point afresh) within ``time_limit`` s.

        Returns None unless optimal; ``time_limited`` then says whether time ran out, ``status_text`` why.
        """
        # HiGHS compares its time limit with the run time summed over every solve of this object
        limit = math.inf if time_limit is None else self.seconds + max(float(time_limit), 0.0)
        self.h.setOptionValue("time_limit", limit)
        run_interruptibly(self.h.run)  # Ctrl-C is seen within 0.05 s, not after the solve
        status = self.h.getModelStatus()
        if self.interior and status not in (highspy.HighsModelStatus.kOptimal, highspy.HighsModelStatus.kTimeLimit,
                                            highspy.HighsModelStatus.kInfeasible):
            # the interior point without crossover can stop short of its tolerances ("Unknown": the 1,000-site
            # bundle master after its first 1,000 cuts); this solve is finished by the simplex instead
            log.debug("interior point ended %s: the simplex finishes this solve", self.status_text)
            self.h.setOptionValue("solver", "simplex")
            try:
                run_interruptibly(self.h.run)
            finally:
                self.h.setOptionValue("solver", "ipm")
            status = self.h.getModelStatus()
        self.time_limited = status == highspy.HighsModelStatus.kTimeLimit
        if status != highspy.HighsModelStatus.kOptimal:
            return None
        sol = self.h.getSolution()
        return MasterSolution(x=np.asarray(sol.col_value, dtype=np.float64),
                              objective=float(self.h.getInfo().objective_function_value),
                              row_activity=np.asarray(sol.row_value, dtype=np.float64),
                              row_dual=np.asarray(sol.row_dual, dtype=np.float64),
                              col_dual=np.asarray(sol.col_dual, dtype=np.float64))
