"""The seven strategies on random small instances: feasible, checked, never above the joint optimum."""

from __future__ import annotations

import numpy as np
import pytest
from carbonsched.formulations.baselines import STRATEGIES, ablate, energy_only_plan, run_strategy
from carbonsched.formulations.checker import check_solution
from carbonsched.formulations.evaluate import evaluate
from carbonsched.formulations.plan import ComputePlan, PlanError
from carbonsched.instances import generate, make_instance

TOL = 1e-6


@pytest.fixture(scope="module", params=[0, 1, 2])
def small_instance(request):
    # 3 sites, 8 periods: small enough to solve every strategy to optimality in seconds.
    return generate(sites=3, periods=8, jobs=5, classes=3, seed=request.param)


@pytest.fixture(scope="module")
def strategy_results(small_instance):
    return {name: run_strategy(small_instance, name, gap=0.0) for name in STRATEGIES}


def test_every_strategy_passes_the_checker(small_instance, strategy_results):
    for name, sol in strategy_results.items():
        report = check_solution(small_instance, sol, carbon=(name != "no-carbon"))
        assert report.ok, f"{name}: {report.format()}"
        assert sol.method == name


def test_no_strategy_beats_the_joint_optimum(small_instance, strategy_results):
    joint = strategy_results["joint"]
    assert joint.status.value == "optimal" and joint.certified
    assert joint.bound >= joint.objective - TOL * max(1.0, abs(joint.objective))
    for name, sol in strategy_results.items():
        if name == "no-carbon":
            continue
        assert sol.objective <= joint.objective + TOL * max(1.0, abs(joint.objective)), name
        assert not sol.certified or name == "joint"


def test_no_carbon_ignores_the_budget_but_pays_the_carbon_price(small_instance, strategy_results):
    sol = strategy_results["no-carbon"]
    assert sol.breakdown["carbon_cost"] == pytest.approx(-small_instance.carbon_price * sol.emissions_t)
    assert sol.emissions_t >= strategy_results["joint"].emissions_t - 1e-6


def test_evaluating_the_joint_plan_gives_the_joint_optimum(small_instance, strategy_results):
    joint = strategy_results["joint"]
    ev = evaluate(small_instance, ComputePlan.from_solution(joint))
    assert check_solution(small_instance, ev).ok
    assert ev.objective == pytest.approx(joint.objective, rel=1e-6, abs=1e-4)


def test_ablations_change_only_what_they_name(small_instance):
    inst = small_instance
    nb = ablate(inst, "no-battery")
    assert (nb.sites.bat_power_mw == 0).all() and (nb.sites.gen_max_mw == inst.sites.gen_max_mw).all()
    co = ablate(inst, "compute-only")
    assert (co.sites.gen_max_mw == 0).all() and (co.sites.grid_export_mw == 0).all()
    assert (co.sites.grid_import_mw == inst.sites.grid_import_mw).all()
    nc = ablate(inst, "no-carbon")
    assert np.isinf(nc.carbon_budget_t) and nc.carbon_price == 0
    nr = ablate(inst, "no-routing")
    assert (nr.slo_mask().sum(axis=1) == np.minimum(inst.slo_mask().sum(axis=1), 1)).all()
    # the original is untouched
    assert (inst.sites.bat_power_mw == generate(sites=3, periods=8, jobs=5, classes=3,
                                                seed=int(inst.extra_attrs["seed"])).sites.bat_power_mw).all()


def test_energy_only_rule_follows_the_spec_order():
    # One site of 10 GPUs, 4 periods. Order: mandatory first (job 2), then earliest deadline (job 1
    # before job 0), then index. Job 2 (6 GPUs, 2 periods) takes start 0; job 1 (5 GPUs, deadline 2)
    # fits nowhere in [0, 2) next to it and is skipped; job 0 (4 GPUs) takes start 0 beside job 2.
    # Inference then fills what is free, by increasing latency: site order is irrelevant with one site.
    inst = make_instance(
        4, 2, n_jobs=3, n_classes=1,
        sites=dict(gpus=[10, 3]),
        jobs=dict(gpus=[4, 5, 6], duration=[2, 2, 2], deadline=[4, 2, 4], mandatory=[False, False, True],
                  allowed=[[True, False], [True, False], [True, False]]),
        inference=dict(demand=[[5, 5, 1, 1]], latency_ms=[[20.0, 10.0]], latency_slo_ms=30.0),
    )
    plan = energy_only_plan(inst)
    assert plan.job_site.tolist() == [0, -1, 0]
    assert plan.job_start.tolist() == [0, -1, 0]
    # Site 1 (10 ms) is filled first: 3 GPUs, then site 0 gets the rest where it has room.
    assert plan.served[0, 1].tolist() == [3, 3, 1, 1]
    assert plan.served[0, 0].tolist() == [0, 0, 0, 0]  # site 0 is full in periods 0-1 and nothing is left after
    sol = evaluate(inst, plan, method="energy-only")
    assert check_solution(inst, sol).ok
    assert sol.unserved.tolist() == [[2, 2, 0, 0]]


def test_a_broken_plan_is_refused_by_evaluate():
    inst = make_instance(2, 1, n_jobs=1, sites=dict(gpus=4), jobs=dict(gpus=8, duration=1))
    with pytest.raises(PlanError, match="GPU capacity"):
        evaluate(inst, ComputePlan([0], [0], np.zeros((0, 1, 2))))
