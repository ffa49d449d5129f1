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

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from carbonsched.errors import CarbonschedError, NoSolutionError
from carbonsched.formulations.baselines import energy_only_plan
from carbonsched.formulations.benders_master import BendersMaster, Cut, build_benders_master
from carbonsched.formulations.diagnose import diagnose_mandatory
from carbonsched.formulations.evaluate import evaluate
from carbonsched.formulations.joint import compute_arrays
from carbonsched.formulations.lp_relaxation import solve_lp_relaxation
from carbonsched.formulations.plan import ComputePlan
from carbonsched.formulations.scip_arrays import add_csr_rows
from carbonsched.formulations.scip_run import configure, run_scip
from carbonsched.formulations.site_lp import make_site_lp
from carbonsched.formulations.solution import Solution, SolveStatus, Trace, compute_gap
from carbonsched.instances.schema import Instance
from pyscipopt import SCIP_LPPARAM

from .cuts import CutPool
from .hooks import DecompositionHooks
from .parallel import ParallelConfig, SitePool
from .rounding import round_fractional_plan

LogFn = Callable[[str], None]


@dataclass
class BendersOptions:
    """Options of :func:`solve_benders` (all optional).

    Attributes
    ----------
    time_limit : float or None
        Wall-clock limit, s.
    gap : float
        Relative gap (SOLUTION.md definition) at which to stop.
    config : ParallelConfig
        Workers for the site LPs.
    root_rounds : int
        Maximum rounds of the LP-relaxation cut loop.
    stabilization : float
        In-out weight α of the LP optimum in the separation point (1 = no stabilization).
    master_gap_share : float
        The master MILP is solved to this share of the requested gap.
    cut_age_limit : int
        MILP iterations a cut may stay slack before it leaves the master (it stays in the pool).
    max_iterations : int
        MILP master iterations.
    initial : ComputePlan or None
        A plan to start from (its exact value is the first incumbent; default the energy-only plan).
    lp_warm_start : bool
        Solve the joint LP relaxation first (:func:`formulations.lp_relaxation.solve_lp_relaxation`):
        its optimum is a valid bound, its rounded solution a candidate plan, and its energy-side values
        the stability center of the root cut loop (no cuts are separated at that fractional point).
    lp_share : float
        Share of the time limit the LP warm start may take (skipped past it).
    """

    time_limit: float | None = None
    gap: float = 1e-4
    config: ParallelConfig = field(default_factory=ParallelConfig)
    root_rounds: int = 60
    stabilization: float = 0.5
    master_gap_share: float = 0.25
    cut_age_limit: int = 8
    max_iterations: int = 200
    initial: ComputePlan | None = None
    lp_warm_start: bool = True
    lp_share: float = 0.25


@dataclass
class BendersState:
    """What hooks see: bounds, incumbent, iteration, timings."""

    iteration: int = 0
    phase: str = "root"
    bound: float = math.inf
    incumbent: Solution | None = None
    n_cuts: int = 0
    subproblem_seconds: float = 0.0
    master_seconds: float = 0.0

    @property
    def primal(self) -> float:
        return -math.inf if self.incumbent is None else self.incumbent.objective

    @property
    def gap(self) -> float:
        return compute_gap(self.primal, self.bound)


def plan_from_master(master: BendersMaster, values: np.ndarray) -> ComputePlan:
    """The compute plan (job placements, routing) of a master solution."""
    inst, cb = master.inst, master.compute
    job_site, job_start, served = compute_arrays(inst, cb.placements, cb.x, cb.y, values)
    # round-off must not push a class above its demand
    total = served.sum(axis=1)
    over = total > inst.inference.demand
    if over.any():
        scale = np.where(over, inst.inference.demand / np.maximum(total, 1e-300), 1.0)
        served *= scale[:, None, :]
    return ComputePlan(job_site=job_site, job_start=job_start, served=served)


def round_lp_plan(master: BendersMaster, values: np.ndarray) -> ComputePlan:
    """A feasible plan from a fractional master solution (:func:`decomp.rounding.round_fractional_plan`)."""
    cb = master.compute
    return round_fractional_plan(master.inst, cb.placements, cb.x, cb.y, values)


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


