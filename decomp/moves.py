"""Placement moves priced by the routing LP: a local search over where and when the jobs of a plan run.

Rounding and the repair choose each job's placement one job at a time, blind to the inference the job
displaces; the routing LP (:class:`decomp.rounding.PlacementRouter`) then serves the demand around the jobs
as well as it can. Its optimum also prices every placement the plan does not use: with the placements
fixed, the LP's reduced cost of placement q is the rate at which its value would change if job j had a
little of q, and the difference to the reduced cost of j's own placement p prices the move p → q (the job's
"at most once" row cancels between them). A move of a whole job is not a little, so the prices only
propose: the best moves that touch disjoint site-periods are made together, the plan is routed again
(the dual simplex from the last basis, 0.1-0.5 s per step at 30-300 sites), and the step is kept only if the
routing LP's value rose. After a rejected step fewer moves are tried; a single move that was rejected is
not proposed again. Jobs are also added (an optional job not in the plan) and dropped (an optional job
whose placement costs more than it earns) the same way.

Measured on the joint LP's rounded plan in 120 s runs of the Lagrangian, each plan scored exactly
(docs/decomposition.md, "Placement moves"): 100 sites with jobs at 50-100 sites 2,536,402 $ -> 2,567,591 $
in 11.5 s of moves; 100 sites 2,537,384 $ -> 2,556,676 $ in 7.9 s; 30 sites 1,180,955 $ -> 1,190,932 $ in 1.8 s.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import numpy as np
from carbonsched.formulations.plan import ComputePlan, gpus_beside_jobs
from carbonsched.instances.schema import Instance

from .rounding import PlacementRouter

log = logging.getLogger(__name__)

#: Moves made together at most; the number doubles after a step that raised the routing LP's value and
#: halves after one that did not.
MOVE_BATCH = 16
#: Routing-LP solves of one search at most (without a time limit this alone ends it: the search is
#: deterministic).
MOVE_SOLVES = 150
#: The search ends after this many steps in a row that did not raise the value.
MOVE_PATIENCE = 20
#: A move is proposed only if its price exceeds this share of the plan's routing-LP value.
MOVE_MIN_GAIN = 1e-6
#: Proposals scanned per move wanted (bounds the Python loop that keeps the chosen moves apart).
SCAN_PER_MOVE = 64


@dataclass
class MoveSearch:
    """Outcome of :func:`improve_by_moves`.

    Attributes
    ----------
    plan : ComputePlan
        The best plan found, routed by the routing LP.
    value : float
        The routing LP's optimum at ``plan``, $ (an upper bound on the plan's exact Z).
    start_value : float
        The routing LP's optimum at the plan the search started from, $.
    solves, accepted : int
        Routing-LP solves (the first included) and steps kept.
    moved : int
        Jobs moved, added or dropped by the steps kept.
    seconds : float
        Wall time, s.
    """

    plan: ComputePlan
    value: float
    start_value: float
    solves: int = 1
    accepted: int = 0
    moved: int = 0
    seconds: float = 0.0


def improve_by_moves(router: PlacementRouter, plan: ComputePlan, *, time_limit: float | None = None,
                     max_solves: int = MOVE_SOLVES, max_batch: int = MOVE_BATCH,
                     patience: int = MOVE_PATIENCE) -> MoveSearch | None:
    """Route ``plan`` and improve its placements by moves priced by the routing LP (see the module docstring).

    Parameters
    ----------
    router : PlacementRouter
        The routing LP of the plan's instance (kept alive by the caller between searches).
    plan : ComputePlan
        A plan whose jobs fit the sites' GPUs; its routing is ignored.
    time_limit : float, optional
        Seconds in all; the best plan found is returned when they run out.
    max_solves, max_batch, patience : int
        Routing-LP solves at most, moves per step at most, steps in a row without a rise before stopping.

    Returns
    -------
    MoveSearch or None
        None if ``plan`` itself could not be routed in time.
    """
    t0 = time.perf_counter()
    deadline = None if time_limit is None else t0 + max(float(time_limit), 0.0)

    def left() -> float | None:
        return None if deadline is None else deadline - time.perf_counter()

    routed = router.route(plan, time_limit=left())
    if routed is None:
        return None
    inst, pl = router.inst, router.placements
    best = MoveSearch(routed, router.value, router.value)
    gain = router.placement_gain.copy()
    tabu = np.zeros(pl.size + inst.n_jobs, dtype=bool)  # placements, then "drop job j"
    batch, idle = max_batch, 0
    while best.solves < max_solves and idle < patience:
        remaining = left()
        if remaining is not None and remaining <= 0.0:
            break
        job, site, start, keys = propose_moves(inst, router, best.plan, gain, tabu, batch,
                                               MOVE_MIN_GAIN * max(abs(best.value), 1.0))
        if job.size == 0:
            break
        job_site, job_start = best.plan.job_site.copy(), best.plan.job_start.copy()
        job_site[job], job_start[job] = site, start
        trial = router.route(ComputePlan(job_site, job_start, best.plan.served), time_limit=left())
        best.solves += 1
        if trial is None:  # out of time (or a failed solve): the best plan so far stands
            break
        if router.value > best.value + 1e-9 * max(abs(best.value), 1.0):
            best.plan, best.value = trial, router.value
            best.accepted += 1
            best.moved += int(job.size)
            gain = router.placement_gain.copy()
            batch, idle = min(2 * batch, max_batch), 0
        else:
            if job.size == 1:
                tabu[keys[0]] = True
            batch, idle = max(1, job.size // 2), idle + 1
    best.seconds = time.perf_counter() - t0
    log.debug("placement moves: %d solve(s), %d step(s) kept, %d job(s) moved, routing LP %.2f -> %.2f $ in %.2f s",
              best.solves, best.accepted, best.moved, best.start_value, best.value, best.seconds)
    return best


def route_and_improve(inst: Instance, plan: ComputePlan, *, time_limit: float | None = None,
                      routing: np.ndarray | None = None) -> ComputePlan | None:
    """``plan`` re-routed and improved by :func:`improve_by_moves` on a routing LP built for it (and then
    dropped; over the routing columns ``routing`` only, see :class:`~decomp.rounding.PlacementRouter`); the
    build counts against ``time_limit``. None if the plan could not be routed in time."""
    t0 = time.perf_counter()
    router = PlacementRouter(inst, routing=routing)
    left = None if time_limit is None else max(time_limit - (time.perf_counter() - t0), 0.0)
    found = improve_by_moves(router, plan, time_limit=left)
    return None if found is None else found.plan


def propose_moves(inst: Instance, router: PlacementRouter, plan: ComputePlan, gain: np.ndarray, tabu: np.ndarray,
                  batch: int, min_gain: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The best ``batch`` moves at the prices ``gain`` that fit the GPUs and touch disjoint site-periods.

    Returns
    -------
    job, site, start, key : (m,) int arrays
        Each move: the job, its new site and start (−1, −1: dropped), and its key in ``tabu`` (the placement's
        index, or P + j for dropping job j).
    """
    pl, jb = router.placements, inst.jobs
    P, T = pl.size, inst.n_periods
    site, start = plan.job_site, plan.job_start
    placed = site >= 0
    current = (site[pl.job] == pl.site) & (start[pl.job] == pl.start)
    here = np.zeros(inst.n_jobs)
    here[pl.job[current]] = gain[current]
    price = np.concatenate([gain - here[pl.job], np.where(placed & ~jb.mandatory, -here, -math.inf)])
    price[:P][current] = -math.inf
    price[tabu] = -math.inf
    keys = np.flatnonzero(price > min_gain)
    if keys.size == 0 or P == 0:
        return (np.zeros(0, dtype=np.int64),) * 4
    # a new placement must fit beside the other jobs (inference is routed around them); the job's own GPUs
    # count as free where its new run overlaps its old one
    new = keys[keys < P]
    free = gpus_beside_jobs(inst, site, start)
    j = pl.job[new]
    d, g = jb.duration[j], jb.gpus[j].astype(np.float64)
    lo, hi = np.where(placed[j], start[j], 0), np.where(placed[j], start[j] + jb.duration[j], 0)
    fits = np.ones(new.size, dtype=bool)
    for k in range(int(d.max(initial=0))):
        t = pl.start[new] + k
        own = (site[j] == pl.site[new]) & (t >= lo) & (t < hi)
        room = free[pl.site[new], np.minimum(t, T - 1)] + np.where(own, g, 0.0)
        fits &= (k >= d) | (room >= g - 1e-9)
    keys = np.concatenate([new[fits], keys[keys >= P]])
    keys = keys[np.argsort(-price[keys], kind="stable")][:SCAN_PER_MOVE * batch]
    # the moves made together touch disjoint site-periods, so each one's fit and price hold beside the others
    touched = np.zeros((inst.n_sites, T), dtype=bool)
    moved = np.zeros(inst.n_jobs, dtype=bool)
    chosen: list[int] = []
    for key in keys.tolist():
        if key < P:
            jj, i, s = int(pl.job[key]), int(pl.site[key]), int(pl.start[key])
            new_run = (i, s, s + int(jb.duration[jj]))
        else:
            jj, new_run = key - P, None
        if moved[jj] or (new_run is not None and touched[new_run[0], new_run[1]:new_run[2]].any()):
            continue
        old_run = (int(site[jj]), int(start[jj]), int(start[jj] + jb.duration[jj])) if placed[jj] else None
        if old_run is not None and touched[old_run[0], old_run[1]:old_run[2]].any():
            continue
        for run in (new_run, old_run):
            if run is not None:
                touched[run[0], run[1]:run[2]] = True
        moved[jj] = True
        chosen.append(key)
        if len(chosen) >= batch:
            break
    key = np.asarray(chosen, dtype=np.int64)
    is_move, at = key < P, np.minimum(key, P - 1)
    return (np.where(is_move, pl.job[at], key - P), np.where(is_move, pl.site[at], -1),
            np.where(is_move, pl.start[at], -1), key)
