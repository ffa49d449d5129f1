"""Incremental exact evaluation of compute plans, for local search.

An :class:`Evaluator` holds a current plan, its optimal energy dispatch and its objective Z. A *move*
(re-place or unschedule a job, swap two jobs, shift inference GPUs between sites) changes the plan;
:meth:`Evaluator.try_move` returns the exact Z of the changed plan without committing it,
:meth:`Evaluator.apply` commits it. The energy models stay alive between moves (balance right-hand
sides are changed in place) and only what a move touches is re-solved:

**What is incremental.** A move changes the busy GPUs U, hence the IT load, only at some sites
(the *touched* sites). Each site has a persistent energy MILP without carbon row; only touched sites
are re-solved, and results are cached by load profile (a move and its undo cost nothing the second
time). The compute terms of Z are recomputed with numpy.

**What is exact.** Always the returned Z — equal to :func:`formulations.evaluate` of the new plan
(up to SCIP's optimality tolerance; alternative optima may differ in dispatch, never in value):

- C = inf: the energy side is separable, so the untouched sites' optima stay optimal; the sum over
  sites is the exact optimum.
- C finite: the sites share the carbon row, so a change at one site can move the optimal allowance of
  every other. The evaluator first combines the per-site optima *without* the carbon row (only
  touched sites re-solved): this relaxation's optimum is an upper bound, and when its emissions fit
  inside C it is feasible, hence optimal — exact, with no coupled solve. Otherwise the one energy
  MILP over all sites with the global carbon row is re-solved (kept alive, warm-started from the
  previous dispatch repaired for the new load); this is the exact re-balancing of the budget.
  Per-site MILPs with a priced carbon row (Lagrangian or bisection on the price) are not used: they
  are not exact for MILPs.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
from carbonsched.errors import InputError, NoSolutionError
from carbonsched.instances.schema import Instance

from .energy import idle_energy_arrays, it_power_mw
from .evaluate import SiteEnergySolver, energy_start_values, site_energy_model, solve_sites_separately
from .plan import ComputePlan, PlanError, check_plan
from .scip_run import STATUS_MAP, configure, note_scip_status, optimize
from .solution import Solution, Trace, breakdown_from_arrays, sum_terms


# ------------------------------------------------------------------------------------------ moves
def _index(move: str, field: str, value, minimum: int) -> None:
    """Refuse a move's index that is not an integer >= ``minimum`` (PlanError naming the move's field)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise PlanError(f"{move}.{field}: must be an integer, got {value!r}")
    if value < minimum:
        rule = ">= 0" if minimum == 0 else f">= {minimum} ({minimum}: none)"
        raise PlanError(f"{move}.{field}: must be {rule}, got {value}")


def _below(move: str, field: str, value: int, limit: int, symbol: str) -> None:
    if value >= limit:
        raise PlanError(f"{move}.{field}: index {value} out of range ({symbol} = {limit})")




@dataclass(frozen=True)
class MoveJob:
    """Place job ``job`` at ``site`` starting in period ``start`` (``site = start = -1``: unschedule)."""

    job: int
    site: int
    start: int

    def __post_init__(self) -> None:
        _index("MoveJob", "job", self.job, 0)
        _index("MoveJob", "site", self.site, -1)
        _index("MoveJob", "start", self.start, -1)

    def apply_to(self, inst: Instance, plan: ComputePlan) -> ComputePlan:
        """A new plan with the move made (``plan`` is left unchanged)."""
        _below("MoveJob", "job", self.job, inst.n_jobs, "J")
        _below("MoveJob", "site", self.site, inst.n_sites, "S")
        _below("MoveJob", "start", self.start, inst.n_periods, "T")
        out = plan.copy()
        out.job_site[self.job], out.job_start[self.job] = self.site, self.start
        return out


@dataclass(frozen=True)
class SwapJobs:
    """Jobs ``a`` and ``b`` exchange their (site, start)."""

    a: int
    b: int

    def __post_init__(self) -> None:
        _index("SwapJobs", "a", self.a, 0)
        _index("SwapJobs", "b", self.b, 0)

    def apply_to(self, inst: Instance, plan: ComputePlan) -> ComputePlan:
        """A new plan with the move made."""
        _below("SwapJobs", "a", self.a, inst.n_jobs, "J")
        _below("SwapJobs", "b", self.b, inst.n_jobs, "J")
        out = plan.copy()
        out.job_site[[self.a, self.b]] = plan.job_site[[self.b, self.a]]
        out.job_start[[self.a, self.b]] = plan.job_start[[self.b, self.a]]
        return out


