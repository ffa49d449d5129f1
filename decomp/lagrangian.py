"""Lagrangian decomposition: dualize the coupling constraints 1, 2 and 9, solve one MILP per site.

Multipliers (all in the maximization's Lagrangian L(z) = max Z + Σ_rows z·(rhs − row)):

* μ_j, $ per job, of Σ_{i,s} x_{j,i,s} ≤ 1 (≥ 0), or = 1 for a mandatory job (free in sign);
* π_{k,t}, $ per GPU-period, of Σ_i y_{k,i,t} + u_{k,t} = λ_{k,t} (free);
* λ_C, $/t, of Em ≤ C (≥ 0; fixed at 0 when C = ∞).

Then L(z) = Σ_i z_i(μ, π, λ_C) + Σ_j μ_j + Σ_{k,t} π_{k,t} λ_{k,t}
+ Σ_{k,t} λ_{k,t}·max(0, −Δφ_k − π_{k,t}) + λ_C·C, where z_i is site i's subproblem optimum
(:class:`formulations.site_milp.SiteMILP`) and the fourth term is max over u ∈ [0, λ] of
(−Δφ_k − π_{k,t})·u in closed form. Replacing each z_i by the subproblem's *dual bound* keeps L an
upper bound on the optimal Z when a subproblem stops at a gap, node or time limit.

The multipliers are minimized by a box-trust-region cutting-plane (boxstep bundle) method whose master
is an LP kept alive in HiGHS (:class:`decomp.master_lp.MasterLP`), or by the Polyak subgradient method. Each site's
best solution gives an affine minorant of its z_i (its value as a function of the multipliers), which
are the master's cuts. A Lagrangian heuristic repairs the sites' job choices into one plan, scores it
exactly with :func:`formulations.evaluate.evaluate`, and polishes the placement by re-optimizing routing
and dispatch of the joint model with the placements fixed; a restricted MILP over the pool of placements
the sites (and the LP's reduced costs) have proposed recombines choices across iterations. Site solves
get the previous solution as a start and are balanced over the workers by their last solve times. See
``docs/decomposition.md``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from carbonsched.errors import CarbonschedError, InfeasibleError, InputError
from carbonsched.formulations.baselines import energy_only_plan
from carbonsched.formulations.joint import JointModel, build_joint_model, enumerate_placements
from carbonsched.formulations.lp_relaxation import JointLP, routing_priced_by_default, solve_lp_relaxation
from carbonsched.formulations.monolithic import solution_from_model
from carbonsched.formulations.plan import ComputePlan
from carbonsched.formulations.scip_run import configure, note_scip_status, optimize
from carbonsched.formulations.site_milp import SITE_MILP_KIND, SiteResult, limit_by_deadline, make_site_milp
from carbonsched.formulations.solution import Solution, SolveStatus
from carbonsched.instances.schema import Instance
from carbonsched.progress import ProgressCallback

from .checkpoint import StateDict, pack_rows, state_array, state_scalar, unpack_rows
from .completion import complete_from_site_results, lp_site_shares, neighbourhood_pass
from .engine import MIN_SCORING_SECONDS, DecompositionAlgorithm, EngineOptions, Hub, run_algorithm
from .hooks import DecompositionHooks
from .master_lp import MasterLP
from .moves import improve_by_moves
from .parallel import ParallelConfig
from .rounding import PlacementRouter, fit_served, round_fractional_plan
from .schedule import HeuristicSchedule

log = logging.getLogger(__name__)

METHODS = ("bundle", "subgradient")
#: Share of the time limit that scoring and polishing one candidate plan may take.
RECOVERY_SHARE = 0.2
#: Share of the time limit one restricted MILP over the pool may take.
POOL_SHARE = 0.05
#: The pool is searched again once it has grown by this share since the last search.
POOL_GROWTH = 0.1
#: Seconds per restricted MILP when the solve has no time limit.
POOL_UNLIMITED_SECONDS = 60.0
#: Share of the time limit one longer restricted MILP may take, run when half the multiplier loop's time is used.
POOL_LONG_SHARE = 0.2
#: The restricted MILP stops at this relative gap (of the restricted problem; its bound is not used).
POOL_GAP = 1e-4
#: The restricted MILP's first pool: LP support plus placements whose LP reduced cost is within this share of
#: the job's value of zero (docs/decomposition.md: 183 of 2,343 placements on ``small``).
POOL_REDUCED_COST = 0.01
#: ``close=None`` runs the closing phase on instances with at most this many sites × periods.
CLOSE_AUTO_MAX_SITE_PERIODS = 1000
#: The primal sides of both decompositions (LagrangianOptions.primal, BendersOptions.primal).
PRIMAL_MODES = ("auto", "joint", "parallel")


def sides_by_size(inst: Instance, close: bool | None, primal: str) -> tuple[bool, bool]:
    """(closing phase, parallel primal side) of either decomposition on ``inst``: ``close=None`` and
    ``primal="auto"`` choose the closing phase and the joint side up to :data:`CLOSE_AUTO_MAX_SITE_PERIODS`
    sites × periods, no closing phase and the parallel side above."""
    small = inst.n_sites * inst.n_periods <= CLOSE_AUTO_MAX_SITE_PERIODS
    return (small if close is None else bool(close)), (primal == "parallel" or (primal == "auto" and not small))

#: Site MILPs of a Lagrangian round stop within this share of the run's open gap (site_abs_gap).
SITE_GAP_SHARE = 0.05


def site_abs_gap(open_gap: float, n_sites: int, share: float = SITE_GAP_SHARE,
                 predicted: float = math.inf) -> float:
    """Absolute gap limit of each site MILP in a Lagrangian round, $.

    ``share`` of the smaller of the run's open gap (incumbent to bound, $) and the bundle's predicted decrease
    of L at the new multipliers ($), divided among the ``n_sites`` sites. Each site's dual bound is then within
    this of its optimum, so the round's bound (the sum) is at most that share looser than with exact solves:
    small beside the gap the round is meant to narrow, and beside the decrease a serious step must show
    (the step test compares the loosened sum with the prediction). Sites are solved exactly while the gap is
    not finite. On the 100-site instance whose jobs may run at 50–100 sites the slowest site at the LP duals
    took 22.4 s exactly and 5.0 s with 26 $ of gap.
    """
    slack = min(open_gap, predicted)
    if share <= 0.0 or n_sites <= 0 or not math.isfinite(slack) or slack <= 0.0:
        return 0.0
    return share * slack / n_sites


#: Share of a plan's routing and scoring time (RECOVERY_SHARE of the loop) its placement moves may take.
MOVES_SHARE = 0.5
#: Share of the loop's time limit the joint LP warm start may take (joint / parallel primal side).
LP_SHARE = 0.25
LP_SHARE_PARALLEL = 0.65
#: ... and when routing columns are priced into it (1,000 sites), where its rounds set how good the duals are:
#: at 1,000 sites, 1,800 s, runs whose LP had three rounds ended at 2.93 % and 2.99 %, one whose LP the 65 %
#: share held to two rounds at 3.03 % (its first Lagrangian bound 29.39 M$ against 29.24 M$ after three
#: rounds; 16 bundle iterations took it to 29.31 M$), with about the same incumbent (docs/benchmarks.md).
LP_SHARE_ROUTING = 0.8
#: With routing priced into the LP (1,000 sites), the rounds end once the Lagrangian bound at a round's duals is
#: within this share of that round's optimum: more rounds then buy little bound for minutes each (at 300 sites
#: the bound at the second round's duals, its columns suggested by the sites, was already 0.13 % below it).
ROUTING_ROUNDS_CLOSE = 5e-3
#: A bundle cut slack at this many successive master solves leaves the master LP ...
CUT_IDLE_LIMIT = 10
#: ... once such cuts are this share of the master's cuts (and at least one per site).
CUT_PURGE_SHARE = 0.25
#: Sites per group in successive passes of the neighbourhood search.
NEIGHBOURHOOD_SIZES = (3, 4, 2)
#: The primal heuristics of a recovery that back off while they find nothing (decomp.schedule).
SCHEDULED_HEURISTICS = ("completion", "repair", "neighbourhoods")
#: On the parallel primal side the repair runs at every recovery: its plans get better as the multipliers
#: converge, and with the routing LP kept alive (PlacementRouter) a call costs 2-3 s at 300 sites. Backed off
#: like the others, it found the 300-site plan that closes the gap to 1 % at iteration 43 (469.6 s); at every
#: recovery at iteration 34 (392.7 s).
REPAIR_EVERY_RECOVERY = {"repair": 1}


# ============================================================================ multipliers
@dataclass
class Layout:
    """Where μ, π and λ_C sit in the flat multiplier vector z = [μ (J), π (K·T), λ_C].

    Attributes
    ----------
    lower, upper : (n,) float
        Sign bounds: μ_j ≥ 0 unless job j is mandatory, π free, 0 ≤ λ_C (≤ 0 when C = ∞).
    scale : (n,) float
        Typical magnitude of each multiplier, used to shape the trust region and the subgradient step.
    """

    n_jobs: int
    n_classes: int
    n_periods: int
    lower: np.ndarray
    upper: np.ndarray
    scale: np.ndarray

    @property
    def size(self) -> int:
        return self.n_jobs + self.n_classes * self.n_periods + 1

    def split(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        """(μ (J,), π (K,T), λ_C) views of z."""
        J, KT = self.n_jobs, self.n_classes * self.n_periods
        return z[:J], z[J:J + KT].reshape(self.n_classes, self.n_periods), float(z[-1])

    def project(self, z: np.ndarray) -> np.ndarray:
        return np.clip(z, self.lower, self.upper)


def make_layout(inst: Instance) -> Layout:
    """Sign bounds and scales of the multipliers of ``inst``."""
    J, K, T, dt = inst.n_jobs, inst.n_classes, inst.n_periods, inst.period_hours
    n = J + K * T + 1
    lower = np.full(n, -np.inf)
    upper = np.full(n, np.inf)
    lower[:J] = np.where(inst.jobs.mandatory, -np.inf, 0.0)
    lower[-1] = 0.0
    if not math.isfinite(inst.carbon_budget_t):
        upper[-1] = 0.0
    inf = inst.inference
    scale = np.ones(n)
    scale[:J] = np.maximum(np.abs(inst.jobs.value), 1.0) if J else scale[:J]
    if K:
        scale[J:-1] = np.repeat(np.maximum(dt * (inf.revenue + inf.penalty), 1e-3), T)
    scale[-1] = max(inst.carbon_price, 10.0)
    return Layout(J, K, T, lower, upper, scale)


def constant_terms(inst: Instance, layout: Layout, z: np.ndarray) -> tuple[float, np.ndarray]:
    """The non-site part of L(z) and its gradient: Σμ + Σπλ + Σλ·max(0, −Δφ − π) + λ_C·C.

    Returns
    -------
    (value $, gradient (n,))
    """
    mu, pi, lam_c = layout.split(z)
    demand = inst.inference.demand
    phi = inst.period_hours * inst.inference.penalty[:, None] if layout.n_classes else np.zeros((0, 1))
    u_gain = -phi - pi  # $ per unserved GPU-period, under π
    u_on = u_gain > 0
    cap = inst.carbon_budget_t if math.isfinite(inst.carbon_budget_t) else 0.0
    value = float(mu.sum() + (pi * demand).sum() + (demand * np.maximum(u_gain, 0.0)).sum() + lam_c * cap)
    grad = np.concatenate([np.ones(layout.n_jobs), (demand * (1.0 - u_on)).ravel(), [cap]])
    return value, grad


# ============================================================================ LP relaxation
def multipliers_from_lp(lp: JointLP, layout: Layout) -> np.ndarray:
    """z from the duals ∂Z/∂rhs of a solved joint LP's ``job_once``, ``demand`` and ``carbon`` rows, projected."""
    jm = lp.jm
    z = np.zeros(layout.size)
    J, KT = layout.n_jobs, layout.n_classes * layout.n_periods
    if "job_once" in jm.rows:
        z[:J] = lp.row_duals[jm.rows["job_once"]]
    if "demand" in jm.rows:
        z[J:J + KT] = lp.row_duals[jm.rows["demand"]]
    if "carbon" in jm.rows:
        z[-1] = lp.row_duals[jm.rows["carbon"]][0]
    return layout.project(z)


