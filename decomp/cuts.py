"""Benders cut pool: storage, aging, and the hot loops (cut values at master points) in numba.

A cut of site i is θ_i ≤ constant + Σ coef·m_i with m_i the site's (5, T) master quantities
(:data:`carbonsched.formulations.site_lp.MASTER_KINDS`). Evaluating every pool cut at a master point is a batched
sparse-by-dense product that runs every iteration over the whole pool; :func:`cut_values` is its njit
kernel and :func:`cut_values_reference` the plain numpy definition it is tested against.
"""

from __future__ import annotations

import numba
import numpy as np
from carbonsched.formulations.benders_master import Cut


@numba.njit(cache=True, fastmath=True)
def cut_values(site: np.ndarray, constant: np.ndarray, coef: np.ndarray, point: np.ndarray) -> np.ndarray:
    """Right-hand side value of each cut at ``point``.

    Parameters
    ----------
    site : (n,) int64
        Site of each cut.
    constant : (n,) float64
        Cut constants, $.
    coef : (n, m) float64
        Coefficients on the flattened (5·T) master quantities of the cut's site.
    point : (S, m) float64
        Master point, flattened per site.
    """
    n, m = coef.shape
    out = np.empty(n)
    for c in range(n):
        acc = constant[c]
        s = site[c]
        for q in range(m):  # branch-free: cuts are dense enough that skipping zeros costs more
            acc += coef[c, q] * point[s, q]
        out[c] = acc
    return out


def cut_values_reference(site: np.ndarray, constant: np.ndarray, coef: np.ndarray, point: np.ndarray) -> np.ndarray:
    """numpy definition of :func:`cut_values`."""
    return constant + np.einsum("nm,nm->n", coef, point[site])


@numba.njit(cache=True)
def busy_coefficients_on_placements(busy_coef: np.ndarray, site: np.ndarray, start: np.ndarray,
                                    duration: np.ndarray, gpus: np.ndarray) -> np.ndarray:
    """Project cut coefficients on U_{i,t} onto placements: Σ_{t=s}^{s+d−1} g_j·c_{i,t} per (j, i, s).

    This is the form of a cut in the space of the x variables (window sums over each job's running
    periods); used to price placements against the current cuts.
    """
    n_sites, n_periods = busy_coef.shape
    csum = np.zeros((n_sites, n_periods + 1))  # prefix sums: each window sum is one difference
    for i in range(n_sites):
        for t in range(n_periods):
            csum[i, t + 1] = csum[i, t] + busy_coef[i, t]
    out = np.empty(site.size)
    for p in range(site.size):
        out[p] = gpus[p] * (csum[site[p], start[p] + duration[p]] - csum[site[p], start[p]])
    return out


def busy_coefficients_on_placements_reference(busy_coef, site, start, duration, gpus) -> np.ndarray:
    """numpy definition (cumulative sums) of :func:`busy_coefficients_on_placements`."""
    csum = np.concatenate([np.zeros((busy_coef.shape[0], 1)), np.cumsum(busy_coef, axis=1)], axis=1)
    return gpus * (csum[site, start + duration] - csum[site, start])


class CutPool:
    """All cuts generated so far, with the iteration each was last tight (for aging)."""

    def __init__(self, n_sites: int, n_periods: int) -> None:
        self.width = 5 * n_periods
        self.site = np.zeros(0, dtype=np.int64)
        self.constant = np.zeros(0)
        self.coef = np.zeros((0, self.width))
        self.last_tight = np.zeros(0, dtype=np.int64)
        self._violated = np.zeros(0, dtype=bool)

    @property
    def size(self) -> int:
        return int(self.site.size)

    def add(self, cuts: list, iteration: int) -> None:
        if not cuts:
            return
        self.site = np.concatenate([self.site, [c.site for c in cuts]]).astype(np.int64)
        self.constant = np.concatenate([self.constant, [c.constant for c in cuts]])
        self.coef = np.concatenate([self.coef, np.stack([c.coef.reshape(-1) for c in cuts])])
        self.last_tight = np.concatenate([self.last_tight, np.full(len(cuts), iteration, dtype=np.int64)])
        self._violated = np.concatenate([self._violated, np.ones(len(cuts), dtype=bool)])

    def violation_of(self, cuts: list, point: np.ndarray, theta: np.ndarray) -> np.ndarray:
        """θ_i − cut value at ``point`` for each of ``cuts`` (positive: the cut cuts the point off)."""
        if not cuts:
            return np.zeros(0)
        site = np.array([c.site for c in cuts], dtype=np.int64)
        const = np.array([c.constant for c in cuts])
        coef = np.stack([c.coef.reshape(-1) for c in cuts])
        flat = point.reshape(point.shape[0], -1)
        return theta[site] - cut_values(site, const, np.ascontiguousarray(coef), np.ascontiguousarray(flat))

    def touch(self, point: np.ndarray, theta: np.ndarray, iteration: int, rel_tol: float = 1e-6) -> None:
        """Mark the pool cuts tight at ``point`` (aging) and those it violates (to re-enter the master)."""
        if not self.size:
            return
        flat = np.ascontiguousarray(point.reshape(point.shape[0], -1))
        slack = cut_values(self.site, self.constant, self.coef, flat) - theta[self.site]
        tol = rel_tol * np.maximum(1.0, np.abs(theta[self.site]))
        self.last_tight[slack <= tol] = iteration
        self._violated = slack < -tol

    def active(self, iteration: int, age_limit: int) -> list[Cut]:
        """Cuts for the next master: recently tight, new, or violated at the last point."""
        keep = (iteration - self.last_tight <= age_limit) | self._violated
        T5 = self.width
        return [Cut(int(self.site[c]), float(self.constant[c]), self.coef[c].reshape(5, T5 // 5))
                for c in np.flatnonzero(keep)]
