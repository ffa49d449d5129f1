"""Small instances covering the edge cases every solve method must handle (shared by method tests).

Each builder returns a validated Instance small enough for the monolithic model to solve to optimality
in well under a second.
"""

from __future__ import annotations

import numpy as np
from carbonsched.instances import Instance, generate, make_instance


def random_small(seed: int) -> Instance:
    return generate(sites=3, periods=6, jobs=4, classes=2, seed=seed)


def negative_prices() -> Instance:
    inst = generate(sites=2, periods=6, jobs=3, classes=2, seed=11)
    inst.sites.price_buy[:, 2:4] = -40.0
    inst.sites.price_sell[:, 2:4] = -60.0
    return inst


def binding_budget() -> Instance:
    inst = generate(sites=2, periods=6, jobs=3, classes=2, seed=12)
    inst.carbon_budget_t = round(0.4 * inst.carbon_budget_t, 3)
    return inst


def mandatory_jobs() -> Instance:
    inst = generate(sites=2, periods=6, jobs=4, classes=1, seed=13)
    inst.jobs.mandatory[:2] = True
    inst.jobs.value[:2] = 0.0  # placed at a loss
    inst.jobs.gpus[:2] = np.minimum(inst.jobs.gpus[:2], inst.sites.gpus.min() // 4)
    inst.jobs.release[:2] = 0
    inst.jobs.deadline[:2] = inst.n_periods
    return inst


def half_hour_periods() -> Instance:
    return generate(sites=2, periods=8, jobs=3, classes=2, period_hours=0.5, seed=14)


def no_jobs() -> Instance:
    return generate(sites=2, periods=6, jobs=0, classes=2, seed=15)


def no_inference() -> Instance:
    return generate(sites=2, periods=6, jobs=4, classes=0, seed=16)


def bare_sites() -> Instance:
    """Sites without battery and without generator (and one without export)."""
    inst = generate(sites=3, periods=6, jobs=3, classes=2, seed=17)
    s = inst.sites
    s.bat_energy_mwh[:] = s.bat_power_mw[:] = s.bat_soc0_mwh[:] = 0.0
    s.gen_max_mw[:] = s.gen_min_mw[:] = 0.0
    s.grid_export_mw[0] = 0.0
    return inst


def tiny_handmade() -> Instance:
    """Two sites, four periods, min up/down > 1, negative prices at one site."""
    return make_instance(
        4, 2, n_jobs=2, n_classes=1, carbon_budget_t=2.0, carbon_price=20.0,
        sites=dict(gpus=[8, 8], gpu_idle_kw=10.0, gpu_busy_kw=125.0, grid_import_mw=2.0, grid_export_mw=0.5,
                   price_buy=[[50, 50, -10, 50], [60, 60, 60, 60]], price_sell=[[40, 40, -20, 40], [50, 50, 50, 50]],
                   grid_co2=[[0.4, 0.4, 0.4, 0.4], [0.2, 0.2, 0.2, 0.2]],
                   bat_energy_mwh=[1, 0], bat_power_mw=[0.5, 0], bat_eta_charge=0.9, bat_eta_discharge=0.9,
                   bat_soc0_mwh=[0.5, 0.0], gen_max_mw=[0, 1], gen_min_mw=[0, 0.3], gen_cost=80,
                   gen_startup_cost=10, gen_co2=0.45, gen_min_up=2, gen_min_down=2, renewable_mw=0.2),
        jobs=dict(gpus=[4, 8], duration=[2, 1], value=[300, 150], mandatory=[True, False]),
        inference=dict(demand=[2, 3, 4, 1], revenue=30, penalty=5, latency_ms=[[10, 20]], latency_slo_ms=25,
                       latency_cost=0.1),
    )


EDGE_CASES = {
    "negative_prices": negative_prices,
    "binding_budget": binding_budget,
    "mandatory_jobs": mandatory_jobs,
    "half_hour_periods": half_hour_periods,
    "no_jobs": no_jobs,
    "no_inference": no_inference,
    "bare_sites": bare_sites,
    "tiny_handmade": tiny_handmade,
}


def assert_exact_against_monolithic(inst: Instance, solve, gap: float):
    """Run ``solve(inst)`` and check it against ``solve_monolithic(inst, gap=0)``.

    The solution passes the checker and is certified; its dual bound is ≥ the optimum at every trace
    point; its objective is within ``gap`` (relative, SOLUTION.md) of the optimum. Returns (sol, opt).
    """
    from carbonsched.formulations.checker import check_solution
    from carbonsched.formulations.monolithic import solve_monolithic

    opt = solve_monolithic(inst, gap=0.0)
    sol = solve(inst)
    report = check_solution(inst, sol)
    assert report.ok, report.format()
    assert sol.certified
    tol = 1e-6 * max(1.0, abs(opt.objective))
    assert (sol.trace.dual >= opt.objective - tol).all(), (sol.trace.dual.min(), opt.objective)
    assert sol.bound >= opt.objective - tol
    assert sol.objective <= opt.objective + tol
    assert opt.objective - sol.objective <= gap * max(1.0, abs(opt.objective)) + tol
    return sol, opt
