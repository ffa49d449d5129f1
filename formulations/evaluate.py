"""Exact scoring of a compute plan: optimal energy dispatch of every site for that plan.

Given a plan, the busy GPUs U and hence each site's IT load are fixed; what remains is the energy
side (constraints 5–8) of every site plus the global carbon budget (9).

- **C = inf**: the energy side is separable; each site's MILP is solved on its own, in this process or
  on a pool of workers (``pool=``, any object with the :class:`SiteMap` signature, e.g.
  ``carbonsched.decomp.parallel.SitePool``). The sum of the per-site optima is the optimum of the
  block-diagonal MILP.
- **Finite budget C** (default, :func:`score_with_carbon_price`): the one carbon row couples the
  sites. It is priced instead: for a carbon price λ ≥ 0 ($/t) each site solves its own energy MILP with
  objective reduced by λ·Em_i, and a search on λ finds the smallest price whose summed emissions fit in
  C. Weak duality makes L(λ) = Σ_i V̄_i(λ) + λ·C, with V̄_i SCIP's dual bound of site i, an upper bound on
  the plan's value for every λ ≥ 0; the dispatch at the feasible price is a lower bound. When the two
  meet (within 1e-6 relative) the dispatch is *proven* optimal. A Lagrangian dual of a MILP can have a
  positive gap, so when they do not meet, the sites whose emissions differ at the two prices that
  bracket the budget are re-solved as one joint MILP with what is left of the budget (the *repair*);
  if even that leaves a gap, the full joint MILP is solved, seeded with the dispatch found. The result
  is therefore always optimal for the plan; ``Solution.extra`` says which step proved it.
- ``exact_joint=True`` solves the finite-budget case as one MILP over all sites (the reference).

Either way the result is optimal for the plan (solved with relative gap 0, to SCIP's tolerances), so
its objective is exactly the plan's value.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import scipy.sparse as sp
from carbonsched.errors import InputError, NoSolutionError
from carbonsched.instances.schema import Instance
from pyscipopt import SCIP_PARAMSETTING

from .energy import EnergyBlock, add_energy_block, idle_energy_arrays, it_power_mw
from .plan import ComputePlan, PlanError, check_plan
from .scip_arrays import ArrayModel
from .scip_run import STATUS_MAP, configure, note_scip_status, optimize, run_scip
from .site_milp import FAST_SEPARATION_MAX_PERIODS, limit_by_deadline, releases_transform
from .solution import Solution, Trace

log = logging.getLogger(__name__)

SCIP_INF = 1e20
#: Per-site values are snapped to this grid ($), bounds up and values down, and emissions to
#: :data:`EMISSION_GRID` (t): a model re-solved in place and a fresh build of it differ by float noise,
#: and which worker holds a site's model varies between runs; snapping keeps the price search's path
#: the same in-process and on any number of workers.
RESULT_GRID = 1e-6
EMISSION_GRID = 1e-9
#: Relative tolerance of the exactness certificate: proven exact when value ≥ bound − tol·max(1, |bound|).
CERTIFICATE_TOL = 1e-6
#: Price-search rounds (each a parallel solve of the sites that are still undecided) before the repair.
MAX_PRICE_ROUNDS = 12
#: The search hands over to the repair once at most this many sites (or a tenth of them) are undecided
#: (emissions differ at the two ends of the price bracket): a joint MILP of a few sites is cheaper than
#: more rounds.
REPAIR_SITES = 4


class SiteMap(Protocol):
    """What scoring needs from a pool of workers (``carbonsched.decomp.parallel.SitePool`` has it).

    ``map`` runs ``factory(inst, site, **options).method(*args, **kwargs)`` for each ``site: (args,
    kwargs)`` of ``calls`` on site solvers kept alive (cached by ``kind`` and site) between calls, and
    returns the results by site in site order.
    """

    def map(self, kind: str, factory: Callable, method: str, calls: dict[int, tuple[tuple, dict]],
            options: dict | None = None, cost: Mapping[int, float] | None = None) -> dict[int, Any]: ...


def _up(v: float) -> float:
    return math.ceil(v / RESULT_GRID) * RESULT_GRID if math.isfinite(v) else v


def _down(v: float) -> float:
    return math.floor(v / RESULT_GRID) * RESULT_GRID if math.isfinite(v) else v


def site_energy_model(inst: Instance, it_load_mw: np.ndarray, *, sites: np.ndarray | None = None,
                      carbon_allowance_t: float | None = None, carbon_price: float | None = None):
    """The energy dispatch MILP of ``sites`` (default all) for a fixed IT load profile.

    Parameters
    ----------
    inst : Instance
        Site data.
    it_load_mw : (S,T) float
        IT power P^IT in MW (rows of sites outside ``sites`` are ignored).
    sites : (n,) int, optional
        The sites modelled; one site gives the per-site energy subproblem of the decompositions.
    carbon_allowance_t : float, optional
        Emission cap of these sites in t CO2 (default: the instance's global budget ``C``).
    carbon_price : float, optional
        τ in $/t (default the instance's).

    Returns
    -------
    (ArrayModel, EnergyBlock, carbon_row_ids)
        The carbon row's right-hand side can be changed in place for a new allowance.
    """
    sites = np.arange(inst.n_sites) if sites is None else np.asarray(sites, dtype=np.int64)
    am = ArrayModel(f"{inst.name}-energy", maximize=True)
    block = add_energy_block(am, inst, sites, it_load_mw=it_load_mw, carbon_price=carbon_price)
    cap = inst.carbon_budget_t if carbon_allowance_t is None else carbon_allowance_t
    carbon_rows = np.zeros(0, np.int64)
    if math.isfinite(cap):
        cid, coef = block.emission_terms(inst)
        row = sp.csr_matrix((coef, (np.zeros(cid.size, np.int64), cid)), shape=(1, am.n_vars))
        carbon_rows = am.add_rows("carbon", row, -np.inf, cap)
    return am, block, carbon_rows


class SiteEnergySolver:
    """The energy MILP of one site without carbon row, built once and re-solved for new load profiles.

    The balance rows' sides and the objective coefficients of grid import and generator output (for a
    carbon price) are changed in place between solves, so the model is built once per site. This is
    the site solver of :func:`evaluate`, :func:`score_with_carbon_price` and
    :class:`formulations.evaluator.Evaluator`.

    Parameters
    ----------
    inst : Instance
        The instance.
    site : int
        Site index.
    seed : int
        SCIP random seed shift (solves are deterministic for a given seed).
    """

    def __init__(self, inst: Instance, site: int, *, seed: int = 0) -> None:
        self.inst = inst
        self.site = int(site)
        self.seed = seed
        zero = np.zeros((inst.n_sites, inst.n_periods))
        self.am, self.block, _ = site_energy_model(inst, zero, sites=np.array([self.site]),
                                                   carbon_allowance_t=math.inf)
        # SCIP re-offers up to 10 earlier solutions after freeTransform(), which makes a solve depend on
        # the model's history; a pool may rebuild a site's model in another worker, so history must not
        # matter (the same reason as in site_milp.SiteMILP)
        self.am.model.setParam("limits/maxorigsol", 0)
        # re-solved many times; SCIP's default presolve costs more than it saves here (one site at a high
        # carbon price took 2.0 s with defaults and 0.17 s with fast presolving, 10 sites, seed 1)
        self.am.model.setPresolve(SCIP_PARAMSETTING.FAST)
        if inst.n_periods <= FAST_SEPARATION_MAX_PERIODS:
            self.am.model.setSeparating(SCIP_PARAMSETTING.FAST)
        self.rows = self.block.site_balance[0]  # the block is this site alone
        s, i, dt = inst.sites, self.site, inst.period_hours
        imp, gen = self.block.site_ids["grid_import"][0], self.block.site_ids["gen"][0]
        self.imp_ids, self.gen_ids = imp[imp >= 0], gen[gen >= 0]
        self.imp_obj = -dt * (s.price_buy[i] + inst.carbon_price * s.grid_co2[i])[imp >= 0]
        self.imp_co2 = dt * s.grid_co2[i][imp >= 0]
        self.gen_obj = np.full(self.gen_ids.size, -dt * (s.gen_cost[i] + inst.carbon_price * s.gen_co2[i]))
        self.gen_co2 = np.full(self.gen_ids.size, dt * s.gen_co2[i])
        self._solved = False

    @releases_transform
    def solve(self, it_load_mw: np.ndarray, time_limit: float | None = None, carbon_price: float = 0.0,
              deadline: float | None = None) -> dict:
        """Optimal dispatch of the site for IT load ``it_load_mw`` (T,) in MW.

        Parameters
        ----------
        it_load_mw : (T,) float
            IT power P^IT of the site, MW.
        time_limit : float, optional
            Seconds for SCIP.
        carbon_price : float
            Extra price λ ≥ 0 on the site's emissions, $/t (on top of the instance's τ): the objective is
            the site's energy terms of Z minus λ·Em_i.
        deadline : float, optional
            ``time.time()`` by which the solve must end (a worker solving many sites in a row gives each what
            is left); a solve reached after it returns at once without a solution (status ``time_limit``).

        Returns
        -------
        dict
            ``status`` (SOLUTION.md status), ``has_solution`` (bool), ``energy`` (name -> (T,) arrays of
            SOLUTION.md's ``/energy``), ``objective`` ($, the energy terms of Z incl. τ·Em of the site,
            without the λ term, snapped down to :data:`RESULT_GRID`), ``priced_objective`` ($, objective −
            λ·Em), ``bound`` ($, SCIP's dual bound on the priced optimum, snapped up; ``inf`` when none),
            ``emissions_t`` (t CO2), ``seconds`` (s).
        """
        t0 = time.perf_counter()
        if deadline is not None and time.time() >= deadline:
            return _unsolved_site()
        time_limit = limit_by_deadline(time_limit, deadline)
        m = self.am.model
        self._solved = True  # @releases_transform frees the transformed problem after this solve
        rhs = -self.inst.sites.pue[self.site] * np.asarray(it_load_mw, dtype=np.float64)
        self.am.set_row_bounds(self.rows, lhs=rhs, rhs=rhs)
        lam = float(carbon_price)
        if self.imp_ids.size:
            self.am.set_var_data(self.imp_ids, obj=self.imp_obj - lam * self.imp_co2)
        if self.gen_ids.size:
            self.am.set_var_data(self.gen_ids, obj=self.gen_obj - lam * self.gen_co2)
        configure(m, time_limit=time_limit, gap=0.0, seed=self.seed, catch_interrupt=True)
        optimize(m)
        status = m.getStatus()
        note_scip_status(status)  # Ctrl-C during a site solve ends the loop of solves
        if status == "infeasible":
            # a site's dispatch is always feasible (load shedding is unbounded), yet SCIP 10's strong dual
            # reductions declared one infeasible (site ap-southeast-mel-001 of the 300-site seed-1 instance
            # under the greedy plan; feasible with misc/allowstrongdualreds off): solve again without them
            log.warning("site %s: SCIP reported a feasible dispatch infeasible; solving again without strong "
                        "dual reductions", self.inst.sites.name[self.site])
            m.freeTransform()
            m.setParam("misc/allowstrongdualreds", False)
            if time_limit is not None:
                m.setParam("limits/time", max(float(time_limit) - (time.perf_counter() - t0), 0.0))
            try:
                optimize(m)
            finally:
                m.setParam("misc/allowstrongdualreds", True)
            status = m.getStatus()
            note_scip_status(status)
        dual = float(m.getDualbound())
        out = {"status": STATUS_MAP.get(status, status), "has_solution": m.getNSols() > 0,
               "energy": None, "objective": -math.inf, "priced_objective": -math.inf,
               "bound": math.inf if dual >= SCIP_INF else _up(dual), "emissions_t": math.nan}
        if out["has_solution"]:
            vals = self.am.values()
            energy = self.block.extract(self.inst, vals, np.asarray(it_load_mw, dtype=np.float64)[None, :])
            out["energy"] = {name: arr[self.site].copy() for name, arr in energy.items()}
            em = round(float(vals[self.imp_ids] @ self.imp_co2 + vals[self.gen_ids] @ self.gen_co2), 9)
            priced = _down(float(m.getObjVal()))
            out["priced_objective"] = priced
            out["objective"] = _down(priced + lam * em) if lam else priced
            out["emissions_t"] = em
        out["seconds"] = time.perf_counter() - t0
        return out


def make_site_energy_solver(inst: Instance, site: int, seed: int = 0) -> SiteEnergySolver:
    """Factory for a :class:`SiteMap` pool (module level, so that it pickles)."""
    return SiteEnergySolver(inst, site, seed=seed)


#: Cache key of the per-site energy solvers on a pool.
SITE_ENERGY_KIND = "evaluate-energy"


def solve_sites_separately(inst: Instance, it_load_mw: np.ndarray, sites, *, time_limit: float | None = None,
                           pool: SiteMap | None = None, solvers: dict[int, SiteEnergySolver] | None = None,
                           carbon_price: float = 0.0, cost: Mapping[int, float] | None = None,
                           deadline: float | None = None) -> dict[int, dict]:
    """Per-site energy MILPs (no carbon row) for ``sites``; results of :meth:`SiteEnergySolver.solve` by site.

    Parameters
    ----------
    inst : Instance
        The instance.
    it_load_mw : (S,T) float
        IT power P^IT, MW.
    sites : iterable of int
        Sites to solve.
    time_limit : float, optional
        Seconds per site solve.
    pool : SiteMap, optional
        Solve on its workers (site models stay alive there between calls).
    solvers : dict, optional
        In-process site solvers to reuse (filled on first use); ignored with ``pool``.
    carbon_price : float
        Extra price λ on emissions, $/t (see :meth:`SiteEnergySolver.solve`).
    cost : mapping, optional
        Estimated seconds per site, passed to the pool to balance its workers.
    deadline : float, optional
        ``time.perf_counter()`` value by which every solve ends: each site solve gets at most the time left
        (on a pool, the time left when the round is submitted, the sites running in parallel); in this
        process, a site reached after the deadline is not solved (``has_solution`` False, status
        ``time_limit``), so a round past its deadline returns at once.
    """
    sites = [int(i) for i in sites]

    def limit() -> float | None:
        if deadline is None:
            return time_limit
        left = max(deadline - time.perf_counter(), 0.0)
        return left if time_limit is None else min(time_limit, left)

    kwargs = {"time_limit": limit(), "carbon_price": float(carbon_price)}
    if pool is not None:
        # the workers solve their sites one after another: each gets what is left before the common deadline
        wall_deadline = None if deadline is None else time.time() + (deadline - time.perf_counter())
        calls = {i: ((it_load_mw[i],), {**kwargs, "deadline": wall_deadline}) for i in sites}
        return pool.map(SITE_ENERGY_KIND, make_site_energy_solver, "solve", calls, cost=cost)
    solvers = {} if solvers is None else solvers
    out = {}
    for i in sites:
        kwargs["time_limit"] = limit()
        if kwargs["time_limit"] is not None and kwargs["time_limit"] <= 0.0:
            out[i] = _unsolved_site()
            continue
        if i not in solvers:
            solvers[i] = SiteEnergySolver(inst, i)
        out[i] = solvers[i].solve(it_load_mw[i], **kwargs)
    return out


class _RoundPastDeadline(Exception):
    """A price round of :func:`score_with_carbon_price` reached its deadline before every site was solved."""


def _unsolved_site() -> dict:
    """A :meth:`SiteEnergySolver.solve` result for a site not solved because the deadline had passed."""
    return {"status": "time_limit", "has_solution": False, "energy": None, "objective": -math.inf,
            "priced_objective": -math.inf, "bound": math.inf, "emissions_t": math.nan, "seconds": 0.0}


def _name_list(names, shown: int = 5) -> str:
    """The first ``shown`` of ``names`` and how many more: an error message stays one short line."""
    names = [str(n) for n in names]
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def _worst_status(statuses) -> str:
    statuses = list(statuses)
    for st in ("interrupted", "time_limit", "iteration_limit", "gap_limit"):
        if st in statuses:
            return st
    return "optimal"


# ------------------------------------------------------------------------------ carbon-price search
@dataclass
class _Response:
    """Every site's optimal dispatch at one carbon price λ ($/t).

    ``value`` (S,) are the sites' energy terms of Z without the λ term ($), ``bound`` (S,) valid upper
    bounds on the priced site optima V_i(λ) ($), ``em`` (S,) emissions (t), ``energy`` the (T,) arrays
    of each site's dispatch.
    """

    lam: float
    value: np.ndarray
    bound: np.ndarray
    em: np.ndarray
    energy: list[dict[str, np.ndarray]]
    status: list[str]
    solved: np.ndarray  # the sites solved at this price (the others were carried over)

    @property
    def emissions(self) -> float:
        return float(self.em.sum())

    def dual_value(self, cap: float) -> float:
        """L(λ) = Σ_i V̄_i(λ) + λ·C: an upper bound on the plan's energy value for any λ ≥ 0."""
        return float(self.bound.sum()) + self.lam * cap

    def priced_value(self, cap: float) -> float:
        """Σ_i V_i(λ) + λ·C from the solutions found (the Lagrangian function at λ, primal side)."""
        return float((self.value - self.lam * self.em).sum()) + self.lam * cap


@dataclass
class CarbonPriceScore:
    """Outcome of :func:`score_with_carbon_price`.

    Attributes
    ----------
    energy : dict of str to (S,T) arrays
        The dispatch (SOLUTION.md's ``/energy``), feasible for the plan and the carbon budget.
    status : str
        SOLUTION.md status (``optimal`` unless a time limit stopped a solve).
    value : float
        Energy terms of Z of the dispatch, $.
    bound : float
        Best upper bound on the plan's energy terms proven on the way (Lagrangian or joint MILP), $.
    proven_exact : bool
        ``value`` ≥ ``bound`` − :data:`CERTIFICATE_TOL`·max(1, |bound|).
    method : str
        What proved it: ``separable`` (the budget does not bind at λ = 0), ``price`` (the price search
        alone), ``repair`` (joint re-solve of the undecided sites), ``joint`` (the full joint MILP).
    carbon_price : float
        λ of the feasible dispatch the search ended with, $/t (0 when separable).
    rounds : int
        Price-search rounds (each one parallel solve of the sites still undecided).
    site_solves : int
        Per-site MILP solves in all rounds.
    repair_sites : int
        Sites in the joint repair MILP (0 without repair).
    search_gap : float
        Lagrangian bound minus the value of the dispatch at the feasible price when the search ended, $
        (what the price search alone leaves; 0 when separable).
    seconds : dict of str to float
        Wall seconds of the search, the repair and the joint fallback.
    """

    energy: dict[str, np.ndarray]
    status: str
    value: float
    bound: float
    proven_exact: bool
    method: str
    carbon_price: float
    rounds: int
    site_solves: int
    repair_sites: int = 0
    search_gap: float = 0.0
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def certificate_gap(self) -> float:
        """bound − value, $ (≥ 0 up to SCIP's tolerances)."""
        return self.bound - self.value


def _close_enough(value: float, bound: float) -> bool:
    return value >= bound - CERTIFICATE_TOL * max(1.0, abs(bound))


def energy_start_values(block: EnergyBlock, n_vars: int, energy: Mapping[str, np.ndarray]) -> np.ndarray:
    """A full variable assignment of an energy model from SOLUTION.md's (S,T) energy arrays."""
    vals = np.zeros(n_vars)
    for name, ids in block.site_ids.items():
        mask = ids >= 0
        vals[ids[mask]] = np.asarray(energy[name], dtype=float)[block.sites][mask]
    return vals


def _solve_joint(inst: Instance, load: np.ndarray, sites: np.ndarray, allowance: float,
                 start: Mapping[str, np.ndarray] | None, time_limit: float | None):
    """The energy MILP of ``sites`` with one carbon row of ``allowance`` t, seeded with ``start``."""
    am, block, _ = site_energy_model(inst, load, sites=sites, carbon_allowance_t=allowance)
    configure(am.model, time_limit=time_limit, gap=0.0)
    if start is not None:
        am.add_solution(energy_start_values(block, am.n_vars, start))
    run = run_scip(am.model, record_trace=False)
    energy = block.extract(inst, am.values(), load[block.sites]) if run.has_solution else None
    return run, energy


def score_with_carbon_price(inst: Instance, it_load_mw: np.ndarray, *, pool: SiteMap | None = None,
                            time_limit: float | None = None, joint_fallback: bool = True,
                            solvers: dict[int, SiteEnergySolver] | None = None,
                            repair_sites: int | None = None) -> CarbonPriceScore:
    """Optimal energy dispatch for a fixed IT load under the global carbon budget, site by site.

    Prices the carbon row: each round solves the undecided sites' energy MILPs (``pool`` runs them in
    parallel) at one carbon price λ. Round 1 is λ = 0; if the summed emissions fit in C, the separable
    optimum is optimal. Otherwise λ is raised ×4 until they fit, then the bracket [λ_lo, λ_hi] (emissions
    above / within C) is narrowed by the intersection of the two Lagrangian lines at its ends (Kelley's
    step on the piecewise-linear dual). A site whose emissions are equal at both ends of the bracket keeps
    its dispatch in between (V_i is convex in λ, so a dispatch optimal at both ends is optimal between) and
    is not re-solved. The search stops when the dispatch at λ_hi is proven optimal against the best
    Lagrangian bound, or when no price inside the bracket can lower the bound any more; then the sites
    whose emissions differ at λ_lo and λ_hi are re-solved as one joint MILP with the budget the other
    sites leave (the repair); if a gap remains, the full joint MILP is solved, seeded with the dispatch.

    Parameters
    ----------
    inst : Instance
        The instance (finite ``carbon_budget_t``).
    it_load_mw : (S,T) float
        IT power P^IT, MW.
    pool : SiteMap, optional
        Workers for the per-site solves; without one they run in this process, one after another.
    time_limit : float, optional
        Seconds in all; a search stopped by it returns the best feasible dispatch, not proven exact.
    joint_fallback : bool
        Solve the full joint MILP when the repair leaves a gap (default); without it the result may
        be not proven exact (``proven_exact`` False, ``certificate_gap`` > tolerance).
    solvers : dict, optional
        In-process site solvers to reuse between calls (ignored with ``pool``).
    repair_sites : int, optional
        Hand over to the repair once at most this many sites are undecided (default
        max(:data:`REPAIR_SITES`, S/10)); 0 runs the price search until it cannot improve the bound.

    Returns
    -------
    CarbonPriceScore
    """
    t0 = time.perf_counter()
    S, cap = inst.n_sites, float(inst.carbon_budget_t)
    deadline = None if time_limit is None else t0 + time_limit
    solvers = {} if solvers is None else solvers
    cost: dict[int, float] = {}
    counters = {"rounds": 0, "solves": 0}

    def remaining() -> float | None:
        return None if deadline is None else max(deadline - time.perf_counter(), 0.0)

    def out_of_time() -> bool:
        # a step started after the deadline overran it by seconds (100 sites × 168 h: a price round 5 s, the
        # repair's two joint MILPs and the fallback's builds 6 s more): past it the best feasible dispatch stands
        return deadline is not None and time.perf_counter() >= deadline

    def solve(sites: np.ndarray, lam: float) -> dict[int, dict]:
        res = solve_sites_separately(inst, it_load_mw, sites, pool=pool, solvers=solvers, carbon_price=lam,
                                     cost=cost or None, deadline=deadline)
        counters["rounds"] += 1
        counters["solves"] += len(res)
        cost.update({i: r["seconds"] for i, r in res.items()})
        missing = [inst.sites.name[i] for i, r in res.items() if not r["has_solution"]]
        if missing:
            if out_of_time():
                raise _RoundPastDeadline
            raise NoSolutionError(f"energy dispatch of site(s) {_name_list(missing)} found no solution "
                                  "before the solve stopped")
        return res

    def respond(lam: float, sites: np.ndarray, base: _Response | None, base_bound: np.ndarray | None) -> _Response:
        """Solve ``sites`` at ``lam``; the other sites keep ``base``'s dispatch with bound ``base_bound``."""
        res = solve(sites, lam)
        if base is None:
            value, em, bound = np.empty(S), np.empty(S), np.empty(S)
            energy: list = [None] * S
            status = [""] * S
        else:
            value, em, bound = base.value.copy(), base.em.copy(), base_bound.copy()
            energy, status = list(base.energy), list(base.status)
        for i, r in res.items():
            value[i], em[i], bound[i] = r["objective"], r["emissions_t"], r["bound"]
            energy[i], status[i] = r["energy"], r["status"]
        out = _Response(lam, value, bound, em, energy, status, np.asarray(sites, dtype=np.int64))
        log.debug("carbon price %.6g $/t: %d site(s) solved, emissions %.6g t (budget %.6g), L %.10g, value %.10g",
                  lam, len(res), out.emissions, cap, out.dual_value(cap), float(value.sum()))
        return out

    def limited(resp: _Response) -> bool:
        return any(st != "optimal" for st in resp.status)

    def result(resp: _Response, bound: float, method: str, **kw) -> CarbonPriceScore:
        energy = idle_energy_arrays(inst)
        for i in range(S):
            for name, row in resp.energy[i].items():
                energy[name][i] = row
        value = float(resp.value.sum())
        status = _worst_status(resp.status)
        return CarbonPriceScore(energy, status, value, bound, status == "optimal" and _close_enough(value, bound),
                                method, resp.lam, counters["rounds"], counters["solves"], **kw)

    all_sites = np.arange(S)
    repair_size = max(REPAIR_SITES, S // 10) if repair_sites is None else int(repair_sites)
    try:
        lo = respond(0.0, all_sites, None, None)
    except _RoundPastDeadline:
        raise NoSolutionError("energy dispatch found no solution before the time limit") from None
    history = [lo]  # every price tried, with valid per-site bounds: the cuts of the repair's bound
    best_bound = lo.dual_value(cap)
    if lo.emissions <= cap:
        # the optimum without the carbon row fits the budget: optimal for the plan (separable)
        out = result(lo, best_bound, "separable")
        out.seconds["search"] = time.perf_counter() - t0
        return out

    # bracket: raise λ until the emissions fit. A site without emissions keeps its dispatch (V_i(λ) is
    # nonincreasing in λ, constant for a dispatch with Em_i = 0) and its bound. Each guess comes from a
    # model of the emission curve (_shedding_price); at least ×1.25 per round.
    lam = _shedding_price(inst, lo, cap)
    hi: _Response | None = None
    while not limited(lo) and counters["rounds"] < MAX_PRICE_ROUNDS and not out_of_time():
        try:
            resp = respond(lam, np.flatnonzero(lo.em > 0), lo, lo.bound)
        except _RoundPastDeadline:
            break
        history.append(resp)
        best_bound = min(best_bound, resp.dual_value(cap))
        if resp.emissions <= cap:
            hi = resp
            break
        if limited(resp):
            break
        lo, lam = resp, max(_shedding_price(inst, resp, cap), 1.25 * lam)

    def undecided_sites() -> np.ndarray:
        return np.flatnonzero(np.abs(lo.em - hi.em) > EMISSION_GRID * np.maximum(1.0, np.abs(hi.em)))

    # narrow the bracket [λ_lo, λ_hi] with the Illinois variant of regula falsi on E(λ) − C (the secant
    # step, with the stale end's excess halved each time the same end moves again). A site whose emissions
    # are equal at both ends keeps its dispatch in between (a dispatch optimal at two prices is optimal
    # between them, V_i being convex in λ) and is not re-solved. Kelley's step (the intersection of the
    # Lagrangian's lines at the ends) tells when no price in the bracket can lower the bound any more.
    if hi is not None:
        excess = {"lo": lo.emissions - cap, "hi": hi.emissions - cap}
    last = ""
    while hi is not None and not limited(hi) and counters["rounds"] < MAX_PRICE_ROUNDS and not out_of_time():
        if _close_enough(float(hi.value.sum()), best_bound) or undecided_sites().size <= repair_size:
            break
        g_lo, g_hi = cap - lo.emissions, cap - hi.emissions  # slopes of L at the bracket's ends
        p_lo, p_hi = lo.priced_value(cap), hi.priced_value(cap)
        lam_k = (p_hi - p_lo + g_lo * lo.lam - g_hi * hi.lam) / (g_lo - g_hi)
        model_min = p_lo + g_lo * (lam_k - lo.lam)  # no λ in the bracket has L below this (convexity)
        span = hi.lam - lo.lam
        if _close_enough(model_min, best_bound) or not lo.lam + 1e-9 * span < lam_k < hi.lam - 1e-9 * span:
            break  # the dual cannot improve: what is left is the duality gap of the MILP, for the repair
        lam_x = lo.lam + span * excess["lo"] / (excess["lo"] - excess["hi"])
        if not lo.lam + 1e-9 * span < lam_x < hi.lam - 1e-9 * span:
            lam_x = 0.5 * (lo.lam + hi.lam)
        theta = (hi.lam - lam_x) / span
        # for a site not re-solved: V_i(λ_x) ≤ θ·V̄_i(λ_lo) + (1 − θ)·V̄_i(λ_hi) by convexity of V_i
        try:
            resp = respond(lam_x, undecided_sites(), hi, theta * lo.bound + (1.0 - theta) * hi.bound)
        except _RoundPastDeadline:
            break
        history.append(resp)
        best_bound = min(best_bound, resp.dual_value(cap))
        if limited(resp) and resp.emissions > cap:
            break
        side = "hi" if resp.emissions <= cap else "lo"
        if side == "hi":
            hi = resp
        else:
            lo = resp
        excess[side] = resp.emissions - cap
        if side == last:
            excess["lo" if side == "hi" else "hi"] *= 0.5
        last = side
    t_search = time.perf_counter() - t0
    search_gap = best_bound - float(hi.value.sum()) if hi is not None else math.inf

    if hi is not None and (limited(hi) or out_of_time() or _close_enough(float(hi.value.sum()), best_bound)):
        out = result(hi, best_bound, "price", search_gap=search_gap)
        if not out.proven_exact and out_of_time():
            out.status = _worst_status([out.status, "time_limit"])
        out.seconds["search"] = t_search
        return out

    seed = None
    if hi is not None:
        # repair: the undecided sites share what the others leave of the budget, in one joint MILP; its
        # certificate is a sharper bound that keeps these sites' MILP and prices only the others. If a gap
        # remains, once more with every site re-solved in the last two rounds (the sites near the price).
        t1 = time.perf_counter()
        undecided = undecided_sites()
        out = result(hi, best_bound, "repair", search_gap=search_gap)
        recent = np.union1d(undecided, np.concatenate([r.solved for r in history[-2:]]))
        for group in (undecided, recent) if recent.size > undecided.size else (undecided,):
            if out_of_time():
                break
            fixed = np.setdiff1d(all_sites, group)
            run, energy = _solve_joint(inst, it_load_mw, group, cap - float(hi.em[fixed].sum()), out.energy,
                                       remaining())
            here = out.value - float(hi.value[fixed].sum())  # the current dispatch's value at these sites
            if run.has_solution and run.primal > here:
                for name, arr in out.energy.items():
                    arr[group] = energy[name][group]
                out.value = float(hi.value[fixed].sum()) + run.primal
            cuts_lam = np.array([r.lam for r in history])
            cuts_rhs = np.array([float(r.bound[fixed].sum()) + r.lam * cap for r in history])
            bound_run = _repair_bound(inst, it_load_mw, group, cuts_lam, cuts_rhs, out.energy, remaining())
            out.bound = best_bound = min(best_bound, bound_run.dual)
            out.status = _worst_status([out.status, run.status, bound_run.status])
            out.repair_sites = int(group.size)
            out.proven_exact = out.status == "optimal" and _close_enough(out.value, out.bound)
            log.debug("carbon-price scoring: repair of %d site(s), value %.10g, bound %.10g", group.size,
                      out.value, out.bound)
            if out.proven_exact:
                break
        out.seconds.update(search=t_search, repair=time.perf_counter() - t1)
        if not out.proven_exact and out_of_time():
            out.status = _worst_status([out.status, "time_limit"])
        if out.proven_exact or not joint_fallback or out_of_time():
            return out
        seed = out.energy

    # last resort: the full joint MILP, seeded with the dispatch found (not built past the deadline: without a
    # feasible dispatch by then there is none to return)
    if out_of_time():
        raise NoSolutionError("energy dispatch found no solution before the time limit")
    t2 = time.perf_counter()
    run, energy = _solve_joint(inst, it_load_mw, all_sites, cap, seed, remaining())
    if energy is None:
        raise NoSolutionError(f"energy dispatch found no solution before the solve stopped ({run.status})")
    log.info("carbon-price scoring fell back to the joint energy MILP (%d sites): value %.10g, Lagrangian bound "
             "%.10g, joint dual bound %.10g", S, run.primal, best_bound, run.dual)
    out = CarbonPriceScore(energy, run.status, run.primal, min(best_bound, run.dual), run.status == "optimal",
                           "joint", hi.lam if hi is not None else math.nan, counters["rounds"], counters["solves"],
                           repair_sites=0 if hi is None else out.repair_sites, search_gap=search_gap)
    out.seconds.update(search=t_search, joint=time.perf_counter() - t2)
    return out


def _shedding_price(inst: Instance, resp: _Response, cap: float) -> float:
    """Estimated carbon price ($/t) above ``resp.lam`` that brings the emissions of ``resp``'s dispatch to C.

    A model of the emission curve E(λ) from the dispatch at hand: each emitting MWh (grid import in a
    period, generator output) is taken to be shed at VOLL once λ passes its switch price (VOLL − energy
    price)/emission factor − τ, cheapest tonnes first. It ignores batteries and unit commitment; it
    only chooses where the search looks next, never what it proves.
    """
    s, dt, tau = inst.sites, inst.period_hours, inst.carbon_price
    imp = np.array([e["grid_import"] for e in resp.energy])
    gen = np.array([e["gen"] for e in resp.energy])
    kappa = s.grid_co2
    gen_co2 = np.broadcast_to(s.gen_co2[:, None], gen.shape)
    gen_cost = np.broadcast_to(s.gen_cost[:, None], gen.shape)
    factor = np.concatenate([kappa.ravel(), gen_co2.ravel()])
    tonnes = dt * np.concatenate([(imp * kappa).ravel(), (gen * gen_co2).ravel()])
    cost = np.concatenate([s.price_buy.ravel(), gen_cost.ravel()])
    keep = (tonnes > 0) & (factor > 0)
    price = (inst.voll - cost[keep]) / factor[keep] - tau
    tonnes = tonnes[keep]
    above = price > resp.lam
    price, tonnes = price[above], tonnes[above]
    if price.size == 0:
        return 4.0 * max(resp.lam, 25.0)
    order = np.argsort(price, kind="stable")
    k = int(np.searchsorted(np.cumsum(tonnes[order]), resp.emissions - cap))
    # just past the switch price, where the dispatch has moved
    return float(price[order][min(k, price.size - 1)]) * (1.0 + 1e-6)


def _repair_bound(inst: Instance, load: np.ndarray, sites: np.ndarray, cut_price: np.ndarray, cut_rhs: np.ndarray,
                  start: Mapping[str, np.ndarray], time_limit: float | None):
    """Upper bound on the plan's energy value that keeps ``sites``' MILP and prices only the other sites.

    For any allowance a the other sites can use, their best value is at most V̄_o(λ_j) + λ_j·a for every
    price λ_j tried (weak duality), with a = C − Em of ``sites``. So the optimum is at most
    max f(x) + z over ``sites``' dispatch x, with z ≤ V̄_o(λ_j) + λ_j·(C − Em(x)) for all j; ``cut_rhs`` holds
    V̄_o(λ_j) + λ_j·C ($) and ``cut_price`` λ_j ($/t). Seeded with ``start`` (the repair's dispatch).
    Returns the :class:`RunResult` (its ``dual`` is the bound).
    """
    am, block, _ = site_energy_model(inst, load, sites=sites, carbon_allowance_t=math.inf)
    z = am.add_vars("others", -np.inf, np.inf, 1.0, "C")
    cid, coef = block.emission_terms(inst)
    n = cut_price.size
    rows = np.repeat(np.arange(n), cid.size + 1)
    cols = np.tile(np.concatenate([z.ravel(), cid]), n)
    vals = np.concatenate([np.concatenate([[1.0], lam * coef]) for lam in cut_price])
    am.add_rows("others_cut", sp.csr_matrix((vals, (rows, cols)), shape=(n, am.n_vars)), -np.inf, cut_rhs)
    configure(am.model, time_limit=time_limit, gap=0.0)
    vals0 = energy_start_values(block, am.n_vars, start)
    em0 = float(vals0[cid] @ coef)
    vals0[z] = float(np.min(cut_rhs - cut_price * em0))
    am.add_solution(vals0)
    return run_scip(am.model, record_trace=False)


# ------------------------------------------------------------------------------------------ evaluate
#: Up to this many sites a finite-budget plan is scored as one energy MILP by default: measured 0.33 s
#: against 1.06 s for the price search at 10 sites, 1.53 s against 1.65 s at 30, 27.8 s against 7.2 s at 100.
JOINT_SCORING_MAX_SITES = 30


def evaluate(
    inst: Instance,
    plan: ComputePlan,
    *,
    method: str = "evaluate",
    time_limit: float | None = None,
    check: bool = True,
    pool: SiteMap | None = None,
    exact_joint: bool | None = None,
) -> Solution:
    """Score ``plan`` exactly: optimal energy dispatch for it, global carbon budget respected.

    Parameters
    ----------
    inst : Instance
        The instance.
    plan : ComputePlan
        Job placements and inference routing; unserved demand is λ − Σ_i y.
    method : str
        Name recorded in the solution.
    time_limit : float, optional
        Seconds in all (default none: solved to optimality). On a pool the site solves of a round run in
        parallel, each with the time left when the round starts.
    check : bool
        Check the plan's compute constraints first (raises PlanError naming the job/class/site/period).
    pool : SiteMap, optional
        An open pool (e.g. ``carbonsched.decomp.parallel.SitePool``) to run the per-site solves on;
        without one they run in this process, one after another.
    exact_joint : bool, optional
        With a finite budget, solve the energy side as one MILP over all sites (the reference method)
        instead of :func:`score_with_carbon_price`. Default (None): the one MILP up to
        :data:`JOINT_SCORING_MAX_SITES` sites, where it is as fast or faster (docs/benchmarks.md,
        "Exact scoring of a plan"), the price search above.

    Returns
    -------
    Solution
        Status ``optimal`` when the dispatch is proven optimal for the plan; ``bound`` is inf (a
        plan's value says nothing about the optimum of the model), ``certified`` False. ``extra`` holds
        ``scoring`` (``separable``, ``price``, ``repair``, ``joint``: what proved the value),
        ``proven_exact`` (bool), ``certificate_gap`` ($, best upper bound on the plan's value minus the
        value), and for the price search ``carbon_shadow_price`` ($/t), ``price_rounds``, ``site_solves``,
        ``repair_sites`` and ``price_search_gap`` ($, the gap the price search alone left).

    Raises
    ------
    PlanError
        The plan breaks a compute constraint (only with ``check``).
    NoSolutionError
        A time limit stopped the energy solve before any dispatch was found.
    """
    if not isinstance(plan, ComputePlan):
        raise PlanError(f"plan: must be a ComputePlan (got {type(plan).__name__})")
    if time_limit is not None and (isinstance(time_limit, bool) or not isinstance(time_limit, (int, float))
                                   or not time_limit >= 0):
        raise InputError(f"time_limit: must be a number >= 0 s or None (got {time_limit!r})")
    t0 = time.perf_counter()
    if check:
        check_plan(inst, plan)
    load = it_power_mw(inst, plan.busy_gpus(inst))
    extra: dict[str, Any] = {}
    if exact_joint is None:
        exact_joint = inst.n_sites <= JOINT_SCORING_MAX_SITES
    if math.isfinite(inst.carbon_budget_t) and exact_joint:
        am, block, _ = site_energy_model(inst, load)
        configure(am.model, time_limit=time_limit, gap=0.0)
        run = run_scip(am.model, t0=t0, record_trace=False)
        if not run.has_solution:
            raise NoSolutionError(f"energy dispatch found no solution before the solve stopped ({run.status})")
        energy = block.extract(inst, am.values(), load)
        status = run.status
        extra.update(scoring="joint", proven_exact=status == "optimal", certificate_gap=max(run.dual - run.primal, 0.0))
    elif math.isfinite(inst.carbon_budget_t):
        score = score_with_carbon_price(inst, load, pool=pool, time_limit=time_limit)
        energy, status = score.energy, score.status
        extra.update(scoring=score.method, proven_exact=bool(score.proven_exact),
                     certificate_gap=max(score.certificate_gap, 0.0), carbon_shadow_price=float(score.carbon_price),
                     price_rounds=score.rounds, site_solves=score.site_solves, repair_sites=score.repair_sites,
                     price_search_gap=max(score.search_gap, 0.0))
    else:
        deadline = None if time_limit is None else t0 + time_limit
        res = solve_sites_separately(inst, load, range(inst.n_sites), pool=pool, deadline=deadline)
        missing = [inst.sites.name[i] for i, r in res.items() if not r["has_solution"]]
        if missing:
            raise NoSolutionError(f"energy dispatch of site(s) {_name_list(missing)} found no solution "
                                  "before the solve stopped")
        energy = idle_energy_arrays(inst)
        for i, r in res.items():
            for name, row in r["energy"].items():
                energy[name][i] = row
        status = _worst_status(r["status"] for r in res.values())
        gap = max(sum(r["bound"] for r in res.values()) - sum(r["objective"] for r in res.values()), 0.0)
        extra.update(scoring="separable", proven_exact=status == "optimal", certificate_gap=gap)
    sol = Solution.from_arrays(
        inst, method=method, status=status, job_site=plan.job_site, job_start=plan.job_start,
        served=plan.served, unserved=plan.unserved(inst), energy=energy, bound=math.inf, certified=False,
        wall_seconds=time.perf_counter() - t0, extra=extra,
    )
    # one trace row: the plan's value Z (the energy MILP's own objective is only part of Z)
    sol.trace = Trace()
    sol.trace.append(sol.wall_seconds, sol.objective, math.inf, 0)
    return sol
