"""Local search on an :class:`carbonsched.formulations.evaluator.Evaluator`: job moves, swaps, routing shifts.

Uses only the public API (``ComputePlan``, ``Evaluator`` and its moves, ``PlanError``). Every
candidate is scored exactly by the evaluator (only the sites a move touches are re-solved; the carbon
budget is re-balanced exactly); the first improving move of each neighbourhood is made.

Neighbourhoods, in turn, with a seeded random order:

- **job moves**: a job to another (site, start) — its cheapest slots by grid price first — or
  unscheduled (if not mandatory), or scheduled (if not);
- **swaps**: two scheduled jobs exchange their (site, start);
- **routing shifts**: a share of class k's GPUs in period t moves to another site of its SLO, to or
  from unserved demand.

Stops when a full round finds no improvement, or at the iteration or time limit.
"""

from __future__ import annotations

import logging
import math
import time

import numpy as np
from carbonsched.errors import NoSolutionError
from carbonsched.formulations import ComputePlan, PlanError, Solution
from carbonsched.formulations.evaluator import Evaluator, MoveJob, ShiftRouting, SwapJobs
from carbonsched.formulations.solution import SolveStatus, Trace
from carbonsched.instances import Instance
from carbonsched.progress import ProgressCallback, ProgressReporter

from .greedy import solve_greedy

log = logging.getLogger(__name__)


