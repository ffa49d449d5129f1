"""The public heuristic API (issue 7): exact evaluation, PlanError, the incremental Evaluator, seeding,
hooks, a user SCIP heuristic, and the shipped greedy and local-search heuristics."""

from __future__ import annotations

import math

import numpy as np
import pytest
from carbonsched.decomp.heuristics import solve_greedy, solve_local_search
from carbonsched.decomp.hooks import DecompositionHooks
from carbonsched.decomp.lagrangian import solve_lagrangian
from carbonsched.errors import InputError
from carbonsched.formulations import ComputePlan, PlanError, build_joint_model, check_solution, evaluate
from carbonsched.formulations.baselines import energy_only_plan
from carbonsched.formulations.evaluator import Evaluator, MoveJob, SetPlan, ShiftRouting, SwapJobs
from carbonsched.formulations.heuristics_api import plan_to_scip_solution
from carbonsched.formulations.monolithic import solve_monolithic
from carbonsched.formulations.scip_run import configure
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyscipopt import SCIP_HEURTIMING, SCIP_RESULT, Heur

from .conftest import build_small_instance
from .edge_cases import EDGE_CASES, random_small


def _close(a: float, b: float, rel: float = 1e-6) -> bool:
    return abs(a - b) <= rel * max(1.0, abs(a), abs(b))


def _checked(inst, sol):
    report = check_solution(inst, sol)
    assert report.ok, report.format()
    return sol


_OPT: dict[str, object] = {}


def _optimum(name: str, build):
    if name not in _OPT:
        inst = build()
        _OPT[name] = (inst, _checked(inst, solve_monolithic(inst, gap=0.0)))
    return _OPT[name]


CASES = {f"random{s}": (lambda s=s: random_small(s)) for s in (0, 1, 2)} | EDGE_CASES


# ------------------------------------------------------------------------- exact evaluation
@pytest.mark.parametrize("name", sorted(CASES))
def test_evaluate_of_the_optimal_plan_is_the_optimum(name):
    inst, opt = _optimum(name, CASES[name])
    sol = _checked(inst, evaluate(inst, ComputePlan.from_solution(opt)))
    assert _close(sol.objective, opt.objective), (sol.objective, opt.objective)


def test_evaluate_without_budget_solves_sites_apart_and_in_parallel():
    from carbonsched.decomp.parallel import ParallelConfig, SitePool

    inst = build_small_instance()  # C = inf
    assert math.isinf(inst.carbon_budget_t)
    opt = _checked(inst, solve_monolithic(inst, gap=0.0))
    plan = ComputePlan.from_solution(opt)
    one = _checked(inst, evaluate(inst, plan))
    with SitePool(inst, ParallelConfig(n_jobs=2)) as pool:
        two = _checked(inst, evaluate(inst, plan, pool=pool))
    assert _close(one.objective, opt.objective) and _close(two.objective, opt.objective)


def test_site_pool_workers_end_when_it_closes():
    """A pool's loky workers (which keep site models, idle through long LP rounds) end when the pool closes."""
    import psutil
    from carbonsched.decomp.parallel import ParallelConfig, SitePool

    inst = build_small_instance()
    plan = ComputePlan.from_solution(solve_monolithic(inst, gap=0.0))
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    with SitePool(inst, ParallelConfig(n_jobs=2)) as pool:
        _checked(inst, evaluate(inst, plan, pool=pool))
        workers = [p for p in psutil.Process().children(recursive=True) if p.pid not in before]
        assert workers
    _, alive = psutil.wait_procs(workers, timeout=5.0)
    assert alive == []