@dataclass
class LPRelaxation:
    """The joint model's LP relaxation: its bound and the coupling rows' duals as multipliers."""

    bound: float
    z: np.ndarray
    seconds: float
    plan: ComputePlan | None = None
    pool: np.ndarray | None = None
    joint: JointLP | None = None


def lp_relaxation(inst: Instance, layout: Layout, time_limit: float | None = None,
                  suggest_routing: Callable[[JointLP], np.ndarray | None] | None = None) -> LPRelaxation:
    """The joint LP relaxation (:func:`formulations.lp_relaxation.solve_lp_relaxation`) as a warm start.

    The duals ∂Z/∂rhs of the ``job_once``, ``demand`` and ``carbon`` rows are the first multipliers; the
    LP optimum is itself a valid upper bound on Z; the LP solution rounded
    (:func:`decomp.rounding.round_fractional_plan`) is the first candidate plan of the primal recovery.
    Past ``time_limit`` seconds the warm start is skipped (zero multipliers, no LP bound). ``suggest_routing``
    goes to :func:`~carbonsched.formulations.lp_relaxation.solve_lp_relaxation` (routing columns for its rounds).

    Raises
    ------
    InfeasibleError
        The LP is infeasible: the mandatory jobs cannot all be placed.
    """
    lp = solve_lp_relaxation(inst, time_limit=time_limit, suggest_routing=suggest_routing)
    if not lp.optimal:
        return LPRelaxation(bound=math.inf, z=layout.project(np.zeros(layout.size)), seconds=lp.seconds)
    jm = lp.jm
    z = multipliers_from_lp(lp, layout)
    plan = round_fractional_plan(inst, jm.placements, jm.x, jm.y, lp.values)
    value = np.abs(inst.jobs.value[jm.placements.job])
    pool = (lp.values[jm.x] > 1e-6) | (lp.reduced_costs[jm.x] >= -POOL_REDUCED_COST * value)
    return LPRelaxation(bound=lp.bound, z=z, seconds=lp.seconds, plan=plan, pool=pool, joint=lp)


# ============================================================================ oracle
@dataclass
class OracleValue:
    """L at one multiplier vector, from the site results.

    Attributes
    ----------
    upper : float
        Σ_i (site dual bound) + constant terms: a valid upper bound on the optimal Z, $.
    lower : float
        Σ_i (site solution value) + constant terms: L's value at the sites' solutions, $ (≤ L(z)).
    subgradient : (n,) float
        Gradient of the lower affine minorant at z (a subgradient of L when sites are solved exactly).
    site_seconds : float
        Largest site solve time, s (the parallel critical path).
    """

    z: np.ndarray
    results: dict[int, SiteResult]
    upper: float
    lower: float
    subgradient: np.ndarray
    site_seconds: float


def site_cut(layout: Layout, res: SiteResult) -> tuple[float, np.ndarray]:
    """Affine minorant h_i(z) = base − X·μ − Y·π − E·λ_C of site i's z_i, as (base, coefficients)."""
    return res.base, -np.concatenate([res.job_count, res.served.ravel(), [res.emissions]])


def oracle_value(inst: Instance, layout: Layout, z: np.ndarray, results: dict[int, SiteResult]) -> OracleValue:
    """Combine site results at z into L's upper value, lower value and subgradient."""
    const, grad = constant_terms(inst, layout, z)
    upper, lower = const, const
    g = grad.copy()
    for res in results.values():
        upper += res.bound
        lower += res.value
        g += site_cut(layout, res)[1]
    secs = max((r.seconds for r in results.values()), default=0.0)
    return OracleValue(z=z.copy(), results=results, upper=upper, lower=lower, subgradient=g, site_seconds=secs)


