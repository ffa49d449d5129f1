"""Primal completion by allocation, per site in parallel, and neighbourhood improvement.

**Completion.** A fractional point (the joint LP relaxation, or the site solutions of one Lagrangian
iteration) is turned into an *allocation* that makes the sites independent:

- each job gets at most one site (the allowed site where the point puts most of it; mandatory jobs
  always, packed greedily against GPU capacity so that the required set of every site fits);
- each site gets serve caps ``serve_cap[k,i,t]`` with Σ_i serve_cap ≤ λ (the point's routing, and the
  demand it leaves unserved spread over the class's sites in proportion to that routing);
- each site gets a carbon allowance, Σ_i allowance ≤ C (C split in proportion to the point's emissions).

Then every site solves its own full compute-and-energy MILP for its share of Z
(:meth:`formulations.site_milp.SiteMILP.solve_allocated`) on the worker pool, all sites at once. The
union of the site solutions is feasible for the joint model by construction (the coupling rows 1, 2 and 9
hold because jobs, demand and budget were split beforehand), so the assembled plan and dispatch form one
:class:`Solution` without any further solve.

**Neighbourhoods.** :func:`improve_by_neighbourhoods` re-optimizes small disjoint groups of sites jointly
with the rest of the solution fixed: within a group the group's jobs move freely among its sites, and its
served shares and pooled carbon allowance are re-split. Groups are solved in parallel; the slack of the
demand rows and of the budget is split between the groups beforehand, so that all accepted group
improvements can be combined.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from carbonsched.errors import InfeasibleError
from carbonsched.formulations.energy import EnergyBlock, add_energy_block, idle_energy_arrays, it_power_mw
from carbonsched.formulations.joint import add_compute_block, running_matrix, serving_value, usable_sites
from carbonsched.formulations.lp_relaxation import JointLP
from carbonsched.formulations.plan import ComputePlan
from carbonsched.formulations.scip_arrays import ArrayModel
from carbonsched.formulations.scip_run import SCIP_INF, STATUS_MAP, configure, note_scip_status, optimize
from carbonsched.formulations.site_milp import (
    SITE_MILP_KIND,
    AllocatedResult,
    SiteResult,
    busy_gpus,
    limit_by_deadline,
    make_site_milp,
)
from carbonsched.formulations.solution import ENERGY_FIELDS, Solution
from carbonsched.instances.schema import Instance

from .parallel import SitePool

log = logging.getLogger(__name__)

#: Cache kind of the (stateless) neighbourhood solvers.
GROUP_KIND = "neighbourhood"
#: Jobs whose point puts less than this total mass on their sites are left unallocated (optional jobs).
MIN_MASS = 0.5
#: Relative safety margin kept off C when splitting it (SCIP meets each site's cap within its tolerance).
BUDGET_MARGIN = 1e-7
#: Reallocation rounds for sites whose required jobs turn out not to fit.
MAX_REALLOCATIONS = 3


# ============================================================================ fractional points
@dataclass
class FractionalPoint:
    """A (possibly fractional) point of the joint model, as far as the allocation needs it.

    Attributes
    ----------
    job_mass : (J,S) float
        Σ_s x_{j,i,s}: how much of job j the point places at site i.
    served : (K,S,T) float
        y_{k,i,t}, GPUs.
    emissions : (S,) float
        Em_i, t CO2.
    job_rank : (J,S) float, optional
        Preference among the sites of a job (larger first); default ``job_mass``.
    """

    job_mass: np.ndarray
    served: np.ndarray
    emissions: np.ndarray
    job_rank: np.ndarray | None = None


def point_from_lp(lp: JointLP) -> FractionalPoint:
    """The point of a solved joint LP relaxation (:func:`formulations.lp_relaxation.solve_lp_relaxation`)."""
    jm = lp.jm
    inst, pl = jm.inst, jm.placements
    mass = np.zeros((inst.n_jobs, inst.n_sites))
    if pl.size:
        np.add.at(mass, (pl.job, pl.site), lp.values[jm.x])
    served = np.maximum(lp.values_at(jm.y), 0.0)
    return FractionalPoint(job_mass=mass, served=served, emissions=np.maximum(lp.site_emissions(), 0.0))


def run_cost(inst: Instance, lam_c: float = 0.0) -> np.ndarray:
    """Estimated energy cost of one busy GPU (S,T), $ per period, at grid prices with carbon at τ + λ_C."""
    s = inst.sites
    mw = s.pue * ((s.gpu_busy_kw - s.gpu_idle_kw) / 1000.0)[:, None]
    return mw * inst.period_hours * (s.price_buy + (inst.carbon_price + lam_c) * s.grid_co2)


def point_from_site_results(inst: Instance, results: dict[int, SiteResult], lam_c: float = 0.0) -> FractionalPoint:
    """The point of one Lagrangian iteration's site solutions, with its conflicts ranked.

    A job chosen by several sites is ranked by its reduced value there: v_j minus its estimated energy
    cost over the chosen run (:func:`run_cost` with the carbon multiplier λ_C). Served GPUs are scaled
    down where the sites together exceed the demand (:func:`allocate` does that for any point).
    """
    J, S = inst.n_jobs, inst.n_sites
    K, T = inst.n_classes, inst.n_periods
    mass = np.zeros((J, S))
    rank = np.full((J, S), -np.inf)
    served = np.zeros((K, S, T))
    emissions = np.zeros(S)
    cost = np.cumsum(np.concatenate([np.zeros((S, 1)), run_cost(inst, lam_c)], axis=1), axis=1)
    jb = inst.jobs
    for i, r in results.items():
        on = np.flatnonzero(r.job_start >= 0)
        mass[on, i] = 1.0
        start = r.job_start[on]
        rank[on, i] = jb.value[on] - jb.gpus[on] * (cost[i, start + jb.duration[on]] - cost[i, start])
        served[:, i, :] = r.served
        emissions[i] = max(r.emissions, 0.0)
    return FractionalPoint(job_mass=mass, served=served, emissions=emissions, job_rank=rank)


# ============================================================================ allocation
@dataclass
class Allocation:
    """What each site may do on its own.

    Attributes
    ----------
    job_site : (J,) int
        The one site job j may run at, −1 for none.
    required : (J,) bool
        Jobs that must run at their site (the mandatory ones).
    serve_cap : (K,S,T) float
        Upper bound of y_{k,i,t}, GPUs; Σ_i serve_cap ≤ λ.
    allowance : (S,) float
        Emission cap of each site, t CO2; Σ_i allowance ≤ C (all ``inf`` when C = ∞).
    """

    job_site: np.ndarray
    required: np.ndarray
    serve_cap: np.ndarray
    allowance: np.ndarray


def _fit_start(free: np.ndarray, site: int, g: float, d: int, release: int, deadline: int) -> int:
    """First start s in [release, deadline − d] with g GPUs free at ``site`` over s..s+d−1, −1 if none."""
    last = deadline - d
    if last < release:
        return -1
    window = np.lib.stride_tricks.sliding_window_view(free[site, release:deadline], d).min(axis=1)
    ok = np.flatnonzero(window >= g - 1e-9)
    return int(release + ok[0]) if ok.size else -1


def allocate(inst: Instance, point: FractionalPoint, *, min_mass: float = MIN_MASS,
             banned: np.ndarray | None = None) -> Allocation:
    """Split jobs, demand and budget between the sites according to ``point``.

    Parameters
    ----------
    inst : Instance
        The instance.
    point : FractionalPoint
        The point to follow.
    min_mass : float
        Optional jobs whose total mass is below this are left unallocated (0 allocates every optional
        job with any mass).
    banned : (J,S) bool, optional
        (job, site) pairs not to use (a site where the job's required set did not fit).

    Returns
    -------
    Allocation
    """
    J, S, T, K = inst.n_jobs, inst.n_sites, inst.n_periods, inst.n_classes
    jb = inst.jobs
    # a job bigger than a site never runs there, though the LP may put a fraction of it there
    ok = usable_sites(inst)
    if banned is not None:
        ok &= ~banned
    mass = np.where(ok, np.maximum(point.job_mass, 0.0), 0.0)
    rank = mass if point.job_rank is None else np.where(ok & np.isfinite(point.job_rank), point.job_rank, -np.inf)
    rank = np.where(ok, rank, -np.inf)
    job_site = np.full(J, -1, dtype=np.int64)

    # optional jobs: the best-ranked site holding mass
    total = mass.sum(axis=1)
    best = np.argmax(np.where(mass > 0, rank, -np.inf), axis=1)
    take = ~jb.mandatory & (total >= max(min_mass, 1e-9)) & (mass[np.arange(J), best] > 0)
    job_site[take] = best[take]

    # mandatory jobs: packed greedily (most massive first) so that every site's required set fits
    free = np.repeat(inst.sites.gpus[:, None].astype(np.float64), T, axis=1)
    cheap = run_cost(inst).mean(axis=1)  # for sites the point gives no mass: cheapest energy first
    mand = np.flatnonzero(jb.mandatory)
    for j in mand[np.argsort(-total[mand], kind="stable")]:
        sites = np.flatnonzero(ok[j])
        order = sites[np.lexsort((sites, cheap[sites], -np.where(mass[j, sites] > 0, rank[j, sites], -np.inf)))]
        g, d = float(jb.gpus[j]), int(jb.duration[j])
        for i in order:
            s = _fit_start(free, int(i), g, d, int(jb.release[j]), int(jb.deadline[j]))
            if s >= 0:
                free[i, s:s + d] -= g
                job_site[j] = i
                break
        else:
            if order.size == 0:
                raise InfeasibleError(f"infeasible: mandatory job {jb.name[j]} has no allowed site left",
                                      [str(jb.name[j])])
            job_site[j] = order[0]  # the greedy packing failed; the site MILP decides (reallocated if infeasible)
    required = jb.mandatory & (job_site >= 0)

    # serve caps: the point's routing within the SLO, scaled to the demand, plus the unserved rest spread
    # over the class's sites in proportion to the routing (uniformly where the point routes nothing)
    demand = inst.inference.demand
    cap = np.zeros((K, S, T))
    if K:
        slo = inst.slo_mask()
        cap = np.where(slo[:, :, None], np.maximum(point.served, 0.0), 0.0)
        routed = cap.sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            cap *= np.where(routed > demand, demand / routed, 1.0)[:, None, :]
        rest = np.maximum(demand - cap.sum(axis=1), 0.0)
        weight = cap.sum(axis=2) + slo * 1e-9  # (K,S)
        weight /= np.maximum(weight.sum(axis=1, keepdims=True), 1e-300)
        cap += weight[:, :, None] * rest[:, None, :]
        cap *= 1.0 - 1e-12  # Σ_i cap ≤ λ also after rounding

    # carbon: C split in proportion to the point's emissions (evenly where it has none)
    budget = inst.carbon_budget_t
    if math.isfinite(budget):
        em = np.maximum(point.emissions, 0.0)
        share = em / em.sum() if em.sum() > 0 else np.full(S, 1.0 / S)
        allowance = budget * (1.0 - BUDGET_MARGIN) * share
    else:
        allowance = np.full(S, math.inf)
    return Allocation(job_site=job_site, required=required, serve_cap=cap, allowance=allowance)


# ============================================================================ per-site solves
def _deadline(time_limit: float | None) -> float | None:
    """``time.time()`` by which a whole step given ``time_limit`` s must end (None without a limit)."""
    return None if time_limit is None else time.time() + time_limit


def _site_calls(inst: Instance, alloc: Allocation, sites, *, gap: float | None, time_limit: float | None,
                node_limit: int | None, deadline: float | None = None) -> dict[int, tuple[tuple, dict]]:
    calls = {}
    for i in sites:
        here = alloc.job_site == i
        calls[int(i)] = ((here, here & alloc.required, alloc.serve_cap[:, i, :], float(alloc.allowance[i])),
                         {"gap": gap, "time_limit": time_limit, "node_limit": node_limit, "deadline": deadline})
    return calls


def solve_allocation(inst: Instance, pool: SitePool, alloc: Allocation, *, point: FractionalPoint | None = None,
                     gap: float | None = 1e-4, time_limit: float | None = None, node_limit: int | None = None,
                     method: str = "completion", bound: float = math.inf, rebalance_rounds: int = 1) -> Solution:
    """Solve every site's allocated MILP on ``pool`` and assemble one feasible Solution.

    A site whose required jobs do not fit (SCIP proves it infeasible, or finds nothing within the limits)
    gets them taken away; they go to their next best site (from ``point``) and the affected sites are
    solved again, at most :data:`MAX_REALLOCATIONS` times.

    Parameters
    ----------
    inst : Instance
        The instance.
    pool : SitePool
        Workers (the site models are cached there under :data:`SITE_MILP_KIND`).
    alloc : Allocation
        The split of jobs, demand and budget.
    point : FractionalPoint, optional
        The point the allocation came from (ranks the sites of reallocated jobs).
    gap, time_limit, node_limit : optional
        SCIP limits per site solve (relative gap, s, nodes).
    method : str
        Name recorded in the solution.
    bound : float
        A valid upper bound to record (e.g. the LP bound), $.
    rebalance_rounds : int
        Rounds of :func:`rebalance` after the first pass (each re-solves all sites; stops when no gain).

    Returns
    -------
    Solution
        Status ``time_limit`` if a site solve stopped on time, else ``iteration_limit`` (a heuristic's
        finished pass); ``extra`` holds the site solve seconds and reallocation count.

    Raises
    ------
    InfeasibleError
        Mandatory jobs could not be placed after the reallocation rounds.
    """
    t0 = time.perf_counter()
    deadline = _deadline(time_limit)  # the whole step's budget: a worker solves its sites one after another
    S = inst.n_sites
    point = point or FractionalPoint(np.zeros((inst.n_jobs, S)), alloc.serve_cap, np.zeros(S))
    results: dict[int, AllocatedResult] = {}
    todo = list(range(S))
    banned = np.zeros((inst.n_jobs, S), dtype=bool)
    rounds = 0
    while todo:
        cost = {i: results[i].seconds for i in todo if i in results}
        out = pool.map(SITE_MILP_KIND, make_site_milp, "solve_allocated",
                       _site_calls(inst, alloc, todo, gap=gap, time_limit=time_limit, node_limit=node_limit,
                                   deadline=deadline),
                       cost=cost or None)
        results.update(out)
        failed = [i for i, r in out.items() if not r.has_solution]
        if not failed:
            break
        if rounds >= MAX_REALLOCATIONS:
            names = [str(inst.jobs.name[j]) for j in np.flatnonzero(alloc.required & np.isin(alloc.job_site, failed))]
            raise InfeasibleError(f"completion: mandatory job(s) {', '.join(names)} could not be placed", names)
        rounds += 1
        moved = alloc.required & np.isin(alloc.job_site, failed)
        banned[moved, alloc.job_site[moved]] = True
        log.info("completion: site(s) %s found no solution for their required jobs; reallocating %d job(s)",
                 failed, int(moved.sum()))
        again = allocate(inst, point, banned=banned)
        new_site = alloc.job_site.copy()
        new_site[moved] = again.job_site[moved]
        changed = set(np.flatnonzero(alloc.job_site != new_site).tolist())
        touched = set(alloc.job_site[list(changed)].tolist()) | set(new_site[list(changed)].tolist())
        alloc = Allocation(new_site, alloc.required & (new_site >= 0), alloc.serve_cap, alloc.allowance)
        todo = sorted((touched | set(failed)) - {-1})
    first = assemble(inst, results, method=method, bound=bound)
    site_seconds = float(sum(r.seconds for r in results.values()))
    sol = first
    for _ in range(rebalance_rounds):
        if deadline is not None and time.time() >= deadline:
            break
        alloc = rebalance(inst, sol, alloc, point)
        out = pool.map(SITE_MILP_KIND, make_site_milp, "solve_allocated",
                       _site_calls(inst, alloc, range(S), gap=gap, time_limit=time_limit, node_limit=node_limit,
                                   deadline=deadline),
                       cost={i: r.seconds for i, r in results.items()})
        site_seconds += float(sum(r.seconds for r in out.values()))
        if any(not r.has_solution for r in out.values()):
            break  # only under limits; keep the previous round
        cand = assemble(inst, out, method=method, bound=bound)
        if cand.objective <= sol.objective:
            break
        sol, results = cand, out
    sol.wall_seconds = time.perf_counter() - t0
    sol.extra.update({"site_seconds": site_seconds, "reallocations": rounds,
                      "jobs_allocated": int((alloc.job_site >= 0).sum()), "first_pass_objective": first.objective})
    return sol


def rebalance(inst: Instance, sol: Solution, alloc: Allocation, point: FractionalPoint) -> Allocation:
    """A second allocation that contains ``sol``'s site solutions and hands out what they left.

    Each site keeps its placed jobs, its served GPUs and its emissions; the allocated optional jobs a site
    did not run go to their next best allowed site (by the point's rank, then the most free GPU-periods
    over the job's window); the demand left unserved goes to the class's sites in proportion to their free
    GPUs in that period; the unused budget goes to the sites in proportion to their emissions. Every site's
    previous solution stays feasible for it, so re-solving never loses value.
    """
    S = inst.n_sites
    jb = inst.jobs
    job_site = np.where(sol.job_site >= 0, sol.job_site, -1)
    busy = ComputePlan.from_solution(sol).busy_gpus(inst)
    free = np.maximum(inst.sites.gpus[:, None] - busy, 0.0)
    dropped = np.flatnonzero((alloc.job_site >= 0) & (sol.job_site < 0))
    if dropped.size:
        # room for a job counts GPUs that serve inference as free: the site may trade them for the job
        job_free = np.maximum(free + sol.served.sum(axis=0), 0.0)
        cum = np.concatenate([np.zeros((S, 1)), np.cumsum(job_free, axis=1)], axis=1)
        rank = point.job_mass if point.job_rank is None else point.job_rank
        for j in dropped:
            room = (cum[:, jb.deadline[j]] - cum[:, jb.release[j]]) / max(jb.gpus[j] * jb.duration[j], 1)
            ok = (jb.allowed[j] & (jb.gpus[j] <= inst.sites.gpus) & (np.arange(S) != alloc.job_site[j])
                  & (room >= 1.0))
            if ok.any():
                key = np.where(ok, np.nan_to_num(rank[j], neginf=-1e300), -np.inf)
                best = np.flatnonzero(key == key.max())
                job_site[j] = best[np.argmax(room[best])]
    cap = sol.served.copy()
    if inst.n_classes:
        slo = inst.slo_mask()
        rest = np.maximum(inst.inference.demand - cap.sum(axis=1), 0.0)
        weight = slo[:, :, None] * (free[None] + 1e-9)
        weight /= np.maximum(weight.sum(axis=1, keepdims=True), 1e-300)
        cap = cap + weight * rest[:, None, :] * (1.0 - 1e-9)
    allowance = alloc.allowance
    if math.isfinite(inst.carbon_budget_t):
        s, dt = inst.sites, inst.period_hours
        em = dt * ((s.grid_co2 * sol.grid_import).sum(axis=1) + s.gen_co2 * sol.gen.sum(axis=1))
        slack = max(inst.carbon_budget_t * (1.0 - BUDGET_MARGIN) - em.sum(), 0.0)
        share = em / em.sum() if em.sum() > 0 else np.full(S, 1.0 / S)
        allowance = np.maximum(em, 0.0) + slack * share
    return Allocation(job_site=job_site, required=jb.mandatory & (job_site >= 0), serve_cap=cap, allowance=allowance)


def assemble(inst: Instance, results: dict[int, AllocatedResult], *, method: str, bound: float = math.inf) -> Solution:
    """One Solution from every site's allocated result (each site's jobs, routing and dispatch)."""
    J, K, S, T = inst.n_jobs, inst.n_classes, inst.n_sites, inst.n_periods
    job_site = np.full(J, -1, dtype=np.int64)
    job_start = np.full(J, -1, dtype=np.int64)
    served = np.zeros((K, S, T))
    energy = idle_energy_arrays(inst)
    statuses = set()
    for i, r in results.items():
        on = r.job_start >= 0
        job_site[on], job_start[on] = i, r.job_start[on]
        served[:, i, :] = r.served
        for name, row in r.energy.items():
            energy[name][i] = row
        statuses.add(r.status)
    unserved = np.maximum(inst.inference.demand - served.sum(axis=1), 0.0)
    status = "time_limit" if "time_limit" in statuses else "iteration_limit"
    return Solution.from_arrays(inst, method=method, status=status, job_site=job_site, job_start=job_start,
                                served=served, unserved=unserved, energy=energy, bound=bound, certified=False)


def complete_by_allocation(inst: Instance, pool: SitePool, source: JointLP | FractionalPoint, *,
                           min_mass: float = MIN_MASS, gap: float | None = 1e-4, time_limit: float | None = None,
                           node_limit: int | None = None, method: str = "completion",
                           rebalance_rounds: int = 1) -> Solution:
    """Primal completion from a fractional point: allocate, solve all sites in parallel, assemble.

    Parameters
    ----------
    inst : Instance
        The instance.
    pool : SitePool
        Workers for the site solves.
    source : JointLP or FractionalPoint
        A solved joint LP relaxation (its bound is recorded) or any point.
    min_mass : float
        See :func:`allocate`.
    gap, time_limit, node_limit : optional
        SCIP limits per site solve (relative gap, s, nodes).
    method : str
        Name recorded in the solution.
    rebalance_rounds : int
        See :func:`solve_allocation`.

    Returns
    -------
    Solution
        Feasible by construction (it passes :func:`formulations.checker.check_solution`).
    """
    bound = math.inf
    if isinstance(source, JointLP):
        if not source.optimal:
            raise ValueError("complete_by_allocation: the LP relaxation was not solved to optimality")
        bound = source.bound
        point = point_from_lp(source)
    else:
        point = source
    alloc = allocate(inst, point, min_mass=min_mass)
    return solve_allocation(inst, pool, alloc, point=point, gap=gap, time_limit=time_limit, node_limit=node_limit,
                            method=method, bound=bound, rebalance_rounds=rebalance_rounds)


def complete_from_site_results(inst: Instance, pool: SitePool, results: dict[int, SiteResult], *,
                               lam_c: float = 0.0, min_mass: float = MIN_MASS, gap: float | None = 1e-4,
                               time_limit: float | None = None, node_limit: int | None = None,
                               method: str = "completion", rebalance_rounds: int = 1) -> Solution:
    """Primal completion from one Lagrangian iteration's site results (:class:`SiteResult` by site).

    Conflicts are resolved by :func:`point_from_site_results` (a job chosen by several sites stays at the
    one where its reduced value is best) and :func:`allocate` (served GPUs scaled to the demand, the
    budget split by the sites' emissions); then the sites are solved as in :func:`complete_by_allocation`.
    ``lam_c`` is the carbon multiplier of the iteration, $/t.
    """
    point = point_from_site_results(inst, results, lam_c)
    alloc = allocate(inst, point, min_mass=min_mass)
    return solve_allocation(inst, pool, alloc, point=point, gap=gap, time_limit=time_limit, node_limit=node_limit,
                            method=method, rebalance_rounds=rebalance_rounds)


# ============================================================================ neighbourhoods
def site_shares(inst: Instance, job_mass: np.ndarray, served: np.ndarray, energy: dict[str, np.ndarray]) -> np.ndarray:
    """Each site's share of Z (S,), $: Z = Σ_i share_i − Δ Σ_{k,t} φ_k λ_{k,t}.

    Linear in its arguments, so it also splits the LP optimum by site. ``job_mass`` is (J,S) (Σ_s x),
    ``served`` (K,S,T), ``energy`` the (S,T) arrays of SOLUTION.md (binaries not needed).
    """
    s, dt = inst.sites, inst.period_hours
    out = job_mass.T @ inst.jobs.value
    if inst.n_classes:
        unit = serving_value(inst) + dt * inst.inference.penalty[:, None]
        out = out + (unit * served.sum(axis=2)).sum(axis=0)
    e = energy
    out = out - dt * (s.price_buy * e["grid_import"] - s.price_sell * e["grid_export"]).sum(axis=1)
    out = out - (dt * s.gen_cost[:, None] * e["gen"] + s.gen_startup_cost[:, None] * e["gen_start"]).sum(axis=1)
    out = out - dt * s.bat_cost * (e["charge"] + e["discharge"]).sum(axis=1)
    out = out - dt * inst.voll * e["ens"].sum(axis=1)
    em = dt * ((s.grid_co2 * e["grid_import"]).sum(axis=1) + s.gen_co2 * e["gen"].sum(axis=1))
    return out - inst.carbon_price * em


def solution_site_shares(inst: Instance, sol: Solution) -> np.ndarray:
    """:func:`site_shares` of a Solution."""
    mass = np.zeros((inst.n_jobs, inst.n_sites))
    on = (sol.job_site >= 0) & (sol.job_start >= 0)
    mass[np.flatnonzero(on), sol.job_site[on]] = 1.0
    return site_shares(inst, mass, sol.served, sol.energy)


def lp_site_shares(lp: JointLP) -> np.ndarray:
    """:func:`site_shares` of the LP solution: where the relaxation earns its value, $ per site."""
    point = point_from_lp(lp)
    energy = {name: lp.values_at(ids) for name, ids in lp.jm.energy.ids.items()}
    return site_shares(lp.jm.inst, point.job_mass, point.served, energy)


@dataclass
class GroupProblem:
    """One neighbourhood: its sites, its free jobs and its shares of the coupling rows.

    Attributes
    ----------
    sites : (n,) int
        The group's sites.
    free_jobs : (J,) bool
        Jobs that may move among the group's sites (placed at one of them, or unplaced and allowed there).
    required : (J,) bool
        Free jobs that must stay placed (the mandatory ones).
    demand_cap : (K,T) float
        Upper bound of Σ_{i∈group} y_{k,i,t}, GPUs.
    allowance : float
        Emission cap of the group, t CO2.
    job_site, job_start : (J,) int
        The current placements (the start solution).
    served : (K,n,T) float
        Current routing of the group's sites.
    energy : dict of str to (n,T) arrays
        Current dispatch of the group's sites.
    """

    sites: np.ndarray
    free_jobs: np.ndarray
    required: np.ndarray
    demand_cap: np.ndarray
    allowance: float
    job_site: np.ndarray
    job_start: np.ndarray
    served: np.ndarray
    energy: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class GroupResult:
    """A group's re-optimized part (the fields of :class:`GroupProblem` it changes), or no solution."""

    status: str
    has_solution: bool
    value: float
    job_site: np.ndarray
    job_start: np.ndarray
    served: np.ndarray
    energy: dict[str, np.ndarray]
    seconds: float


class GroupSolver:
    """Builds and solves one neighbourhood's joint MILP per call (stateless, so caching it is harmless)."""

    def __init__(self, inst: Instance, slot: int = 0, *, seed: int = 0) -> None:
        self.inst = inst
        self.seed = seed

    def solve(self, prob: GroupProblem, *, gap: float | None = 1e-4, time_limit: float | None = None,
              deadline: float | None = None) -> GroupResult:
        """Solve the group's MILP, started from its current solution.

        The model is the joint model restricted to the group's sites (constraints 1–8), with the free
        jobs' rows Σ x ≤ 1 (= 1 for required ones), Σ_{i∈group} y ≤ demand_cap, Em_group ≤ allowance, and
        the group's share of Z as objective (:func:`site_shares`).
        """
        t0 = time.perf_counter()
        inst = self.inst
        K, T, dt = inst.n_classes, inst.n_periods, inst.period_hours
        sites = np.asarray(prob.sites, dtype=np.int64)
        if deadline is not None and time.time() >= deadline:
            # groups queued on a worker past the pass's deadline are not built: each build took 0.5-1 s at 100
            # sites with jobs at 50-100 sites, and a 120 s run ended at 121.1 s
            return GroupResult("time_limit", False, -math.inf, prob.job_site.copy(), prob.job_start.copy(),
                               np.zeros((K, sites.size, T)), {}, time.perf_counter() - t0)
        am = ArrayModel(f"{inst.name}-group", maximize=True)
        cb = add_compute_block(am, inst, sites, coupling_rows=False, with_unserved=False)
        pl = cb.placements
        if pl.size:
            am.set_var_data(cb.x, ub=prob.free_jobs[pl.job].astype(np.float64))
            jobs, row = np.unique(pl.job, return_inverse=True)
            a = sp.csr_matrix((np.ones(pl.size), (row, cb.x)), shape=(jobs.size, am.n_vars))
            am.add_rows("job_once", a, np.where(prob.required[jobs], 1.0, -np.inf), 1.0)
        ym = cb.y >= 0
        if ym.any():
            kk, ii, tt = np.nonzero(ym)
            inf = inst.inference
            lat = np.nan_to_num(inf.latency_ms, posinf=0.0)[kk, ii]
            # the share of Z: serving also avoids Δ·φ_k of unserved penalty
            am.set_var_data(cb.y[ym], obj=dt * (inf.revenue[kk] - inf.latency_cost[kk] * lat + inf.penalty[kk]))
            a = sp.csr_matrix((np.ones(kk.size), (kk * T + tt, cb.y[ym])), shape=(K * T, am.n_vars))
            live = np.unique(kk * T + tt)
            am.add_rows("demand_share", a[live], -np.inf, np.maximum(prob.demand_cap.ravel()[live], 0.0))
        eb: EnergyBlock = add_energy_block(am, inst, sites, busy_gpu_ids=cb.busy)
        if math.isfinite(prob.allowance):
            cid, coef = eb.emission_terms(inst)
            am.add_rows("carbon_share", sp.csr_matrix((coef, (np.zeros(cid.size, np.int64), cid)),
                                                      shape=(1, am.n_vars)), -np.inf, max(prob.allowance, 0.0))
        m = am.model
        m.setParam("limits/maxorigsol", 0)
        # the build took part of the budget (groups solved in a row share the deadline)
        built = time.perf_counter() - t0
        time_limit = limit_by_deadline(None if time_limit is None else max(time_limit - built, 0.01), deadline)
        # SCIP catches Ctrl-C (and SIGTERM, relayed as SIGINT) and stops at once; with catching off the
        # group's solve ran to its time limit first (a Lagrangian run took 68 s to stop)
        configure(m, time_limit=time_limit, gap=0.0 if gap is None else gap, seed=self.seed, catch_interrupt=True)
        am.transform()
        am.add_solution(self._start(prob, am, cb, eb))
        optimize(m)
        note_scip_status(m.getStatus())  # Ctrl-C during a group's solve ends the run
        status = STATUS_MAP.get(m.getStatus(), m.getStatus())
        n = sites.size
        res = GroupResult(status, m.getNSols() > 0, -math.inf, prob.job_site.copy(), prob.job_start.copy(),
                          np.zeros((K, n, T)), {}, 0.0)
        if res.has_solution:
            vals = am.values()
            primal = float(m.getPrimalbound())
            res.value = primal if abs(primal) < SCIP_INF else -math.inf
            free = prob.free_jobs
            res.job_site[free], res.job_start[free] = -1, -1
            if pl.size:
                on = np.flatnonzero(vals[cb.x] > 0.5)
                res.job_site[pl.job[on]], res.job_start[pl.job[on]] = pl.site[on], pl.start[on]
            ys = cb.y[:, sites, :]
            res.served = np.where(ys >= 0, np.maximum(vals[np.maximum(ys, 0)], 0.0), 0.0)
            # Σ over the group within its cap exactly (SCIP meets rows within its tolerance)
            tot = res.served.sum(axis=1)
            cap = np.maximum(prob.demand_cap, 0.0)
            with np.errstate(divide="ignore", invalid="ignore"):
                res.served *= np.where(tot > cap, cap / tot, 1.0)[:, None, :]
            # the dispatch follows the extracted plan's load exactly
            column = {int(i): q for q, i in enumerate(sites)}
            load = np.stack([it_power_mw(inst, busy_gpus(inst, int(i), np.where(res.job_site == i, res.job_start, -1),
                                                         res.served[:, column[int(i)], :]), int(i)) for i in eb.sites])
            energy = eb.extract(inst, vals, load)
            res.energy = {name: arr[sites].copy() for name, arr in energy.items()}
        res.seconds = time.perf_counter() - t0
        return res

    def _start(self, prob: GroupProblem, am: ArrayModel, cb, eb: EnergyBlock) -> np.ndarray:
        """The group's current solution as a value vector of the group model."""
        inst, sites = self.inst, np.asarray(prob.sites, dtype=np.int64)
        out = np.zeros(am.n_vars)
        pl = cb.placements
        if pl.size:
            out[cb.x] = ((prob.job_site[pl.job] == pl.site) & (prob.job_start[pl.job] == pl.start)).astype(float)
        ys = cb.y[:, sites, :]
        out[ys[ys >= 0]] = prob.served[ys >= 0]
        busy = prob.served.sum(axis=0)  # (n,T)
        if pl.size:
            run = running_matrix(inst, pl) @ out[cb.x]  # (S·T,)
            busy = busy + run.reshape(inst.n_sites, inst.n_periods)[sites]
        out[cb.busy[sites]] = busy
        for name, ids in eb.ids.items():
            sub = ids[sites]
            out[sub[sub >= 0]] = np.asarray(prob.energy[name], dtype=float)[sub >= 0]
        return out


def make_group_solver(inst: Instance, slot: int, *, seed: int = 0) -> GroupSolver:
    """Factory for :class:`SitePool` (module level, so that it pickles)."""
    return GroupSolver(inst, slot, seed=seed)


def choose_groups(inst: Instance, solution: Solution, *, size: int = 3, value_left: np.ndarray | None = None,
                  max_groups: int | None = None, rng: np.random.Generator | None = None) -> list[np.ndarray]:
    """Disjoint groups of up to ``size`` sites that share work, seeded where value is left.

    Two sites are *linked* by the inference classes whose SLO admits both and by the jobs allowed at both
    (weighted by the job's value share); a group grows from its seed by the most linked free site. Seeds
    are taken by decreasing ``value_left`` (e.g. LP site share − solution site share, $), by site index
    without it. With ``rng`` the partition is drawn instead: seeds in random order, each link scaled by a
    random factor in [0.25, 1), so that successive passes regroup the sites (a solution that no
    deterministic partition improves any more can still improve across a new one).
    """
    S = inst.n_sites
    slo = inst.slo_mask().astype(float) if inst.n_classes else np.zeros((0, S))
    jobs = inst.jobs.allowed.astype(float)
    w = np.abs(inst.jobs.value) / max(float(np.abs(inst.jobs.value).sum()), 1e-12)
    link = slo.T @ slo / max(inst.n_classes, 1) + (jobs * w[:, None]).T @ jobs
    if rng is not None:
        link = link * rng.uniform(0.25, 1.0, size=link.shape)
    np.fill_diagonal(link, -np.inf)
    if rng is not None:
        order = rng.permutation(S)
    else:
        order = np.arange(S) if value_left is None else np.lexsort((np.arange(S), -np.asarray(value_left)))
    taken = np.zeros(S, dtype=bool)
    groups = []
    for seed_site in order:
        if taken[seed_site]:
            continue
        group = [int(seed_site)]
        taken[seed_site] = True
        while len(group) < size:
            score = link[group].sum(axis=0)
            score[taken] = -np.inf
            nxt = int(np.argmax(score))
            if not np.isfinite(score[nxt]) or score[nxt] <= 0:
                break
            group.append(nxt)
            taken[nxt] = True
        if len(group) > 1:
            groups.append(np.array(sorted(group)))
        if max_groups is not None and len(groups) >= max_groups:
            break
    return groups


def neighbourhood_pass(inst: Instance, pool: SitePool, solution: Solution, *, size: int,
                       lp_shares: np.ndarray | None = None, time_limit: float | None = None,
                       method: str | None = None, rng: np.random.Generator | None = None) -> Solution | None:
    """One pass of the neighbourhood search on ``solution``: groups of ``size`` sites seeded where the LP's site
    share (``lp_shares``, $ per site, :func:`lp_site_shares`) exceeds the solution's, or drawn by ``rng``
    (:func:`choose_groups`), then :func:`improve_by_neighbourhoods`. None when no group forms."""
    value_left = None if lp_shares is None else lp_shares - solution_site_shares(inst, solution)
    groups = choose_groups(inst, solution, size=size, value_left=value_left, rng=rng)
    if not groups:
        return None
    return improve_by_neighbourhoods(inst, pool, solution, groups, time_limit=time_limit, method=method)


def improve_by_neighbourhoods(inst: Instance, pool: SitePool, solution: Solution, groups: list[np.ndarray], *,
                              gap: float | None = 1e-4, time_limit: float | None = None,
                              method: str | None = None) -> Solution:
    """Re-optimize disjoint groups of sites jointly, everything else fixed; keep only improvements.

    Within a group: the jobs placed at its sites and the unplaced jobs allowed there move freely among its
    sites (mandatory ones stay placed), its sites' served shares are free up to the demand the rest of the
    solution leaves plus a share of the currently unserved demand, and the group's carbon allowance is its
    current emissions plus a share of the budget's slack (both slacks split between groups in proportion to
    their sizes), so that all groups' results combine into one feasible solution. Groups are solved in
    parallel on ``pool`` (one task each), each from its current solution, so none gets worse.

    Parameters
    ----------
    inst : Instance
        The instance.
    pool : SitePool
        Workers.
    solution : Solution
        A feasible solution.
    groups : list of (n,) int arrays
        Disjoint site groups (see :func:`choose_groups`).
    gap, time_limit : optional
        SCIP relative gap and seconds per group solve.
    method : str, optional
        Name recorded (default the input's).

    Returns
    -------
    Solution
        The improved solution (the input itself when no group improved); ``extra`` records the groups
        improved and the gain.
    """
    t0 = time.perf_counter()
    deadline = _deadline(time_limit)  # the whole pass: a worker solves its groups one after another
    seen = np.concatenate(groups) if groups else np.zeros(0, np.int64)
    if np.unique(seen).size != seen.size:
        raise ValueError("improve_by_neighbourhoods: the groups must be disjoint")
    if not groups:
        return solution
    S, J = inst.n_sites, inst.n_jobs
    jb = inst.jobs
    sizes = np.array([len(g) for g in groups], dtype=float)
    frac = sizes / sizes.sum()
    unserved = np.maximum(inst.inference.demand - solution.served.sum(axis=1), 0.0)
    shares = solution_site_shares(inst, solution)
    em_site = inst.period_hours * ((inst.sites.grid_co2 * solution.grid_import).sum(axis=1)
                                   + inst.sites.gen_co2 * solution.gen.sum(axis=1))
    slack_c = max(inst.carbon_budget_t * (1.0 - BUDGET_MARGIN) - em_site.sum(), 0.0)
    placed = (solution.job_site >= 0) & (solution.job_start >= 0)
    # an unplaced job may enter one group only (two groups placing it would place it twice): the group
    # holding most of its allowed sites, the first on ties
    group_of = np.full(S, -1, dtype=np.int64)
    for q, g in enumerate(groups):
        group_of[np.asarray(g, dtype=np.int64)] = q
    hits = np.stack([jb.allowed[:, np.asarray(g, dtype=np.int64)].sum(axis=1) for g in groups], axis=1)
    unplaced_group = np.where(~placed & (hits.max(axis=1) > 0), np.argmax(hits, axis=1), -1)
    calls = {}
    for q, g in enumerate(groups):
        g = np.asarray(g, dtype=np.int64)
        free = (placed & (group_of[np.maximum(solution.job_site, 0)] == q)) | (unplaced_group == q)
        allowance = em_site[g].sum() + frac[q] * slack_c if math.isfinite(inst.carbon_budget_t) else math.inf
        prob = GroupProblem(sites=g, free_jobs=free, required=free & jb.mandatory,
                            demand_cap=solution.served[:, g, :].sum(axis=1) + frac[q] * unserved,
                            allowance=allowance, job_site=solution.job_site.copy(), job_start=solution.job_start.copy(),
                            served=solution.served[:, g, :], energy={n: solution.energy[n][g] for n in ENERGY_FIELDS})
        calls[q] = ((prob,), {"gap": gap, "time_limit": time_limit, "deadline": deadline})
    out = pool.map(GROUP_KIND, make_group_solver, "solve", calls)
    job_site, job_start = solution.job_site.copy(), solution.job_start.copy()
    served = solution.served.copy()
    energy = {n: solution.energy[n].copy() for n in ENERGY_FIELDS}
    improved, gain = [], 0.0
    for q, res in out.items():
        g = np.asarray(groups[q], dtype=np.int64)
        if not res.has_solution:
            continue
        mass = np.zeros((J, S))
        on = (res.job_site >= 0) & calls[q][0][0].free_jobs
        mass[np.flatnonzero(on), res.job_site[on]] = 1.0
        full_energy = {n: energy[n].copy() for n in ENERGY_FIELDS}
        full_served = np.zeros_like(served)
        full_served[:, g, :] = res.served
        for n in ENERGY_FIELDS:
            full_energy[n][g] = res.energy[n]
        new = site_shares(inst, mass, full_served, full_energy)[g].sum()
        old = shares[g].sum()
        if new <= old + 1e-6 * max(1.0, abs(old)):
            continue
        free = calls[q][0][0].free_jobs
        job_site[free], job_start[free] = res.job_site[free], res.job_start[free]
        served[:, g, :] = res.served
        for n in ENERGY_FIELDS:
            energy[n][g] = res.energy[n]
        improved.append(g.tolist())
        gain += new - old
    if not improved:
        return solution
    unserved = np.maximum(inst.inference.demand - served.sum(axis=1), 0.0)
    new_sol = Solution.from_arrays(inst, method=method or solution.method, status=solution.status, job_site=job_site,
                                   job_start=job_start, served=served, unserved=unserved, energy=energy,
                                   bound=solution.bound, certified=False,
                                   wall_seconds=solution.wall_seconds + time.perf_counter() - t0,
                                   extra=dict(solution.extra))
    if new_sol.objective <= solution.objective:  # the shares' sum and Z agree up to float noise
        return solution
    new_sol.extra.update({"neighbourhoods_improved": len(improved), "neighbourhood_gain": float(gain)})
    log.info("neighbourhoods: %d of %d group(s) improved, +%.2f $", len(improved), len(groups), gain)
    return new_sol
