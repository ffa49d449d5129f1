"""Benders decomposition: compute placement and commitment in a master, per-site energy LPs in parallel.

Exactness. The energy side of a site is a MILP (grid direction, battery mode, generator commitment),
and cuts from its LP relaxation alone are valid but leave a gap. Here the commitment binaries live in
the master (:mod:`formulations.benders_master`), so each site subproblem is an LP
(:mod:`formulations.site_lp`) and its dual gives cuts that are exact at integral master points:
classical Benders, finite convergence. Every cut is a valid upper bound on the site's value for every
master point, so the master's dual bound is a certified bound at every iteration.

Algorithm.
1. Root cut loop on the LP relaxation of the master (cheap), with in-out stabilization: subproblems are
   separated at a point between the LP optimum and a core point (running average of LP optima); when
   that cut does not cut off the LP optimum, the optimum itself is separated.
2. MILP master loop: the master MILP is solved (to a fraction of the requested gap), its optimal plan
   is scored exactly by :func:`formulations.evaluate` (the primal side), subproblems are solved at its
   point and violated cuts added; the master's dual bound is the dual side. The master is rebuilt from
   the cut pool each iteration (building is cheap); cuts that stayed slack for ``cut_age_limit``
   iterations leave the master but stay in the pool, and come back when a pool check finds them
   violated.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from carbonsched.errors import CarbonschedError, InputError
from carbonsched.formulations.baselines import energy_only_plan
from carbonsched.formulations.benders_master import BendersMaster, LagrangianCut, build_benders_master
from carbonsched.formulations.diagnose import diagnose_mandatory
from carbonsched.formulations.lp_relaxation import solve_lp_relaxation
from carbonsched.formulations.plan import ComputePlan
from carbonsched.formulations.scip_arrays import add_csr_rows
from carbonsched.formulations.scip_run import configure, interrupts_seen, run_scip
from carbonsched.formulations.site_lp import make_site_lp
from carbonsched.formulations.site_milp import SITE_MILP_KIND, limit_by_deadline, make_site_milp
from carbonsched.formulations.solution import Solution, SolveStatus, compute_gap
from carbonsched.instances.schema import Instance
from carbonsched.progress import ProgressCallback
from pyscipopt import SCIP_LPPARAM

from .benders_tree import BendersCutHandler, cut_from_result
from .checkpoint import StateDict, state_array, state_scalar
from .completion import lp_site_shares, neighbourhood_pass
from .cuts import CutPool
from .engine import DecompositionAlgorithm, EngineOptions, Hub, run_algorithm
from .hooks import DecompositionHooks
from .lagrangian import (
    NEIGHBOURHOOD_SIZES,
    PRIMAL_MODES,
    constant_terms,
    make_layout,
    multipliers_from_lp,
    sides_by_size,
    site_abs_gap,
)
from .moves import route_and_improve
from .parallel import ParallelConfig
from .rounding import round_fractional_plan

log = logging.getLogger(__name__)

#: Multi-tree master iterations when BendersOptions.max_iterations is None.
MULTI_TREE_ITERATIONS = 200
#: How the MILP master is searched (BendersOptions.master).
MASTER_MODES = ("auto", "single-tree", "multi-tree")
#: ``master="auto"`` searches the single tree on instances of at most this many sites × periods, the
#: multi-tree master above (measured: the single tree won at 6 × 24 and 10 × 24, lost at 8 × 48, 3 × 168,
#: 30 × 24, 100 × 24 and 10 × 168; docs/benchmarks.md).
SINGLE_TREE_MAX_SITE_PERIODS = 240


@dataclass
class BendersOptions(EngineOptions):
    """Options of :func:`solve_benders`: the engine's (time limit, gap, workers, initial plan, seed) and these.

    Attributes
    ----------
    root_rounds : int
        Maximum rounds of the LP-relaxation cut loop.
    stabilization : float
        In-out weight α of the LP optimum in the separation point (1 = no stabilization).
    master_gap_share : float
        The master MILP is solved to this share of the requested gap.
    cut_age_limit : int
        MILP iterations a cut may stay slack before it leaves the master (it stays in the pool).
    max_iterations : int or None
        Multi-tree: MILP master iterations (None: 200). Single tree: separation rounds — site LPs at one
        master point — after which the search stops with status ``iteration_limit`` (None: no limit).
    master : {"auto", "single-tree", "multi-tree"}
        How the MILP master is searched after the root loop (``auto``: the single tree up to
        :data:`SINGLE_TREE_MAX_SITE_PERIODS` sites × periods, the multi-tree above). ``single-tree``
        (branch-and-Benders-cut, :mod:`carbonsched.decomp.benders_tree`): one SCIP search whose integral
        candidates are checked against the site LPs, cuts added as lazy constraints. ``multi-tree``: the
        master MILP is rebuilt from the cut pool and solved again after every round of cuts
        (docs/decomposition.md compares them).
    separation_depth : int
        Single tree: fractional node LP points are separated (site LPs, cuts) at nodes up to this depth
        (−1: only integral candidates).
    lp_warm_start : bool
        Solve the joint LP relaxation first (:func:`formulations.lp_relaxation.solve_lp_relaxation`):
        its optimum is a valid bound, its rounded solution a candidate plan, and its energy-side values
        the stability center of the root cut loop (no cuts are separated at that fractional point).
    lp_share : float
        Share of the time limit the LP warm start may take (skipped past it).
    lagrangian_bound : bool
        After the LP warm start, solve every site's Lagrangian subproblem (:mod:`formulations.site_milp`:
        its jobs, inference and energy with integrality) at the LP's duals, in parallel: the Lagrangian
        bound at those multipliers, offered to the hub. The energy-side cuts alone leave the master's
        bound at the joint LP's until branching lowers it.
    lagrangian_cuts : bool
        Also add one Lagrangian cut per site from that round to every MILP master
        (:class:`formulations.benders_master.LagrangianCut`): the master LP then cannot exceed the
        Lagrangian bound, but its dense rows slow the search (off by default, docs/decomposition.md).
    lagrangian_share : float
        Share of the time limit those site subproblems may take together.
    close : bool or None
        When the master search ends without the requested gap (its share of the time limit used, or
        ``max_iterations``), run the engine's closing phase: the joint MILP seeded with the incumbent (as
        the Lagrangian does). None: only on instances of at most
        :data:`decomp.lagrangian.CLOSE_AUTO_MAX_SITE_PERIODS` sites × periods.
    close_share : float
        Share of the time limit reserved for the closing phase when it runs.
    primal : {"auto", "joint", "parallel"}
        The primal side besides the master's plans and the rounded LP plan (on either side re-routed by the LP
        at its placements and improved by placement moves, :func:`decomp.moves.route_and_improve`).
        ``joint``: the closing phase. ``parallel``: neighbourhood passes on the workers after the LP warm
        start (:func:`decomp.completion.neighbourhood_pass`, groups of 3, 4, 2, 3, ... sites, until a pass
        gains nothing), as in the Lagrangian. ``auto``: ``parallel`` above
        :data:`decomp.lagrangian.CLOSE_AUTO_MAX_SITE_PERIODS` sites × periods.
    neighbourhood_share : float
        Share of the time limit one neighbourhood pass may take (parallel primal side).

    Without ``initial`` the energy-only plan of MODEL.md is the first incumbent.
    """

    root_rounds: int = 60
    stabilization: float = 0.5
    master_gap_share: float = 0.25
    cut_age_limit: int = 8
    max_iterations: int | None = None
    master: str = "auto"
    separation_depth: int = 1_000_000
    lp_warm_start: bool = True
    lp_share: float = 0.25
    lagrangian_bound: bool = True
    lagrangian_cuts: bool = False
    lagrangian_share: float = 0.1
    close: bool | None = None
    close_share: float = 0.5
    primal: str = "auto"
    neighbourhood_share: float = 0.15

    resume_free_options = EngineOptions.resume_free_options | {"max_iterations", "root_rounds"}

    def validate(self) -> None:
        super().validate()
        for name in ("root_rounds", "cut_age_limit", "max_iterations"):
            v = getattr(self, name)
            if name == "max_iterations" and v is None:
                continue
            if not (isinstance(v, int) and v >= 0):
                raise InputError(f"{name}: must be an integer >= 0 (got {v!r})")
        if not (isinstance(self.separation_depth, int) and self.separation_depth >= -1):
            raise InputError(f"separation_depth: must be an integer >= -1 (got {self.separation_depth!r})")
        if self.master not in MASTER_MODES:
            raise InputError(f"master: must be one of {', '.join(MASTER_MODES)} (got {self.master!r})")
        if not 0.0 < self.stabilization <= 1.0:
            raise InputError(f"stabilization: must be in (0, 1] (got {self.stabilization!r})")
        for name in ("master_gap_share", "lp_share", "lagrangian_share"):
            v = getattr(self, name)
            if not 0.0 < v <= 1.0:
                raise InputError(f"{name}: must be in (0, 1] (got {v!r})")
        if self.lagrangian_cuts and not self.lagrangian_bound:
            raise InputError("lagrangian_cuts: needs lagrangian_bound=True (the cuts come from its round)")
        if self.close not in (None, True, False):
            raise InputError(f"close: must be true, false or None (got {self.close!r})")
        if not (isinstance(self.close_share, float | int) and 0.0 <= self.close_share < 1.0):
            raise InputError(f"close_share: must be in [0, 1) (got {self.close_share!r})")
        if self.primal not in PRIMAL_MODES:
            raise InputError(f"primal: must be one of {', '.join(PRIMAL_MODES)} (got {self.primal!r})")
        if not (isinstance(self.neighbourhood_share, float | int) and 0.0 <= self.neighbourhood_share < 1.0):
            raise InputError(f"neighbourhood_share: must be in [0, 1) (got {self.neighbourhood_share!r})")


def round_lp_plan(master: BendersMaster, values: np.ndarray) -> ComputePlan:
    """A feasible plan from a fractional master solution (:func:`decomp.rounding.round_fractional_plan`)."""
    cb = master.compute
    return round_fractional_plan(master.inst, cb.placements, cb.x, cb.y, values)


#: A root-loop round's master LP after the first may take this many times the slowest round before it (with a
#: time limit) ...
ROOT_ROUND_GROWTH = 10.0
#: ... and at least this many seconds.
ROOT_ROUND_MIN_SECONDS = 5.0


def _solve_master_lp(lp, remaining: Callable[[], float] | None = None) -> float | None:
    """Re-solve the master LP (dual simplex from the last basis); on an LP-solver error, once more with the
    primal simplex. None if both fail (SoPlex reported numerical trouble on a 168-period master) or no time
    is left. ``remaining()`` gives the seconds left; each attempt gets only those."""
    for dual in (True, False):
        if remaining is not None:
            left = remaining()
            if left <= 0.0:
                return None
            lp.setRealParam(SCIP_LPPARAM.LPTILIM, max(left, 0.01))
        try:
            return float(lp.solve(dual=dual))
        except Exception as exc:  # noqa: BLE001 - PySCIPOpt raises a bare Exception for SCIP_LPERROR
            if "LP" not in str(exc):
                raise
    return None


def _point_from_solution(inst: Instance, sol: Solution, allowance: np.ndarray) -> np.ndarray:
    """(S, 5, T) master point of a full solution (busy GPUs, its binaries, allowances)."""
    busy = ComputePlan.from_solution(sol).busy_gpus(inst)
    out = np.zeros((inst.n_sites, 5, inst.n_periods))
    out[:, 0] = busy
    out[:, 1] = sol.bat_charging
    out[:, 2] = sol.grid_importing
    out[:, 3] = sol.gen_on
    out[:, 4, 0] = allowance
    return out


def _solution_allowance(inst: Instance, sol: Solution) -> np.ndarray:
    """Per-site emissions of a solution, spread so that they sum to at most C (t)."""
    s = inst.sites
    em = inst.period_hours * ((s.grid_co2 * sol.grid_import).sum(axis=1) + s.gen_co2 * sol.gen.sum(axis=1))
    if math.isfinite(inst.carbon_budget_t):
        spare = max(inst.carbon_budget_t - em.sum(), 0.0)
        em = em + spare / inst.n_sites
    return em


class BendersAlgorithm(DecompositionAlgorithm):
    """The Benders method on the hub (see the module docstring)."""

    name = "benders"
    #: Stages of a run, in order; a checkpoint records the one reached (docs/reliability.md).
    STAGES = ("start", "lp", "root", "milp", "closing", "done")

    def __init__(self, inst: Instance, options: BendersOptions) -> None:
        self.inst = inst
        self.opt = options
        self.cuts = CutPool(inst.n_sites, inst.n_periods)
        self.core: np.ndarray | None = None  # stability center of the root loop (the joint LP point)
        self.subproblem_seconds = 0.0
        self.master_seconds = 0.0
        self.hub: Hub | None = None
        small = inst.n_sites * inst.n_periods <= SINGLE_TREE_MAX_SITE_PERIODS
        #: whether a closing phase follows an unfinished master search (``options.close``, None decided by size),
        #: and whether neighbourhood passes follow the LP warm start (``options.primal``)
        self.close, self.parallel_primal = sides_by_size(inst, options.close, options.primal)
        #: the master search this run uses (``options.master`` with ``auto`` decided by size)
        self.master_mode = options.master if options.master != "auto" else ("single-tree" if small else "multi-tree")
        #: SCIP's objective limit in the single-tree master (the hub's incumbent value when it started).
        self.objective_limit = -math.inf
        self.tree_figures: dict[str, int] = {}
        # where the run is (what a checkpoint holds with the cut pool and the core point)
        self.stage = "start"
        self.root_round = 0  # the next round of the root loop
        self.next_iteration = 0  # the next MILP master iteration
        self.tighten = False  # the master is solved to the final gap
        self.last_master_dual = math.inf
        self.final_status = SolveStatus.ITERATION_LIMIT.value
        #: multipliers (flat z of :class:`decomp.lagrangian.Layout`) and per-site bounds of the Lagrangian cuts
        self.lagrangian_z: np.ndarray | None = None
        self.lagrangian_bounds: np.ndarray | None = None
        self.lagrangian_bound: float | None = None  # $, their sum with the multipliers' constant terms

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> StateDict:
        """Stage, root round, master iteration, the whole cut pool (with its aging), the core point."""
        c = self.cuts
        d: StateDict = {
            "stage": self.stage, "root_round": self.root_round, "next_iteration": self.next_iteration,
            "tighten": int(self.tighten), "last_master_dual": self.last_master_dual,
            "final_status": self.final_status, "subproblem_seconds": self.subproblem_seconds,
            "master_seconds": self.master_seconds, "cut_site": c.site, "cut_constant": c.constant,
            "cut_coef": c.coef, "cut_last_tight": c.last_tight, "cut_violated": c._violated.astype(np.int8),
        }
        if self.core is not None:
            d["core"] = self.core
        if self.lagrangian_z is not None:
            d["lagrangian_z"], d["lagrangian_bounds"] = self.lagrangian_z, self.lagrangian_bounds
        return d

    def load_state_dict(self, state: StateDict) -> None:
        """Check ``state`` against this instance (InputError naming the field) and continue from it."""
        S, T = self.inst.n_sites, self.inst.n_periods
        stage = state_scalar(state, "stage", str)
        if stage not in self.STAGES:
            raise InputError(f"/algorithm/stage: must be one of {', '.join(self.STAGES)} (got {stage!r})")
        if state_scalar(state, "final_status", str) not in SolveStatus._value2member_map_:
            raise InputError("/algorithm/final_status: not a solve status")
        for key in ("root_round", "next_iteration"):
            if state_scalar(state, key, int) < 0:
                raise InputError(f"/algorithm/{key}: must be >= 0")
        site = state_array(state, "cut_site", shape=(None,), dtype=np.int64)
        if ((site < 0) | (site >= S)).any():
            raise InputError("/algorithm/cut_site: site index out of range")
        n = site.size
        pool = CutPool(S, T)
        pool.site = site
        pool.constant = state_array(state, "cut_constant", shape=(n,))
        pool.coef = np.ascontiguousarray(state_array(state, "cut_coef", shape=(n, pool.width)))
        pool.last_tight = state_array(state, "cut_last_tight", shape=(n,), dtype=np.int64)
        pool._violated = state_array(state, "cut_violated", shape=(n,), dtype=np.int8).astype(bool)
        self.core = state_array(state, "core", shape=(S, 5, T)) if "core" in state else None
        if "lagrangian_z" in state:
            self.lagrangian_z = state_array(state, "lagrangian_z", shape=(make_layout(self.inst).size,))
            self.lagrangian_bounds = state_array(state, "lagrangian_bounds", shape=(S,))
        self.cuts = pool
        self.stage = stage
        self.root_round = int(state_scalar(state, "root_round", int))
        self.next_iteration = int(state_scalar(state, "next_iteration", int))
        self.tighten = bool(state_scalar(state, "tighten", int))
        self.last_master_dual = float(state_scalar(state, "last_master_dual", float))
        self.final_status = str(state_scalar(state, "final_status", str))
        self.subproblem_seconds = float(state_scalar(state, "subproblem_seconds", float))
        self.master_seconds = float(state_scalar(state, "master_seconds", float))

    def extra(self) -> dict:
        out = {"cuts": self.cuts.size, "subproblem_seconds": self.subproblem_seconds,
               "master_seconds": self.master_seconds, "master": self.master_mode, **self.tree_figures}
        if self.lagrangian_bound is not None:
            out["lagrangian_bound"] = self.lagrangian_bound
        return out

    # ------------------------------------------------------------------ helpers
    def record(self) -> None:
        self.hub.state.info["cuts"] = self.cuts.size
        self.hub.record(f"cuts {self.cuts.size}  subproblems {self.subproblem_seconds:.1f}s  "
                        f"master {self.master_seconds:.1f}s")

    def separate(self, points: np.ndarray) -> list:
        """Solve every site LP at ``points`` (S, 5, T); returns results by site."""
        t = time.perf_counter()
        res = self.hub.pool.map("benders-lp", make_site_lp, "solve",
                                {i: ((points[i],), {}) for i in range(self.inst.n_sites)})
        self.subproblem_seconds += time.perf_counter() - t
        results = [res[i] for i in range(self.inst.n_sites)]
        self.hub.post_subproblems(results)
        return results

    # ------------------------------------------------------------------ phases
    def lp_warm_start(self) -> None:
        """Joint LP relaxation: its bound, its rounded plan, and its (S, 5, T) point as the root loop's core."""
        hub = self.hub
        hub.set_phase("lp")
        limit = hub.budget(self.opt.lp_share)
        self.stage = "root"
        if limit is not None and limit <= 0.0:  # not even the LP's build (2.2 s at 100 sites × 168 h)
            log.info("LP warm start skipped (no time left)")
            return
        lp = solve_lp_relaxation(self.inst, time_limit=limit)
        if not lp.optimal:
            log.info("LP warm start skipped (not solved within %s)", "the limit" if limit is None else f"{limit:.1f} s")
            return
        hub.offer_bound(lp.bound, "joint LP relaxation")
        jm = lp.jm
        plan = round_fractional_plan(self.inst, jm.placements, jm.x, jm.y, lp.values)
        # rounding keeps the LP's routing only where the jobs now stand, blind to the inference they displace:
        # re-routed by the LP at its placements and improved by placement moves priced by that LP (decomp.moves)
        plan = route_and_improve(self.inst, plan, time_limit=hub.budget(self.opt.lp_share),
                                 routing=lp.routing_active) or plan
        hub.offer_plan(plan, "joint LP rounding")
        point = np.zeros((self.inst.n_sites, 5, self.inst.n_periods))
        point[:, 0] = lp.values_at(jm.busy)
        ids = jm.energy.ids
        point[:, 1] = lp.values_at(ids["bat_charging"])
        point[:, 2] = lp.values_at(ids["grid_importing"])
        point[:, 3] = lp.values_at(ids["gen_on"])
        point[:, 4, 0] = lp.site_emissions()
        # The point is the root loop's stability center only. Cuts separated *at* it (fractional
        # commitments) are valid but made the master MILPs slower: on 3 sites the final gap after 30 s went
        # from 0.08 % to 2.1 % with them (docs/decomposition.md).
        self.core = point
        hub.record(f"LP warm start in {lp.seconds:.1f} s")
        if self.opt.lagrangian_bound:
            self.lagrangian_round(lp)
        if self.parallel_primal:
            self.neighbourhood_passes(lp_site_shares(lp))

    def neighbourhood_passes(self, lp_shares: np.ndarray) -> None:
        """Neighbourhood passes on the incumbent (groups of 3, 4, 2, 3, ... sites) until one gains nothing."""
        hub = self.hub
        hub.set_phase("neighbourhoods")
        for size in itertools.cycle(NEIGHBOURHOOD_SIZES):
            budget = hub.budget(self.opt.neighbourhood_share)
            if hub.incumbent is None or (budget is not None and budget < 1.0):
                return
            before = hub.primal
            better = neighbourhood_pass(self.inst, hub.pool, hub.incumbent, size=size, lp_shares=lp_shares,
                                        time_limit=budget, method="benders")
            if better is not None:
                hub.offer_solution(better, f"neighbourhoods (groups of {size})")
            hub.record(f"neighbourhood pass, groups of {size}")
            if hub.primal <= before + 1e-5 * abs(before):
                return

    def lagrangian_round(self, lp) -> None:
        """Site Lagrangian subproblems at the LP duals, in parallel: the Lagrangian bound (and the cuts' data)."""
        hub, inst = self.hub, self.inst
        hub.set_phase("lagrangian bound")
        layout = make_layout(inst)
        z = multipliers_from_lp(lp, layout)
        mu, pi, lam_c = layout.split(z)
        limit = hub.budget(self.opt.lagrangian_share)
        deadline = None if limit is None else time.time() + limit
        abs_gap = site_abs_gap(hub.bound - hub.primal, inst.n_sites)
        t = time.perf_counter()
        res = hub.pool.map(SITE_MILP_KIND, make_site_milp, "solve",
                           {i: ((mu, pi, lam_c), {"gap": 1e-4, "deadline": deadline, "abs_gap": abs_gap,
                                                  "time_limit": limit_by_deadline(None, deadline)})
                            for i in range(inst.n_sites)}, options={"seed": self.opt.seed})
        self.subproblem_seconds += time.perf_counter() - t
        bounds = np.array([res[i].bound for i in range(inst.n_sites)], dtype=np.float64)
        self.lagrangian_z, self.lagrangian_bounds = z, bounds
        if np.isfinite(bounds).all():
            self.lagrangian_bound = constant_terms(inst, layout, z)[0] + float(bounds.sum())
            hub.offer_bound(self.lagrangian_bound, "Lagrangian bound (LP duals)")
        hub.record(f"Lagrangian bound: {int(np.isfinite(bounds).sum())} sites in {time.perf_counter() - t:.1f} s")

    def lagrangian_cuts(self) -> list[LagrangianCut]:
        """The Lagrangian cuts for the MILP masters (one per site with a finite subproblem bound; none before the
        round or with ``lagrangian_cuts`` off)."""
        if not self.opt.lagrangian_cuts or self.lagrangian_z is None or self.lagrangian_bounds is None:
            return []
        mu, pi, lam_c = make_layout(self.inst).split(self.lagrangian_z)
        return [LagrangianCut(i, mu, pi, lam_c, float(b)) for i, b in enumerate(self.lagrangian_bounds)
                if math.isfinite(b)]

    def root_loop(self) -> None:
        """Cut loop on the LP relaxation of the master, with in-out stabilization.

        The master LP lives in SCIP's LP interface, so each round re-solves from the previous basis
        after the new cut rows are appended.
        """
        hub = self.hub
        hub.set_phase("root")
        if hub.out_of_time():
            return  # the master's build alone takes seconds (1.9 s at 100 sites × 168 h)
        # without the Lagrangian cuts: with them each round's LP took 2-5 s instead of 0.1 s on 8 sites x 48 h
        # (their dense rows over every placement of a site), and the loop ate half of a 200 s run
        master = build_benders_master(self.inst, self.cuts.active(0, self.opt.cut_age_limit), record=True)
        lp = master.am.lp_relaxation()
        core = self.core
        alpha = self.opt.stabilization
        slowest = 0.0  # s, the slowest master LP of this loop
        for rnd in range(self.root_round, self.opt.root_rounds):
            if hub.out_of_time():
                return
            hub.pre_iteration(rnd)
            t = time.perf_counter()
            # with a time limit one round may take at most ROOT_ROUND_GROWTH x the slowest so far (and at least
            # ROOT_ROUND_MIN_SECONDS): on 30 sites x 24 h round 36's LP stalled in SoPlex for 100 s after rounds
            # of 0.1-1 s, and the run ended there
            # (the first round has nothing to compare with: at 100 sites it alone needs tens of seconds)
            cap = math.inf if slowest == 0.0 else max(ROOT_ROUND_MIN_SECONDS, ROOT_ROUND_GROWTH * slowest)
            bound = _solve_master_lp(lp, None if self.opt.time_limit is None else
                                     lambda cap=cap, t=t: min(hub.remaining(), cap - (time.perf_counter() - t)))
            self.master_seconds += time.perf_counter() - t
            slowest = max(slowest, time.perf_counter() - t)
            if bound is None:
                log.warning("root %d: the master LP failed in both simplex variants (numerics) or hit its round "
                            "limit; the MILP master takes over with the cuts so far", rnd)
                return
            if not lp.isOptimal():
                log.info("root %d: the master LP stopped unsolved after %.1f s; the MILP master takes over", rnd,
                         time.perf_counter() - t)
                return
            values = np.asarray(lp.getPrimal(), dtype=np.float64)
            point = master.point(values)
            theta = values[master.theta]
            hub.offer_bound(bound, "master LP")
            sep = point if core is None else alpha * point + (1 - alpha) * core
            results = self.separate(sep)
            cuts = [cut_from_result(i, r) for i, r in enumerate(results)]
            viol = self.cuts.violation_of(cuts, point, theta)
            if core is not None and viol.max(initial=0.0) <= 1e-6 * max(1.0, abs(bound)):
                results = self.separate(point)  # the stabilized cut missed: separate the optimum
                cuts = [cut_from_result(i, r) for i, r in enumerate(results)]
                viol = self.cuts.violation_of(cuts, point, theta)
            new = [c for c, v in zip(cuts, viol, strict=True) if v > 1e-7 * max(1.0, abs(c.constant))]
            self.cuts.add(new, iteration=0)
            if not new or rnd % 10 == 9:
                hub.offer_plan(round_lp_plan(master, values), "LP rounding")
            hub.post_iteration()
            finished = not new or hub.gap_reached()
            # the state a checkpoint at this row holds: this round done, its cuts in the pool, the next core
            self.root_round = rnd + 1
            core = point if core is None else 0.5 * core + 0.5 * point
            self.core = core
            if finished:
                self.stage = "milp"
            self.record()
            if finished:
                return
            mat, rhs = master.cut_rows(new)
            add_csr_rows(lp, mat.indptr, mat.indices, mat.data, np.full(rhs.size, -np.inf), rhs)

    def milp_loop(self) -> SolveStatus:
        hub = self.hub
        hub.set_phase("master")
        limit = MULTI_TREE_ITERATIONS if self.opt.max_iterations is None else self.opt.max_iterations
        for it in range(self.next_iteration, limit):
            hub.pre_iteration(it)
            if hub.out_of_time():
                return SolveStatus.TIME_LIMIT
            master = build_benders_master(self.inst, self.cuts.active(it, self.opt.cut_age_limit))
            master.add_lagrangian_cuts(self.lagrangian_cuts())
            if hub.out_of_time():
                return SolveStatus.TIME_LIMIT
            # Early masters only need to point in a good direction: solve them loosely (a quarter of the
            # master's own gap — its last dual bound against the incumbent; not the best bound, which the
            # joint LP may hold far below any master's — at most 5 %), tightening to a share of the
            # requested gap as the bounds meet.
            final_gap = max(self.opt.gap * self.opt.master_gap_share, 1e-9)
            master_own_gap = compute_gap(hub.primal, self.last_master_dual)
            master_gap = final_gap if self.tighten else max(
                final_gap, min(0.05, 0.25 * master_own_gap) if math.isfinite(master_own_gap) else 0.05)
            t = time.perf_counter()
            configure(master.model, time_limit=hub.remaining(), gap=master_gap, seed=self.opt.seed)
            run = run_scip(master.model, record_trace=False)
            self.master_seconds += time.perf_counter() - t
            if run.scip_status in ("infeasible", "inforunbd"):
                raise diagnose_mandatory(self.inst)
            hub.offer_bound(run.dual, "master MILP")
            self.last_master_dual = run.dual
            if not run.has_solution:
                ret = SolveStatus(run.status) if run.status in SolveStatus._value2member_map_ else \
                    SolveStatus.TIME_LIMIT
                self._finish_iteration(it, ret)
                return ret
            values = master.am.values()
            point = master.point(values)
            theta = values[master.theta]
            hub.offer_plan(master.plan(values), "master")
            results = self.separate(point)
            cuts = [cut_from_result(i, r) for i, r in enumerate(results)]
            viol = self.cuts.violation_of(cuts, point, theta)
            tol = 1e-7 * max(1.0, abs(hub.bound))
            new = [c for c, v in zip(cuts, viol, strict=True) if v > tol]
            self.cuts.touch(point, theta, it)
            self.cuts.add(new, iteration=it)
            hub.post_iteration()
            ret = None
            if hub.gap_reached():
                ret = SolveStatus.GAP_LIMIT
            elif not new and run.status not in ("optimal", "gap_limit"):
                ret = SolveStatus(run.status)
            elif not new:
                # θ is exact at the master's solution: what is left is the master's own gap
                if master_gap <= final_gap:
                    ret = SolveStatus.ITERATION_LIMIT
                else:
                    self.tighten = True
            self._finish_iteration(it, ret)
            if ret is not None:
                return ret
        return SolveStatus.ITERATION_LIMIT

    def branch_and_cut(self) -> SolveStatus:
        """One SCIP search over the master with every pool cut, site LPs checked at each candidate."""
        hub = self.hub
        hub.set_phase("master")
        if hub.out_of_time():
            self._finish_iteration(self.next_iteration, SolveStatus.TIME_LIMIT)
            return SolveStatus.TIME_LIMIT
        master = build_benders_master(self.inst, self.cuts.active(0, 1 << 40))
        master.add_lagrangian_cuts(self.lagrangian_cuts())
        model = master.model
        handler = BendersCutHandler(self, master)
        model.includeConshdlr(handler, "carbonsched_benders", "site value functions theta_i <= phi_i(m_i)",
                              sepapriority=-1_000_000, enfopriority=-1_000_000, chckpriority=-1_000_000,
                              sepafreq=1 if self.opt.separation_depth >= 0 else -1)
        model.addPyCons(model.createCons(handler, "site_values", initial=False, separate=False, propagate=False))
        # components are solved in sub-SCIPs that do not have the handler
        model.setParam("constraints/components/maxprerounds", 0)
        model.setParam("constraints/components/propfreq", -1)
        if hub.incumbent is not None:
            self.objective_limit = hub.primal
            model.setObjlimit(hub.primal)
        configure(model, time_limit=hub.remaining(), gap=self.opt.gap, seed=self.opt.seed)
        t, sub0 = time.perf_counter(), self.subproblem_seconds
        run = run_scip(model, record_trace=False, raise_interrupt=False,
                       own_interrupt=lambda: handler.stop_requested or handler.error is not None)
        self.master_seconds += (time.perf_counter() - t) - (self.subproblem_seconds - sub0) - handler.scoring_seconds
        self.tree_figures = {"tree_nodes": run.nodes, "tree_rounds": handler.rounds, "tree_cuts": handler.cuts_added,
                             "tree_candidates_accepted": handler.candidates_accepted,
                             "tree_scoring_seconds": round(handler.scoring_seconds, 3)}
        if handler.error is not None:
            raise handler.error
        if handler.round_limit_reached and not hub.gap_reached():
            self._finish_iteration(self.next_iteration, SolveStatus.ITERATION_LIMIT)
            return SolveStatus.ITERATION_LIMIT
        if run.scip_status in ("infeasible", "inforunbd") and hub.incumbent is None:
            raise diagnose_mandatory(self.inst)
        # "infeasible" with an objective limit: nothing beats the incumbent, which is optimal
        dual = self.objective_limit if run.scip_status == "infeasible" else max(run.dual, self.objective_limit)
        if math.isfinite(dual):
            hub.offer_bound(dual, "branch-and-cut master")
        if hub.gap_reached():
            status = SolveStatus.GAP_LIMIT
        elif run.status == "interrupted" or hub.out_of_time():
            status = SolveStatus.TIME_LIMIT
        else:
            status = SolveStatus(run.status) if run.status in SolveStatus._value2member_map_ else \
                SolveStatus.ITERATION_LIMIT
        # a search stopped by the clock resumes from the cut pool (the tree itself is not kept)
        self._finish_iteration(self.next_iteration, status)
        return status
    def _finish_iteration(self, it: int, status: SolveStatus | None) -> None:
        """Note where the run is (a checkpoint at the trace row resumes there), then record the row.

        A loop ended by a limit of time or an interrupt stays resumable (with more time); a converged one is done.
        """
        self.next_iteration = it + 1
        if status is not None and status not in (SolveStatus.TIME_LIMIT, SolveStatus.INTERRUPTED):
            self.stage, self.final_status = "done", status.value
        self.record()

    def _search(self) -> SolveStatus:
        """Start, LP warm start, Lagrangian bound, root loop, MILP master: everything before the closing phase."""
        hub, inst = self.hub, self.inst
        if self.stage == "start":
            if self.opt.initial is None:
                hub.set_phase("start", 0)
                try:
                    hub.offer_plan(energy_only_plan(inst), "energy-only plan")
                except CarbonschedError as exc:
                    log.info("no energy-only start plan: %s", exc)
            if hub.incumbent is not None:
                # cuts at the initial solution's point help the first master find good plans
                allowance = _solution_allowance(inst, hub.incumbent)
                results = self.separate(_point_from_solution(inst, hub.incumbent, allowance))
                self.cuts.add([cut_from_result(i, r) for i, r in enumerate(results)], iteration=-1)
            self.stage = "lp" if self.opt.lp_warm_start else "root"
            self.record()  # the initial plan is the first trace row
        if self.stage == "lp":
            self.lp_warm_start()
        if self.stage == "root":
            self.root_loop()
            self.stage = "milp"
            if hub.gap_reached():
                self.stage, self.final_status = "done", SolveStatus.GAP_LIMIT.value
        if self.stage == "milp":
            return self.branch_and_cut() if self.master_mode == "single-tree" else self.milp_loop()
        return SolveStatus(self.final_status)

    def run(self, hub: Hub) -> SolveStatus:
        self.hub = hub
        if self.stage != "start":
            log.info("resumed at stage %s (root round %d, master iteration %d, %d cuts)", self.stage,
                     self.root_round, self.next_iteration, self.cuts.size)
        limit = self.opt.time_limit
        if self.stage not in ("closing", "done"):
            # everything before the closing phase shares its first part of the time limit (a root loop whose
            # master LP stalls must not eat the closing phase's time)
            if self.close and limit is not None:
                hub.search_limit = (1.0 - self.opt.close_share) * limit
            interrupts = interrupts_seen()
            try:
                status = self._search()
            finally:
                hub.search_limit = None
            if status is SolveStatus.INTERRUPTED or interrupts_seen() > interrupts:
                return status  # Ctrl-C stopped the search (the hub reports it): no closing phase
            if self.close and not hub.gap_reached() and hub.incumbent is not None:
                self.stage, self.final_status = "closing", status.value
            else:
                return status
        if self.stage == "closing":
            status = hub.close_open_gap(SolveStatus(self.final_status))
            if status is SolveStatus.INTERRUPTED:
                return status  # a resume runs the closing phase again
            self.stage, self.final_status = "done", status.value
        return SolveStatus(self.final_status)