# ============================================================================ bundle master
class BoxBundle:
    """Box-trust-region cutting-plane method on L with disaggregated (per-site) cuts.

    Master LP over (z, θ_i, w_{k,t}): minimize Σθ + Σμ + Σπλ + Σλ·w + λ_C·C with θ_i above every
    cut of site i, w ≥ 0, w ≥ −Δφ − π, and z in the box |z − ẑ| ≤ r·scale around the stability
    center ẑ (intersected with the sign bounds). A step is *serious* when L drops by at least a
    fraction ``m`` of the predicted decrease; the box then grows, otherwise it shrinks.
    """

    def __init__(self, inst: Instance, layout: Layout, sites: list[int], *, radius: float = 0.005,
                 m: float = 0.1, shrink: float = 0.3, min_radius: float = 1e-4, max_radius: float = 10.0) -> None:
        self.inst, self.layout, self.sites = inst, layout, sites
        self.radius, self.m, self.shrink = radius, m, shrink
        self.min_radius, self.max_radius = min_radius, max_radius
        self.on_box = False
        self.center: np.ndarray | None = None
        self.center_value = math.inf
        self.cuts: dict[int, list[tuple[float, np.ndarray]]] = {i: [] for i in sites}
        self._seen: dict[int, dict[bytes, int]] = {i: {} for i in sites}  # usage → index in cuts[i]
        self.predicted = math.inf
        self.serious = 0
        # the master LP, kept alive in HiGHS: built at the first step, then cuts are appended
        self._master: MasterLP | None = None
        self._cut_rows: dict[int, list[int]] = {i: [] for i in sites}  # master row of each cut
        self._changed: list[tuple[int, int]] = []  # (site, cut) whose base rose after it entered the master
        self._row_idle = np.zeros(0, dtype=np.int64)  # successive master solves each row was slack
        self._w_rows = 0  # the master's first rows (the w rows), never dropped
        self.dropped = 0  # cuts dropped as idle so far

    def add(self, ov: OracleValue) -> bool:
        """Add the cuts of ``ov`` and update the center; True on a serious step."""
        for i, res in ov.results.items():
            if math.isfinite(res.value):
                self._add_cut(i, *site_cut(self.layout, res))
        if self.center is None:
            self.center, self.center_value = ov.z.copy(), ov.upper
            return True
        decrease = self.center_value - ov.upper
        if decrease >= self.m * self.predicted:
            if self.on_box:
                self.radius = min(self.radius * (2.0 if decrease >= 0.5 * self.predicted else 1.5), self.max_radius)
            self.center, self.center_value = ov.z.copy(), ov.upper
            self.serious += 1
            return True
        if decrease < 0:  # L went up: the model was too optimistic this far out
            self.radius = max(self.radius * self.shrink, self.min_radius)
        return False

    def _add_cut(self, site: int, base: float, coef: np.ndarray) -> None:
        """Add θ_i ≥ base + coef·z unless the same solution (same coupling activities) is already a cut."""
        key = coef.tobytes()
        q = self._seen[site].get(key)
        if q is None:
            self._seen[site][key] = len(self.cuts[site])
            self.cuts[site].append((base, coef))
        elif base > self.cuts[site][q][0]:
            self.cuts[site][q] = (base, coef)
            if q < len(self._cut_rows[site]):  # already in the master LP: its right-hand side changes
                self._changed.append((site, q))

    def _build_master(self) -> MasterLP:
        """The master LP over (z, θ_i, w) with the w rows; the cuts are added by :meth:`_sync_master`."""
        lay, inst = self.layout, self.inst
        n, S = lay.size, len(self.sites)
        demand = inst.inference.demand.ravel()
        phi = (inst.period_hours * np.repeat(inst.inference.penalty, lay.n_periods)
               if lay.n_classes else np.zeros(0))
        wk = np.flatnonzero(demand > 0)
        W = wk.size
        cap = inst.carbon_budget_t if math.isfinite(inst.carbon_budget_t) else 0.0
        cost = np.concatenate([np.ones(lay.n_jobs), demand, [cap], np.ones(S), demand[wk]])
        master = MasterLP(cost, np.concatenate([lay.lower, np.full(S, -np.inf), np.zeros(W)]),
                          np.concatenate([lay.upper, np.full(S, np.inf), np.full(W, np.inf)]), interior=True)
        if W:
            # w ≥ −Δφ − π  ⇔  −π − w ≤ Δφ
            a = sp.csr_matrix((np.concatenate([-np.ones(W), -np.ones(W)]),
                               (np.tile(np.arange(W), 2), np.concatenate([lay.n_jobs + wk, n + S + np.arange(W)]))),
                              shape=(W, n + S + W))
            master.add_rows(a, phi[wk])
        self._cut_rows = {i: [] for i in self.sites}
        self._changed = []
        self._w_rows = master.rows
        self._row_idle = np.zeros(master.rows, dtype=np.int64)
        return master

    def _sync_master(self) -> None:
        """Add the cuts the master LP does not have yet, and the new right-hand sides of replaced ones."""
        n = self.layout.size
        width = self._master.n
        coefs, theta, rhs, owners = [], [], [], []
        for q, i in enumerate(self.sites):
            for base, coef in self.cuts[i][len(self._cut_rows[i]):]:
                # θ_i ≥ base + coef·z  ⇔  coef·z − θ_i ≤ −base
                coefs.append(coef)
                theta.append(q)  # θ_i is column n + q
                rhs.append(-base)
                owners.append(i)
        if coefs:
            z_part = sp.csr_matrix(np.vstack(coefs))
            m = len(coefs)
            a = sp.hstack([z_part, sp.csr_matrix((-np.ones(m), (np.arange(m), theta)), shape=(m, width - n))],
                          format="csr")
            rows = self._master.add_rows(a, np.asarray(rhs))
            for i, row in zip(owners, rows, strict=True):
                self._cut_rows[i].append(int(row))
            self._row_idle = np.concatenate([self._row_idle, np.zeros(rows.size, dtype=np.int64)])
        for i, q in self._changed:
            row = self._cut_rows[i][q]
            self._master.set_row_upper(row, -self.cuts[i][q][0])
            self._row_idle[row] = 0
        self._changed = []

    def _drop_idle_cuts(self) -> None:
        """Drop the cuts slack at the last :data:`CUT_IDLE_LIMIT` master solves once there are enough of them.

        The master LP is then built again from the cuts kept. At 300 sites the master gains about 300 cuts
        per iteration and most of them are never tight again.
        """
        idle = self._row_idle[self._w_rows:] >= CUT_IDLE_LIMIT
        n_idle = int(idle.sum())
        if n_idle < max(len(self.sites), CUT_PURGE_SHARE * idle.size):
            return
        for i in self.sites:
            rows = self._cut_rows[i]
            keep = [q for q, row in enumerate(rows) if self._row_idle[row] < CUT_IDLE_LIMIT]
            keep += list(range(len(rows), len(self.cuts[i])))  # cuts not in the master yet
            self.cuts[i] = [self.cuts[i][q] for q in keep]
            self._seen[i] = {coef.tobytes(): q for q, (_, coef) in enumerate(self.cuts[i])}
        self.dropped += n_idle
        log.debug("bundle: %d idle cuts dropped, %d kept", n_idle, sum(len(c) for c in self.cuts.values()))
        self._master = None

    def next_point(self, time_limit: float | None = None) -> np.ndarray | None:
        """Solve the master in the box; sets ``predicted`` (decrease the model predicts, $).

        Returns None when ``time_limit`` (s) ran out before the master LP was solved.
        """
        lay = self.layout
        n = lay.size
        if self._master is not None:
            self._drop_idle_cuts()
        if self._master is None:
            self._master = self._build_master()
        self._sync_master()
        half = self.radius * lay.scale
        lo = np.maximum(self.center - half, lay.lower)
        hi = np.minimum(self.center + half, lay.upper)
        self._master.set_col_bounds(np.arange(n), lo, hi)
        sol = self._master.solve(time_limit)
        if sol is None:
            if not self._master.time_limited:
                log.warning("bundle master LP not solved (%s): the multipliers stop here", self._master.status_text)
            self.predicted = 0.0
            return None if self._master.time_limited else self.center.copy()
        self.predicted = max(self.center_value - sol.objective, 0.0)
        log.debug("bundle master: %d rows, %.2f s in HiGHS so far", self._master.rows, self._master.seconds)
        upper = self._master.row_upper
        # a cut is used if nearly tight or if it carries weight: a site's cut duals sum to 1 (θ_i costs 1), and
        # the interior point leaves about 1e-8 on every row, so both tests have slack for its inexactness
        used = (upper - sol.row_activity <= 1e-6 * np.maximum(1.0, np.abs(upper))) | (np.abs(sol.row_dual) > 1e-4)
        self._row_idle = np.where(used, 0, self._row_idle + 1)
        z = sol.x[:n]
        tight = 1e-6 * np.maximum(lay.scale, 1.0)
        self.on_box = bool(((np.abs(z - lo) <= tight) & (lo > lay.lower)).any()
                           or ((np.abs(z - hi) <= tight) & (hi < lay.upper)).any())
        return lay.project(z)


class Subgradient:
    """Polyak subgradient steps z ← z − α·(L(z) − target)/‖g‖²_D · D g, D = scale², projected."""

    def __init__(self, layout: Layout, *, alpha: float = 1.0, patience: int = 5) -> None:
        self.layout, self.alpha, self.patience = layout, alpha, patience
        self.best = math.inf
        self.stall = 0
        self.z: np.ndarray | None = None
        self.g: np.ndarray | None = None
        self.value = math.inf

    def add(self, ov: OracleValue) -> bool:
        if ov.upper < self.best - 1e-9 * max(1.0, abs(self.best)):
            self.best, self.stall = ov.upper, 0
        else:
            self.stall += 1
            if self.stall >= self.patience:
                self.alpha, self.stall = max(self.alpha * 0.5, 1e-6), 0
        self.z, self.g, self.value = ov.z.copy(), ov.subgradient.copy(), ov.upper
        return True

    def next_point(self, target: float) -> np.ndarray:
        d = self.layout.scale ** 2
        norm = float((self.g * self.g * d).sum())
        if norm <= 0:
            return self.z.copy()
        step = self.alpha * max(self.value - target, 1e-9 * max(1.0, abs(self.value))) / norm
        return self.layout.project(self.z - step * d * self.g)


