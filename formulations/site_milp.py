"""The Lagrangian site subproblem: one site's full compute-and-energy MILP under multipliers.

Dualizing MODEL.md's coupling constraints 1 (a job picks one site), 2 (inference demand balance) and 9
(the carbon budget) leaves, for each site i, the MILP

    max  Σ_{j,s} (v_j − μ_j)·x_{j,i,s} + Σ_{k,t} (Δ(ρ_k − ω_k L_{k,i}) − π_{k,t})·y_{k,i,t}
         + (site energy terms of Z) − λ_C·Em_i
    s.t. GPU capacity (3), energy side (4–8) of site i, and Σ_s x_{j,i,s} ≤ 1 for each job j,

with μ in $ per job, π in $ per GPU and period, λ_C in $/t. The last family of rows is implied by the
dualized constraint 1 and is kept in the subproblem to tighten the Lagrangian bound.

The model is built once and changed in place: after ``freeTransform()`` only the objective coefficients
of x, y, grid import and generator output change with the multipliers. :meth:`SiteMILP.solve` returns a
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
        cb: ComputeBlock = add_compute_block(am, inst, sites, coupling_rows=False, with_unserved=False)
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
        ym = cb.y[:, self.site, :] >= 0  # (K,T)
        self.y_mask = ym
        self.y_ids = cb.y[:, self.site, :][ym]
        y_unit = serving_value(inst)[:, self.site]
        self.y_obj = np.broadcast_to(y_unit[:, None], (K, T))[ym].astype(np.float64)
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
        y_penalty = dt * inst.inference.penalty if K else np.zeros(0)
        self.y_obj_true = self.y_obj + np.broadcast_to(y_penalty[:, None], (K, T))[ym]
        self.y_ub = np.broadcast_to(inst.inference.demand, (K, T))[ym].astype(np.float64)
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
        if self.y_ids.size:
            am.set_var_data(self.y_ids, obj=self.y_obj - pi[self.y_mask])
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
            am.add_solution(start)
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
        if self.y_ids.size:
            served[self.y_mask] = np.maximum(vals[self.y_ids], 0.0)
        emissions = float(vals[self.imp_ids] @ self.imp_co2 + vals[self.gen_ids] @ self.gen_co2)
        value = _down(float(m.getPrimalbound()))
        served = np.round(served, 9)
        emissions = round(emissions, 9)
        mult = float(mu @ job_count + (pi * served).sum() + lam_c * emissions)
        return SiteResult(self.site, value, _up(bound), value + mult, job_count, job_start, served, emissions,
                          status, time.perf_counter() - t0, int(m.getNNodes()), values=vals)


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
            if self.y_ids.size:
                am.set_var_data(self.y_ids, obj=self.y_obj_true, ub=np.minimum(cap[self.y_mask], self.y_ub))
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
                if self.y_ids.size:
                    # within the cap exactly: SCIP may overshoot a bound by its feasibility tolerance
                    result.served[self.y_mask] = np.clip(vals[self.y_ids], 0.0, cap[self.y_mask])
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
            if self.y_ids.size:
                am.set_var_data(self.y_ids, ub=self.y_ub)
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
