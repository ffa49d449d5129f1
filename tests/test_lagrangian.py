"""Lagrangian decomposition: valid bounds at every iteration, checked solutions, determinism, hooks."""

from __future__ import annotations

import math

import numpy as np
import pytest
from carbonsched.decomp.engine import EngineOptions, Hub
from carbonsched.decomp.hooks import DecompositionHooks
from carbonsched.decomp.lagrangian import make_layout, solve_lagrangian
from carbonsched.decomp.parallel import ParallelConfig
from carbonsched.decomp.state import SolveState
from carbonsched.errors import InputError
from carbonsched.formulations.baselines import ablate
from carbonsched.formulations.checker import check_solution
from carbonsched.formulations.joint import build_joint_model
from carbonsched.formulations.monolithic import solve_monolithic
from carbonsched.formulations.plan import ComputePlan
from carbonsched.formulations.site_milp import SiteMILP
from carbonsched.instances import generate
from carbonsched.progress import ProgressEvent

from .conftest import build_small_instance, routing_priced_from_afar

TOL = 1e-6


def _tiny(seed: int, **kw):
    rng = np.random.default_rng(seed)
    args = dict(sites=int(rng.integers(2, 4)), periods=int(rng.integers(4, 9)), jobs=int(rng.integers(3, 6)),
                classes=2, seed=seed)
    args.update(kw)
    return generate(**args)


def _optimum(inst) -> float:
    return solve_monolithic(inst, gap=0).objective


