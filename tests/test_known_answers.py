"""Tiny instances whose optimum is derived by hand; every solution goes through the checker."""

from __future__ import annotations

import math

import numpy as np
import pytest
from carbonsched.errors import InfeasibleError
from carbonsched.formulations.checker import check_solution
from carbonsched.formulations.monolithic import solve_monolithic
from carbonsched.instances import make_instance


def solve_checked(inst, **kw):
    sol = solve_monolithic(inst, gap=0.0, **kw)
    report = check_solution(inst, sol)
    assert report.ok, report.format()
    assert sol.certified and sol.bound >= sol.objective - 1e-6 * max(1.0, abs(sol.objective))
    return sol


def test_negative_prices_need_the_battery_mode_binary():
    # No load, no export, import price −100 $/MWh: importing earns money, but the energy must go
    # into the battery. With β binary the battery can only fill up: Σ ch ≤ E/η^c = 2 MWh, so Z = 200.
    # Charging and discharging at once (β relaxed) would burn B·(1 − η^c·η^d) MWh per period for more.
    inst = make_instance(
        4, 1,
        sites=dict(grid_import_mw=10.0, price_buy=-100.0, price_sell=-100.0, bat_energy_mwh=1.0,
                   bat_power_mw=1.0, bat_eta_charge=0.5, bat_eta_discharge=0.5),
    )
    sol = solve_checked(inst)
    assert sol.objective == pytest.approx(200.0, abs=1e-6)
    assert sol.grid_import.sum() == pytest.approx(2.0, abs=1e-6)
    assert not ((sol.charge > 1e-9) & (sol.discharge > 1e-9)).any()


def _one_job_site(**overrides):
    # 10 GPUs at 100 kW busy, 0 idle, PUE 1: a 10-GPU job draws exactly 1 MW.
    sites = dict(gpus=10, gpu_idle_kw=0.0, gpu_busy_kw=100.0, grid_import_mw=5.0)
    sites.update(overrides.pop("sites", {}))
    return sites


def test_binding_carbon_budget_moves_the_job_to_the_cleaner_hour():
    # Prices 50 then 10 $/MWh, carbon 0.5 then 0.9 t/MWh, budget 0.6 t: the cheap hour would emit
    # 0.9 t, so the job runs in hour 0: Z = 1000 − 50 = 950 (990 without the budget).
    kw = dict(
        sites=_one_job_site(sites=dict(price_buy=[[50.0, 10.0]], price_sell=-1e3, grid_co2=[[0.5, 0.9]])),
        n_jobs=1, jobs=dict(gpus=10, duration=1, value=1000.0),
    )
    sol = solve_checked(make_instance(2, 1, carbon_budget_t=0.6, **kw))
    assert sol.objective == pytest.approx(950.0, abs=1e-6)
    assert sol.job_start.tolist() == [0]
    assert sol.emissions_t == pytest.approx(0.5, abs=1e-9)
    free = solve_checked(make_instance(2, 1, **kw))
    assert free.objective == pytest.approx(990.0, abs=1e-6)
    assert free.job_start.tolist() == [1]


def test_mandatory_job_is_placed_at_a_loss_and_named_when_impossible():
    # A mandatory job worth 0 must run: cheapest hour costs 20 $. A second job worth 25 would
    # cost at least 30 in another hour (or push the first to 30): not worth it. Z = −20.
    sites = _one_job_site(sites=dict(gpus=10, price_buy=[[30.0, 20.0, 40.0]], price_sell=-1e3))
    inst = make_instance(3, 1, n_jobs=2, sites=sites,
                         jobs=dict(gpus=10, duration=1, value=[0.0, 25.0], mandatory=[True, False]))
    sol = solve_checked(inst)
    assert sol.objective == pytest.approx(-20.0, abs=1e-6)
    assert sol.job_site.tolist() == [0, -1] and sol.job_start.tolist() == [1, -1]

    clash = make_instance(3, 1, n_jobs=3, sites=sites,
                          jobs=dict(gpus=10, duration=1, deadline=[1, 1, 3], value=0.0,
                                    mandatory=[True, True, True], name=["alpha", "beta", "gamma"]))
    with pytest.raises(InfeasibleError) as err:
        solve_monolithic(clash)
    assert err.value.exit_status == 3
    assert sorted(err.value.jobs) == ["alpha", "beta"]
    assert "alpha" in str(err.value) and "gamma" not in str(err.value)