@dataclass(frozen=True)
class ShiftRouting:
    """Move ``gpus`` GPUs of class ``k`` in period ``t`` from site ``src`` to site ``dst``.

    ``src = -1`` takes them from unserved demand (serve more), ``dst = -1`` drops them (serve less).
    """

    k: int
    t: int
    src: int
    dst: int
    gpus: float

    def __post_init__(self) -> None:
        _index("ShiftRouting", "k", self.k, 0)
        _index("ShiftRouting", "t", self.t, 0)
        _index("ShiftRouting", "src", self.src, -1)
        _index("ShiftRouting", "dst", self.dst, -1)
        if isinstance(self.gpus, (bool, np.bool_)) or not isinstance(self.gpus, (int, float, np.integer, np.floating)):
            raise PlanError(f"ShiftRouting.gpus: must be a number, got {self.gpus!r}")
        if not math.isfinite(float(self.gpus)):
            raise PlanError(f"ShiftRouting.gpus: must be finite, got {self.gpus!r}")

    def apply_to(self, inst: Instance, plan: ComputePlan) -> ComputePlan:
        """A new plan with the move made."""
        _below("ShiftRouting", "k", self.k, inst.n_classes, "K")
        _below("ShiftRouting", "t", self.t, inst.n_periods, "T")
        _below("ShiftRouting", "src", self.src, inst.n_sites, "S")
        _below("ShiftRouting", "dst", self.dst, inst.n_sites, "S")
        out = plan.copy()
        if self.src >= 0:
            out.served[self.k, self.src, self.t] -= self.gpus
        if self.dst >= 0:
            out.served[self.k, self.dst, self.t] += self.gpus
        return out


@dataclass(frozen=True)
class SetPlan:
    """Replace the whole plan (the evaluator still re-solves only the sites whose load changed)."""

    plan: ComputePlan

    def __post_init__(self) -> None:
        if not isinstance(self.plan, ComputePlan):
            raise PlanError(f"SetPlan.plan: must be a ComputePlan (got {type(self.plan).__name__})")

    def apply_to(self, inst: Instance, plan: ComputePlan) -> ComputePlan:
        """The new plan (a copy)."""
        return self.plan.copy()


Move = MoveJob | SwapJobs | ShiftRouting | SetPlan


# -------------------------------------------------------------------------------------- evaluator
@dataclass
class _State:
    plan: ComputePlan
    load: np.ndarray  # (S,T) IT power, MW
    energy: dict[str, np.ndarray]  # (S,T) arrays of SOLUTION.md
    breakdown: dict[str, float]
    emissions_t: float
    objective: float
    status: str
    sites: tuple  # per-site relaxed optima (objective (S,), emissions (S,), energy rows, statuses)


