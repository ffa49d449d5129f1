"""Exact scoring of a plan by the carbon-price search (formulations.evaluate) against the joint energy MILP."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from carbonsched.decomp.parallel import ParallelConfig, SitePool
from carbonsched.formulations import ComputePlan, check_solution, evaluate
from carbonsched.formulations.baselines import energy_only_plan
from carbonsched.formulations.energy import it_power_mw
from carbonsched.formulations.evaluate import score_with_carbon_price, site_energy_model
from carbonsched.formulations.monolithic import solve_monolithic
from carbonsched.formulations.scip_run import configure
from carbonsched.instances import generate

REL = 1e-6


def _binding(inst, share: float = 0.7):
    """``inst`` with its budget at ``share`` of the emissions of the energy-only plan's unconstrained dispatch."""
    free = evaluate(dataclasses.replace(inst, carbon_budget_t=math.inf), energy_only_plan(inst))
    return dataclasses.replace(inst, carbon_budget_t=round(share * free.emissions_t, 3))


CASES = {
    "gen3x12-s0": lambda: _binding(generate(sites=3, periods=12, seed=0)),
    "gen4x12-s1": lambda: _binding(generate(sites=4, periods=12, seed=1)),
    "gen5x12-s2": lambda: _binding(generate(sites=5, periods=12, seed=2), 0.8),
    # the shipped paper instance (load_default) equals generate("paper", seed=0): tests/test_generator.py
    "paper": lambda: _binding(generate("paper", seed=0)),
}
_cache: dict = {}


def _case(name):
    if name not in _cache:
        _cache[name] = CASES[name]()
    return _cache[name]


def _plan(inst, kind: str) -> ComputePlan:
    if kind == "energy-only":
        return energy_only_plan(inst)
    return ComputePlan.from_solution(solve_monolithic(inst, gap=0.0))


def _ok(inst, sol):
    report = check_solution(inst, sol)
    assert report.ok, report
    return sol


def _joint_energy_value(inst, plan) -> float:
    am, _, _ = site_energy_model(inst, it_power_mw(inst, plan.busy_gpus(inst)))
    configure(am.model, time_limit=None, gap=0.0)
    am.model.optimize()
    return float(am.model.getObjVal())


@pytest.mark.parametrize("kind", ["energy-only", "optimum"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_price_search_scores_plans_exactly(name, kind):
    inst = _case(name)
    plan = _plan(inst, kind)
    ref = _ok(inst, evaluate(inst, plan, exact_joint=True))
    new = _ok(inst, evaluate(inst, plan, exact_joint=False))
    tol = REL * max(1.0, abs(ref.objective))
    assert new.objective <= ref.objective + tol  # a feasible dispatch never beats the optimum
    assert new.extra["proven_exact"] and new.status.value == "optimal"
    assert abs(new.objective - ref.objective) <= tol, (new.objective, ref.objective, new.extra)
    assert new.extra["certificate_gap"] <= REL * max(1.0, abs(ref.objective))


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_search_bound_is_valid_and_the_dispatch_feasible_without_fallback(name):
    inst = _case(name)
    plan = energy_only_plan(inst)
    load = it_power_mw(inst, plan.busy_gpus(inst))
    opt = _joint_energy_value(inst, plan)
    score = score_with_carbon_price(inst, load, joint_fallback=False)
    tol = REL * max(1.0, abs(opt))
    assert score.method in ("price", "repair")  # the budget binds: λ = 0 alone does not fit
    assert score.bound >= opt - tol and score.value <= opt + tol
    em = inst.period_hours * (inst.sites.grid_co2 * score.energy["grid_import"]).sum() \
        + inst.period_hours * (inst.sites.gen_co2[:, None] * score.energy["gen"]).sum()
    assert em <= inst.carbon_budget_t + 1e-6 * max(1.0, inst.carbon_budget_t)
    assert score.proven_exact == (score.value >= score.bound - tol)


def test_a_budget_that_does_not_bind_is_scored_site_by_site():
    inst = _case("paper")
    loose = dataclasses.replace(inst, carbon_budget_t=10 * inst.carbon_budget_t)
    plan = energy_only_plan(loose)
    new = _ok(loose, evaluate(loose, plan, exact_joint=False))
    ref = _ok(loose, evaluate(loose, plan, exact_joint=True))
    assert new.extra["scoring"] == "separable" and new.extra["price_rounds"] == 1
    assert abs(new.objective - ref.objective) <= REL * max(1.0, abs(ref.objective))


@pytest.mark.parametrize("name", ["gen4x12-s1", "paper"])
def test_scoring_is_the_same_on_two_workers_and_in_process(name):
    inst = _case(name)
    plan = energy_only_plan(inst)
    one = _ok(inst, evaluate(inst, plan, exact_joint=False))
    with SitePool(inst, ParallelConfig(n_jobs=2)) as pool:
        two = _ok(inst, evaluate(inst, plan, pool=pool, exact_joint=False))
        again = _ok(inst, evaluate(inst, plan, pool=pool, exact_joint=False))  # site models re-used in the workers
    for sol in (two, again):
        assert sol.extra == one.extra
        assert np.isclose(sol.objective, one.objective, rtol=1e-12, atol=1e-9)


def test_balance_power_absorbs_a_residual_without_raising_emissions():
    from carbonsched.formulations.energy import balance_power, idle_energy_arrays, it_power_mw

    inst = generate(sites=3, periods=12, seed=0)
    S, T = inst.n_sites, inst.n_periods
    busy = np.zeros((S, T))
    load = it_power_mw(inst, busy)
    facility = inst.sites.pue * load
    energy = idle_energy_arrays(inst)
    energy["grid_import"][:] = facility
    energy["renewable_used"][0, 0] = 2e-6
    energy["grid_import"][0, 0] += 3e-6  # a surplus of 5e-6: renewables first (2e-6), then import (3e-6)
    energy["grid_import"][0, 1] -= 2e-6  # a deficit: energy not served
    emissions = (inst.sites.grid_co2 * energy["grid_import"]).sum()
    balance_power(inst, energy, load)
    sources = (energy["renewable_used"] + energy["gen"] + energy["discharge"] + energy["grid_import"]
               + energy["ens"])
    np.testing.assert_allclose(facility + energy["charge"] + energy["grid_export"], sources, rtol=0, atol=1e-12)
    assert energy["ens"][0, 1] == pytest.approx(2e-6, abs=1e-12)
    assert energy["renewable_used"][0, 0] == 0.0
    assert energy["grid_import"][0, 0] == pytest.approx(facility[0, 0], abs=1e-12)
    assert (inst.sites.grid_co2 * energy["grid_import"]).sum() <= emissions
    one = {name: arr[0].copy() for name, arr in energy.items()}
    one["ens"][2] += 1e-6
    balance_power(inst, one, load[0], 0)  # one site's rows: (T,) arrays
    assert one["ens"][2] == pytest.approx(energy["ens"][0, 2], abs=1e-12)
