"""A warm-started LP in HiGHS for cutting-plane loops: build once from arrays, append rows, re-solve.

Benders' root loop re-solves its master LP after every round of cuts. SoPlex (SCIP's LP interface)
took 72 s for the first 100-site master LP here; HiGHS's dual simplex takes 4 s and re-solves from
the previous basis in milliseconds after rows are added (docs/decomposition.md).
"""

from __future__ import annotations

import highspy
import numpy as np
import scipy.sparse as sp


class HighsLP:
    """``max/min obj·x`` s.t. ``lhs ≤ A x ≤ rhs``, ``lb ≤ x ≤ ub`` (±inf for none), in HiGHS.

    Parameters
    ----------
    a : scipy sparse matrix (m, n)
        Row coefficients.
    lhs, rhs : (m,) float
        Row sides.
    lb, ub : (n,) float
        Column bounds.
    obj : (n,) float
        Objective coefficients.
    maximize : bool
        Sense.
    """

    def __init__(self, a: sp.spmatrix, lhs: np.ndarray, rhs: np.ndarray, lb: np.ndarray, ub: np.ndarray,
                 obj: np.ndarray, *, maximize: bool = True) -> None:
        h = highspy.Highs()
        h.setOptionValue("output_flag", False)
        h.setOptionValue("threads", 1)
        h.setOptionValue("solver", "simplex")
        lp = highspy.HighsLp()
        csc = sp.csc_matrix(a)
        lp.num_col_, lp.num_row_ = csc.shape[1], csc.shape[0]
        lp.col_cost_ = np.asarray(obj, np.float64)
        lp.col_lower_ = np.asarray(lb, np.float64)
        lp.col_upper_ = np.asarray(ub, np.float64)
        lp.row_lower_ = np.asarray(lhs, np.float64)
        lp.row_upper_ = np.asarray(rhs, np.float64)
        lp.sense_ = highspy.ObjSense.kMaximize if maximize else highspy.ObjSense.kMinimize
        lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        lp.a_matrix_.start_ = csc.indptr.astype(np.int32)
        lp.a_matrix_.index_ = csc.indices.astype(np.int32)
        lp.a_matrix_.value_ = csc.data.astype(np.float64)
        h.passModel(lp)
        self._h = h

    def solve(self, time_limit: float | None = None) -> float | None:
        """Re-solve (from the last basis); the optimal objective, or None if not solved to optimality."""
        h = self._h
        h.setOptionValue("time_limit", float("inf") if time_limit is None else max(float(time_limit), 0.01))
        h.run()
        if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
            return None
        return float(h.getInfo().objective_function_value)

    def primal(self) -> np.ndarray:
        """Column values of the last solve."""
        return np.asarray(self._h.getSolution().col_value, dtype=np.float64)

    def add_rows(self, a: sp.spmatrix, lhs: np.ndarray, rhs: np.ndarray) -> None:
        """Append rows ``lhs ≤ a x ≤ rhs`` (columns of ``a`` are column ids)."""
        csr = sp.csr_matrix(a)
        if csr.shape[0] == 0:
            return
        self._h.addRows(csr.shape[0], np.asarray(lhs, np.float64), np.asarray(rhs, np.float64), csr.nnz,
                        csr.indptr[:-1].astype(np.int32), csr.indices.astype(np.int32), csr.data.astype(np.float64))