# ------------------------------------------------------------------------- PlanError
def _broken(inst, kind: str) -> tuple[ComputePlan, str]:
    """A plan of the conftest instance breaking one compute rule, and the name the error must carry."""
    plan = ComputePlan.from_solution(solve_monolithic(inst, gap=0.0))
    if kind == "capacity":
        # train-a (2 GPUs) and train-b (4 GPUs) both at Oslo (4 GPUs) in period 1
        plan.job_site[0], plan.job_start[0] = 1, 1
        plan.job_site[1], plan.job_start[1] = 1, 1
        return plan, "site Oslo, period 1: GPU capacity exceeded"
    if kind == "window":
        plan.job_site[1], plan.job_start[1] = 1, 0  # train-b released at 1
        return plan, "job train-b"
    if kind == "site":
        plan.job_site[1], plan.job_start[1] = 0, 1  # train-b only at Oslo
        return plan, "job train-b"
    if kind == "slo":
        plan.served[0, 2, 0] = 0.5  # chat cannot reach 東京
        return plan, "class chat, site 東京, period 0"
    if kind == "demand":
        plan.served[0, 0, 0] = inst.inference.demand[0, 0] + 1.0
        return plan, "class chat, period 0"
    if kind == "mandatory":
        plan.job_site[3], plan.job_start[3] = -1, -1  # eval is mandatory
        return plan, "job eval"
    if kind == "half":
        plan.job_start[2] = -1
        return plan, "job finetune"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["capacity", "window", "site", "slo", "demand", "mandatory", "half"])
def test_each_broken_plan_raises_plan_error_naming_it(kind):
    inst = build_small_instance()
    plan, name = _broken(inst, kind)
    with pytest.raises(PlanError, match=name):
        evaluate(inst, plan)
    with pytest.raises(PlanError, match=name):
        Evaluator(inst, plan)
    ev = Evaluator(inst, ComputePlan.from_solution(evaluate(inst, energy_only_plan(inst))))
    before = ev.objective
    with pytest.raises(PlanError, match=name):
        ev.try_move(SetPlan(plan))
    assert ev.objective == before  # a rejected move leaves the evaluator as it was


# ------------------------------------------------------------------------- incremental evaluator
def _random_move(inst, plan: ComputePlan, rng: np.random.Generator):
    jb = inst.jobs
    kind = rng.integers(3) if inst.n_classes else rng.integers(2)
    if kind == 0 and inst.n_jobs:
        j = int(rng.integers(inst.n_jobs))
        if rng.random() < 0.2:
            return MoveJob(j, -1, -1)
        i = int(rng.choice(np.flatnonzero(jb.allowed[j])))
        return MoveJob(j, i, int(rng.integers(jb.release[j], jb.deadline[j] - jb.duration[j] + 1)))
    if kind == 1 and inst.n_jobs >= 2:
        a, b = rng.choice(inst.n_jobs, 2, replace=False)
        return SwapJobs(int(a), int(b))
    if inst.n_classes == 0:
        return MoveJob(0, -1, -1) if inst.n_jobs else SetPlan(plan)
    k, t = int(rng.integers(inst.n_classes)), int(rng.integers(inst.n_periods))
    slo = np.flatnonzero(inst.slo_mask()[k])
    src = int(rng.choice(np.concatenate([[-1], slo])))
    dst = int(rng.choice(np.concatenate([[-1], slo])))
    have = float(plan.unserved(inst)[k, t]) if src < 0 else float(plan.served[k, src, t])
    return ShiftRouting(k, t, src, dst, have * float(rng.uniform(0.1, 1.0)))


_EV_CASES = {"random0": lambda: random_small(0), "binding_budget": EDGE_CASES["binding_budget"],
             "no_budget": build_small_instance, "bare_sites": EDGE_CASES["bare_sites"]}


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=st.sampled_from(sorted(_EV_CASES)), seed=st.integers(0, 2**31 - 1), n=st.integers(1, 8))
def test_incremental_and_full_evaluation_agree_after_random_moves(case, seed, n):
    inst = _EV_CASES[case]()
    rng = np.random.default_rng(seed)
    ev = Evaluator(inst, energy_only_plan(inst))
    for _ in range(n):
        move = _random_move(inst, ev.plan, rng)
        try:
            z = ev.try_move(move)
        except PlanError:
            continue
        full = evaluate(inst, move.apply_to(inst, ev.plan))
        assert _close(z, full.objective), (z, full.objective)
        if rng.random() < 0.7:
            assert ev.apply(move) == z
    sol = _checked(inst, ev.solution())
    assert _close(sol.objective, ev.objective)
    assert _close(ev.objective, evaluate(inst, ev.plan).objective)