def _assert_valid(inst, sol, opt: float) -> None:
    report = check_solution(inst, sol)
    assert report.ok, report.format()
    assert sol.method == "lagrangian"
    assert sol.objective <= opt + TOL * max(1.0, abs(opt))
    slack = 1e-6 * max(1.0, abs(opt))
    dual = sol.trace.dual
    assert np.all(dual >= opt - slack), (dual.min(), opt)  # a valid bound at every trace point
    assert np.all(sol.trace.primal <= opt + slack)
    assert sol.bound >= opt - slack and sol.certified
    assert sol.extra["lagrangian_bound"] >= opt - slack
    assert sol.extra["lagrangian_bound"] <= sol.extra["lp_bound"] + 1e-6 * max(1.0, abs(opt))
    assert math.isclose(sol.gap, (sol.bound - sol.objective) / max(1.0, abs(sol.objective)), rel_tol=1e-9,
                        abs_tol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_bound_valid_and_solution_checked(seed):
    inst = _tiny(seed)
    opt = _optimum(inst)
    sol = solve_lagrangian(inst, iteration_limit=12, progress=lambda line: None, close=False)
    _assert_valid(inst, sol, opt)


@pytest.mark.parametrize("limits", [dict(subproblem_gap=0.5), dict(subproblem_node_limit=1),
                                    dict(subproblem_gap=0.5, subproblem_node_limit=1), dict(site_gap_share=0.9)])
def test_bound_valid_under_subproblem_limits(limits):
    inst = _tiny(5, periods=8, jobs=5)
    opt = _optimum(inst)
    sol = solve_lagrangian(inst, iteration_limit=8, progress=lambda line: None, close=False, **limits)
    _assert_valid(inst, sol, opt)


def test_subgradient_method():
    inst = _tiny(7)
    opt = _optimum(inst)
    sol = solve_lagrangian(inst, iteration_limit=10, method="subgradient", progress=lambda line: None, close=False)
    _assert_valid(inst, sol, opt)
    assert sol.extra["multiplier_method"] == "subgradient"


def _edge_cases():
    small = build_small_instance()  # negative prices, mandatory jobs, half-hour periods, unreachable route
    budget = build_small_instance()
    budget.carbon_budget_t = 0.5  # binding
    no_jobs = _tiny(11, jobs=0)
    no_inf = _tiny(12, classes=0)
    bare = ablate(_tiny(13), "compute-only")  # no battery, no generator, no export
    half = _tiny(14, period_hours=0.5)
    tight = generate(sites=2, periods=6, jobs=4, classes=2, seed=15)
    tight.carbon_budget_t = 0.3 * max(solve_monolithic(ablate(tight, "no-carbon"), gap=1e-6).emissions_t, 1.0)
    return {"small": small, "budget": budget, "no-jobs": no_jobs, "no-inference": no_inf, "bare": bare,
            "half-hour": half, "binding-budget": tight}


@pytest.mark.parametrize("name", list(_edge_cases()))
def test_edge_cases(name):
    inst = _edge_cases()[name]
    opt = _optimum(inst)
    sol = solve_lagrangian(inst, iteration_limit=10, progress=lambda line: None, close=False)
    _assert_valid(inst, sol, opt)
    if name in ("budget", "binding-budget"):
        assert sol.emissions_t <= inst.carbon_budget_t + 1e-6 * max(1.0, inst.carbon_budget_t)


def test_layout_signs(small_instance):
    lay = make_layout(small_instance)
    J = small_instance.n_jobs
    assert np.all(lay.lower[:J][small_instance.jobs.mandatory] == -np.inf)
    assert np.all(lay.lower[:J][~small_instance.jobs.mandatory] == 0.0)
    assert lay.upper[-1] == 0.0  # C = inf: λ_C fixed at 0


def test_site_subproblem_deterministic_and_in_place():
    inst = _tiny(3)
    lay = make_layout(inst)
    rng = np.random.default_rng(0)
    a, b = SiteMILP(inst, 0), SiteMILP(inst, 0)
    for _ in range(3):
        z = lay.project(rng.normal(size=lay.size) * lay.scale * 0.3)
        mu, pi, lam = lay.split(z)
        ra, rb = a.solve(mu, pi, lam), b.solve(mu, pi, lam)
        assert ra.bound == rb.bound and ra.value == rb.value
        assert np.array_equal(ra.job_start, rb.job_start)
        fresh = SiteMILP(inst, 0).solve(mu, pi, lam)  # in-place update equals a fresh build, to the bit
        assert fresh.value == ra.value and fresh.bound == ra.bound


def test_site_subproblem_past_deadline_keeps_a_valid_bound():
    import time

    inst = _tiny(5, periods=8, jobs=5)
    lay = make_layout(inst)
    mu, pi, lam = lay.split(lay.project(np.zeros(lay.size)))
    exact = SiteMILP(inst, 0).solve(mu, pi, lam)
    site = SiteMILP(inst, 0)
    late = site.solve(mu, pi, lam, deadline=time.time() - 1.0)
    assert late.bound >= exact.bound - 1e-9 * max(1.0, abs(exact.bound))
    assert late.value <= exact.value + 1e-9 * max(1.0, abs(exact.value))
    # past the deadline SCIP is not called at all (a 0.01 s limit per queued site added up to 1.4 s at 300 sites)
    assert late.status == "time_limit" and late.nodes == 0 and math.isinf(late.bound)
    # and the same model answers exactly at its next call
    again = site.solve(mu, pi, lam)
    assert again.value == exact.value and again.bound == exact.bound


def test_same_results_one_or_two_workers():
    inst = _tiny(4)
    kw = dict(iteration_limit=6, progress=lambda line: None, close=False)
    one = solve_lagrangian(inst, config=ParallelConfig(n_jobs=1), **kw)
    two = solve_lagrangian(inst, config=ParallelConfig(n_jobs=2), **kw)
    assert one.objective == two.objective
    assert np.array_equal(one.trace.dual, two.trace.dual)
    assert np.array_equal(one.trace.primal, two.trace.primal)
    assert check_solution(inst, two).ok


def test_same_results_on_dask():
    pytest.importorskip("dask.distributed")
    inst = _tiny(4)
    kw = dict(iteration_limit=6, progress=lambda line: None, close=False)
    one = solve_lagrangian(inst, **kw)
    dask = solve_lagrangian(inst, config=ParallelConfig(n_jobs=2, backend="dask"), **kw)
    assert one.objective == dask.objective
    assert np.array_equal(one.trace.dual, dask.trace.dual)
    assert check_solution(inst, dask).ok


class _Recorder(DecompositionHooks):
    def __init__(self, interrupt_at: int | None = None) -> None:
        self.pre, self.post, self.done = 0, 0, None
        self.interrupt_at = interrupt_at

    def pre_iteration(self, state: SolveState) -> None:
        self.pre += 1

    def post_iteration(self, state: SolveState) -> ComputePlan | None:
        self.post += 1
        assert state.bound <= state.info["lp_bound"] and state.info["oracle"] is not None
        assert state.method == "lagrangian" and state.phase == "iteration"
        if self.interrupt_at is not None and state.iteration + 1 >= self.interrupt_at:
            raise KeyboardInterrupt
        plan = ComputePlan.empty(state.inst)
        mand = np.flatnonzero(state.inst.jobs.mandatory)
        return None if mand.size else plan

    def post_solve(self, state: SolveState, solution) -> None:
        self.done = solution


def test_hooks_and_interrupt():
    inst = _tiny(6)
    inst.jobs.mandatory[:] = False
    hooks = _Recorder()
    sol = solve_lagrangian(inst, iteration_limit=3, hooks=hooks, progress=lambda line: None, close=False)
    assert hooks.pre == 3 and hooks.post == 3 and hooks.done is sol
    assert check_solution(inst, sol).ok

    stop = _Recorder(interrupt_at=2)
    sol = solve_lagrangian(inst, iteration_limit=10, hooks=stop, progress=lambda line: None, close=False)
    assert sol.status.value == "interrupted"
    assert check_solution(inst, sol).ok


def test_progress_events():
    inst = _tiny(8)
    events: list[ProgressEvent] = []
    sol = solve_lagrangian(inst, iteration_limit=2, progress=events.append, close=False)
    assert all(isinstance(e, ProgressEvent) for e in events)
    assert events[0].phase == "lp" and events[0].message == "lp phase"  # a phase is named when it starts
    assert "LP relaxation bound" in events[1].message
    its = [e for e in events if e.phase == "iteration" and e.message.startswith("L ")]
    assert [e.iteration for e in its] == [1, 2] and all("L " in e.message and "sub" in e.message for e in its)
    assert events[-1].phase == "done" and events[-1].primal == sol.objective and events[-1].bound == sol.bound
    seconds = [e.seconds for e in events]
    assert seconds == sorted(seconds)
    assert all("inf" not in e.format() and "-0.0" not in e.format() for e in events)


def test_closing_phase_reaches_the_optimum_with_a_valid_bound():
    inst = _tiny(9, periods=8, jobs=5)
    opt = _optimum(inst)
    events: list[ProgressEvent] = []
    sol = solve_lagrangian(inst, iteration_limit=2, gap=1e-6, close=True, progress=events.append)
    _assert_valid(inst, sol, opt)
    assert sol.extra["gap_before_closing"] > 1e-6, "the instance must leave a gap for the closing phase to close"
    assert sol.extra["closing_seconds"] > 0 and any(e.phase == "closing" for e in events)
    assert sol.gap <= 1e-6 and math.isclose(sol.objective, opt, rel_tol=1e-6, abs_tol=1e-6)
    assert np.all(np.diff(sol.trace.seconds) >= 0)
    assert np.all(np.diff(sol.trace.dual) <= 0) and np.all(np.diff(sol.trace.primal) >= 0)


def test_closing_phase_off_and_auto():
    inst = _tiny(9, periods=8, jobs=5)
    off = solve_lagrangian(inst, iteration_limit=2, gap=1e-6, close=False, progress=lambda line: None)
    assert off.extra["closing_seconds"] == 0.0
    auto = solve_lagrangian(inst, iteration_limit=2, gap=1e-6, progress=lambda line: None)  # small: auto closes
    assert auto.extra["closing_seconds"] > 0.0 and auto.gap <= off.gap
    with pytest.raises(InputError, match="close_share"):
        solve_lagrangian(inst, close=True, close_share=1.0)


def test_site_abs_gap_keeps_the_bound_valid_and_does_not_carry_over():
    """A site solve with an absolute gap limit: its bound is above the exact optimum, its solution below, the
    two within the limit; the next solve without it (Lagrangian or allocation mode) is exact again."""
    inst = generate(sites=3, periods=12, jobs=10, classes=2, seed=4)
    lay = make_layout(inst)
    mu, pi, lam = lay.split(lay.project(np.zeros(lay.size)))
    for site in range(inst.n_sites):
        exact = SiteMILP(inst, site).solve(mu, pi, lam)
        model = SiteMILP(inst, site)
        loose_gap = 0.05 * abs(exact.value)
        loose = model.solve(mu, pi, lam, abs_gap=loose_gap)
        slack = 1e-6 * max(1.0, abs(exact.value))
        assert loose.bound >= exact.value - slack and loose.value <= exact.bound + slack
        assert loose.bound - loose.value <= loose_gap + slack
        again = model.solve(mu, pi, lam)
        assert (again.value, again.bound) == (exact.value, exact.bound)
        model.solve(mu, pi, lam, abs_gap=loose_gap)
        alloc = model.solve_allocated(np.ones(inst.n_jobs, bool), np.zeros(inst.n_jobs, bool),
                                      np.full((inst.n_classes, inst.n_periods), np.inf), math.inf)
        fresh = SiteMILP(inst, site).solve_allocated(np.ones(inst.n_jobs, bool), np.zeros(inst.n_jobs, bool),
                                                     np.full((inst.n_classes, inst.n_periods), np.inf), math.inf)
        assert alloc.status == fresh.status == "optimal" and alloc.bound == fresh.bound


def test_site_abs_gap_is_a_share_of_the_open_gap():
    from carbonsched.decomp.lagrangian import site_abs_gap

    assert site_abs_gap(10.0, 4, 0.2) == pytest.approx(0.5)
    assert site_abs_gap(10.0, 4, 0.2, predicted=2.0) == pytest.approx(0.1)  # the bundle's prediction is smaller
    assert site_abs_gap(math.inf, 4) == 0.0  # no incumbent or no bound yet: exact
    assert site_abs_gap(math.nan, 4) == 0.0
    assert site_abs_gap(10.0, 4, 0.0) == 0.0
    with pytest.raises(InputError, match="site_gap_share"):
        solve_lagrangian(_tiny(1), site_gap_share=1.0)


def test_energy_only_plan_when_the_lp_is_not_solved(monkeypatch):
    """The LP warm start out of time leaves no LP plan: the run starts from the energy-only plan, and its bound
    (from zero multipliers) stays valid."""
    import carbonsched.decomp.lagrangian as lagrangian

    def unsolved(inst, layout, time_limit=None, suggest_routing=None):
        return lagrangian.LPRelaxation(bound=math.inf, z=layout.project(np.zeros(layout.size)), seconds=0.0)

    monkeypatch.setattr(lagrangian, "lp_relaxation", unsolved)
    inst = _tiny(6, periods=8, jobs=5)
    opt = _optimum(inst)
    lines: list[ProgressEvent] = []
    sol = solve_lagrangian(inst, iteration_limit=3, primal="parallel", close=False, progress=lines.append)
    assert any(e.message == "energy-only plan scored" for e in lines)
    report = check_solution(inst, sol)
    assert report.ok, report.format()
    slack = 1e-6 * max(1.0, abs(opt))
    assert np.all(sol.trace.dual >= opt - slack) and sol.objective <= opt + slack


@pytest.mark.parametrize("priced", [False, True])
def test_the_lp_gets_a_larger_share_when_its_routing_is_priced(monkeypatch, priced):
    import carbonsched.decomp.lagrangian as lagrangian
    import carbonsched.formulations.lp_relaxation as lpr

    if priced:
        monkeypatch.setattr(lpr, "ROUTING_PRICING_MIN", 0)
    limits = []
    real = lagrangian.lp_relaxation

    def spy(inst, layout, time_limit=None, suggest_routing=None):
        limits.append(time_limit)
        return real(inst, layout, time_limit=time_limit, suggest_routing=suggest_routing)

    monkeypatch.setattr(lagrangian, "lp_relaxation", spy)
    inst = _tiny(6, periods=8, jobs=5)
    solve_lagrangian(inst, iteration_limit=1, primal="parallel", close=False, time_limit=100.0,
                     progress=lambda line: None)
    share = lagrangian.LP_SHARE_ROUTING if priced else lagrangian.LP_SHARE_PARALLEL
    assert len(limits) == 1 and limits[0] == pytest.approx(share * 100.0, abs=1.0)


def test_site_subproblem_depends_only_on_its_arguments():
    """A site model re-solved in place after other solves equals a fresh model given the same start.

    The parallel layer may move a site to another worker, which builds a fresh model; SCIP must not carry
    solutions from earlier solves (limits/maxorigsol = 0), and the start travels with the call.
    """
    inst = generate(sites=3, periods=12, jobs=8, classes=2, seed=11)
    lay = make_layout(inst)
    rng = np.random.default_rng(1)
    zs = [lay.split(lay.project(rng.normal(size=lay.size) * lay.scale * 0.2)) for _ in range(4)]
    for site in range(inst.n_sites):
        kept = SiteMILP(inst, site)
        start = None
        for z in zs:
            here = kept.solve(*z, start=start)
            fresh = SiteMILP(inst, site).solve(*z, start=start)
            assert (here.value, here.bound, here.nodes) == (fresh.value, fresh.bound, fresh.nodes)
            assert np.array_equal(here.job_start, fresh.job_start) and np.array_equal(here.served, fresh.served)
            assert here.values.shape == (kept.am.n_vars,)
            start = here.values


def test_restricted_milp_over_the_pool():
    from carbonsched.decomp.lagrangian import Recovery, lp_relaxation
    from carbonsched.formulations.evaluate import evaluate

    inst = generate(sites=3, periods=8, jobs=6, classes=2, seed=7)
    opt = _optimum(inst)
    lay = make_layout(inst)
    lp = lp_relaxation(inst, lay)
    assert lp.pool is not None and lp.pool.any()
    rec = Recovery(inst, Hub(inst, "lagrangian", EngineOptions()), pool=lp.pool)
    first = evaluate(inst, lp.plan, method="lagrangian")
    sol = rec.search_pool(first, time_limit=30)
    best = first if sol is None else sol
    assert best.objective >= first.objective and best.objective <= opt + TOL * max(1.0, abs(opt))
    report = check_solution(inst, best)
    assert report.ok, report.format()
    chosen = rec.pl.index_of(np.arange(inst.n_jobs), best.job_site, best.job_start)
    assert rec.pool[chosen[chosen >= 0]].all()  # only pool placements are used
    assert rec.search_pool(best, time_limit=30) is None  # unchanged pool: no second search
    # the whole placement set as the pool: the restricted MILP is the joint model and finds the optimum
    rec.pool[:] = True
    full = rec.search_pool(best, time_limit=60, growth=0.0)
    assert full is None or check_solution(inst, full).ok
    assert (full or best).objective == pytest.approx(opt, rel=2e-4)
    rec.close()


def test_placement_index_lookup():
    from carbonsched.formulations.joint import enumerate_placements

    inst = generate(sites=3, periods=8, jobs=6, classes=2, seed=7)
    pl = enumerate_placements(inst)
    rng = np.random.default_rng(0)
    pick = rng.choice(pl.size, size=min(20, pl.size), replace=False)
    assert np.array_equal(pl.index_of(pl.job[pick], pl.site[pick], pl.start[pick]), pick)
    assert pl.index_of(np.array([0]), np.array([0]), np.array([-1]))[0] == -1  # unplaced
    assert pl.index_of(np.array([0]), np.array([0]), np.array([inst.n_periods + 5]))[0] == -1  # no such start


def test_site_chunks_balance_the_load():
    from carbonsched.decomp.parallel import SitePool

    inst = _tiny(4)
    with SitePool(inst, ParallelConfig(n_jobs=2)) as pool:
        sites = list(range(10))
        assert pool.chunks(sites) == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]  # no estimate: contiguous
        cost = {i: float(c) for i, c in enumerate([0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 3.0, 0.4, 3.2, 2.8])}
        chunks = pool.chunks(sites, cost)
        assert sorted(s for c in chunks for s in c) == sites
        assert chunks == pool.chunks(sites, cost)  # deterministic
        loads = [sum(cost[s] for s in c) for c in chunks]
        assert loads == sorted(loads, reverse=True)  # heaviest chunk dispatched first
        assert len(chunks) <= 8 and max(loads) == pytest.approx(3.2)  # no chunk above the heaviest site


