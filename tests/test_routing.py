"""The routing LP of a plan (placements fixed), kept alive between plans: decomp.rounding.PlacementRouter."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from carbonsched.decomp.rounding import PlacementRouter, round_fractional_plan
from carbonsched.formulations.baselines import energy_only_plan
from carbonsched.formulations.checker import check_solution
from carbonsched.formulations.evaluate import evaluate
from carbonsched.formulations.lp_relaxation import solve_lp_relaxation
from carbonsched.formulations.monolithic import solve_monolithic
from carbonsched.formulations.plan import ComputePlan
from carbonsched.instances.generator import generate


@pytest.fixture(scope="module", params=[False, True], ids=["budget", "binding"])
def case(request):
    inst = generate(sites=5, periods=12, seed=4)
    if request.param:  # 70 % of the budget: the carbon row binds
        inst = dataclasses.replace(inst, carbon_budget_t=0.7 * inst.carbon_budget_t)
    mono = solve_monolithic(inst, gap=1e-6)
    lp = solve_lp_relaxation(inst)
    rounded = round_fractional_plan(inst, lp.jm.placements, lp.jm.x, lp.jm.y, lp.values)
    return inst, mono, [ComputePlan.from_solution(mono), rounded, energy_only_plan(inst)]


def test_a_kept_router_routes_each_plan_as_a_fresh_one_would(case) -> None:
    inst, mono, plans = case
    router = PlacementRouter(inst)
    for plan in plans + plans[::-1]:  # each plan from another plan's basis
        routed = router.route(plan)
        fresh = PlacementRouter(inst)
        again = fresh.route(plan)
        assert routed is not None and again is not None
        assert router.value == pytest.approx(fresh.value, rel=1e-7, abs=1e-4)
        # the routing LP relaxes only the dispatch of these placements: never above the LP relaxation's bound
        assert router.value <= solve_lp_relaxation(inst).bound + 1e-6 * abs(router.value)
        np.testing.assert_array_equal(routed.job_site, plan.job_site)
        np.testing.assert_array_equal(routed.job_start, plan.job_start)
        sol = evaluate(inst, routed)
        assert check_solution(inst, sol).n_violations == 0
        assert sol.objective <= mono.bound + 1e-6 * abs(mono.bound)
        # the routing LP relaxes the routed plan's exact scoring: its value bounds the plan's Z
        assert sol.objective <= router.value + 1e-6 * abs(router.value)


def test_routing_the_optimum_keeps_its_value(case) -> None:
    inst, mono, plans = case
    routed = PlacementRouter(inst).route(plans[0])
    sol = evaluate(inst, routed)
    assert check_solution(inst, sol).n_violations == 0
    # on this instance the LP's routing at the optimal placements is the optimum's own (measured: equal to 1e-12)
    assert sol.objective == pytest.approx(mono.objective, rel=1e-6)


def test_a_router_out_of_time_returns_none(case) -> None:
    inst, _, plans = case
    router = PlacementRouter(inst)
    assert router.route(plans[1], time_limit=0.0) is None
    assert np.isnan(router.value)
    assert router.route(plans[1]) is not None  # and it still routes afterwards
