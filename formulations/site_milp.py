"""The Lagrangian site subproblem: one site's full compute-and-energy MILP under multipliers.

Dualizing MODEL.md's coupling constraints 1 (a job picks one site), 2 (inference demand balance) and 9
(the carbon budget) leaves, for each site i, the MILP

    max  Σ_{j,s} (v_j − μ_j)·x_{j,i,s} + Σ_{k,t} (Δ(ρ_k − ω_k L_{k,i}) − π_{k,t})·y_{k,i,t}
         + (site energy terms of Z) − λ_C·Em_i
    s.t. GPU capacity (3), energy side (4–8) of site i, and Σ_s x_{j,i,s} ≤ 1 for each job j,

with μ in $ per job, π in $ per GPU and period, λ_C in $/t. The last family of rows is implied by the
dualized constraint 1 and is kept in the subproblem to tighten the Lagrangian bound.

The model is built once and changed in place: after ``freeTransform()`` only the objective coefficients
of x, grid import and generator output and the routing slots change with the multipliers. The routing is
not one column y_{k,i,t} per class within SLO (at 1,000 sites about 106 classes × 24 periods per site) but a
few *routing slots* per period (:func:`routing_slot_count`: 4 on average there, at most 11) holding the
classes of highest value under the current multipliers: every class enters only the capacity row, with
the same coefficient, so the best classes are all an optimum needs (exact, see :func:`routing_slot_count`).
Measured at 1,000 sites: 2.6 MB per cached model instead of 8.4 MB, a solve at zero multipliers 0.017 s
instead of 0.041 s. :meth:`SiteMILP.solve` returns a
:class:`SiteResult` carrying both the subproblem's *dual bound* (an upper bound on its optimum, used for
the valid Lagrangian bound) and its best solution (used for cutting planes, subgradients and primal
recovery).

:meth:`SiteMILP.solve_allocated` solves the same model in *allocation mode* for the primal completion of
:mod:`decomp.completion`: only the site's allocated jobs, serve caps on y, an emission cap (the
``carbon_here`` row, free outside this mode), the site's true share of Z as objective. It restores the
model afterwards, so :meth:`SiteMILP.solve` gives bit-identical results whether or not it ran before.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from carbonsched.instances.schema import Instance
from pyscipopt import SCIP_PARAMSETTING

from .energy import EnergyBlock, add_energy_block, it_power_mw
from .joint import ComputeBlock, add_compute_block, serving_value
from .scip_arrays import ArrayModel
from .scip_run import STATUS_MAP, configure, note_scip_status, optimize

SCIP_INF = 1e20


def limit_by_deadline(time_limit: float | None, deadline: float | None) -> float | None:
    """The time limit of one solve, s: ``time_limit`` tightened to what is left before ``deadline``.

    ``deadline`` is a ``time.time()`` by which a whole step must end; a worker that solves many sites
    or groups in a row gives each only what is left of it (at least 0.01 s).
    """
    if deadline is None:
        return time_limit
    left = max(deadline - time.time(), 0.01)
    return left if time_limit is None else min(time_limit, left)


def releases_transform(solve: Callable) -> Callable:
    """Decorate a cached site model's solve method: release SCIP's transformed problem right after it.

    Only the built model stays cached in the worker; the next solve transforms it again, as it would after
    ``freeTransform()`` anyway. Keeping the transformed problems (presolved copy, LP, search data) of every
    cached site grew each worker to 6.4 GB at 300 sites; SCIP's block memory then keeps the freed chunks
    for the model's next solve, which :meth:`ArrayModel.free_transform` hands back.
    """

    @functools.wraps(solve)
    def wrapper(self, *args, **kwargs):
        try:
            return solve(self, *args, **kwargs)
        finally:
            if self._solved:
                self.am.free_transform()
                self._solved = False

    return wrapper
#: Site subproblems with at most this many periods use SCIP's fast separation as well as fast presolving.
#: Both are measured per horizon in docs/benchmarks.md (``bench.site_subproblem_speed``). At 24 periods
#: they make the site solves 3–4× faster than SCIP's defaults. At 168 periods fast separation makes them
#: slower (root cuts close most of the gap there), so only presolving is fast.
FAST_SEPARATION_MAX_PERIODS = 48


@dataclass
class SiteResult:
    """Outcome of one site subproblem solve under given multipliers.

    Attributes
    ----------
    site : int
        Site index i.
    value : float
        Objective of the best solution found, multiplier terms included, $ (−inf without one).
    bound : float
        SCIP's dual bound on the subproblem optimum, $ (an upper bound, ``inf`` when none is proven).
    base : float
        Z-contribution of the best solution without multiplier terms, $ (value = base − μ·X − π·Y − λ_C·E).
    job_count : (J,) float
        X_j = Σ_s x_{j,i,s} of the solution (0 or 1).
    job_start : (J,) int
        Start period chosen for job j at this site, −1 if none.
    served : (K,T) float
        y_{k,i,t} of the solution, GPUs.
    emissions : float
        Em_i of the solution, t CO2.
    status : str
        SOLUTION.md status of the subproblem solve (``optimal``, ``gap_limit``, ...).
    seconds : float
        Wall time of the solve, s.
    nodes : int
        Branch-and-bound nodes.
    values : (n,) float
        The best solution, every variable of the site model (the next solve's ``start``).
    """

    site: int
    value: float
    bound: float
    base: float
    job_count: np.ndarray
    job_start: np.ndarray
    served: np.ndarray
    emissions: float
    status: str
    seconds: float
    nodes: int
    values: np.ndarray = field(default_factory=lambda: np.zeros(0))


class SiteMILP:
    """Site i's Lagrangian subproblem, built once and re-solved with new multipliers.

    Parameters
    ----------
    inst : Instance
        The instance.
    site : int
        Site index i.
    seed : int
        SCIP random seed shift (results are deterministic for a given seed and node/gap limits).
    """

    def __init__(self, inst: Instance, site: int, *, seed: int = 0) -> None:
        self.inst = inst
        self.site = int(site)
        self.seed = int(seed)
        J, K, T, dt = inst.n_jobs, inst.n_classes, inst.n_periods, inst.period_hours
        am = ArrayModel(f"{inst.name}-site{site}", maximize=True)
        sites = np.array([self.site])
        # routing: a few slots per period instead of one column per class (see routing_slot_count)
        self.classes = np.flatnonzero(inst.slo_mask()[:, self.site]) if K else np.zeros(0, np.int64)
        self.demand = inst.inference.demand[self.classes].astype(np.float64)  # (n,T)
        slot_count = np.zeros((inst.n_sites, T), dtype=np.int64)
        slot_count[self.site] = routing_slot_count(self.demand, float(inst.sites.gpus[self.site]))
        cb: ComputeBlock = add_compute_block(am, inst, sites, coupling_rows=False, with_unserved=False,
                                             routing_slots=slot_count)
        self.slot_ids, self.slot_t = cb.slots, cb.slot_period
        # rank of each slot within its period (slots are numbered period by period)
        first = np.searchsorted(self.slot_t, np.arange(T))
        self.slot_rank = np.arange(self.slot_t.size) - first[self.slot_t]
        pl = cb.placements
        if pl.size:
            # Σ_s x_{j,i,s} ≤ 1 per job: implied by the dualized constraint 1, kept to tighten the bound.
            jobs_here, row = np.unique(pl.job, return_inverse=True)
            a = sp.csr_matrix((np.ones(pl.size), (row, cb.x)), shape=(jobs_here.size, am.n_vars))
            self.job_rows = am.add_rows("job_here", a, -np.inf, 1.0)
        else:
            jobs_here, self.job_rows = np.zeros(0, np.int64), np.zeros(0, np.int64)
        self.jobs_here = jobs_here
        eb: EnergyBlock = add_energy_block(am, inst, sites, busy_gpu_ids=cb.busy)
        # Em_i ≤ allowance: free (rhs +inf) except during solve_allocated, which sets it in place
        cid, coef = eb.emission_terms(inst)
        self.carbon_row = am.add_rows("carbon_here", sp.csr_matrix(
            (coef, (np.zeros(cid.size, np.int64), cid)), shape=(1, am.n_vars)), -np.inf, np.inf)
        # the compute block's id arrays are (K,S,T) and (S,T), 64 MB at 1,000 sites: only this site's ids are kept
        self.am, self.x_ids, self.eb = am, cb.x, eb
        # re-solved many times under changing objectives: SCIP's default presolve and separation effort
        # costs more than it saves here (see FAST_SEPARATION_MAX_PERIODS)
        am.model.setPresolve(SCIP_PARAMSETTING.FAST)
        # SCIP keeps up to 10 solutions across freeTransform() and re-offers them at the next solve, which
        # makes the search (nodes, ties between optima, the solution pool) depend on the solve history; the
        # parallel layer may rebuild a site's model in another worker, so history must not matter
        am.model.setParam("limits/maxorigsol", 0)
        if T <= FAST_SEPARATION_MAX_PERIODS:
            am.model.setSeparating(SCIP_PARAMSETTING.FAST)
        self.x_job, self.x_start = pl.job, pl.start
        self.x_obj = inst.jobs.value[pl.job].astype(np.float64)
        self.y_unit = serving_value(inst)[self.classes, self.site].astype(np.float64)  # (n,) $ per GPU-period
        s, i = inst.sites, self.site
        imp, gen = eb.site_ids["grid_import"][0], eb.site_ids["gen"][0]  # the block is this site alone
        self.imp_ids = imp[imp >= 0]
        self.imp_obj = -dt * (s.price_buy[i] + inst.carbon_price * s.grid_co2[i])[imp >= 0]
        self.imp_co2 = dt * s.grid_co2[i][imp >= 0]
        self.gen_ids = gen[gen >= 0]
        self.gen_obj = np.full(self.gen_ids.size, -dt * (s.gen_cost[i] + inst.carbon_price * s.gen_co2[i]))
        self.gen_co2 = np.full(self.gen_ids.size, dt * s.gen_co2[i])
        self.n_jobs, self.n_classes, self.n_periods = J, K, T
        # serving a GPU of class k also avoids Δ·φ_k of unserved penalty: the site's true share of Z
        self.y_unit_true = self.y_unit + (dt * inst.inference.penalty[self.classes] if K else 0.0)
        self.job_row_of = np.full(J, -1, dtype=np.int64)
        self.job_row_of[self.jobs_here] = np.arange(self.jobs_here.size)
        self._solved = False

    # ------------------------------------------------------------------ solve
    @releases_transform
    def solve(self, mu: np.ndarray, pi: np.ndarray, lam_c: float, *, time_limit: float | None = None,
              gap: float | None = None, node_limit: int | None = None, deadline: float | None = None,
              start: np.ndarray | None = None, abs_gap: float | None = None) -> SiteResult:
        """Solve the subproblem for multipliers (μ, π, λ_C).

        Parameters
        ----------
        mu : (J,) float
            Multipliers of the job rows (constraint 1), $ per job.
        pi : (K,T) float
            Multipliers of the demand rows (constraint 2), $ per GPU and period.
        lam_c : float
            Carbon multiplier λ_C ≥ 0, $/t.
        time_limit : float, optional
            Seconds for SCIP (makes results timing-dependent; prefer ``gap`` / ``node_limit``).
        gap : float, optional
            SCIP relative gap limit (default 0: solved to optimality).
        node_limit : int, optional
            SCIP node limit.
        deadline : float, optional
            Wall-clock time (``time.time()``, s since the epoch) by which the solve must end; it tightens
            ``time_limit`` when a worker solves several sites in a row.
        start : (n,) float, optional
            A solution of this site model (``SiteResult.values`` of an earlier solve) offered to SCIP as a
            start. The caller passes it, not the model's memory, so the solve depends only on its arguments.
        abs_gap : float, optional
            SCIP absolute gap limit, $: the solve stops once its dual bound is within this of its best
            solution (default 0). The result's ``bound`` stays a valid upper bound either way.

        Returns
        -------
        SiteResult
        """
        t0 = time.perf_counter()
        J, K, T = self.n_jobs, self.n_classes, self.n_periods
        if deadline is not None and time.time() >= deadline:
            # sites queued on a worker past the round's deadline are not solved: each SCIP call, even with a
            # 0.01 s limit, cost a few hundredths of a second, and 150 such sites ran a 600 s run to 601.4 s
            return SiteResult(self.site, -math.inf, math.inf, -math.inf, np.zeros(J), np.full(J, -1, dtype=np.int64),
                              np.zeros((K, T)), 0.0, "time_limit", time.perf_counter() - t0, 0)
        time_limit = limit_by_deadline(time_limit, deadline)
        am, m = self.am, self.am.model
        mu = np.asarray(mu, np.float64)
        pi = np.asarray(pi, np.float64).reshape(self.n_classes, self.n_periods)
        if self.x_job.size:
            am.set_var_data(self.x_ids, obj=self.x_obj - mu[self.x_job])
        slots = self._assign_slots(self.y_unit[:, None] - pi[self.classes], self.demand, merge=False)
        if self.imp_ids.size:
            am.set_var_data(self.imp_ids, obj=self.imp_obj - lam_c * self.imp_co2)
        if self.gen_ids.size:
            am.set_var_data(self.gen_ids, obj=self.gen_obj - lam_c * self.gen_co2)
        configure(m, time_limit=time_limit, gap=0.0 if gap is None else gap, seed=self.seed, catch_interrupt=True,
                  abs_gap=0.0 if abs_gap is None else abs_gap)
        m.setParam("limits/nodes", -1 if node_limit is None else int(node_limit))
        if start is not None:
            # offered in the transformed problem, where limits/maxorigsol = 0 does not discard it
            am.transform()
            am.add_solution(self._refill_slots(start, slots))
        optimize(m)
        self._solved = True
        note_scip_status(m.getStatus())  # Ctrl-C during a site solve ends the loop of solves
        status = STATUS_MAP.get(m.getStatus(), m.getStatus())
        dual = float(m.getDualbound())
        bound = math.inf if dual >= SCIP_INF else dual
        job_count = np.zeros(J)
        job_start = np.full(J, -1, dtype=np.int64)
        served = np.zeros((K, T))
        if m.getNSols() == 0:  # only possible under a tiny limit; the empty plan is always feasible
            return SiteResult(self.site, -math.inf, bound, -math.inf, job_count, job_start, served, 0.0,
                              status, time.perf_counter() - t0, int(m.getNNodes()))
        vals = am.values()
        if self.x_job.size:
            on = vals[self.x_ids] > 0.5
            job_count[self.x_job[on]] = 1.0
            job_start[self.x_job[on]] = self.x_start[on]
        served = slots.served(vals[self.slot_ids], self.classes, self.slot_t, K, T)
        emissions = float(vals[self.imp_ids] @ self.imp_co2 + vals[self.gen_ids] @ self.gen_co2)
        value = _down(float(m.getPrimalbound()))
        served = np.round(served, 9)
        emissions = round(emissions, 9)
        mult = float(mu @ job_count + (pi * served).sum() + lam_c * emissions)
        return SiteResult(self.site, value, _up(bound), value + mult, job_count, job_start, served, emissions,
                          status, time.perf_counter() - t0, int(m.getNNodes()), values=vals)


    # ------------------------------------------------------------------ routing slots
    def _assign_slots(self, value: np.ndarray, ub: np.ndarray, *, merge: bool) -> RoutingSlots:
        """Give each routing slot its class for values (n,T) $/GPU and bounds (n,T) GPUs; set them in the model."""
        slots = assign_slots(value, ub, self.slot_t, self.slot_rank, merge=merge)
        if self.slot_ids.size:
            # through 0, where a fresh build starts: set straight from the last solve's bounds, SCIP's solve
            # differed from a fresh model's by ~1e-10 (measured), and a site's model may be rebuilt on any worker
            self.am.set_var_data(self.slot_ids, obj=0.0, ub=0.0)
            self.am.set_var_data(self.slot_ids, obj=slots.obj, ub=slots.ub)
        return slots

    def _refill_slots(self, start: np.ndarray, slots: RoutingSlots) -> np.ndarray:
        """A start solution with its routing re-poured into the current slots.

        A start comes from an earlier solve whose slots held other classes; the GPUs it serves per period
        are kept (so U and the energy side stay as they were) and poured into the slots best first.
        """
        start = np.array(start, dtype=np.float64)
        if self.slot_ids.size:
            total = np.bincount(self.slot_t, weights=np.maximum(start[self.slot_ids], 0.0),
                                minlength=self.n_periods)
            start[self.slot_ids] = np.clip(total[self.slot_t] - _before_in_segment(slots.ub, self.slot_t), 0.0,
                                           slots.ub)
        return start

    # ------------------------------------------------------------------ allocation mode
    @releases_transform
    def solve_allocated(self, jobs_allowed: np.ndarray, jobs_required: np.ndarray, serve_cap: np.ndarray,
                        allowance_t: float, *, time_limit: float | None = None, gap: float | None = None,
                        node_limit: int | None = None, deadline: float | None = None) -> AllocatedResult:
        """Solve the site's own MILP for its share of an allocation (primal completion).

        Only the allocated jobs may run here (the others' x are fixed to 0), the required ones must
        (their ``job_here`` row becomes = 1), class k may use at most ``serve_cap`` GPUs here, and the
        site may emit at most ``allowance_t``. The objective is the site's true share of Z: job values,
        inference revenue net of latency cost plus the avoided unserved penalty Δ·φ_k, and the site's
        energy terms (τ·Em included); no multipliers. With Σ_i serve_cap ≤ λ, Σ_i allowance ≤ C and each
        job allocated to one site, the union of the sites' solutions is feasible for the joint model,
        and Z = Σ_i share_i − Δ Σ_{k,t} φ_k λ_{k,t}.

        Bounds and rows are restored afterwards, so :meth:`solve` behaves as if this call never happened.

        Parameters
        ----------
        jobs_allowed : (J,) bool
            Jobs that may run at this site (only those allowed here by ``jobs/allowed`` can).
        jobs_required : (J,) bool
            Jobs that must run here (a subset of ``jobs_allowed``; normally the allocated mandatory jobs).
        serve_cap : (K,T) float
            Upper bounds on y_{k,i,t}, GPUs (clipped to [0, λ_{k,t}]).
        allowance_t : float
            Emission cap Em_i ≤ allowance, t CO2 (``inf``: none).
        deadline : float, optional
            Wall-clock time (``time.time()``) by which the solve must end: a worker solving many sites in
            a row gives each only what is left of the caller's budget.
        time_limit : float, optional
            Seconds for SCIP.
        gap : float, optional
            SCIP relative gap limit (default 0).
        node_limit : int, optional
            SCIP node limit.

        Returns
        -------
        AllocatedResult
        """
        t0 = time.perf_counter()
        time_limit = limit_by_deadline(time_limit, deadline)
        am, m = self.am, self.am.model
        J, K, T = self.n_jobs, self.n_classes, self.n_periods
        allowed = np.asarray(jobs_allowed, dtype=bool).reshape(J)
        required = np.asarray(jobs_required, dtype=bool).reshape(J) & allowed
        cap = np.clip(np.asarray(serve_cap, np.float64).reshape(K, T), 0.0, None)
        req_rows = self.job_rows[self.job_row_of[np.flatnonzero(required & (self.job_row_of >= 0))]]
        missing = np.flatnonzero(required & (self.job_row_of < 0))
        if missing.size:
            if not (self.inst.jobs.gpus[missing] > self.inst.sites.gpus[self.site]).all():
                raise ValueError(f"site {self.site}: required job(s) {missing.tolist()} have no placement here")
            # allowed here but larger than the site (no placement is built for them): infeasible, as SCIP
            # would prove it, so that the caller reallocates them
            return AllocatedResult(self.site, "infeasible", False, -math.inf, -math.inf, np.full(J, -1, dtype=np.int64),
                                   np.zeros((K, T)), {}, 0.0, time.perf_counter() - t0, 0)
        try:
            if self.x_job.size:
                am.set_var_data(self.x_ids, obj=self.x_obj, ub=allowed[self.x_job].astype(np.float64))
            slots = self._assign_slots(np.broadcast_to(self.y_unit_true[:, None], self.demand.shape),
                                       np.minimum(cap[self.classes], self.demand), merge=True)
            if self.imp_ids.size:
                am.set_var_data(self.imp_ids, obj=self.imp_obj)
            if self.gen_ids.size:
                am.set_var_data(self.gen_ids, obj=self.gen_obj)
            if req_rows.size:
                am.set_row_bounds(req_rows, lhs=1.0)
            am.set_row_bounds(self.carbon_row, rhs=float(allowance_t))
            # SCIP catches Ctrl-C and stops at once (with catching off the solve ran to its limit first)
            configure(m, time_limit=time_limit, gap=0.0 if gap is None else gap, seed=self.seed,
                      catch_interrupt=True)
            m.setParam("limits/nodes", -1 if node_limit is None else int(node_limit))
            optimize(m)
            self._solved = True
            status = m.getStatus()
            note_scip_status(status)  # Ctrl-C during the completion's site solve ends the run
            dual = float(m.getDualbound())
            result = AllocatedResult(self.site, STATUS_MAP.get(status, status), m.getNSols() > 0, -math.inf,
                                     math.inf if dual >= SCIP_INF else dual, np.full(J, -1, dtype=np.int64),
                                     np.zeros((K, T)), {}, 0.0, 0.0, int(m.getNNodes()))
            if result.has_solution:
                vals = am.values()
                result.value = float(m.getPrimalbound())
                if self.x_job.size:
                    on = vals[self.x_ids] > 0.5
                    result.job_start[self.x_job[on]] = self.x_start[on]
                # within the cap exactly: SCIP may overshoot a bound by its feasibility tolerance
                result.served = np.minimum(slots.served(vals[self.slot_ids], self.classes, self.slot_t, K, T), cap)
                busy = busy_gpus(self.inst, self.site, result.job_start, result.served)
                energy = self.eb.extract(self.inst, vals, it_power_mw(self.inst, busy, self.site)[None, :])
                result.energy = {name: arr[self.site].copy() for name, arr in energy.items()}
                s = self.inst.sites
                result.emissions_t = float(self.inst.period_hours * (
                    s.grid_co2[self.site] @ result.energy["grid_import"]
                    + s.gen_co2[self.site] * result.energy["gen"].sum()))
        finally:
            # back to the Lagrangian model: all placements open, no required job, y ≤ λ, no emission cap
            am.free_transform()
            self._solved = False
            if self.x_job.size:
                am.set_var_data(self.x_ids, ub=1.0)
            if req_rows.size:
                am.set_row_bounds(req_rows, lhs=-np.inf)
            am.set_row_bounds(self.carbon_row, rhs=np.inf)
        result.seconds = time.perf_counter() - t0
        return result


@dataclass
class AllocatedResult:
    """Outcome of :meth:`SiteMILP.solve_allocated`: the site's part of a plan and its energy dispatch.

    Attributes
    ----------
    site : int
        Site index i.
    status : str
        SOLUTION.md status of the solve, or SCIP's (``infeasible``: the required jobs do not fit).
    has_solution : bool
        Whether a solution was found (the fields below are meaningful only then).
    value : float
        The site's share of Z in the solution, $ (Δ·φ·y included, see :meth:`SiteMILP.solve_allocated`).
    bound : float
        SCIP's dual bound on that share, $.
    job_start : (J,) int
        Start period of each job run here, −1 otherwise.
    served : (K,T) float
        y_{k,i,t}, GPUs.
    energy : dict of str to (T,) arrays
        The site's row of every ``/energy`` array of SOLUTION.md.
    emissions_t : float
        Em_i, t CO2.
    seconds : float
        Wall time, s.
    nodes : int
        Branch-and-bound nodes.
    """

    site: int
    status: str
    has_solution: bool
    value: float
    bound: float
    job_start: np.ndarray
    served: np.ndarray
    energy: dict[str, np.ndarray]
    emissions_t: float
    seconds: float
    nodes: int


def routing_slot_count(demand: np.ndarray, gpus: float) -> np.ndarray:
    """Routing slots per period (T,) that a site subproblem needs to be exact, from its classes' demand (n,T).

    In a site subproblem with the demand rows dualized, class k's GPUs y_k enter only constraint 3 (with
    coefficient −1, like every class) and the objective; so for any total U of serving GPUs in a period
    the best routing fills the classes in order of value, and fills at most r of them where the r − 1
    before the last have demand below U ≤ G_i. Any r − 1 classes demand at least the r − 1 smallest
    demands, so r ≤ 1 + #{m : the m smallest positive demands sum below G_i}; that many slots, holding
    the best classes under the current multipliers, give the subproblem's exact optimum.
    """
    d = np.asarray(demand, dtype=np.float64)
    positive = d > 0
    ascending = np.sort(np.where(positive, d, np.inf), axis=0)
    below = (np.cumsum(ascending, axis=0) < gpus).sum(axis=0)
    return np.minimum(positive.sum(axis=0), below + 1).astype(np.int64)


@dataclass
class RoutingSlots:
    """Which classes the routing slots of a site model hold for one solve.

    Slot s holds the classes ``member_class[member_slot == s]`` (indices into the site's SLO classes), filled
    in that order up to ``member_ub`` each; ``obj`` and ``ub`` are the slot variables' objective ($ per
    GPU-period) and bound (GPUs). A slot holds one class, or none (bound 0), except the last slot of a period
    in allocation mode when more classes have a cap there than the period has slots: it then pools the rest
    at the lowest of their values (a restriction, so the plan stays feasible and its value is not overstated).
    """

    obj: np.ndarray
    ub: np.ndarray
    member_slot: np.ndarray
    member_class: np.ndarray
    member_ub: np.ndarray

    def served(self, amounts: np.ndarray, classes: np.ndarray, slot_t: np.ndarray, K: int, T: int) -> np.ndarray:
        """y (K,T), GPUs, from the slot values: each slot's GPUs go to its classes in order."""
        out = np.zeros((K, T))
        if not self.member_slot.size:
            return out
        amount = np.maximum(amounts, 0.0)[self.member_slot]
        before = _before_in_segment(self.member_ub, self.member_slot)
        last = np.r_[self.member_slot[1:] != self.member_slot[:-1], True]
        # the slot's last class takes the remainder: SCIP may overshoot the slot's bound by its tolerance
        take = np.where(last, np.maximum(amount - before, 0.0), np.clip(amount - before, 0.0, self.member_ub))
        np.add.at(out, (classes[self.member_class], slot_t[self.member_slot]), take)
        return out


def assign_slots(value: np.ndarray, ub: np.ndarray, slot_t: np.ndarray, slot_rank: np.ndarray, *,
                 merge: bool) -> RoutingSlots:
    """Put the best classes of each period in its slots: rank r of period t holds the r-th best class.

    Parameters
    ----------
    value : (n,T) float
        Objective of one GPU of each class, $ per GPU-period.
    ub : (n,T) float
        Most GPUs of each class, GPUs (classes at 0 are never slotted).
    slot_t, slot_rank : (m,) int
        Period and rank of each slot, slots numbered period by period.
    merge : bool
        Pool the classes left over in a period into its last slot (allocation mode); otherwise they are
        left out, which is exact when the slots are :func:`routing_slot_count`'s and ``ub`` the demand.
    """
    n, T = value.shape
    m = slot_t.size
    if not m:
        e = np.zeros(0)
        return RoutingSlots(e, e, np.zeros(0, np.int64), np.zeros(0, np.int64), e)
    # per period: classes with room first, then by value (highest first), ties by class index
    order = np.lexsort((np.broadcast_to(np.arange(n), (T, n)), -value.T, ub.T <= 0), axis=-1)  # (T,n)
    cls = order[slot_t, slot_rank]
    cap = ub[cls, slot_t]
    used = cap > 0
    obj, slot_ub = np.where(used, value[cls, slot_t], 0.0), np.where(used, cap, 0.0)
    member_slot, member_class, member_ub = np.flatnonzero(used), cls[used], cap[used]
    if merge:
        room = (ub > 0).sum(axis=0)
        count = np.bincount(slot_t, minlength=T)
        pooled = np.flatnonzero((room > count) & (count > 0))
        if pooled.size:
            extra_slot, extra_class, extra_ub = [], [], []
            first = np.searchsorted(slot_t, pooled)
            for t, s0 in zip(pooled, first, strict=True):
                last = s0 + count[t] - 1
                rest = order[t, count[t]:room[t]]
                extra_slot.append(np.full(rest.size, last))
                extra_class.append(rest)
                extra_ub.append(ub[rest, t])
                slot_ub[last] += ub[rest, t].sum()
                obj[last] = value[rest[-1], t]
            member_slot = np.concatenate([member_slot, *extra_slot])
            member_class = np.concatenate([member_class, *extra_class])
            member_ub = np.concatenate([member_ub, *extra_ub])
            # slot by slot, each slot's classes in fill order (a stable sort keeps the pooled ones after)
            keep = np.argsort(member_slot, kind="stable")
            member_slot, member_class, member_ub = member_slot[keep], member_class[keep], member_ub[keep]
    return RoutingSlots(obj, slot_ub, member_slot, member_class, member_ub)


def _before_in_segment(weights: np.ndarray, segment: np.ndarray) -> np.ndarray:
    """For weights grouped in contiguous segments (``segment`` non-decreasing): the sum of those before each one."""
    cum = np.cumsum(weights) - weights
    first = np.searchsorted(segment, segment)
    return cum - cum[first]


def busy_gpus(inst: Instance, site: int, job_start: np.ndarray, served: np.ndarray) -> np.ndarray:
    """U_{i,t} (T,) of one site from its jobs' starts (J,) (−1: not here) and its routing (K,T), GPUs."""
    jb, T = inst.jobs, inst.n_periods
    on = np.flatnonzero(job_start >= 0)
    delta = np.zeros(T + 1)
    np.add.at(delta, job_start[on], jb.gpus[on].astype(np.float64))
    np.add.at(delta, np.minimum(job_start[on] + jb.duration[on], T), -jb.gpus[on].astype(np.float64))
    return np.cumsum(delta)[:T] + np.asarray(served, np.float64).sum(axis=0)


#: Results are snapped to this grid ($): a model re-solved in place and a fresh build of it differ by
#: float noise (~1e-12 $, SCIP carries state across ``freeTransform``), and which worker holds a site's
#: model varies between runs; snapping keeps 1 worker, N workers and Dask bit-identical. Bounds are
#: rounded up and values down, so the Lagrangian bound and the cuts stay valid.
RESULT_GRID = 1e-6


def _up(v: float) -> float:
    return math.ceil(v / RESULT_GRID) * RESULT_GRID if math.isfinite(v) else v


def _down(v: float) -> float:
    return math.floor(v / RESULT_GRID) * RESULT_GRID if math.isfinite(v) else v


#: Cache kind of the site MILPs on a worker pool: the Lagrangian's iterations, Benders' Lagrangian bound and the
#: completion's allocated solves share one cached model per site.
SITE_MILP_KIND = "lagrangian-site"


def make_site_milp(inst: Instance, site: int, *, seed: int = 0) -> SiteMILP:
    """Factory for :class:`decomp.parallel.SitePool` (module level, so that it pickles)."""
    return SiteMILP(inst, site, seed=seed)
