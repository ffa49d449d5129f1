"""A greedy carbon- and price-aware placement, scored exactly.

Uses only the public API: the instance's arrays, :class:`carbonsched.formulations.ComputePlan` and
:func:`carbonsched.formulations.evaluate`.

The rule, for a carbon shadow price λ ($/t): a busy GPU at site i in period t costs
Δ·pue·(b − a)/1000·(π^buy + (τ + λ)·κ) $ — except the GPUs the site's renewables can carry after its
idle load, which cost nothing until used up. Jobs (mandatory first, then by value per GPU-hour) take
the cheapest (site, start) whose GPUs and power headroom are free over the whole run, if the value
beats the cost (always, if mandatory). Then each period, inference classes (by revenue) fill the
sites of their SLO by margin ρ − ω·L − cost, while that margin plus the unserved penalty is positive.
Several λ are tried; each plan is scored exactly and the best is kept.
"""

from __future__ import annotations

import logging
import math
import time

import numpy as np
from carbonsched.errors import NoSolutionError
from carbonsched.formulations import ComputePlan, Solution, evaluate
from carbonsched.formulations.diagnose import mandatory_infeasibility
from carbonsched.formulations.joint import serving_value
from carbonsched.formulations.solution import SolveStatus, Trace
from carbonsched.instances import Instance
from carbonsched.progress import ProgressCallback, ProgressReporter

log = logging.getLogger(__name__)

#: Carbon shadow prices tried, $/t CO2 (added to the instance's τ).
DEFAULT_CARBON_PRICES = (0.0, 50.0, 100.0, 200.0, 300.0, 500.0, 1000.0)


def greedy_plan(inst: Instance, carbon_shadow: float = 0.0) -> ComputePlan:
    """The greedy plan for carbon shadow price ``carbon_shadow`` ($/t CO2, on top of τ).

    A mandatory job that fits nowhere stays unscheduled (:func:`solve_greedy` then tells whether the
    instance is infeasible).
    """
    s, jb, inf = inst.sites, inst.jobs, inst.inference
    S, T, K, dt = inst.n_sites, inst.n_periods, inst.n_classes, inst.period_hours
    kw = (s.gpu_busy_kw - s.gpu_idle_kw)[:, None] / 1000.0  # MW IT per busy GPU
    price = s.price_buy + (inst.carbon_price + carbon_shadow) * s.grid_co2  # $/MWh
    gpu_cost = dt * s.pue * kw * price  # $ per busy GPU and period
    idle_mw = (s.gpu_idle_kw * s.gpus)[:, None] / 1000.0
    green = np.maximum(s.renewable_mw / s.pue - idle_mw, 0.0) / kw  # GPUs carried by renewables
    supply = s.grid_import_mw[:, None] + s.renewable_mw + s.gen_max_mw[:, None] + s.bat_power_mw[:, None]
    room = np.floor(np.maximum(supply / s.pue - idle_mw, 0.0) / kw)  # GPUs the site can power
    gpu_free = s.gpus[:, None].astype(float) * np.ones((1, T))  # GPUs free (constraint 3)
    free = np.minimum(gpu_free, room)  # GPUs free and powered without shedding load

    def cost(i: int, t0: int, t1: int, g: float) -> float:
        return float((gpu_cost[i, t0:t1] * np.maximum(g - green[i, t0:t1], 0.0)).sum())

    job_site = np.full(inst.n_jobs, -1, dtype=np.int64)
    job_start = np.full(inst.n_jobs, -1, dtype=np.int64)
    density = jb.value / np.maximum(jb.gpus * jb.duration, 1)  # $ per GPU-period
    order = sorted(range(inst.n_jobs), key=lambda j: (not jb.mandatory[j], -density[j], j))
    for j in order:
        g, d = float(jb.gpus[j]), int(jb.duration[j])
        best = None
        # a mandatory job that no powered slot takes may still use any GPUs free (shedding load)
        for avail in ((free, gpu_free) if jb.mandatory[j] else (free,)):
            for i in np.flatnonzero(jb.allowed[j]):
                for t in range(int(jb.release[j]), int(jb.deadline[j]) - d + 1):
                    if avail[i, t:t + d].min() >= g:
                        c = cost(i, t, t + d, g)
                        if best is None or c < best[0]:
                            best = (c, int(i), t)
            if best is not None:
                break
        if best is not None and (jb.mandatory[j] or jb.value[j] > best[0]):
            _, i, t = best
            job_site[j], job_start[j] = i, t
            free[i, t:t + d] -= g
            gpu_free[i, t:t + d] -= g
            green[i, t:t + d] = np.maximum(green[i, t:t + d] - g, 0.0)
    served = np.zeros((K, S, T))
    if K:
        slo = inst.slo_mask()
        margin = serving_value(inst)
        for t in range(T):
            for k in np.argsort(-inf.revenue, kind="stable"):
                need = float(inf.demand[k, t])
                sites = np.flatnonzero(slo[k])
                # renewable-carried GPUs first, then paid ones, each by margin
                for paid in (False, True):
                    value = margin[k, sites] - (gpu_cost[sites, t] if paid else 0.0)
                    for i in sites[np.argsort(-value, kind="stable")]:
                        if need <= 0:
                            break
                        worth = margin[k, i] - (gpu_cost[i, t] if paid else 0.0) + dt * inf.penalty[k]
                        if worth <= 0:
                            continue
                        cap = free[i, t] if paid else min(free[i, t], green[i, t])
                        take = min(need, max(cap, 0.0))
                        if take > 0:
                            served[k, i, t] += take
                            free[i, t] -= take
                            gpu_free[i, t] -= take
                            green[i, t] = max(green[i, t] - take, 0.0)
                            need -= take
    return ComputePlan(job_site=job_site, job_start=job_start, served=served)