class BendersSolver:
    """The Benders method on one instance (see the module docstring)."""

    def __init__(self, inst: Instance, options: BendersOptions | None = None,
                 hooks: DecompositionHooks | None = None, log: LogFn | None = None) -> None:
        self.inst = inst
        self.opt = options or BendersOptions()
        self.hooks = hooks or DecompositionHooks()
        self.log = log or (lambda _msg: None)
        self.state = BendersState()
        self.trace = Trace()
        self.pool = CutPool(inst.n_sites, inst.n_periods)
        self.core: np.ndarray | None = None  # stability center of the root loop (the joint LP point)
        self.t0 = time.perf_counter()
        self._seen_plans: set[bytes] = set()

    # ------------------------------------------------------------------ helpers
    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def remaining(self) -> float | None:
        if self.opt.time_limit is None:
            return None
        return max(self.opt.time_limit - self.elapsed(), 0.0)

    def out_of_time(self) -> bool:
        rem = self.remaining()
        return rem is not None and rem <= 0.0

    def record(self) -> None:
        st = self.state
        self.trace.append(self.elapsed(), st.primal, st.bound, st.iteration)
        self.log(f"{st.phase:>5} {st.iteration:4d} {self.elapsed():8.1f}s  primal {st.primal:14.2f}  "
                 f"dual {st.bound:14.2f}  gap {_pct(st.gap)}  cuts {self.pool.size:5d}  "
                 f"subproblems {st.subproblem_seconds:6.1f}s  master {st.master_seconds:6.1f}s")

    def offer(self, plan: ComputePlan | None, source: str) -> None:
        """Score a plan exactly and keep it when it improves the incumbent."""
        if plan is None:
            return
        rem = self.remaining()
        if rem is not None and rem < 0.5 and self.state.incumbent is not None:
            return  # out of time with a plan in hand: scoring another would overrun the limit
        key = plan.job_site.tobytes() + plan.job_start.tobytes() + np.round(plan.served, 6).tobytes()
        if key in self._seen_plans:
            return
        self._seen_plans.add(key)
        try:
            sol = evaluate(self.inst, plan, method="benders", time_limit=self.remaining())
        except CarbonschedError as exc:
            self.log(f"plan from {source} skipped: {exc}")
            return
        if self.state.incumbent is None or sol.objective > self.state.incumbent.objective:
            self.state.incumbent = sol

    def separate(self, pool: SitePool, points: np.ndarray) -> list:
        """Solve every site LP at ``points`` (S, 5, T); returns results by site."""
        t = time.perf_counter()
        res = pool.map("benders-lp", make_site_lp, "solve",
                       {i: ((points[i],), {}) for i in range(self.inst.n_sites)})
        self.state.subproblem_seconds += time.perf_counter() - t
        results = [res[i] for i in range(self.inst.n_sites)]
        self.hooks.post_subproblems(self, self.state, results)
        return results

    # ------------------------------------------------------------------ phases
    def lp_warm_start(self, pool: SitePool) -> None:
        """Joint LP relaxation: its bound, its rounded plan, and its (S, 5, T) point as the root loop's core."""
        st = self.state
        limit = None if self.opt.time_limit is None else self.opt.lp_share * self.opt.time_limit
        lp = solve_lp_relaxation(self.inst, time_limit=limit)
        if not lp.optimal:
            self.log(f"LP warm start skipped (not solved within {limit:.1f} s)" if limit is not None
                     else "LP warm start skipped (LP not solved)")
            return
        st.bound = min(st.bound, lp.bound)
        jm = lp.jm
        self.offer(round_fractional_plan(self.inst, jm.placements, jm.x, jm.y, lp.values), "joint LP rounding")
        point = np.zeros((self.inst.n_sites, 5, self.inst.n_periods))
        point[:, 0] = lp.values_at(jm.busy)
        point[:, 1] = lp.values_at(jm.energy.ids["bat_charging"])
        point[:, 2] = lp.values_at(jm.energy.ids["grid_importing"])
        point[:, 3] = lp.values_at(jm.energy.ids["gen_on"])
        point[:, 4, 0] = lp.site_emissions()
        # The point is the root loop's stability center only. Cuts separated *at* it (fractional
        # commitments) are valid but made the master MILPs slower: on 3 sites the final gap after 30 s went
        # from 0.08 % to 2.1 % with them (docs/decomposition.md).
        self.core = point
        self.log(f"LP warm start: bound {lp.bound:.2f} in {lp.seconds:.1f} s")

    def root_loop(self, pool: SitePool) -> None:
        """Cut loop on the LP relaxation of the master, with in-out stabilization.

        The master LP lives in SCIP's LP interface, so each round re-solves from the previous basis
        after the new cut rows are appended.
        """
        st = self.state
        st.phase = "root"
        master = build_benders_master(self.inst, self.pool.active(0, self.opt.cut_age_limit), record=True)
        lp = master.am.lp_relaxation()
        core = self.core
        alpha = self.opt.stabilization
        for rnd in range(self.opt.root_rounds):
            if self.out_of_time():
                return
            st.iteration = rnd
            t = time.perf_counter()
            bound = _solve_master_lp(lp, self.remaining if self.opt.time_limit is not None else None)
            st.master_seconds += time.perf_counter() - t
            if bound is None:
                self.log(f"root {rnd:4d}: the master LP failed in both simplex variants (numerics); "
                         "the MILP master takes over with the cuts so far")
                return
            if not lp.isOptimal():
                return
            values = np.asarray(lp.getPrimal(), dtype=np.float64)
            point = master.point(values)
            theta = values[master.theta]
            st.bound = min(st.bound, bound)
            sep = point if core is None else alpha * point + (1 - alpha) * core
            results = self.separate(pool, sep)
            cuts = [Cut(i, r.constant, _coef(r)) for i, r in enumerate(results)]
            viol = self.pool.violation_of(cuts, point, theta)
            if core is not None and viol.max(initial=0.0) <= 1e-6 * max(1.0, abs(bound)):
                results = self.separate(pool, point)  # the stabilized cut missed: separate the optimum
                cuts = [Cut(i, r.constant, _coef(r)) for i, r in enumerate(results)]
                viol = self.pool.violation_of(cuts, point, theta)
            new = [c for c, v in zip(cuts, viol, strict=True) if v > 1e-7 * max(1.0, abs(c.constant))]
            self.pool.add(new, iteration=0)
            if not new or rnd % 10 == 9:
                self.offer(round_lp_plan(master, values), "LP rounding")
            self.record()
            if not new:
                return
            core = point if core is None else 0.5 * core + 0.5 * point
            mat, rhs = master.cut_rows(new)
            add_csr_rows(lp, mat.indptr, mat.indices, mat.data, np.full(rhs.size, -np.inf), rhs)

    def milp_loop(self, pool: SitePool) -> SolveStatus:
        st = self.state
        st.phase = "milp"
        tighten = False
        last_master_dual = math.inf
        for it in range(self.opt.max_iterations):
            st.iteration = it
            self.hooks.pre_iteration(self, st)
            if self.out_of_time():
                return SolveStatus.TIME_LIMIT
            master = build_benders_master(self.inst, self.pool.active(it, self.opt.cut_age_limit))
            if self.out_of_time():
                return SolveStatus.TIME_LIMIT
            # Early masters only need to point in a good direction: solve them loosely (a quarter of the
            # master's own gap — its last dual bound against the incumbent; not the best bound, which the
            # joint LP may hold far below any master's — at most 5 %), tightening to a share of the
            # requested gap as the bounds meet.
            final_gap = max(self.opt.gap * self.opt.master_gap_share, 1e-9)
            master_own_gap = compute_gap(st.primal, last_master_dual)
            master_gap = final_gap if tighten else max(
                final_gap, min(0.05, 0.25 * master_own_gap) if math.isfinite(master_own_gap) else 0.05)
            t = time.perf_counter()
            configure(master.model, time_limit=self.remaining(), gap=master_gap)
            run = run_scip(master.model, record_trace=False)
            st.master_seconds += time.perf_counter() - t
            if run.scip_status in ("infeasible", "inforunbd"):
                raise diagnose_mandatory(self.inst)
            st.bound = min(st.bound, run.dual)
            last_master_dual = run.dual
            if not run.has_solution:
                self.record()
                return SolveStatus(run.status) if run.status in SolveStatus._value2member_map_ else \
                    SolveStatus.TIME_LIMIT
            values = master.am.values()
            point = master.point(values)
            theta = values[master.theta]
            self.offer(plan_from_master(master, values), "master")
            results = self.separate(pool, point)
            cuts = [Cut(i, r.constant, _coef(r)) for i, r in enumerate(results)]
            viol = self.pool.violation_of(cuts, point, theta)
            tol = 1e-7 * max(1.0, abs(st.bound))
            new = [c for c, v in zip(cuts, viol, strict=True) if v > tol]
            self.pool.touch(point, theta, it)
            self.pool.add(new, iteration=it)
            offered = self.hooks.post_iteration(self, st)
            self.offer(offered, "hook")
            self.record()
            if st.gap <= self.opt.gap:
                return SolveStatus.OPTIMAL if st.gap <= 1e-9 else SolveStatus.GAP_LIMIT
            if not new and run.status not in ("optimal", "gap_limit"):
                return SolveStatus(run.status)
            if not new:
                # θ is exact at the master's solution: what is left is the master's own gap
                if master_gap <= final_gap:
                    return SolveStatus.GAP_LIMIT if st.gap <= self.opt.gap else SolveStatus.ITERATION_LIMIT
                tighten = True
        return SolveStatus.ITERATION_LIMIT

    def run(self) -> Solution:
        inst = self.inst
        st = self.state
        status = SolveStatus.ITERATION_LIMIT
        pool = SitePool(inst, self.opt.config)
        try:
            initial = self.opt.initial
            if initial is None:
                try:
                    initial = energy_only_plan(inst)
                except CarbonschedError:
                    initial = None
            self.offer(initial, "initial plan")
            if st.incumbent is not None:
                # cuts at the initial solution's point help the first master find good plans
                allowance = _solution_allowance(inst, st.incumbent)
                results = self.separate(pool, _point_from_solution(inst, st.incumbent, allowance))
                self.pool.add([Cut(i, r.constant, _coef(r)) for i, r in enumerate(results)], iteration=-1)
            self.record()  # the initial plan is the first trace row
            if self.opt.lp_warm_start:
                self.lp_warm_start(pool)
                self.record()
            self.root_loop(pool)
            if st.gap > self.opt.gap:
                status = self.milp_loop(pool)
            else:
                status = SolveStatus.GAP_LIMIT
        except KeyboardInterrupt:
            status = SolveStatus.INTERRUPTED
        finally:
            pool.close()
        if st.incumbent is None:
            raise NoSolutionError(f"benders found no solution before it stopped ({status.value})")
        sol = st.incumbent
        sol.method = "benders"
        sol.status = status
        sol.bound = st.bound
        sol.gap = compute_gap(sol.objective, st.bound)
        sol.certified = math.isfinite(st.bound)  # every cut is valid; an infinite bound proves nothing
        sol.wall_seconds = self.elapsed()
        self.trace.append(self.elapsed(), st.primal, st.bound, st.iteration)
        sol.trace = self.trace
        sol.extra = {"cuts": self.pool.size, "subproblem_seconds": st.subproblem_seconds,
                     "master_seconds": st.master_seconds, "workers": self.opt.config.n_jobs,
                     "backend": self.opt.config.backend}
        self.hooks.post_solve(self, st)
        return sol


def _coef(result) -> np.ndarray:
    return np.stack([result.coef[k] for k in ("busy", "bat_charging", "grid_importing", "gen_on", "allowance")])


def _pct(gap: float) -> str:
    return f"{100 * gap:9.4f}%" if math.isfinite(gap) else "        -"


def solve_benders(inst: Instance, *, time_limit: float | None = None, gap: float = 1e-4,
                  config: ParallelConfig | None = None, initial: ComputePlan | None = None,
                  hooks: DecompositionHooks | None = None, log: LogFn | None = None, **options) -> Solution:
    """Solve ``inst`` by Benders decomposition; see :class:`BendersOptions` for ``options``.

    Returns a Solution whose ``bound`` is the master's certified dual bound.
    """
    opt = BendersOptions(time_limit=time_limit, gap=gap, config=config or ParallelConfig(), initial=initial,
                         **options)
    return BendersSolver(inst, opt, hooks=hooks, log=log).run()