def solve_benders(inst: Instance, *, time_limit: float | None = None, gap: float = 1e-4,
                  config: ParallelConfig | None = None, initial: ComputePlan | None = None,
                  hooks: DecompositionHooks | None = None, progress: ProgressCallback | None = None,
                  seed: int = 0, **options) -> Solution:
    """Solve ``inst`` by Benders decomposition; see :class:`BendersOptions` for ``options``.

    Parameters
    ----------
    inst : Instance
        The instance.
    time_limit : float, optional
        Wall-clock limit, s.
    gap : float
        Stop when (bound − Z) / max(1, |Z|) ≤ gap.
    config : ParallelConfig, optional
        Workers for the site LPs and the scoring.
    initial : ComputePlan, optional
        The first incumbent (default: the energy-only plan).
    hooks : DecompositionHooks, optional
        Extension points (the same class for every method), called in the root loop and the master loop.
    progress : callable, optional
        Receives a :class:`~carbonsched.progress.ProgressEvent` at every trace row.
    seed : int
        SCIP seed shift of every solve.

    Returns
    -------
    Solution
        Method ``benders``; ``bound`` is the master's certified dual bound (or the joint LP's).

    Raises
    ------
    InputError
        An option is out of range or unknown (named).
    InfeasibleError
        Mandatory jobs cannot all be placed.
    NoSolutionError
        No feasible plan was found before the solve stopped.
    """
    return run_algorithm(inst, "benders", BendersOptions, BendersAlgorithm, hooks=hooks, progress=progress,
                         time_limit=time_limit, gap=gap, config=config, initial=initial, seed=seed, **options)