def _refuse_unplaced_mandatory(inst: Instance, plan: ComputePlan) -> None:
    """Raise when ``plan`` leaves a mandatory job out: InfeasibleError (status 3) naming the jobs when the
    mandatory jobs cannot all be placed, else NoSolutionError (status 4: greedy found no feasible plan)."""
    left_out = np.flatnonzero(inst.jobs.mandatory & (plan.job_site < 0))
    if left_out.size == 0:
        return
    infeasible = mandatory_infeasibility(inst)
    if infeasible is not None:
        raise infeasible
    names = ", ".join(str(inst.jobs.name[j]) for j in left_out[:10])
    raise NoSolutionError(f"greedy: found no place for mandatory job(s) {names}; they can be placed together, "
                          "so another method (monolithic, benders, lagrangian) will find a solution")


def solve_greedy(inst: Instance, *, carbon_prices=DEFAULT_CARBON_PRICES, time_limit: float | None = None,
                 progress: ProgressCallback | None = None) -> Solution:
    """Greedy plans for several carbon shadow prices, each scored exactly; the best as a Solution.

    Parameters
    ----------
    inst : Instance
        The instance.
    carbon_prices : sequence of float
        Carbon shadow prices λ tried, $/t CO2.
    time_limit : float, optional
        Wall-clock limit, s: each plan's scoring gets the time left; a plan whose scoring the limit stops is
        dropped (the best plan scored so far is the result, status ``time_limit``).
    progress : ProgressCallback, optional
        Receives a :class:`carbonsched.progress.ProgressEvent` after each plan is scored (``iteration``
        = plans scored; no bound) and at the end.

    Returns
    -------
    Solution
        Method ``greedy``, status ``iteration_limit`` (all prices tried), ``time_limit`` or ``interrupted``
        (Ctrl-C after the first plan was scored); bound inf,
        not certified; ``extra['carbon_shadow']`` is the λ of the kept plan.

    Raises
    ------
    NoSolutionError
        The time limit was reached before the first plan was scored.
        Also when a greedy plan leaves out a mandatory job although the mandatory jobs can be placed.
    InfeasibleError
        The mandatory jobs cannot all be placed (names them).
    """
    t0 = time.perf_counter()
    report = ProgressReporter(progress, t0)
    best: Solution | None = None
    best_lam = math.nan
    trace = Trace()
    status = "iteration_limit"
    deadline = None if time_limit is None else t0 + time_limit
    unplaced: ComputePlan | None = None
    try:
        for n, lam in enumerate(carbon_prices):
            left = None if deadline is None else deadline - time.perf_counter()
            if left is not None and left <= 0.0:
                if best is None:
                    raise NoSolutionError(f"greedy: time limit of {time_limit:g} s reached before a plan was scored")
                status = "time_limit"
                break
            plan = greedy_plan(inst, lam)
            if (inst.jobs.mandatory & (plan.job_site < 0)).any():
                unplaced = plan  # this λ left a mandatory job out; another may place it
                log.debug("greedy: carbon shadow price %g $/t leaves a mandatory job out", lam)
                continue
            left = None if deadline is None else max(deadline - time.perf_counter(), 0.0)
            try:
                # the plan's scoring gets the time left, so the limit holds within one site solve
                sol = evaluate(inst, plan, method="greedy", time_limit=left)
            except NoSolutionError:
                if left is None:
                    raise
                if best is None:  # nothing to keep: status 4
                    raise NoSolutionError(f"greedy: time limit of {time_limit:g} s reached before the first plan "
                                          "was scored") from None
                status = "time_limit"
                log.info("greedy: the time limit stopped the scoring of the plan for λ = %g $/t", lam)
                break
            if best is None or sol.objective > best.objective:
                best, best_lam = sol, lam
            trace.append(time.perf_counter() - t0, best.objective, math.inf, n)
            log.debug("greedy: carbon shadow price %g $/t gives Z = %.2f $", lam, sol.objective)
            report("search", best.objective, math.inf, n + 1, message=f"λ = {lam:g} $/t: Z = {sol.objective:.2f} $",
                   force=True)
    except KeyboardInterrupt:
        if best is None:  # nothing to keep: the caller sees the interrupt
            raise
        status = "interrupted"  # Ctrl-C or SIGTERM: the best plan so far is the result
        log.warning("greedy: interrupted; keeping the best plan so far")
    if best is None and unplaced is not None:
        _refuse_unplaced_mandatory(inst, unplaced)  # every λ left a mandatory job out: status 3 or 4
    assert best is not None
    best.method, best.status = "greedy", SolveStatus(status)
    best.wall_seconds = time.perf_counter() - t0
    best.trace = trace
    best.extra = {"carbon_shadow": best_lam}
    log.info("greedy: best plan at carbon shadow price %g $/t, Z = %.2f $ (%.2f s)", best_lam, best.objective,
             best.wall_seconds)
    report("done", best.objective, math.inf, len(trace), message=status, force=True)
    return best