def test_evaluator_re_solves_only_touched_sites_without_budget():
    inst = build_small_instance()
    ev = Evaluator(inst, energy_only_plan(inst))
    assert ev.stats["site_solves"] == inst.n_sites
    free = ev.plan.free_gpus(inst)
    k, t = 1, 3  # batch in period 3 may use Zürich and Oslo
    src = int(np.argmax(ev.plan.served[k, :, t]))
    dst = 1 - src
    move = ShiftRouting(k, t, src, dst, min(float(ev.plan.served[k, src, t]), float(free[dst, t])) / 2)
    assert move.gpus > 0
    ev.try_move(move)
    assert ev.stats["site_solves"] == inst.n_sites + 2 and ev.stats["coupled_solves"] == 0


# ------------------------------------------------------------------------- seeding: first incumbent
def _seed_case():
    inst = random_small(5)
    plan = ComputePlan.from_solution(solve_greedy(inst))
    return inst, plan, evaluate(inst, plan).objective


def test_initial_plan_is_the_first_incumbent_of_monolithic():
    inst, plan, z0 = _seed_case()
    sol = _checked(inst, solve_monolithic(inst, gap=0.0, initial=plan))
    assert _close(sol.trace.primal[0], z0)


def test_initial_plan_is_the_first_incumbent_of_benders():
    from carbonsched.decomp.benders import solve_benders

    inst, plan, z0 = _seed_case()
    sol = _checked(inst, solve_benders(inst, gap=1e-4, initial=plan))
    assert _close(sol.trace.primal[0], z0)


def test_initial_plan_is_the_first_incumbent_of_lagrangian():
    inst, plan, z0 = _seed_case()
    sol = _checked(inst, solve_lagrangian(inst, iteration_limit=1, initial=plan, progress=lambda line: None))
    assert _close(sol.trace.primal[0], z0)
    assert sol.objective >= z0 - 1e-6 * max(1.0, abs(z0))


# ------------------------------------------------------------------------- hooks
def _solve_with(method: str, inst, **kw):
    if method == "lagrangian":
        return solve_lagrangian(inst, iteration_limit=1, polish=False, close=False, **kw)
    from carbonsched.decomp.benders import solve_benders

    return solve_benders(inst, gap=1e-4, initial=ComputePlan.empty(inst), max_iterations=1, root_rounds=1, **kw)


@pytest.mark.parametrize("method", ["lagrangian", "benders"])
def test_one_hook_class_offers_a_better_plan_to_every_method(method):
    inst = random_small(6)
    opt = solve_monolithic(inst, gap=0.0)

    class Offer(DecompositionHooks):
        phases: set[str] = set()

        def post_iteration(self, state):
            Offer.phases.add(state.phase)
            assert state.method == method and state.bound >= opt.objective - 1e-6 * abs(opt.objective)
            return ComputePlan.from_solution(opt)

    hooked = _checked(inst, _solve_with(method, inst, hooks=Offer()))
    assert _close(hooked.objective, opt.objective)
    if method == "benders":  # called in the root loop too, not only after it
        assert "root" in Offer.phases