def _generator_site(renewable, min_up=1, min_down=1, startup=1.0):
    # 1 MW constant load (one GPU idling at 1000 kW), no grid: a 2 MW unit (min 0.5 MW, 10 $/MWh)
    # or renewables must cover it; shedding costs VOLL = 1000 $/MWh.
    return dict(gpus=1, gpu_idle_kw=1000.0, gpu_busy_kw=1000.0, renewable_mw=[renewable],
                gen_max_mw=2.0, gen_min_mw=0.5, gen_cost=10.0, gen_startup_cost=startup,
                gen_min_up=min_up, gen_min_down=min_down)


@pytest.mark.parametrize("min_down,expected", [(1, -22.0), (2, -26.0)])
def test_minimum_down_time(min_down, expected):
    # Generator needed in hours 0 and 2, renewables cover hour 1. Free to cycle: 2 MWh fuel + 2 starts
    # = 22 $. With DT = 2 it cannot restart in hour 2, so it idles at 0.5 MW: 2.5 MWh + 1 start = 26 $.
    inst = make_instance(3, 1, voll=1000.0, sites=_generator_site([0.0, 2.0, 0.0], min_down=min_down))
    sol = solve_checked(inst)
    assert sol.objective == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("min_up,expected", [(1, -11.0), (3, -21.0)])
def test_minimum_up_time(min_up, expected):
    # Generator needed in hour 0 only. UT = 1: 1 MWh + 1 start = 11 $. UT = 3: it stays on at 0.5 MW
    # in hours 1 and 2 (excess renewables curtailed): 2 MWh + 1 start = 21 $.
    inst = make_instance(3, 1, voll=1000.0, sites=_generator_site([0.0, 2.0, 2.0], min_up=min_up))
    sol = solve_checked(inst)
    assert sol.objective == pytest.approx(expected, abs=1e-6)
    assert sol.gen_on.tolist() == ([[1, 0, 0]] if min_up == 1 else [[1, 1, 1]])


def test_half_hour_periods_scale_energy_and_revenue():
    # Δ = 0.5 h. A job of 8 GPUs for 2 periods (1 h) worth 100 $, inference of 2 GPUs in both periods
    # at 10 $/GPU-h; 10 GPUs at 125 kW = 1.25 MW for 1 h at 40 $/MWh plus τ = 10 $/t on 0.5 t/MWh:
    # Z = 100 + 0.5·10·2·2 − 1.25·40 − 10·0.625 = 63.75.
    inst = make_instance(
        2, 1, n_jobs=1, n_classes=1, period_hours=0.5, carbon_price=10.0,
        sites=dict(gpus=10, gpu_idle_kw=0.0, gpu_busy_kw=125.0, grid_import_mw=5.0, price_buy=40.0,
                   price_sell=0.0, grid_co2=0.5),
        jobs=dict(gpus=8, duration=2, value=100.0),
        inference=dict(demand=2.0, revenue=10.0, latency_ms=5.0, latency_slo_ms=10.0),
    )
    sol = solve_checked(inst)
    assert sol.objective == pytest.approx(63.75, abs=1e-6)
    assert sol.breakdown["inference_revenue"] == pytest.approx(20.0)
    assert sol.breakdown["carbon_cost"] == pytest.approx(-6.25)
    assert sol.emissions_t == pytest.approx(0.625)


def test_export_and_import_never_at_once_and_no_budget_means_inf():
    inst = make_instance(2, 1, sites=dict(renewable_mw=3.0, grid_import_mw=5.0, grid_export_mw=2.0,
                                          price_buy=50.0, price_sell=30.0))
    sol = solve_checked(inst)
    # No load: export 2 MW of the 3 MW renewables in both hours at 30 $/MWh.
    assert sol.objective == pytest.approx(120.0, abs=1e-6)
    assert math.isinf(inst.carbon_budget_t)
    assert np.all(sol.grid_importing == 0)
