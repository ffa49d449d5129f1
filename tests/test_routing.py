"""The routing LP of a plan (placements fixed), kept alive between plans (decomp.rounding.PlacementRouter), and the
placement moves it prices (decomp.moves)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from carbonsched.decomp.moves import improve_by_moves, propose_moves, route_and_improve
from carbonsched.decomp.rounding import PlacementRouter, round_fractional_plan
from carbonsched.formulations.baselines import energy_only_plan
from carbonsched.formulations.checker import check_solution
from carbonsched.formulations.evaluate import evaluate
from carbonsched.formulations.lp_relaxation import solve_lp_relaxation
from carbonsched.formulations.monolithic import solve_monolithic
from carbonsched.formulations.plan import ComputePlan, check_plan, gpus_beside_jobs
from carbonsched.instances.generator import generate


@pytest.fixture(scope="module", params=[False, True], ids=["budget", "binding"])
def case(request):
    inst = generate(sites=5, periods=12, seed=4)
    if request.param:  # 70 % of the budget: the carbon row binds
        inst = dataclasses.replace(inst, carbon_budget_t=0.7 * inst.carbon_budget_t)
    mono = solve_monolithic(inst, gap=1e-6)
    lp = solve_lp_relaxation(inst)
    rounded = round_fractional_plan(inst, lp.jm.placements, lp.jm.x, lp.jm.y, lp.values)
    plans = {"optimum": ComputePlan.from_solution(mono), "rounded": rounded, "energy-only": energy_only_plan(inst)}
    return inst, mono, lp, plans


def test_a_kept_router_routes_each_plan_as_a_fresh_one_would(case) -> None:
    inst, mono, lp, plans = case
    router = PlacementRouter(inst)
    for plan in list(plans.values()) + list(plans.values())[::-1]:  # each plan from another plan's basis
        routed = router.route(plan)
        fresh = PlacementRouter(inst)
        again = fresh.route(plan)
        assert routed is not None and again is not None
        assert router.value == pytest.approx(fresh.value, rel=1e-7, abs=1e-4)
        # the routing LP relaxes only the dispatch of these placements: never above the LP relaxation's bound
        assert router.value <= lp.bound + 1e-6 * abs(router.value)
        np.testing.assert_array_equal(routed.job_site, plan.job_site)
        np.testing.assert_array_equal(routed.job_start, plan.job_start)
        sol = evaluate(inst, routed)
        assert check_solution(inst, sol).n_violations == 0
        assert sol.objective <= mono.bound + 1e-6 * abs(mono.bound)
        # the routing LP relaxes the routed plan's exact scoring: its value bounds the plan's Z
        assert sol.objective <= router.value + 1e-6 * abs(router.value)


def test_routing_the_optimum_keeps_its_value(case) -> None:
    inst, mono, _, plans = case
    routed = PlacementRouter(inst).route(plans["optimum"])
    sol = evaluate(inst, routed)
    assert check_solution(inst, sol).n_violations == 0
    # on this instance the LP's routing at the optimal placements is the optimum's own (measured: equal to 1e-12)
    assert sol.objective == pytest.approx(mono.objective, rel=1e-6)


def test_a_restricted_router_routes_only_where_allowed(case) -> None:
    """A router over some routing columns: feasible routes that use only them, a value between the routed
    plan's exact Z and the full router's; over every column it is the full router."""
    inst, mono, lp, plans = case
    y_exists = lp.jm.y >= 0
    allowed = y_exists & (np.arange(inst.n_sites)[None, :, None] % 2 == 0)  # even sites only
    assert allowed.any() and (y_exists & ~allowed).any()
    full, restricted = PlacementRouter(inst), PlacementRouter(inst, routing=allowed)
    everything = PlacementRouter(inst, routing=y_exists)
    for plan in plans.values():
        routed = restricted.route(plan)
        assert routed is not None and full.route(plan) is not None and everything.route(plan) is not None
        assert np.all(routed.served[~allowed] == 0.0)
        sol = evaluate(inst, routed)
        assert check_solution(inst, sol).n_violations == 0
        assert sol.objective <= restricted.value + 1e-6 * abs(restricted.value)
        assert restricted.value <= full.value + 1e-6 * abs(full.value)
        assert everything.value == pytest.approx(full.value, rel=1e-7, abs=1e-4)
    found = improve_by_moves(restricted, plans["energy-only"])
    assert found is not None and found.value >= found.start_value
    assert np.all(found.plan.served[~allowed] == 0.0)
    assert check_solution(inst, evaluate(inst, found.plan)).n_violations == 0


def test_a_router_out_of_time_returns_none(case) -> None:
    inst, _, _, plans = case
    router = PlacementRouter(inst)
    assert router.route(plans["rounded"], time_limit=0.0) is None
    assert np.isnan(router.value)
    assert router.route(plans["rounded"]) is not None  # and it still routes afterwards


# ---------------------------------------------------------------- placement moves priced by the routing LP
def _with(plan: ComputePlan, job: int, site: int, start: int) -> ComputePlan:
    job_site, job_start = plan.job_site.copy(), plan.job_start.copy()
    job_site[job], job_start[job] = site, start
    return ComputePlan(job_site, job_start, plan.served)


def test_prices_bound_what_a_move_gains(case) -> None:
    """The routing LP's value is concave in the fixed placements and the prices are a supergradient: no drop,
    addition or move gains more than its price says."""
    inst, _, _, plans = case
    router = PlacementRouter(inst)
    plan = plans["rounded"]
    assert router.route(plan) is not None
    base, gain, pl = router.value, router.placement_gain.copy(), router.placements
    free = gpus_beside_jobs(inst, plan.job_site, plan.job_start)
    assert np.allclose(free, plan.free_gpus(inst) + plan.served.sum(axis=0))
    current = (plan.job_site[pl.job] == pl.site) & (plan.job_start[pl.job] == pl.start)
    here = np.zeros(inst.n_jobs)
    here[pl.job[current]] = gain[current]
    tried = {"drop": 0, "add": 0, "move": 0}
    for p in range(pl.size):
        j, i, s = int(pl.job[p]), int(pl.site[p]), int(pl.start[p])
        d, g = int(inst.jobs.duration[j]), float(inst.jobs.gpus[j])
        if current[p]:
            if inst.jobs.mandatory[j] or tried["drop"] >= 8:
                continue
            kind, trial, price = "drop", _with(plan, j, -1, -1), -gain[p]
        else:
            placed = plan.job_site[j] >= 0
            if placed and plan.job_site[j] == i:
                continue  # keep the fit check simple: moves to other sites only
            if free[i, s:s + d].min() < g:
                continue
            kind = "move" if placed else "add"
            if tried[kind] >= 8:
                continue
            trial, price = _with(plan, j, i, s), gain[p] - here[j]
        assert router.route(trial) is not None
        assert router.value - base <= price + 1e-6 * abs(base), (kind, j, i, s)
        tried[kind] += 1
    assert tried["drop"] > 0 and tried["move"] > 0


@pytest.mark.parametrize("start", ["rounded", "energy-only"])
def test_moves_raise_the_routing_value_and_keep_the_plan_feasible(case, start) -> None:
    inst, mono, lp, plans = case
    router = PlacementRouter(inst)
    found = improve_by_moves(router, plans[start])
    assert found is not None
    assert found.value >= found.start_value
    if start == "energy-only":  # a carbon- and price-blind plan: the prices find better places for its jobs
        assert found.value > found.start_value + 1e-3 * abs(found.start_value)
        assert found.accepted > 0 and found.moved > 0
    check_plan(inst, found.plan)
    assert (found.plan.job_site[inst.jobs.mandatory] >= 0).all()
    sol = evaluate(inst, found.plan)
    assert check_solution(inst, sol).n_violations == 0
    # the routing LP relaxes the plan's exact scoring, and no plan beats the optimum
    assert sol.objective <= found.value + 1e-6 * abs(found.value)
    assert found.value <= lp.bound + 1e-6 * abs(lp.bound)
    assert sol.objective <= mono.bound + 1e-6 * abs(mono.bound)
    # the value is the routing LP's at the plan found
    again = PlacementRouter(inst)
    assert again.route(found.plan) is not None
    assert again.value == pytest.approx(found.value, rel=1e-7, abs=1e-4)


def test_a_search_without_a_time_limit_is_deterministic(case) -> None:
    inst, _, _, plans = case
    first = improve_by_moves(PlacementRouter(inst), plans["energy-only"])
    second = route_and_improve(inst, plans["energy-only"])
    np.testing.assert_array_equal(first.plan.job_site, second.job_site)
    np.testing.assert_array_equal(first.plan.job_start, second.job_start)
    np.testing.assert_allclose(first.plan.served, second.served, rtol=0, atol=1e-9)


def test_limits_end_the_search(case) -> None:
    inst, _, _, plans = case
    router = PlacementRouter(inst)
    assert improve_by_moves(router, plans["energy-only"], time_limit=0.0) is None  # not even routed
    one = improve_by_moves(router, plans["energy-only"], max_solves=1)
    assert one is not None and one.solves == 1 and one.accepted == 0
    assert one.value == pytest.approx(one.start_value)


def test_proposed_moves_fit_and_touch_disjoint_site_periods(case) -> None:
    inst, _, _, plans = case
    router = PlacementRouter(inst)
    plan = plans["energy-only"]
    assert router.route(plan) is not None
    tabu = np.zeros(router.placements.size + inst.n_jobs, dtype=bool)
    job, site, start, keys = propose_moves(inst, router, plan, router.placement_gain, tabu, 16, 0.0)
    assert job.size > 0 and np.unique(job).size == job.size
    touched = np.zeros((inst.n_sites, inst.n_periods), dtype=int)
    for j, i, s in zip(job, site, start, strict=True):
        d = int(inst.jobs.duration[j])
        mine = np.zeros_like(touched, dtype=bool)  # the job's old run and its new one
        if i >= 0:
            mine[i, s:s + d] = True
        if plan.job_site[j] >= 0:
            mine[plan.job_site[j], plan.job_start[j]:plan.job_start[j] + d] = True
        touched += mine
        assert i >= 0 or not inst.jobs.mandatory[j]  # mandatory jobs are moved, never dropped
    assert touched.max() <= 1  # no site-period is touched by two moves
    moved = plan.job_site.copy(), plan.job_start.copy()
    moved[0][job], moved[1][job] = site, start
    check_plan(inst, ComputePlan(moved[0], moved[1], np.zeros_like(plan.served)))
    # a tabu move is not proposed again
    tabu[keys[0]] = True
    job2, _, _, keys2 = propose_moves(inst, router, plan, router.placement_gain, tabu, 16, 0.0)
    assert keys[0] not in keys2