@pytest.mark.parametrize("method", ["lagrangian", "benders"])
def test_a_hook_plan_that_breaks_a_constraint_is_reported_with_its_reason(method, caplog):
    inst = random_small(6)
    bad = ComputePlan.empty(inst)
    bad.served[:] = inst.inference.demand[:, None, :] * 10.0 + 1.0  # serves more than the demand

    class Offer(DecompositionHooks):
        state = None

        def post_iteration(self, state):
            Offer.state = state
            return bad

    with caplog.at_level("WARNING", logger="carbonsched"):
        sol = _checked(inst, _solve_with(method, inst, hooks=Offer()))
    assert Offer.state.rejected and Offer.state.rejected[0][0] == "hook"
    reason = Offer.state.rejected[0][1]
    assert reason and any("rejected" in r.message and reason in r.message for r in caplog.records)
    assert sol.extra["rejected_plans"] >= 1


def test_hooks_of_another_type_are_refused_by_name():
    inst = random_small(6)
    with pytest.raises(InputError, match="hooks"):
        solve_lagrangian(inst, hooks=object())


def test_a_user_scip_heuristic_submits_a_plan():
    inst = random_small(3)
    opt = solve_monolithic(inst, gap=0.0)
    plan = ComputePlan.from_solution(opt)
    jm = build_joint_model(inst)

    class PlanHeur(Heur):
        accepted: bool | None = None

        def heurexec(self, heurtiming, nodeinfeasible):
            if PlanHeur.accepted is not None:
                return {"result": SCIP_RESULT.DIDNOTRUN}
            sol = plan_to_scip_solution(jm, plan, heur=self)
            PlanHeur.accepted = self.model.trySol(sol, free=True)
            return {"result": SCIP_RESULT.FOUNDSOL if PlanHeur.accepted else SCIP_RESULT.DIDNOTFIND}

    configure(jm.model, time_limit=None, gap=0.0)
    jm.model.setParam("limits/nodes", 1)
    jm.model.includeHeur(PlanHeur(), "userplan", "submits a user plan", "Y", priority=10**6, freq=1,
                         freqofs=0, maxdepth=-1, timingmask=SCIP_HEURTIMING.BEFORENODE)
    jm.model.optimize()
    assert PlanHeur.accepted is True
    assert jm.model.getPrimalbound() >= opt.objective - 1e-6 * max(1.0, abs(opt.objective))


def test_plan_to_scip_solution_before_solving_seeds_the_model():
    inst = random_small(3)
    opt = solve_monolithic(inst, gap=0.0)
    jm = build_joint_model(inst)
    assert jm.model.addSol(plan_to_scip_solution(jm, ComputePlan.from_solution(opt)), free=True)


# ------------------------------------------------------------------------- shipped heuristics
@pytest.mark.parametrize("name", ["random0", "binding_budget", "mandatory_jobs", "no_inference"])
def test_greedy_and_local_search_give_checked_solutions_below_the_optimum(name):
    inst, opt = _optimum(name, CASES[name])
    greedy = _checked(inst, solve_greedy(inst))
    assert greedy.method == "greedy" and greedy.status.value == "iteration_limit"
    assert math.isinf(greedy.bound) and not greedy.certified
    ls = _checked(inst, solve_local_search(inst, initial=ComputePlan.from_solution(greedy), time_limit=4,
                                             iteration_limit=60))
    assert ls.method == "local-search" and ls.status.value in ("iteration_limit", "time_limit")
    tol = 1e-6 * max(1.0, abs(opt.objective))
    assert greedy.objective <= opt.objective + tol and ls.objective <= opt.objective + tol
    assert ls.objective >= greedy.objective - tol  # local search only improves its start


@pytest.mark.parametrize("method", ["lagrangian", "benders"])
def test_unknown_or_bad_decomposition_options_are_refused_by_name(method):
    from carbonsched.decomp.benders import solve_benders

    inst = random_small(6)
    solve = solve_lagrangian if method == "lagrangian" else solve_benders
    with pytest.raises(InputError, match="bogus"):
        solve(inst, bogus=1)
    with pytest.raises(InputError, match="gap"):
        solve(inst, gap=-1.0)