# ============================================================================ primal recovery
class Recovery:
    """Lagrangian heuristic: repair the sites' choices into one plan, score it, polish it, search the pool.

    Jobs are taken mandatory first, then by decreasing value; each takes the first placement that
    fits the GPUs left, among the placements chosen by the site subproblems (cheapest estimated
    energy first), then the incumbent's, then (mandatory jobs only) every placement. Inference is the
    sites' routing, scaled down to fit the free GPUs and the demand. The plan is scored exactly by
    :func:`evaluate`; then the joint model with these placements fixed is solved (routing and
    dispatch re-optimized, global budget respected) — the *polish*.

    The *pool* collects every placement a site subproblem has chosen at any multipliers, the
    incumbent's, and (from the warm start) the LP's near-zero reduced-cost placements. The *restricted
    MILP* is the joint model with every other placement fixed to 0, seeded with the incumbent: a
    MILP over the columns the Lagrangian has generated, which recombines placements across iterations
    where the repair only follows one iteration's choices.
    """

    def __init__(self, inst: Instance, hub: Hub, *, polish: bool = True, seed: int = 0,
                 pool: np.ndarray | None = None) -> None:
        self.inst = inst
        self.hub = hub
        self.pl = enumerate_placements(inst)
        self.tried: set[bytes] = set()
        self.polish = polish
        self.seed = seed
        self._jm: JointModel | None = None
        self._polished = False
        self.pool = np.zeros(self.pl.size, dtype=bool) if pool is None else pool.copy()
        self._searched = -1  # pool size at the last restricted MILP
        s = inst.sites
        # $ per busy GPU and period at grid marginal prices (a crude ranking only)
        self.gpu_mw = (s.pue * ((s.gpu_busy_kw - s.gpu_idle_kw) / 1000.0)[:, None])

    def energy_cost(self, lam_c: float) -> np.ndarray:
        """Estimated $ per busy GPU-period (S,T) at grid prices, carbon priced at τ + λ_C."""
        s, inst = self.inst.sites, self.inst
        return self.gpu_mw * inst.period_hours * (s.price_buy + (inst.carbon_price + lam_c) * s.grid_co2)

    def repair(self, results: dict[int, SiteResult], lam_c: float, prefer: ComputePlan | None) -> ComputePlan | None:
        """One capacity-feasible plan from the site solutions, or None if a mandatory job fits nowhere."""
        inst = self.inst
        J, S, T = inst.n_jobs, inst.n_sites, inst.n_periods
        jb = inst.jobs
        cost = self.energy_cost(lam_c)
        free = np.broadcast_to(inst.sites.gpus[:, None].astype(np.float64), (S, T)).copy()
        job_site = np.full(J, -1, dtype=np.int64)
        job_start = np.full(J, -1, dtype=np.int64)
        order = sorted(range(J), key=lambda j: (not jb.mandatory[j], -jb.value[j], j))
        for j in order:
            d, g = int(jb.duration[j]), float(jb.gpus[j])
            run_cost = lambda i, s, d=d, g=g: float(cost[i, s:s + d].sum()) * g  # noqa: E731
            cands = sorted(((run_cost(i, int(r.job_start[j])), i, int(r.job_start[j]))
                            for i, r in results.items() if r.job_start[j] >= 0))
            cand_list = [(i, s) for _, i, s in cands]
            if prefer is not None and prefer.job_site[j] >= 0:
                cand_list.append((int(prefer.job_site[j]), int(prefer.job_start[j])))
            if jb.mandatory[j]:
                mine = np.flatnonzero(self.pl.job == j)
                cand_list += [(i, s) for _, i, s in sorted((run_cost(int(self.pl.site[p]), int(self.pl.start[p])),
                                                            int(self.pl.site[p]), int(self.pl.start[p]))
                                                           for p in mine)]
            if not cand_list:
                continue
            for i, s in cand_list:
                if (free[i, s:s + d] >= g - 1e-9).all():
                    job_site[j], job_start[j] = i, s
                    free[i, s:s + d] -= g
                    break
            else:
                if jb.mandatory[j]:
                    return None
        served = np.zeros((inst.n_classes, S, T))
        for i, r in results.items():
            served[:, i, :] = r.served
        served *= inst.slo_mask()[:, :, None] if inst.n_classes else 1.0
        return ComputePlan(job_site, job_start, fit_served(inst, served, free))

    def score(self, plan: ComputePlan, *, time_limit: float | None) -> list[Solution]:
        """Exact scoring of ``plan`` and, if new and enabled, its polish; feasible solutions found."""
        out: list[Solution] = []
        key = np.concatenate([plan.job_site, plan.job_start]).tobytes()
        if key in self.tried:
            return out
        self.tried.add(key)
        deadline = None if time_limit is None else time.perf_counter() + time_limit
        sol = self.hub.score(plan, "recovery", time_limit=time_limit)
        if sol is not None:
            out.append(sol)
        left = None if deadline is None else deadline - time.perf_counter()
        if self.polish and (left is None or left > 0.5):  # the polish shares the same time budget
            sol = self._polish(plan, left)
            if sol is not None:
                out.append(sol)
        return out

    def add_to_pool(self, job_site: np.ndarray, job_start: np.ndarray) -> None:
        """Add the placements of one job → (site, start) assignment (−1: unplaced)."""
        jobs = np.flatnonzero(job_site >= 0)
        idx = self.pl.index_of(jobs, job_site[jobs], job_start[jobs])
        self.pool[idx[idx >= 0]] = True

    def add_results(self, results: dict[int, SiteResult]) -> None:
        """Add the placements the site subproblems chose."""
        for r in results.values():
            self.add_to_pool(np.where(r.job_start >= 0, r.site, -1), r.job_start)

    def search_pool(self, incumbent: Solution | None, *, time_limit: float | None,
                    growth: float = POOL_GROWTH) -> Solution | None:
        """The restricted MILP over the pool, seeded with ``incumbent``; None if the pool is unchanged.

        The pool only grows; the search runs again once it has grown by the share ``growth`` (0: any new
        placement).
        """
        if incumbent is not None:
            self.add_to_pool(incumbent.job_site, incumbent.job_start)
        size = int(self.pool.sum())
        if size == 0 or size == self._searched or (self._searched > 0 and size < (1.0 + growth) * self._searched):
            return None
        self._searched = size
        jm = self._joint_model()
        if jm.placements.size:
            jm.am.set_var_data(jm.x, lb=0.0, ub=self.pool.astype(np.float64))
        if incumbent is not None:
            jm.am.add_solution(jm.values_of(incumbent))
        sol = self._solve(jm, time_limit, gap=POOL_GAP)
        if sol is not None and incumbent is not None and sol.objective <= incumbent.objective:
            return None
        return sol

    def _joint_model(self) -> JointModel:
        """The joint model shared by the polish and the restricted MILP, ready for in-place changes."""
        if self._jm is None:
            self._jm = build_joint_model(self.inst, name=f"{self.inst.name}-recovery")
        elif self._polished:
            self._jm.model.freeTransform()
        self._polished = True
        return self._jm

    def _solve(self, jm: JointModel, time_limit: float | None, gap: float = 1e-6) -> Solution | None:
        configure(jm.model, time_limit=time_limit, gap=gap, seed=self.seed, catch_interrupt=True)
        optimize(jm.model)
        note_scip_status(jm.model.getStatus())  # Ctrl-C during the polish or pool search ends the run
        if jm.model.getNSols() == 0:
            return None
        return solution_from_model(jm, self.inst, method="lagrangian", status="optimal")

    def _polish(self, plan: ComputePlan, time_limit: float | None) -> Solution | None:
        jm = self._joint_model()
        pl = jm.placements
        fixed = ((plan.job_site[pl.job] == pl.site) & (plan.job_start[pl.job] == pl.start)).astype(np.float64)
        if pl.size:
            jm.am.set_var_data(jm.x, lb=fixed, ub=fixed)
        return self._solve(jm, time_limit)

    def close(self) -> None:
        self._jm = None


