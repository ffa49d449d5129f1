"""The LP relaxation of the joint model, solved by HiGHS's interior-point method (through scipy).

Both decompositions start from it: its optimum is a valid upper bound on Z, the duals of the coupling
rows warm-start the Lagrangian multipliers, its solution rounded is a first plan, and its energy-side
values give Benders a good first separation point. Interior point with crossover because at 100 sites
SCIP's dual simplex on this LP does not finish in minutes, while HiGHS's IPM takes about 10 s
(docs/decomposition.md).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from carbonsched.instances.schema import Instance
from scipy.optimize import linprog

from .diagnose import diagnose_mandatory
from .joint import JointModel, build_joint_model, drop_routing_columns, serving_value
from .scip_run import run_interruptibly

log = logging.getLogger(__name__)


@dataclass
class JointLP:
    """Outcome of :func:`solve_lp_relaxation`.

    Attributes
    ----------
    jm : JointModel
        The joint model (ids of every variable and row family).
    optimal : bool
        Whether the LP was solved to optimality (otherwise nothing below is meaningful).
    bound : float
        LP optimum, $ (a valid upper bound on the optimal Z; ``inf`` if not optimal).
    values : (n,) float
        LP solution by variable id.
    row_duals : (m,) float
        ∂Z/∂(row side) by row id, $ per unit of the row.
    reduced_costs : (n,) float
        ∂Z/∂(variable) at the duals, by variable id, $ per unit (≤ 0 for a variable at its lower bound).
    seconds : float
        Wall time including the model build, s.
    pricing_rounds : int
        LPs solved (1 without pricing, 0 when none was).
    placements_in : int
        Placements in the last LP (−1: all, no pricing).
    routing_in : int
        Routing columns in the last LP (−1: all, no routing pricing).
    routing_active : (K,S,T) bool or None
        With routing pricing, the routing columns of the last LP and those added for a next round that was not
        solved (the time limit came first): the columns the router keeps to (None: all).
    restricted : float
        The last LP's own optimum, $ (with pricing below ``bound``, which adds what the left-out columns may add).
    """

    jm: JointModel
    optimal: bool
    bound: float
    values: np.ndarray
    row_duals: np.ndarray
    reduced_costs: np.ndarray
    seconds: float
    pricing_rounds: int = 1
    placements_in: int = -1
    routing_in: int = -1
    routing_active: np.ndarray | None = None
    restricted: float = math.nan

    def values_at(self, ids: np.ndarray) -> np.ndarray:
        """LP values at an id array of any shape, 0 where the id is −1 (no such variable)."""
        return np.where(ids >= 0, self.values[np.maximum(ids, 0)], 0.0)

    def site_emissions(self) -> np.ndarray:
        """(S,) emissions of each site in the LP solution, t CO2."""
        inst, ids = self.jm.inst, self.jm.energy.ids
        s, dt = inst.sites, inst.period_hours
        return dt * ((s.grid_co2 * self.values_at(ids["grid_import"])).sum(axis=1)
                     + s.gen_co2 * self.values_at(ids["gen"]).sum(axis=1))


#: With pricing, each job starts with its placements at this many sites (the cheapest by energy price);
#: on instances whose jobs may run at no more sites than this, pricing solves the full LP at once.
PRICING_SITES = 10
#: Pricing rounds add, per job, at most this many placements of positive reduced cost (the best ones).
PRICING_COLUMNS_PER_JOB = 40
#: A placement prices out when its reduced cost exceeds this share of its job's value ($).
PRICING_TOLERANCE = 1e-7
#: Routing columns are priced in by default when the instance has more than this many (1,000 sites: 2.56 M).
ROUTING_PRICING_MIN = 1_000_000
#: A routing-priced LP starts each class at its sites of highest serving value, this many ...
ROUTING_NEAREST = 10
#: ... and this many more drawn at random (larger sites more likely).
ROUTING_DRAWN = 10
#: Routing columns added per class and period in each pricing round (the best that price out).
ROUTING_COLUMNS = 20
#: Routing pricing stops when the bound is within this share of the restricted LP's optimum, ...
ROUTING_GAP = 1e-5
#: ... or when a round raised the restricted optimum by less than this share: the LP is then a warm start, its
#: bound the (valid, looser) restricted optimum plus what is left out (at 300 sites the rounds raised it by
#: 0.88 %, 0.098 % and 0.002 %; the bound that prices the left-out columns stays loose far longer).
ROUTING_STALL = 2e-3


def initial_columns(inst: Instance, jm: JointModel, sites_per_job: int | None = None) -> np.ndarray:
    """(P,) bool: the placements a priced LP starts with.

    Every placement of a mandatory job (they must fit), and for each other job its placements at the
    ``sites_per_job`` (default :data:`PRICING_SITES`) allowed sites with the lowest mean energy cost per busy
    GPU (grid price plus carbon priced at τ, facility power): where the LP is likely to put it.
    """
    sites_per_job = PRICING_SITES if sites_per_job is None else sites_per_job
    pl, s = jm.placements, inst.sites
    mw_per_gpu = s.pue * ((s.gpu_busy_kw - s.gpu_idle_kw) / 1000.0)[:, None]
    site_cost = (mw_per_gpu * (s.price_buy + inst.carbon_price * s.grid_co2)).mean(axis=1)
    pair = pl.job.astype(np.int64) * inst.n_sites + pl.site
    pairs, first = np.unique(pair, return_index=True)
    pair_job = pl.job[first]
    order = np.lexsort((site_cost[pl.site[first]], pair_job))  # by job, then cost
    job_sorted = pair_job[order]
    starts = np.searchsorted(job_sorted, job_sorted, side="left")
    rank = np.empty(order.size, dtype=np.int64)
    rank[order] = np.arange(order.size) - starts
    keep_pair = rank < sites_per_job
    active = keep_pair[np.searchsorted(pairs, pair)]
    return active | inst.jobs.mandatory[pl.job]


def _highs(a, lhs, rhs, lb, ub, obj, left):
    eq = lhs == rhs
    up = ~eq & np.isfinite(rhs)
    lo = ~eq & np.isfinite(lhs)
    options = {"presolve": True, "disp": False}
    if left is not None:
        options["time_limit"] = max(left, 0.01)
    res = run_interruptibly(linprog, -obj, A_ub=sp.vstack([a[up], -a[lo]], format="csr"),
                         b_ub=np.concatenate([rhs[up], -lhs[lo]]), A_eq=a[eq], b_eq=rhs[eq],
                         bounds=np.column_stack([lb, ub]), method="highs-ipm", options=options)
    if res.status != 0:
        return res, None
    # ∂Z/∂(row side) = −∂(−Z)/∂b; a "≥ lhs" part was passed as −row ≤ −lhs
    n_up = int(up.sum())
    dual = np.zeros(a.shape[0])
    dual[eq] = -res.eqlin.marginals
    dual[up] -= res.ineqlin.marginals[:n_up]
    dual[lo] += res.ineqlin.marginals[n_up:]
    return res, dual


def routing_priced_by_default(inst: Instance) -> bool:
    """Whether :func:`solve_lp_relaxation` prices routing columns in by default: more than
    :data:`ROUTING_PRICING_MIN` of them (one per class, site within its SLO and period)."""
    n_routing = int(inst.slo_mask().sum()) * inst.n_periods if inst.n_classes else 0
    return n_routing > ROUTING_PRICING_MIN


def initial_routing(inst: Instance, jm: JointModel, nearest: int | None = None, drawn: int | None = None,
                    seed: int = 0) -> np.ndarray:
    """(K,S,T) bool over ``jm.y``: the routing columns a routing-priced LP starts with.

    Each class keeps, in every period, its ``nearest`` (default :data:`ROUTING_NEAREST`) sites within SLO of
    highest serving value (lowest latency cost) and ``drawn`` (default :data:`ROUTING_DRAWN`) more drawn at
    random, larger sites more likely (deterministic for a given ``seed``). Not the sites of lowest energy
    cost: GPUs are scarce in the LP optimum (sites 60-100 % busy at 300 sites), so what the first LP needs is
    every site's free GPUs within reach of some class, and the cheapest sites are the same for every class
    (ranked by energy cost the first restricted LP at 300 sites was 16.4 % below the full LP's value, with
    this mix 1.0 %, docs/decomposition.md).
    """
    nearest = ROUTING_NEAREST if nearest is None else nearest
    drawn = ROUTING_DRAWN if drawn is None else drawn
    slo = jm.y[:, :, 0] >= 0 if jm.y.size else np.zeros(jm.y.shape[:2], dtype=bool)
    value = np.where(slo, serving_value(inst), -np.inf)
    key = np.where(slo, np.random.default_rng(seed).random(slo.shape) * inst.sites.gpus[None, :], -np.inf)
    keep = slo & ((_rank_along_sites(value) < nearest) | (_rank_along_sites(key) < drawn))
    return np.broadcast_to(keep[:, :, None], jm.y.shape) & (jm.y >= 0)


def _rank_along_sites(score: np.ndarray) -> np.ndarray:
    """Rank (0 = highest) of each entry of ``score`` along axis 1."""
    order = np.argsort(-score, axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(score.shape[1])[(None, slice(None)) + (None,) * (score.ndim - 2)],
                      axis=1)
    return rank


def solve_lp_relaxation(inst: Instance, *, time_limit: float | None = None, pricing: bool = False,
                        routing: bool | None = None,
                        suggest_routing: Callable[[JointLP], np.ndarray | None] | None = None) -> JointLP:
    """Solve the LP relaxation of the joint model of ``inst``.

    Parameters
    ----------
    inst : Instance
        The instance.
    time_limit : float, optional
        Seconds for building and solving; past it the result is not optimal.
    pricing : bool, optional
        Solve by pricing placements in (column generation): start from :func:`initial_columns`, price every
        other placement at the LP's duals (reduced cost c − Aᵀy), add the best that price out, and repeat
        until none does. The bound is the restricted optimum plus every left-out placement's positive
        reduced cost (weak duality, x ≤ 1), so it is valid after any round and equal to the LP's at the
        end; a time limit that stops the pricing keeps the last round's LP and its (valid, looser) bound.
        Off by default: measured, it loses (docs/decomposition.md) — a restricted LP costs nearly as much
        as the full one, because the energy side, not the placements, makes the LP large.
    routing : bool, optional
        Price routing columns in the same way: start from :func:`initial_routing`, and add in each round, per
        class and period, the :data:`ROUTING_COLUMNS` left-out routing columns of highest positive reduced
        cost. A class's routing columns in one period serve at most its demand λ_{k,t} together (Σ_i y ≤ λ,
        implied by the demand row and u ≥ 0), so their share of the bound is λ_{k,t} times the largest
        left-out reduced cost, not the sum. The rounds stop when nothing prices out, the bound is within
        :data:`ROUTING_GAP` of the restricted optimum, or a round raised the optimum by less than
        :data:`ROUTING_STALL`. Default (None): on when the instance has more than
        :data:`ROUTING_PRICING_MIN` routing columns (at 1,000 sites 2.56 M of the 3.0 M columns are routing,
        and the full LP is not solved in 900 s; at 300 sites the full LP wins, docs/decomposition.md).
    suggest_routing : callable, optional
        With routing pricing, called with each round's LP before the next round is solved; it returns
        (K,S,T) bool routing columns to add as well, or None to end the rounds there. The Lagrangian
        passes the columns its site subproblems use at the round's duals: priced with the sites' capacity,
        they are the columns the per-column reduced costs miss (at 300 sites the second restricted LP was
        0.100 % below the full LP with the reduced costs' columns alone, 0.013 % with the sites' added,
        docs/decomposition.md).

    Raises
    ------
    InfeasibleError
        The LP is infeasible: the mandatory jobs cannot all be placed (names them).
    """
    t0 = time.perf_counter()
    jm = build_joint_model(inst, name=f"{inst.name}-lp", record=True, scip=False)
    a, lhs, rhs, lb, ub, obj = jm.am.recorded_arrays()
    x, y = jm.x, jm.y
    y_exists = y >= 0
    if routing is None:
        routing = routing_priced_by_default(inst)
    active_x = initial_columns(inst, jm) if pricing else np.ones(x.size, dtype=bool)
    active_y = initial_routing(inst, jm) if routing else y_exists.copy()
    pricing = bool(pricing) and not active_x.all()
    routing = bool(routing) and not active_y[y_exists].all()
    n, m = a.shape[1], a.shape[0]
    failed = JointLP(jm, False, math.inf, np.zeros(n), np.zeros(m), np.zeros(n), 0.0, 0)
    if routing:
        a = sp.csc_matrix(a)  # columns are sliced each round
    demand = inst.inference.demand
    rounds, last, round_seconds, previous = 0, None, 0.0, -math.inf
    next_seconds = 0.0  # the next round's expected duration (a round cut off by the time limit is lost)

    def time_left() -> float | None:
        return None if time_limit is None else time_limit - (time.perf_counter() - t0)

    def next_round_fits(left: float | None) -> bool:
        return left is None or (left > 0.0 and (last is None or left >= next_seconds))

    while True:
        left = time_left()
        if not next_round_fits(left):
            break  # a round that cannot end in time is not started: the last one's LP and bound are kept
        round_start = time.perf_counter()
        ub_now = ub
        if pricing:
            ub_now = ub.copy()
            ub_now[x[~active_x]] = 0.0
        cols = None
        if routing:  # left-out routing columns are dropped, not fixed: they are most of the LP
            cols = drop_routing_columns(jm, active_y)[0]
            res, dual = _highs(a[:, cols].tocsr(), lhs, rhs, lb[cols], ub_now[cols], obj[cols], left)
        else:
            res, dual = _highs(a, lhs, rhs, lb, ub_now, obj, left)
        if res.status == 2:  # left-out columns are never needed for feasibility (mandatory jobs keep all, u is in)
            raise diagnose_mandatory(inst)
        if dual is None:
            break
        rounds += 1
        # each round's LP is larger than the last: expect the last round's growth again (at 1,000 sites rounds
        # took 218 s and 366 s; a third started with 519 s left ran into the limit, and its work was lost)
        seconds = time.perf_counter() - round_start
        next_seconds = seconds * max(1.0, seconds / round_seconds) if round_seconds > 0 else seconds
        round_seconds = seconds
        reduced = obj - a.T @ dual
        value = float(-res.fun)
        bound = value
        if pricing:
            rc = reduced[x]
            bound += float(np.maximum(rc[~active_x], 0.0).sum())  # weak duality with x ≤ 1
        if routing:
            rc_y = np.where(y_exists & ~active_y, reduced[np.maximum(y, 0)], -np.inf)
            bound += float((demand * np.maximum(rc_y.max(axis=1, initial=-np.inf), 0.0)).sum())
        values = np.asarray(res.x, dtype=np.float64)
        if cols is not None:
            values = np.zeros(n)
            values[cols] = res.x
        last = JointLP(jm, True, bound, values, dual, reduced, 0.0, rounds,
                       int(active_x.sum()) if pricing else -1, int(active_y.sum()) if routing else -1, restricted=value)
        if not (pricing or routing):
            break
        prices_out = np.zeros(0, dtype=bool)
        if pricing:
            tol = PRICING_TOLERANCE * np.maximum(1.0, inst.jobs.value[jm.placements.job])
            prices_out = ~active_x & (rc > tol)
        routes_out = np.zeros(0, dtype=bool)
        if routing:
            routes_out = rc_y > PRICING_TOLERANCE * np.maximum(1.0, np.abs(obj[np.maximum(y, 0)]))
        # info, not debug: at 1,000 sites a round takes minutes, and these lines are the LP's progress
        log.info("LP pricing round %d (%.1f s): %d of %d placements in (%d price out), %d of %d routing columns "
                 "in (%d price out); bound %.2f (restricted %.2f)", rounds, round_seconds, int(active_x.sum()),
                 active_x.size, int(prices_out.sum()), int(active_y.sum()), int(y_exists.sum()),
                 int(routes_out.sum()), bound, value)
        if not prices_out.any() and not routes_out.any():
            break
        if not prices_out.any() and (bound - value <= ROUTING_GAP * max(abs(value), 1.0)
                                     or value - previous <= ROUTING_STALL * max(abs(value), 1.0)):
            break
        previous = value
        if prices_out.any():
            active_x |= _best_per_job(jm.placements.job, rc, prices_out, PRICING_COLUMNS_PER_JOB)
        if routes_out.any():
            active_y |= routes_out & (_rank_along_sites(np.where(routes_out, rc_y, -np.inf)) < ROUTING_COLUMNS)
        if routing and suggest_routing is not None:
            if not next_round_fits(time_left()):
                break  # the next round would not be started: no use asking for columns
            suggested = suggest_routing(last)
            if suggested is None:
                break  # the caller has what it needs from these rounds
            added = np.asarray(suggested, dtype=bool) & y_exists & ~active_y
            active_y |= added
            log.info("LP pricing round %d: %d routing columns suggested", rounds, int(added.sum()))
    if last is None:
        failed.seconds = time.perf_counter() - t0
        return failed
    last.seconds = time.perf_counter() - t0
    last.routing_active = active_y if routing else None
    return last


def _best_per_job(job: np.ndarray, score: np.ndarray, candidate: np.ndarray, per_job: int) -> np.ndarray:
    """(P,) bool: among ``candidate`` placements, the ``per_job`` of highest ``score`` of each job."""
    idx = np.flatnonzero(candidate)
    order = idx[np.lexsort((-score[idx], job[idx]))]
    j = job[order]
    rank = np.arange(order.size) - np.searchsorted(j, j, side="left")
    out = np.zeros(job.size, dtype=bool)
    out[order[rank < per_job]] = True
    return out