class Evaluator:
    """Exact, incremental evaluation of a current plan under moves (see the module docstring).

    Parameters
    ----------
    inst : Instance
        The instance.
    plan : ComputePlan
        The starting plan (checked; PlanError if it breaks a compute constraint).
    time_limit : float, optional
        Seconds per energy MILP solve (default none: every solve to optimality, i.e. exact).
    pool : decomp.parallel.SitePool, optional
        Run the per-site solves on this pool's workers (site models stay alive there).
    cache_size : int
        Load profiles remembered per site (and for the coupled model).
    deadline : float, optional
        ``time.perf_counter()`` value by which every energy solve ends (attribute ``deadline``, may be
        changed between moves). Scoring that the deadline stops before a dispatch is found raises
        ``NoSolutionError`` (the current plan stays as it was).

    Attributes
    ----------
    stats : dict
        ``site_solves``, ``coupled_solves``, ``cache_hits``, ``relaxation_exact`` (finite C: moves
        settled by the per-site relaxation alone), ``moves_tried``, ``moves_applied``, ``seconds``.
    """

    def __init__(self, inst: Instance, plan: ComputePlan, *, time_limit: float | None = None, pool=None,
                 cache_size: int = 512, deadline: float | None = None) -> None:
        self.inst = inst
        self.time_limit = time_limit
        self.deadline = deadline
        self.pool = pool
        self.cache_size = cache_size
        self.finite_budget = math.isfinite(inst.carbon_budget_t)
        self._solvers: dict[int, SiteEnergySolver] = {}
        self._site_cache: list[OrderedDict] = [OrderedDict() for _ in range(inst.n_sites)]
        self._coupled_cache: OrderedDict = OrderedDict()
        self._coupled = None
        self._pending: tuple[Move, _State] | None = None
        # per-site relaxed optima (no carbon row): (S,) objective $, emissions t, energy rows
        self._site_obj = np.zeros(inst.n_sites)
        self._site_em = np.zeros(inst.n_sites)
        self._site_energy: list[dict[str, np.ndarray] | None] = [None] * inst.n_sites
        self._site_status = ["optimal"] * inst.n_sites
        self.stats = {"site_solves": 0, "coupled_solves": 0, "cache_hits": 0, "relaxation_exact": 0,
                      "moves_tried": 0, "moves_applied": 0, "seconds": 0.0}
        if time_limit is not None and not (isinstance(time_limit, (int, float)) and time_limit >= 0):
            raise InputError(f"time_limit: must be a number >= 0 s or None (got {time_limit!r})")
        t0 = time.perf_counter()
        check_plan(inst, plan)
        plan = plan.copy()
        load = it_power_mw(inst, plan.busy_gpus(inst))
        self._commit(self._score(plan, load, touched=np.arange(inst.n_sites)))
        self.stats["seconds"] += time.perf_counter() - t0

    # ---------------------------------------------------------------------------- read access
    @property
    def plan(self) -> ComputePlan:
        """The current plan (a copy)."""
        return self._state.plan.copy()

    @property
    def objective(self) -> float:
        """Z of the current plan, $."""
        return self._state.objective

    @property
    def breakdown(self) -> dict[str, float]:
        """The terms of Z of the current plan, $ (SOLUTION.md signs)."""
        return dict(self._state.breakdown)

    @property
    def emissions_t(self) -> float:
        """Em of the current plan's optimal dispatch, t CO2."""
        return self._state.emissions_t

    def solution(self, method: str = "evaluator", **kwargs) -> Solution:
        """The current plan with its optimal dispatch as a Solution (``kwargs``: status, extra, ...)."""
        st = self._state
        opts = dict(status=st.status, bound=math.inf, certified=False, wall_seconds=self.stats["seconds"])
        opts.update(kwargs)
        sol = Solution.from_arrays(self.inst, method=method, job_site=st.plan.job_site, job_start=st.plan.job_start,
                                   served=st.plan.served, unserved=st.plan.unserved(self.inst), energy=st.energy,
                                   **opts)
        if sol.trace is None or len(sol.trace) == 0:
            sol.trace = Trace()
            sol.trace.append(sol.wall_seconds, sol.objective, math.inf, 0)
        return sol

    # ---------------------------------------------------------------------------- moves
    def try_move(self, move: Move) -> float:
        """Exact Z after ``move``, $; the current plan is not changed.

        Raises
        ------
        PlanError
            The moved plan breaks a compute constraint (the current plan stays as it was).
        """
        if not isinstance(move, (MoveJob, SwapJobs, ShiftRouting, SetPlan)):
            raise PlanError(f"move: must be a MoveJob, SwapJobs, ShiftRouting or SetPlan (got {type(move).__name__})")
        t0 = time.perf_counter()
        self.stats["moves_tried"] += 1
        new_plan = move.apply_to(self.inst, self._state.plan)
        check_plan(self.inst, new_plan)
        load = it_power_mw(self.inst, new_plan.busy_gpus(self.inst))
        diff = np.abs(load - self._state.load) > 0.0
        touched = np.flatnonzero(diff.any(axis=1))
        state = self._score(new_plan, load, touched)
        self._pending = (move, state)
        self.stats["seconds"] += time.perf_counter() - t0
        return state.objective

    def apply(self, move: Move) -> float:
        """Make ``move`` (scored now unless it was the last one tried); the new Z, $."""
        if self._pending is None or self._pending[0] is not move:
            self.try_move(move)
        assert self._pending is not None
        self._commit(self._pending[1])
        self._pending = None
        self.stats["moves_applied"] += 1
        return self._state.objective

    def delta(self, move: Move) -> float:
        """Z after ``move`` minus the current Z, $ (the move is not made)."""
        return self.try_move(move) - self.objective

    def close(self) -> None:
        """Drop the SCIP models."""
        self._solvers.clear()
        self._coupled = None

    # ---------------------------------------------------------------------------- internals
    def _commit(self, state: _State) -> None:
        self._state = state
        self._site_obj, self._site_em, self._site_energy, self._site_status = state.sites

    def _key(self, arr: np.ndarray) -> bytes:
        return np.ascontiguousarray(arr).tobytes()

    def _solve_sites(self, load: np.ndarray, touched: np.ndarray):
        """Per-site relaxed optima for ``load`` at ``touched`` sites (cached); returns arrays for all sites."""
        obj, em = self._site_obj.copy(), self._site_em.copy()
        energy, status = list(self._site_energy), list(self._site_status)
        todo = []
        for i in touched:
            hit = self._site_cache[i].get(self._key(load[i]))
            if hit is None:
                todo.append(int(i))
            else:
                self._site_cache[i].move_to_end(self._key(load[i]))
                self.stats["cache_hits"] += 1
                obj[i], em[i], energy[i], status[i] = hit
        if todo:
            res = solve_sites_separately(self.inst, load, todo, time_limit=self.time_limit, deadline=self.deadline,
                                         pool=self.pool, solvers=self._solvers)
            self.stats["site_solves"] += len(todo)
            for i, r in res.items():
                if not r["has_solution"]:
                    raise NoSolutionError(f"energy dispatch of site {self.inst.sites.name[i]} found no solution "
                                          f"before the solve stopped ({r['status']})")
                entry = (r["objective"], r["emissions_t"], r["energy"], r["status"])
                cache = self._site_cache[i]
                cache[self._key(load[i])] = entry
                if len(cache) > self.cache_size:
                    cache.popitem(last=False)
                obj[i], em[i], energy[i], status[i] = entry
        return obj, em, energy, status

    def _score(self, plan: ComputePlan, load: np.ndarray, touched: np.ndarray) -> _State:
        inst = self.inst
        obj, em, site_energy, site_status = self._solve_sites(load, touched)
        status = "optimal"
        budget = inst.carbon_budget_t
        if not self.finite_budget or em.sum() <= budget:
            if self.finite_budget:
                self.stats["relaxation_exact"] += 1
            energy = idle_energy_arrays(inst)
            for i, rows in enumerate(site_energy):
                for name, row in rows.items():
                    energy[name][i] = row
            for st in site_status:
                if st != "optimal":
                    status = st
        else:
            energy, status = self._solve_coupled(load)
        unserved = plan.unserved(inst)
        breakdown, emissions = breakdown_from_arrays(inst, plan.job_site, plan.job_start, plan.served, unserved,
                                                     energy)
        state = _State(plan=plan, load=load, energy=energy, breakdown=breakdown, emissions_t=emissions,
                       objective=sum_terms(breakdown), status=status,
                       sites=(obj, em, site_energy, site_status))
        return state

    def _solve_coupled(self, load: np.ndarray) -> tuple[dict[str, np.ndarray], str]:
        key = self._key(load)
        hit = self._coupled_cache.get(key)
        if hit is not None:
            self._coupled_cache.move_to_end(key)
            self.stats["cache_hits"] += 1
            return {k: v.copy() for k, v in hit[0].items()}, hit[1]
        inst = self.inst
        if self._coupled is None:
            am, block, _ = site_energy_model(inst, load)
            self._coupled = {"am": am, "block": block, "load": None, "energy": None, "solved": False}
        c = self._coupled
        am, block = c["am"], c["block"]
        m = am.model
        if c["solved"]:
            m.freeTransform()
        rhs = -inst.sites.pue * load
        rows, rhs = block.site_balance, rhs[block.sites]
        am.set_row_bounds(rows[rows >= 0], lhs=rhs[rows >= 0], rhs=rhs[rows >= 0])
        if c["energy"] is not None:
            start = _repair_start(inst, c["energy"], c["load"], load)
            if start is not None:
                sol = m.createSol()
                values = energy_start_values(block, am.n_vars, start)
                for var, val in zip(am.variables(), values, strict=True):
                    if val != 0.0:
                        m.setSolVal(sol, var, float(val))
                m.addSol(sol, free=True)
        limit = self.time_limit
        if self.deadline is not None:
            left = max(self.deadline - time.perf_counter(), 0.0)
            limit = left if limit is None else min(limit, left)
        configure(m, time_limit=limit, gap=0.0, catch_interrupt=True)
        optimize(m)
        c["solved"] = True
        note_scip_status(m.getStatus())  # Ctrl-C during a move's scoring ends the local search
        self.stats["coupled_solves"] += 1
        if m.getNSols() == 0:
            raise NoSolutionError(f"energy dispatch found no solution before the solve stopped ({m.getStatus()})")
        status = STATUS_MAP.get(m.getStatus(), m.getStatus())
        energy = block.extract(inst, am.values(), load)
        c["energy"], c["load"] = energy, load.copy()
        self._coupled_cache[key] = ({k: v.copy() for k, v in energy.items()}, status)
        if len(self._coupled_cache) > self.cache_size:
            self._coupled_cache.popitem(last=False)
        return energy, status


def _repair_start(inst: Instance, energy: dict[str, np.ndarray], old_load: np.ndarray,
                  new_load: np.ndarray) -> dict[str, np.ndarray] | None:
    """The previous dispatch made feasible for the new load, or None.

    More facility load is met by load shedding (ens; carbon unchanged); less is absorbed by cutting
    ens, then grid import (emissions only fall), then renewables used.
    """
    out = {k: v.copy() for k, v in energy.items()}
    delta = inst.sites.pue * (new_load - old_load)  # facility MW
    up = np.maximum(delta, 0.0)
    out["ens"] += up
    down = np.maximum(-delta, 0.0)
    for name in ("ens", "grid_import", "renewable_used"):
        cut = np.minimum(down, out[name])
        out[name] -= cut
        down -= cut
    if (down > 1e-9).any():
        return None
    return out


__all__ = ["Evaluator", "Move", "MoveJob", "SetPlan", "ShiftRouting", "SwapJobs", "PlanError"]