# ============================================================================ options and algorithm
@dataclass
class LagrangianOptions(EngineOptions):
    """Options of :func:`solve_lagrangian` (the engine's, plus the Lagrangian's own).

    Attributes
    ----------
    method : {"bundle", "subgradient"}
        Multiplier update: box-trust-region cutting planes (LP master in HiGHS) or Polyak subgradient.
    subproblem_time_limit, subproblem_gap, subproblem_node_limit : optional
        SCIP limits per site solve (s, relative, nodes). The bound uses each site's dual bound, so it
        stays valid under any limit. Time limits make runs timing-dependent; gap/node limits do not.
    iteration_limit : int
        Maximum multiplier evaluations.
    recovery_every : int
        Run the primal recovery every this many iterations (and at the first and last).
    polish : bool
        Re-optimize routing and dispatch with the repaired placements fixed (joint model in SCIP), and
        search the restricted MILP over the placement pool.
    close : bool or None
        After the multiplier loop, if the gap is still above ``gap``, run the closing phase (the joint
        MILP seeded with the incumbent). None: only with at most :data:`CLOSE_AUTO_MAX_SITE_PERIODS`
        site-periods.
    close_share : float
        Share of ``time_limit`` reserved for the closing phase when it runs.
    primal : {"auto", "joint", "parallel"}
        The primal side. On both, the LP plan and the repaired plans are re-routed by the LP at their
        placements and improved by placement moves priced by that LP (:mod:`decomp.moves`). ``joint``: plans
        polished by the joint model with their placements fixed and the restricted MILP over the placement
        pool, both in this process. ``parallel``: every heavy step per site or per group of sites on the
        workers: completion by allocation from each recovery's site solutions, neighbourhood search
        over disjoint site groups, plans scored by the carbon-price search. ``auto``: ``joint`` up to
        :data:`CLOSE_AUTO_MAX_SITE_PERIODS` site-periods, ``parallel`` above.
    neighbourhood_share : float
        Share of the time limit one neighbourhood pass may take (parallel primal side).
    site_gap_share : float
        Each site MILP of a round stops once its own gap is this share of the run's open gap (incumbent to
        bound, $), or of the bundle's predicted decrease if smaller, divided by the number of sites: the
        round's bound is then at most that share looser than with exact site solves (:func:`site_abs_gap`).
        0: exact site solves.
    """

    method: str = "bundle"
    subproblem_time_limit: float | None = None
    subproblem_gap: float | None = None
    subproblem_node_limit: int | None = None
    iteration_limit: int = 200
    recovery_every: int = 3
    polish: bool = True
    close: bool | None = None
    close_share: float = 0.5
    primal: str = "auto"
    neighbourhood_share: float = 0.15
    site_gap_share: float = SITE_GAP_SHARE

    resume_free_options = EngineOptions.resume_free_options | {"iteration_limit"}

    def validate(self) -> None:
        super().validate()
        if self.primal not in PRIMAL_MODES:
            raise InputError(f"primal: must be one of {', '.join(PRIMAL_MODES)} (got {self.primal!r})")
        if not 0.0 <= self.site_gap_share < 1.0:
            raise InputError(f"site_gap_share: must be in [0, 1) (got {self.site_gap_share!r})")
        if not 0.0 <= self.neighbourhood_share < 1.0:
            raise InputError(f"neighbourhood_share: must be in [0, 1) (got {self.neighbourhood_share!r})")
        if self.method not in METHODS:
            raise InputError(f"method: must be one of {', '.join(METHODS)} (got {self.method!r})")
        if not 0.0 <= self.close_share < 1.0:
            raise InputError(f"close_share: must be in [0, 1) (got {self.close_share!r})")
        if not (isinstance(self.iteration_limit, int) and self.iteration_limit >= 1):
            raise InputError(f"iteration_limit: must be an integer >= 1 (got {self.iteration_limit!r})")
        if not (isinstance(self.recovery_every, int) and self.recovery_every >= 1):
            raise InputError(f"recovery_every: must be an integer >= 1 (got {self.recovery_every!r})")
        for name in ("subproblem_time_limit", "subproblem_gap"):
            v = getattr(self, name)
            if v is not None and not (v >= 0.0):
                raise InputError(f"{name}: must be >= 0 or None (got {v!r})")