def _job_moves(inst: Instance, plan: ComputePlan, j: int, rng: np.random.Generator, n_slots: int):
    jb, s = inst.jobs, inst.sites
    d = int(jb.duration[j])
    price = s.price_buy + inst.carbon_price * s.grid_co2
    slots = [(float(price[i, t:t + d].sum()), int(i), t) for i in np.flatnonzero(jb.allowed[j])
             for t in range(int(jb.release[j]), int(jb.deadline[j]) - d + 1)
             if (i, t) != (plan.job_site[j], plan.job_start[j])]
    slots.sort()
    cheap = slots[: n_slots // 2]
    rest = slots[n_slots // 2:]
    pick = [rest[q] for q in rng.permutation(len(rest))[: n_slots - len(cheap)]]
    moves = [MoveJob(j, i, t) for _, i, t in cheap + pick]
    if plan.job_site[j] >= 0 and not jb.mandatory[j]:
        moves.insert(0, MoveJob(j, -1, -1))
    return moves


def _routing_moves(inst: Instance, plan: ComputePlan, k: int, t: int):
    slo = np.flatnonzero(inst.slo_mask()[k])
    free = plan.free_gpus(inst)[:, t]
    unserved = float(plan.unserved(inst)[k, t])
    moves = []
    for src in slo:
        have = float(plan.served[k, src, t])
        if have <= 0:
            continue
        for share in (1.0, 0.5):
            amount = have * share
            moves += [ShiftRouting(k, t, int(src), int(dst), min(amount, float(free[dst])))
                      for dst in slo if dst != src and free[dst] > 1e-9]
            moves.append(ShiftRouting(k, t, int(src), -1, amount))
    if unserved > 1e-9:
        moves += [ShiftRouting(k, t, -1, int(dst), min(unserved, float(free[dst]))) for dst in slo
                  if free[dst] > 1e-9]
    return [m for m in moves if m.gpus > 1e-9]


def solve_local_search(inst: Instance, *, initial: ComputePlan | None = None, time_limit: float | None = 60.0,
                       iteration_limit: int = 2000, n_slots: int = 6, seed: int = 0,
                       progress: ProgressCallback | None = None) -> Solution:
    """Improve ``initial`` (default: the greedy plan) by first-improvement local search.

    Parameters
    ----------
    inst : Instance
        The instance.
    initial : ComputePlan, optional
        Starting plan (PlanError if it breaks a compute constraint).
    time_limit : float, optional
        Wall-clock limit, s (the greedy start included); every energy solve gets the time left, and a move
        whose scoring the limit stops is not made.
    iteration_limit : int
        Maximum candidate moves scored.
    n_slots : int
        Alternative (site, start) slots tried per job and round.
    seed : int
        Seed of the neighbourhood order.
    progress : ProgressCallback, optional
        Receives a :class:`carbonsched.progress.ProgressEvent` when the search starts, at most every
        2 s while it runs (``iteration`` = moves scored; no bound) and at the end. The greedy start
        reports its own events to the same callback.

    Returns
    -------
    Solution
        Method ``local-search``; status ``time_limit`` when the clock stopped it, ``interrupted`` when
        Ctrl-C or SIGTERM did (the incumbent is kept), else ``iteration_limit`` (a local optimum of the
        neighbourhoods, or the move cap); bound inf, not
        certified. ``extra`` holds the evaluator's counters.
    """
    t0 = time.perf_counter()
    report = ProgressReporter(progress, t0)
    rng = np.random.default_rng(seed)
    if initial is None:
        start = solve_greedy(inst, time_limit=time_limit, progress=progress)
        if start.status is SolveStatus.INTERRUPTED:  # Ctrl-C during the greedy start: its plan is the result
            start.method, start.wall_seconds = "local-search", time.perf_counter() - t0
            log.info("local search: interrupted during the greedy start; Z = %.2f $", start.objective)
            return start
        initial = ComputePlan.from_solution(start)
    else:
        start = None
    deadline = None if time_limit is None else t0 + time_limit
    try:
        if start is not None and start.status is SolveStatus.TIME_LIMIT:
            raise NoSolutionError("the greedy start used up the time limit")
        # every energy solve ends by the deadline, so the limit holds within one site solve
        ev = Evaluator(inst, initial, deadline=deadline)
    except NoSolutionError:
        if start is None:
            raise  # the limit stopped the scoring of the given initial plan: nothing scored to return
        # the limit stopped the evaluator's own scoring of the greedy plan: that plan, already scored, is the result
        start.method, start.status = "local-search", SolveStatus.TIME_LIMIT
        start.wall_seconds = time.perf_counter() - t0
        log.info("local search: time limit reached before the search started; Z = %.2f $", start.objective)
        return start
    trace = Trace()
    trace.append(time.perf_counter() - t0, ev.objective, math.inf, 0)
    report("search", ev.objective, message="local search from the initial plan", force=True)
    tried = 0
    status = "iteration_limit"

    def out_of_time() -> bool:
        return time_limit is not None and time.perf_counter() - t0 >= time_limit

    def first_improvement(moves) -> bool:
        nonlocal tried, status
        base = ev.objective
        for mv in moves:
            if tried >= iteration_limit:
                return False
            if out_of_time():
                status = "time_limit"
                return False
            tried += 1
            report("search", ev.objective, iteration=tried)
            try:
                z = ev.try_move(mv)
            except PlanError:
                continue
            except NoSolutionError:  # the limit stopped this move's scoring: the incumbent stands
                status = "time_limit"
                return False
            if z > base + 1e-6 * max(1.0, abs(base)):
                ev.apply(mv)
                trace.append(time.perf_counter() - t0, ev.objective, math.inf, tried)
                return True
        return False

    improved = True
    try:
        while improved and tried < iteration_limit and status != "time_limit":
            improved = False
            for j in rng.permutation(inst.n_jobs):
                improved |= first_improvement(_job_moves(inst, ev.plan, int(j), rng, n_slots))
            sched = np.flatnonzero(ev.plan.job_site >= 0)
            pairs = [(int(a), int(b)) for a in sched for b in sched if a < b]
            rng.shuffle(pairs)
            improved |= first_improvement(SwapJobs(a, b) for a, b in pairs[: 4 * max(inst.n_jobs, 1)])
            for q in rng.permutation(inst.n_classes * inst.n_periods):
                k, t = divmod(int(q), inst.n_periods)
                improved |= first_improvement(_routing_moves(inst, ev.plan, k, t))
    except KeyboardInterrupt:
        # Ctrl-C or SIGTERM: the incumbent (the plan with every applied move) is the result; a move being
        # scored was not applied
        status = "interrupted"
        log.warning("local search: interrupted; keeping the incumbent")
    extra = dict(ev.stats, moves_scored=tried)
    sol = ev.solution(method="local-search", status=status, wall_seconds=time.perf_counter() - t0, extra=extra)
    trace.append(sol.wall_seconds, sol.objective, math.inf, tried)
    sol.trace = trace
    ev.close()
    log.info("local search: %d moves scored, Z = %.2f $ (%s, %.2f s)", tried, sol.objective, status,
             sol.wall_seconds)
    report("done", sol.objective, iteration=tried, message=status, force=True)
    return sol