def test_lp_reduced_costs_certify_the_lp_optimum():
    from carbonsched.formulations.lp_relaxation import solve_lp_relaxation

    inst = generate(sites=3, periods=8, jobs=6, classes=2, seed=7)
    lp = solve_lp_relaxation(inst)
    _, _, _, lb, ub, obj = lp.jm.am.recorded_arrays()
    x, rc = lp.values, lp.reduced_costs
    tol = 1e-6 * max(1.0, float(np.abs(obj).max()))
    at_lb, at_ub = np.isclose(x, lb, atol=1e-7), np.isclose(x, ub, atol=1e-7)
    assert np.all(rc[at_lb & ~at_ub] <= tol)  # raising a variable at its lower bound cannot improve Z
    assert np.all(rc[at_ub & ~at_lb] >= -tol)
    assert np.all(np.abs(rc[~at_lb & ~at_ub]) <= tol)
    assert not np.allclose(rc, 0.0)  # the test has something to check


def test_site_columns_suggested_to_the_lp_rounds_come_with_a_valid_bound(monkeypatch):
    """The LP rounds get the routing the site subproblems use at each round's duals; that evaluation's
    Lagrangian bound is valid, and it is the hub's when it is the best so far."""
    from carbonsched.decomp.lagrangian import LagrangianAlgorithm

    routing_priced_from_afar(monkeypatch)
    inst = generate(sites=12, periods=8, jobs=10, classes=4, seed=3)
    opt = _optimum(inst)
    seen = []
    real = LagrangianAlgorithm._routing_from_sites

    def spy(self, hub, round_lp, left):
        served = real(self, hub, round_lp, left)
        seen.append((round_lp.pricing_rounds, served, self.lagrangian_bound, hub.bound))
        return served

    monkeypatch.setattr(LagrangianAlgorithm, "_routing_from_sites", spy)
    sol = solve_lagrangian(inst, iteration_limit=3, progress=lambda line: None, close=False)
    _assert_valid(inst, sol, opt)
    assert seen and [r for r, *_ in seen] == list(range(1, len(seen) + 1))
    y_exists = build_joint_model(inst).y >= 0
    for _, served, bound, hub_bound in seen:
        assert served.shape == y_exists.shape and served.any() and not (served & ~y_exists).any()
        assert bound >= opt - 1e-6 * max(1.0, abs(opt)) and hub_bound <= bound + 1e-9


def test_routing_priced_warm_start_keeps_bounds_valid_and_the_router_restricted(monkeypatch, routers_made):
    """With the routing columns priced into the LP (the default at 1,000 sites), the LP bound and every trace
    point stay valid, and the router re-routes plans over the columns the LP priced in only."""
    from carbonsched.decomp.lagrangian import LagrangianAlgorithm

    routing_priced_from_afar(monkeypatch, stop_gap=0.05)  # stopped early: the router must keep to the LP's columns
    # without the sites' suggested columns, which on 12 sites complete the LP's routing (tested above)
    monkeypatch.setattr(LagrangianAlgorithm, "_routing_from_sites",
                        lambda self, hub, round_lp, left: np.zeros(round_lp.jm.y.shape, dtype=bool))
    inst = generate(sites=12, periods=8, jobs=10, classes=4, seed=3)
    opt = _optimum(inst)
    sol = solve_lagrangian(inst, iteration_limit=4, progress=lambda line: None, close=False)
    _assert_valid(inst, sol, opt)
    made = routers_made
    assert made and all(r is not None for r in made)
    y_exists = build_joint_model(inst).y >= 0
    assert (y_exists & ~made[0]).any() and not (made[0] & ~y_exists).any()