class LagrangianAlgorithm(DecompositionAlgorithm):
    """The multiplier loop on the hub: LP warm start, site MILPs in parallel, bundle steps, recovery.

    The hub's ``state.info`` carries ``lagrangian_bound``, ``lp_bound`` and, after each iteration,
    ``z`` (the multipliers just evaluated) and ``oracle`` (:class:`OracleValue`).
    """

    name = "lagrangian"

    #: Stages of a run, in order; a checkpoint records the one reached (docs/reliability.md).
    STAGES = ("lp", "lp_plan", "loop", "closing", "done")

    def __init__(self, inst: Instance, options: LagrangianOptions) -> None:
        self.inst = inst
        self.opt = options
        self.layout = make_layout(inst)
        self.lagrangian_bound = math.inf
        self.lp_bound = math.inf
        self.iterations = 0
        self.gap_before_closing = math.inf
        self.closing_seconds = 0.0
        self.close, self.parallel_primal = sides_by_size(inst, options.close, options.primal)
        # the run's state (what a checkpoint holds): where it is, the multipliers and the primal side's memory
        self.stage = "lp"
        self.z: np.ndarray | None = None  # the multipliers of the first iteration (the LP's duals)
        self.lp_plan: ComputePlan | None = None
        self.lp_shares: np.ndarray | None = None
        self.stepper: BoxBundle | Subgradient | None = None
        self.recovery: Recovery | None = None
        self.starts: dict[int, np.ndarray] = {}  # last best solution per site: the next solve's start
        self.site_seconds: dict[int, float] | None = None  # last solve time per site, balances the workers
        #: (z, site results) of the Lagrangian evaluated at an LP round's duals (see _routing_from_sites)
        self.lp_round_sites: tuple[np.ndarray, dict[int, SiteResult]] | None = None
        self.long_search_done = False  # the one longer pool search (POOL_LONG_SHARE) has run
        self.passes = 0  # neighbourhood passes so far
        self.router: PlacementRouter | None = None  # the routing LP, built for the first plan it re-routes
        #: (K,S,T) the routing columns of a routing-priced LP relaxation (None: all); the router keeps to them
        self.lp_routing: np.ndarray | None = None
        self.last_map_seconds = 0.0  # wall time of the last round of site solves
        self.schedule = HeuristicSchedule(SCHEDULED_HEURISTICS,
                                          max_periods=dict(REPAIR_EVERY_RECOVERY) if self.parallel_primal else {})
        self.loop_status = SolveStatus.ITERATION_LIMIT.value
        self.final_status = SolveStatus.ITERATION_LIMIT.value
        self._loaded: StateDict | None = None

    def extra(self) -> dict:
        return {"lagrangian_bound": self.lagrangian_bound, "lp_bound": self.lp_bound, "iterations": self.iterations,
                "multiplier_method": self.opt.method, "closing_seconds": self.closing_seconds,
                "gap_before_closing": self.gap_before_closing}

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> StateDict:
        """Stage, iteration, multipliers, the bundle's centre and per-site cuts (or the subgradient state),
        the warm starts of the site solves, the placement pool and the plans already tried."""
        d: StateDict = {
            "stage": self.stage, "iterations": self.iterations, "lagrangian_bound": self.lagrangian_bound,
            "lp_bound": self.lp_bound, "gap_before_closing": self.gap_before_closing,
            "closing_seconds": self.closing_seconds, "loop_status": self.loop_status,
            "final_status": self.final_status, "long_search_done": int(self.long_search_done),
            "passes": self.passes, "last_map_seconds": self.last_map_seconds,
        }
        if self.z is not None:
            d["z"] = self.z
        if self.lp_plan is not None:
            d.update(lp_plan_site=self.lp_plan.job_site, lp_plan_start=self.lp_plan.job_start,
                     lp_plan_served=self.lp_plan.served)
        if self.lp_shares is not None:
            d["lp_shares"] = self.lp_shares
        if self.lp_routing is not None:
            d["lp_routing"] = self.lp_routing.astype(np.int8)
        if self.recovery is not None:
            rec = self.recovery
            d["pool"] = rec.pool.astype(np.int8)
            d["pool_searched"] = rec._searched
            d["tried"] = (np.array([np.frombuffer(k, dtype=np.uint8) for k in sorted(rec.tried)])
                          if rec.tried else np.zeros((0, 16 * self.inst.n_jobs), dtype=np.uint8))
        d.update(self.schedule.state_dict())
        sites = sorted(self.starts)
        d["start_site"] = np.asarray(sites, dtype=np.int64)
        d["start_values"], d["start_offsets"] = pack_rows([np.asarray(self.starts[i], np.float64) for i in sites])
        seconds = np.full(self.inst.n_sites, np.nan)
        for i, s in (self.site_seconds or {}).items():
            seconds[i] = s
        d["site_seconds"] = seconds
        st = self.stepper
        if isinstance(st, BoxBundle):
            d.update(bundle_radius=st.radius, bundle_on_box=int(st.on_box), bundle_center_value=st.center_value,
                     bundle_predicted=st.predicted, bundle_serious=st.serious)
            if st.center is not None:
                d["bundle_center"] = st.center
            cut_site = np.array([i for i in st.sites for _ in st.cuts[i]], dtype=np.int64)
            rows = [cf for i in st.sites for _, cf in st.cuts[i]]
            coef = sp.csr_matrix(np.vstack(rows)) if rows else sp.csr_matrix((0, self.layout.size))
            d.update(cut_site=cut_site, cut_base=np.array([b for i in st.sites for b, _ in st.cuts[i]]),
                     cut_indptr=coef.indptr.astype(np.int64), cut_indices=coef.indices.astype(np.int64),
                     cut_data=coef.data.astype(np.float64))
        elif isinstance(st, Subgradient):
            d.update(subgradient_alpha=st.alpha, subgradient_best=st.best, subgradient_stall=st.stall,
                     subgradient_value=st.value)
            if st.z is not None:
                d.update(subgradient_z=st.z, subgradient_g=st.g)
        return d

    def load_state_dict(self, state: StateDict) -> None:
        """Check ``state`` against this instance (shapes, ranges; InputError naming the field) and keep it for
        :meth:`run`, which continues at its stage and iteration."""
        inst, n = self.inst, self.layout.size
        S, J = inst.n_sites, inst.n_jobs
        stage = state_scalar(state, "stage", str)
        if stage not in self.STAGES:
            raise InputError(f"/algorithm/stage: must be one of {', '.join(self.STAGES)} (got {stage!r})")
        for key in ("loop_status", "final_status"):
            if state_scalar(state, key, str) not in SolveStatus._value2member_map_:
                raise InputError(f"/algorithm/{key}: not a solve status")
        for key in ("iterations", "passes"):
            if state_scalar(state, key, int) < 0:
                raise InputError(f"/algorithm/{key}: must be >= 0")
        if "z" in state or (stage in ("lp_plan", "loop") and state_scalar(state, "iterations", int) == 0):
            state_array(state, "z", shape=(n,))
        if "lp_shares" in state:
            state_array(state, "lp_shares", shape=(S,))
        if "lp_plan_site" in state:
            state_array(state, "lp_plan_site", shape=(J,), dtype=np.int64)
            state_array(state, "lp_plan_start", shape=(J,), dtype=np.int64)
            state_array(state, "lp_plan_served", shape=(inst.n_classes, S, inst.n_periods))
        if "lp_routing" in state:
            state_array(state, "lp_routing", shape=(inst.n_classes, S, inst.n_periods), dtype=np.int8)
        if stage != "lp":
            state_array(state, "pool", shape=(enumerate_placements(inst).size,), dtype=np.int8)
            state_array(state, "tried", shape=(None, 16 * J), dtype=np.uint8)
        sites = state_array(state, "start_site", shape=(None,), dtype=np.int64)
        if ((sites < 0) | (sites >= S)).any():
            raise InputError("/algorithm/start_site: site index out of range")
        offsets = state_array(state, "start_offsets", shape=(sites.size + 1,), dtype=np.int64)
        unpack_rows(state_array(state, "start_values", shape=(None,)), offsets, "start_offsets")
        state_array(state, "site_seconds", shape=(S,))
        if self.opt.method == "bundle" and "cut_site" in state:
            cut_site = state_array(state, "cut_site", shape=(None,), dtype=np.int64)
            if ((cut_site < 0) | (cut_site >= S)).any():
                raise InputError("/algorithm/cut_site: site index out of range")
            state_array(state, "cut_base", shape=(cut_site.size,))
            self._cut_matrix(state, cut_site.size)
            if "bundle_center" in state:
                state_array(state, "bundle_center", shape=(n,))
        if self.opt.method == "subgradient" and "subgradient_z" in state:
            state_array(state, "subgradient_z", shape=(n,))
            state_array(state, "subgradient_g", shape=(n,))
        if "heuristic_counts" in state:  # checkpoints of earlier releases have no schedule: it starts afresh
            self.schedule.load_state_dict(state)
        self._loaded = dict(state)

    def _cut_matrix(self, state: StateDict, rows: int) -> sp.csr_matrix:
        indptr = state_array(state, "cut_indptr", shape=(rows + 1,), dtype=np.int64)
        indices = state_array(state, "cut_indices", shape=(None,), dtype=np.int64)
        data = state_array(state, "cut_data", shape=(indices.size,))
        if indptr[0] != 0 or indptr[-1] != indices.size or (np.diff(indptr) < 0).any() \
                or ((indices < 0) | (indices >= self.layout.size)).any():
            raise InputError("/algorithm/cut_indptr: the cut coefficients do not fit the multipliers")
        return sp.csr_matrix((data, indices, indptr), shape=(rows, self.layout.size))

    def _restore(self, d: StateDict) -> None:
        """Put the loaded state into the run's objects (recovery and stepper made by :meth:`run`)."""
        self.stage = str(d["stage"])
        self.iterations = int(d["iterations"])
        for key in ("lagrangian_bound", "lp_bound", "gap_before_closing", "closing_seconds", "last_map_seconds"):
            setattr(self, key, float(d[key]))
        self.loop_status, self.final_status = str(d["loop_status"]), str(d["final_status"])
        self.long_search_done, self.passes = bool(d["long_search_done"]), int(d["passes"])
        self.z = None if "z" not in d else np.asarray(d["z"], dtype=np.float64)
        self.lp_shares = None if "lp_shares" not in d else np.asarray(d["lp_shares"], dtype=np.float64)
        self.lp_routing = None if "lp_routing" not in d else np.asarray(d["lp_routing"]).astype(bool)
        if "lp_plan_site" in d:
            self.lp_plan = ComputePlan(job_site=np.asarray(d["lp_plan_site"], dtype=np.int64),
                                       job_start=np.asarray(d["lp_plan_start"], dtype=np.int64),
                                       served=np.asarray(d["lp_plan_served"], dtype=np.float64))
        rec = self.recovery
        rec.pool = np.asarray(d["pool"]).astype(bool)
        rec._searched = int(d["pool_searched"])
        rec.tried = {np.ascontiguousarray(row, dtype=np.uint8).tobytes() for row in np.asarray(d["tried"])}
        sites = np.asarray(d["start_site"], dtype=np.int64)
        rows = unpack_rows(np.asarray(d["start_values"], np.float64), np.asarray(d["start_offsets"], np.int64),
                           "start_offsets")
        self.starts = {int(i): r.copy() for i, r in zip(sites, rows, strict=True)}
        seconds = np.asarray(d["site_seconds"], dtype=np.float64)
        known = np.flatnonzero(np.isfinite(seconds))
        self.site_seconds = {int(i): float(seconds[i]) for i in known} if known.size else None
        st = self.stepper
        if isinstance(st, BoxBundle) and "cut_site" in d:
            st.radius, st.on_box = float(d["bundle_radius"]), bool(d["bundle_on_box"])
            st.center_value, st.predicted = float(d["bundle_center_value"]), float(d["bundle_predicted"])
            st.serious = int(d["bundle_serious"])
            st.center = None if "bundle_center" not in d else np.asarray(d["bundle_center"], dtype=np.float64)
            cut_site = np.asarray(d["cut_site"], dtype=np.int64)
            coef = self._cut_matrix(d, cut_site.size).toarray()
            for i, base, cf in zip(cut_site, np.asarray(d["cut_base"], np.float64), coef, strict=True):
                st._add_cut(int(i), float(base), cf)
        elif isinstance(st, Subgradient) and "subgradient_alpha" in d:
            st.alpha, st.best = float(d["subgradient_alpha"]), float(d["subgradient_best"])
            st.stall, st.value = int(d["subgradient_stall"]), float(d["subgradient_value"])
            if "subgradient_z" in d:
                st.z = np.asarray(d["subgradient_z"], np.float64)
                st.g = np.asarray(d["subgradient_g"], np.float64)

    def _solve_sites(self, pool, z: np.ndarray, sites, *, time_limit: float | None, deadline: float | None,
                     abs_gap: float = 0.0) -> dict[int, SiteResult]:
        """The site MILPs of ``sites`` at multipliers z on the pool, each from its last solution; their solve times
        (the next call's load balance) and solutions (the next starts) are kept."""
        opt = self.opt
        mu, pi, lam_c = self.layout.split(z)
        calls = {i: ((mu, pi, lam_c), {"time_limit": time_limit, "deadline": deadline, "gap": opt.subproblem_gap,
                                       "node_limit": opt.subproblem_node_limit, "start": self.starts.get(i),
                                       "abs_gap": abs_gap})
                 for i in sites}
        results = pool.map(SITE_MILP_KIND, make_site_milp, "solve", calls, options={"seed": opt.seed},
                           cost=self.site_seconds)
        self.site_seconds = {i: r.seconds for i, r in results.items()}
        self.starts.update({i: r.values for i, r in results.items() if r.values.size})
        return results

    def _routing_from_sites(self, hub: Hub, round_lp: JointLP, left: float | None) -> np.ndarray | None:
        """The routing columns the site subproblems use at the duals of a routing-priced LP round.

        One Lagrangian evaluation at the round's multipliers: its bound is valid and offered to the hub, and
        the classes each site serves in its solution are the columns the next LP round gets as well (a site
        fills its GPUs with the classes it values most, which the per-column reduced costs cannot see).
        None (no further round) once that bound is within :data:`ROUTING_ROUNDS_CLOSE` of the round's own
        optimum, or when no time is left.
        """
        inst, opt, layout = self.inst, self.opt, self.layout
        if left is not None and left <= 0.0:
            return None
        z = multipliers_from_lp(round_lp, layout)
        deadline = None if left is None else time.time() + left
        results = self._solve_sites(hub.pool, z, range(inst.n_sites), time_limit=opt.subproblem_time_limit,
                                    deadline=deadline)
        self.lp_round_sites = (z, results)  # the first iteration's, when this round's LP is the last
        ov = oracle_value(inst, layout, z, results)
        hub.offer_bound(ov.upper, f"Lagrangian at the duals of LP round {round_lp.pricing_rounds}")
        self.lagrangian_bound = min(self.lagrangian_bound, ov.upper)
        log.info("Lagrangian at the duals of LP round %d: %.2f (restricted LP %.2f)", round_lp.pricing_rounds,
                 ov.upper, round_lp.restricted)
        if ov.upper - round_lp.restricted <= ROUTING_ROUNDS_CLOSE * max(1.0, abs(round_lp.restricted)):
            return None  # the duals are good enough: the bundle goes on from here
        served = np.zeros((inst.n_classes, inst.n_sites, inst.n_periods), dtype=bool)
        for i, r in results.items():
            served[:, i, :] = r.served > 0
        return served

    # ------------------------------------------------------------------ the run
    def run(self, hub: Hub) -> SolveStatus:
        inst, opt, layout = self.inst, self.opt, self.layout
        full_limit = opt.time_limit
        # the multiplier loop's own limit: what the closing phase leaves it
        loop_limit = full_limit if not (self.close and full_limit is not None) else (1.0 - opt.close_share) * full_limit
        remaining = lambda: None if loop_limit is None else loop_limit - hub.seconds  # noqa: E731
        loaded, self._loaded = self._loaded, None
        if loaded is not None and loaded["stage"] == "lp":
            loaded = None  # stopped before the warm start ended: start afresh (the clock goes on)
        sites = list(range(inst.n_sites))
        joint_polish = opt.polish and not self.parallel_primal
        lp_pool = None
        lp_text = None
        if loaded is None:
            hub.set_phase("lp", 0)
            # the warm start may use at most a quarter of the loop's time; with the parallel primal side 65 % of
            # it, since the LP is then also the source of the first plan and of the neighbourhoods' seeds (at 300
            # sites a 75 s cap cut it off, and the run ended at a 236 % gap from zero multipliers; at 100 sites
            # with jobs at 50-100 sites a 60 s cap cut off a 66 s LP, and a 120 s run ended without a plan)
            share = LP_SHARE_PARALLEL if self.parallel_primal else LP_SHARE
            if routing_priced_by_default(inst):
                share = max(share, LP_SHARE_ROUTING)
            left = remaining()
            lp = lp_relaxation(inst, layout, time_limit=None if loop_limit is None else max(min(share * loop_limit,
                                                                                                 left), 0.0),
                               suggest_routing=lambda round_lp: self._routing_from_sites(hub, round_lp, remaining()))
            self.lp_bound = lp.bound
            hub.offer_bound(lp.bound, "LP relaxation")
            self.z = lp.z.copy()
            self.lp_plan = lp.plan
            self.lp_routing = None if lp.joint is None else lp.joint.routing_active
            self.lp_shares = lp_site_shares(lp.joint) if (self.parallel_primal and lp.joint is not None) else None
            lp_pool = lp.pool
            lp_text = (f"LP relaxation bound in {lp.seconds:.2f} s" if math.isfinite(lp.bound) else
                       f"LP relaxation not solved within {lp.seconds:.1f} s: zero multipliers, no LP plan")
            if lp.joint is not None and lp.joint.routing_in >= 0:
                lp_text += (f" (routing priced in: {lp.joint.pricing_rounds} rounds, {lp.joint.routing_in:,} of "
                            f"{int((lp.joint.jm.y >= 0).sum()):,} routing columns)")
            del lp  # the joint LP (its arrays, values and duals) is not needed again
        hub.state.info["lp_bound"] = self.lp_bound
        self.recovery = recovery = Recovery(inst, hub, polish=joint_polish, seed=opt.seed, pool=lp_pool)
        self.stepper = stepper = (BoxBundle(inst, layout, sites) if opt.method == "bundle" else Subgradient(layout))
        if loaded is not None:
            self._restore(loaded)
            hub.state.info["lagrangian_bound"] = self.lagrangian_bound
            log.info("resumed at stage %s, iteration %d", self.stage, self.iterations)
        else:
            self.stage = "lp_plan"
        if lp_text is not None:
            hub.record(lp_text)
        lp_shares = self.lp_shares
        status = SolveStatus.ITERATION_LIMIT
        prefer: list[ComputePlan | None] = [None]

        def keep(sol: Solution, source: str) -> None:
            if hub.offer_solution(sol, source):
                prefer[0] = ComputePlan.from_solution(sol)

        def search_pool(budget: float, growth: float = POOL_GROWTH) -> None:
            sol = recovery.search_pool(hub.incumbent, time_limit=budget, growth=growth)
            if sol is not None:
                keep(sol, f"restricted MILP over {int(recovery.pool.sum())} placements")

        def neighbourhoods() -> None:
            """One pass of the neighbourhood search on the incumbent, groups seeded where the LP sees value left."""
            inc = hub.incumbent
            if inc is None:
                return
            left = remaining()
            budget = None if left is None else min(left, opt.neighbourhood_share * loop_limit)
            if budget is not None and budget < 1.0:
                return
            # each pass groups the sites differently (the same groups again found almost nothing: +37 $ after
            # +13,421 $ at 100 sites): the group size cycles through NEIGHBOURHOOD_SIZES, the LP's value left
            # seeds the first cycle and the partitions are drawn after it
            size = NEIGHBOURHOOD_SIZES[self.passes % len(NEIGHBOURHOOD_SIZES)]
            rng = (np.random.default_rng([opt.seed, self.passes]) if self.passes >= len(NEIGHBOURHOOD_SIZES)
                   else None)
            self.passes += 1
            better = neighbourhood_pass(inst, hub.pool, inc, size=size, lp_shares=lp_shares, time_limit=budget,
                                        method="lagrangian", rng=rng)
            if better is not None:
                keep(better, f"neighbourhoods (groups of {size})")

        def complete(ov: OracleValue) -> None:
            """Completion by allocation from the iteration's site solutions (per site, in parallel)."""
            left = remaining()
            budget = None if left is None else min(left, RECOVERY_SHARE * loop_limit)
            if budget is not None and budget < 1.0:
                return
            try:
                sol = complete_from_site_results(inst, hub.pool, ov.results, lam_c=layout.split(ov.z)[2],
                                                 time_limit=budget, method="lagrangian")
            except InfeasibleError as exc:  # the sites' choices leave a mandatory job nowhere to go
                log.info("completion from site results skipped: %s", exc)
                return
            keep(sol, "completion by allocation")

        def scheduled(name: str, heuristic, *args) -> None:
            """Run ``heuristic(*args)`` if the schedule says it is due; report what it gained."""
            if not self.schedule.due(name):
                return
            before, t0 = hub.primal, time.perf_counter()
            heuristic(*args)
            self.schedule.report(name, before, hub.primal, time.perf_counter() - t0)

        def score_plan(plan: ComputePlan | None, *, route: bool, moves_cap: float = math.inf) -> None:
            """Score ``plan`` (first re-routed by the LP at its placements and improved by placement moves if
            ``route``; the moves for at most ``moves_cap`` s under a time limit), and polish it."""
            if plan is None:
                return
            left = remaining()
            if left is not None and left <= MIN_SCORING_SECONDS:
                return  # out of time: the time limit holds even before a first plan (then NoSolutionError)
            # routing, scoring and polishing one plan may take at most RECOVERY_SHARE of the limit together
            # (at 100 sites the polish alone can otherwise eat the budget the multipliers need)
            deadline = None if left is None else time.time() + min(left, RECOVERY_SHARE * loop_limit)
            # re-routing solves an LP as large as the relaxation: not tried when that was not solved in time
            # (HiGHS then overran its time limit: 300 sites, 60 s limit, the run ended at 94.5 s)
            if route and math.isfinite(self.lp_bound):
                if self.router is None:
                    # kept: each plan is re-routed from the last one's basis; over the routing columns the LP
                    # priced in, when it did (at 1,000 sites 2.56 M columns otherwise)
                    self.router = PlacementRouter(inst, routing=self.lp_routing)
                # placement moves priced by the routing LP may take MOVES_SHARE of the plan's time (on the LP's
                # rounded plan at 100 sites with jobs at 50-100 sites: 1.93 % -> 0.72 % below the LP bound in 11.5 s)
                moves_limit = None if deadline is None else min(MOVES_SHARE * max(deadline - time.time(), 0.0),
                                                                moves_cap)
                found = improve_by_moves(self.router, plan, time_limit=moves_limit)
                if found is not None and found.value <= hub.primal:
                    # the routing LP relaxes the routed plan's exact scoring (routing free, dispatch relaxed), so
                    # its value bounds the plan's Z: this plan cannot beat the incumbent (scoring took 2.4-5.4 s
                    # per plan at 100 sites, where 6 of 7 repaired plans were below the incumbent)
                    log.debug("routed plan not scored: its LP value %.2f is not above the incumbent", found.value)
                    return
                plan = plan if found is None else found.plan
            budget = limit_by_deadline(None, deadline)
            if budget is not None and budget <= MIN_SCORING_SECONDS:
                return
            for sol in recovery.score(plan, time_limit=budget):
                keep(sol, "recovery")

        def recover(ov: OracleValue | None, extra_plan: ComputePlan | None = None) -> None:
            """The recovery: the heuristics the schedule finds due, on this iteration's site solutions."""
            previous = hub.state.phase
            hub.set_phase("recovery")
            if ov is not None and self.parallel_primal:
                scheduled("completion", complete, ov)
            if ov is not None:
                # the moves on a repaired plan may take as long as the round of site MILPs took: at 100 sites
                # up to half of a plan's time (12 s) they cost 48 s in five calls of a 120 s run, none of whose
                # plans passed the incumbent, and the multipliers lost those iterations
                scheduled("repair", lambda: score_plan(recovery.repair(ov.results, layout.split(ov.z)[2], prefer[0]),
                                                       route=True, moves_cap=self.last_map_seconds))
            if extra_plan is not None:
                score_plan(extra_plan, route=True)
            if self.parallel_primal and opt.polish:
                scheduled("neighbourhoods", neighbourhoods)
            left = remaining()
            if joint_polish and (left is None or left > 1.0):
                # without a time limit the search is still capped: a restricted MILP at 100 sites can run for hours
                search_pool(POOL_UNLIMITED_SECONDS if left is None else min(left, POOL_SHARE * loop_limit))
            hub.set_phase(previous)

        if hub.incumbent is not None:
            prefer[0] = ComputePlan.from_solution(hub.incumbent)
        if self.stage == "lp_plan":
            if self.lp_plan is not None:
                hub.set_phase("recovery")
                recover(None, self.lp_plan)  # the rounded LP solution: often the first incumbent on large instances
                self.stage = "loop"
                hub.record("rounded LP plan scored")
            elif hub.incumbent is None:
                # the LP was not solved in its share: without a plan now, a run whose first round of site MILPs
                # takes the rest of the limit ends with none (100 sites, jobs at 50-100 sites, 120 s)
                try:
                    fallback = energy_only_plan(inst)
                except CarbonschedError as exc:
                    log.info("no energy-only plan to start from: %s", exc)
                else:
                    hub.set_phase("recovery")
                    score_plan(fallback, route=False)
                    hub.record("energy-only plan scored")
            self.stage = "loop"
        pool = hub.pool
        hub.set_phase("iteration")
        while self.stage == "loop":
            it = self.iterations
            if it > 0:
                # the previous iteration's verdict, taken here so that a checkpoint written at its trace row
                # resumes at this point (the state then is: iteration ``it`` evaluated, its cuts in the stepper)
                if hub.gap_reached():
                    status = SolveStatus.GAP_LIMIT
                    break
                if it >= opt.iteration_limit:
                    status = SolveStatus.ITERATION_LIMIT
                    break
                if loop_limit is not None and hub.seconds >= loop_limit:
                    status = SolveStatus.TIME_LIMIT
                    break
                if isinstance(stepper, BoxBundle):
                    left = remaining()
                    z = stepper.next_point(time_limit=left)
                    if z is None:  # the master LP ran out of time
                        status = SolveStatus.TIME_LIMIT
                        break
                    tol = 1e-7 * max(1.0, abs(stepper.center_value))
                    if stepper.predicted <= tol:
                        log.info("multipliers converged (predicted decrease %.3g $)", stepper.predicted)
                        status = SolveStatus.ITERATION_LIMIT
                        break
                else:
                    target = hub.primal if math.isfinite(hub.primal) else stepper.value - 0.01 * abs(stepper.value)
                    z = stepper.next_point(target)
            else:
                z = self.z.copy()
            left = remaining()
            if it > 0 and left is not None and left < max(0.5, 0.5 * self.last_map_seconds):
                # a round cut short by the deadline proves no bound (sites stop without one): stop instead
                status = SolveStatus.TIME_LIMIT
                break
            hub.state.info["z"] = z
            hub.pre_iteration(it)
            sub_tl = opt.subproblem_time_limit
            if left is not None:
                sub_tl = max(left, 0.05) if sub_tl is None else min(sub_tl, max(left, 0.05))
            # a worker solves its sites one after another: each gets what is left before the common deadline
            deadline = None if left is None else time.time() + max(left, 0.05)
            predicted = stepper.predicted if isinstance(stepper, BoxBundle) and it > 0 else math.inf
            abs_gap = site_abs_gap(hub.bound - hub.primal, len(sites), opt.site_gap_share, predicted)
            map_start = time.perf_counter()
            evaluated, self.lp_round_sites = self.lp_round_sites, None
            if it == 0 and evaluated is not None and np.array_equal(evaluated[0], z):
                results = evaluated[1]  # the last LP round's duals were evaluated for its routing suggestions
            else:
                results = self._solve_sites(pool, z, sites, time_limit=sub_tl, deadline=deadline, abs_gap=abs_gap)
            self.last_map_seconds = time.perf_counter() - map_start
            hub.post_subproblems(results)
            recovery.add_results(results)
            ov = oracle_value(inst, layout, z, results)
            hub.offer_bound(ov.upper, "Lagrangian dual")
            self.lagrangian_bound = min(self.lagrangian_bound, ov.upper)
            stepper.add(ov)
            it += 1
            self.iterations = it
            hub.state.iteration = it
            hub.state.info.update(lagrangian_bound=self.lagrangian_bound, oracle=ov)
            last = it >= opt.iteration_limit
            if it == 1 or last or (it - 1) % opt.recovery_every == 0:
                recover(ov)
            left = remaining()
            halfway = left is not None and left <= 0.5 * loop_limit
            if joint_polish and not self.long_search_done and halfway:
                # one long search once the pool has grown for half the loop; then the loop goes on
                self.long_search_done = True
                hub.set_phase("recovery")
                search_pool(min(POOL_LONG_SHARE * full_limit, max(left - 0.5, 0.5)), growth=0.0)
                hub.set_phase("iteration")
            hub.post_iteration()
            lagrangian_text = f"{ov.upper:.2f}" if math.isfinite(ov.upper) else "-"
            hub.record(f"L {lagrangian_text}  sub {ov.site_seconds:.2f}s  pool {int(recovery.pool.sum())}")
        if self.stage == "loop":  # the loop ended in this run
            recovery.close()
            self.router = None
            log.info("primal heuristics: %s", "; ".join(
                f"{n} {r['improved']}/{r['calls']} improved, {r['gain']:+.2f} $ in {r['seconds']:.1f} s"
                for n, r in self.schedule.summary().items()))
            self.gap_before_closing = hub.gap
            self.loop_status = status.value
            self.stage = "closing"
        if self.stage == "closing":
            status = SolveStatus(self.loop_status)
            if self.close:
                status = hub.close_open_gap(status)
                self.closing_seconds = hub.state.info.get("closing_seconds", self.closing_seconds)
                if status is SolveStatus.INTERRUPTED:
                    return status  # a resume runs the closing phase again
            self.final_status = status.value
            self.stage = "done"
        return SolveStatus(self.final_status)


def solve_lagrangian(
    inst: Instance,
    *,
    time_limit: float | None = None,
    gap: float = 1e-4,
    config: ParallelConfig | None = None,
    hooks: DecompositionHooks | None = None,
    progress: ProgressCallback | None = None,
    seed: int = 0,
    initial: ComputePlan | None = None,
    **options,
) -> Solution:
    """Solve ``inst`` by Lagrangian decomposition (sites in parallel), with a valid bound throughout.

    Parameters
    ----------
    inst : Instance
        The instance.
    time_limit : float, optional
        Wall-clock limit, s (checked between iterations; site solves get the remaining time).
    gap : float
        Stop when (bound − Z) / max(1, |Z|) ≤ gap.
    config : ParallelConfig, optional
        Workers for the site subproblems and the scoring (default: in-process).
    hooks : DecompositionHooks, optional
        Extension points (the same class for every method).
    progress : callable, optional
        Receives a :class:`~carbonsched.progress.ProgressEvent` at every trace row.
    seed : int
        SCIP seed shift of every solve.
    initial : ComputePlan, optional
        A plan scored before the first iteration: the first incumbent.
    **options
        Fields of :class:`LagrangianOptions` (``method``, ``iteration_limit``, ``polish``, ``close``, ...).

    Returns
    -------
    Solution
        Method ``lagrangian``; ``bound`` is the best of the Lagrangian, LP-relaxation and (if run)
        closing-phase bounds, ``certified`` true when it is finite. ``extra`` holds ``lagrangian_bound``,
        ``lp_bound``, ``iterations``, ``closing_seconds`` and ``gap_before_closing``.

    Raises
    ------
    InputError
        An option is out of range (named).
    InfeasibleError
        Mandatory jobs cannot all be placed.
    NoSolutionError
        No feasible plan was found before the solve stopped.
    """
    return run_algorithm(inst, "lagrangian", LagrangianOptions, LagrangianAlgorithm, hooks=hooks, progress=progress,
                         time_limit=time_limit, gap=gap, config=config, seed=seed, initial=initial, **options)

