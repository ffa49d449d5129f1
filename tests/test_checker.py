"""The Solution object, its HDF5 file (SOLUTION.md) and the independent checker of MODEL.md's constraints.

Feasible solutions are built by hand: a compute plan and a generator/battery schedule, with the grid
(import or export) closing the power balance.  Each constraint family is then broken once and must be
reported under its name at the right index.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time

import carbonsched.formulations.solution as solution_module
import h5py
import numpy as np
import pytest
from carbonsched.formulations import (
    CheckReport,
    Solution,
    SolutionError,
    SolveStatus,
    Trace,
    breakdown_from_arrays,
    check_solution,
)
from carbonsched.formulations.solution import BREAKDOWN_TERMS, ENERGY_BINARY_FIELDS, ENERGY_FIELDS, compute_gap
from carbonsched.instances import Instance, make_instance

T, S, J, K = 6, 2, 2, 2
ALPHA, BETA = 0, 1
NO_JOBS = {"gpus": 1, "duration": 1}  # make_instance wants these fields even when J = 0


def rich_instance(**overrides) -> Instance:
    """Two sites: 'alpha' with battery, generator, export and renewables; 'beta' grid-only."""
    params = dict(
        period_hours=1.0,
        voll=1000.0,
        carbon_budget_t=50.0,
        carbon_price=10.0,
        name="rich",
    )
    params.update(overrides)
    return make_instance(
        T,
        S,
        n_jobs=J,
        n_classes=K,
        sites={
            "name": ["alpha", "beta"],
            "gpus": [1000, 500],
            "gpu_idle_kw": 0.5,
            "gpu_busy_kw": 1.0,
            "pue": np.array([[1.2] * T, [1.1] * T]),
            "renewable_mw": np.array([[0.3] * T, [0.0] * T]),
            "grid_import_mw": [5.0, 3.0],
            "grid_export_mw": [2.0, 0.0],
            "price_buy": np.array([[40, 50, 60, 70, 50, -5], [30, 30, 30, 30, 30, 30]], dtype=float),
            "price_sell": np.array([[20, 20, 20, 20, 20, -10], [10, 10, 10, 10, 10, 10]], dtype=float),
            "grid_co2": np.array([[0.4] * T, [0.2] * T]),
            "gen_max_mw": [2.0, 0.0],
            "gen_min_mw": [0.5, 0.0],
            "gen_cost": [80.0, 0.0],
            "gen_startup_cost": [100.0, 0.0],
            "gen_co2": [0.6, 0.0],
            "gen_min_up": [2, 1],
            "gen_min_down": [2, 1],
            "bat_energy_mwh": [2.0, 0.0],
            "bat_power_mw": [1.0, 0.0],
            "bat_eta_charge": [0.9, 1.0],
            "bat_eta_discharge": [0.9, 1.0],
            "bat_soc0_mwh": [1.0, 0.0],
            "bat_cost": [2.0, 0.0],
        },
        jobs={
            "name": ["pretrain", "finetune"],
            "gpus": [400, 300],
            "duration": [3, 2],
            "release": [0, 2],
            "deadline": [6, 6],
            "value": [5000.0, 800.0],
            "mandatory": [True, False],
            "allowed": [[True, True], [False, True]],
        },
        inference={
            "name": ["chat", "search"],
            "demand": np.array([[100.0] * T, [50.0] * T]),
            "revenue": [3.0, 2.0],
            "penalty": [4.0, 1.0],
            "latency_ms": np.array([[10.0, 50.0], [np.inf, 5.0]]),
            "latency_slo_ms": [20.0, 10.0],
            "latency_cost": [0.01, 0.02],
        },
        **params,
    )


def rich_plan() -> dict[str, np.ndarray]:
    """Compute plan and generator/battery schedule of a feasible solution of :func:`rich_instance`."""
    served = np.zeros((K, S, T))
    served[0, ALPHA, :] = 100.0
    served[1, BETA, :] = 30.0
    zeros = np.zeros((S, T))
    plan = {
        "job_site": np.array([ALPHA, BETA]),
        "job_start": np.array([1, 3]),
        "served": served,
        "gen": zeros.copy(),
        "gen_on": zeros.copy(),
        "gen_start": zeros.copy(),
        "charge": zeros.copy(),
        "discharge": zeros.copy(),
        "renewable_used": np.array([[0.3] * T, [0.0] * T]),
        "ens": zeros.copy(),
    }
    plan["gen"][ALPHA] = [0, 1, 2, 0, 0, 0]
    plan["gen_on"][ALPHA] = [0, 1, 1, 0, 0, 0]
    plan["gen_start"][ALPHA] = [0, 1, 0, 0, 0, 0]
    plan["charge"][ALPHA] = [0.5, 0, 0, 0, 0, 0]
    plan["discharge"][ALPHA] = [0, 0, 0, 0, 0.4, 0]
    plan["bat_charging"] = (plan["charge"] > 0).astype(float)
    return plan


def facility_load_mw(inst: Instance, job_site, job_start, served) -> np.ndarray:
    """pue·P^IT by plain loops (independent of the checker's vectorized version), MW."""
    s = inst.sites
    busy = served.sum(axis=0).copy()
    for j in range(inst.n_jobs):
        if job_site[j] >= 0:
            busy[job_site[j], job_start[j] : job_start[j] + inst.jobs.duration[j]] += inst.jobs.gpus[j]
    it_kw = (s.gpu_idle_kw * s.gpus)[:, None] + (s.gpu_busy_kw - s.gpu_idle_kw)[:, None] * busy
    return s.pue * it_kw / 1000.0


def build_solution(inst: Instance, plan: dict[str, np.ndarray], **kwargs) -> Solution:
    """A Solution following ``plan``; unserved demand, soc, β and the grid are derived.

    Unserved = λ − served within the SLO; soc follows the battery dynamics; β = 1 where charging;
    the grid closes the power balance (import with γ = 1, or export with γ = 0).
    """
    n_sites, n_periods = inst.n_sites, inst.n_periods
    zeros = np.zeros((n_sites, n_periods))
    job_site = np.asarray(plan.get("job_site", -np.ones(inst.n_jobs, dtype=int)))
    job_start = np.asarray(plan.get("job_start", -np.ones(inst.n_jobs, dtype=int)))
    served = np.asarray(plan.get("served", np.zeros((inst.n_classes, n_sites, n_periods))), dtype=float)
    in_slo = inst.slo_mask()[:, :, None]
    unserved = plan.get("unserved", inst.inference.demand - (served * in_slo).sum(axis=1))
    energy = {name: np.asarray(plan.get(name, zeros), dtype=float).copy() for name in ENERGY_FIELDS}
    s = inst.sites
    if "bat_charging" not in plan:
        energy["bat_charging"] = (energy["charge"] > 0).astype(float)
    if "soc" not in plan:
        flow = inst.period_hours * (
            s.bat_eta_charge[:, None] * energy["charge"] - energy["discharge"] / s.bat_eta_discharge[:, None]
        )
        energy["soc"] = s.bat_soc0_mwh[:, None] + np.cumsum(flow, axis=1)
    net = (
        facility_load_mw(inst, job_site, job_start, served)
        + energy["charge"]
        - energy["renewable_used"]
        - energy["gen"]
        - energy["discharge"]
        - energy["ens"]
    )
    energy["grid_import"] = np.maximum(net, 0.0)
    energy["grid_export"] = np.maximum(-net, 0.0)
    energy["grid_importing"] = (net >= 0).astype(float)
    for name in ("grid_import", "grid_export", "grid_importing"):
        if name in plan:
            energy[name] = np.asarray(plan[name], dtype=float)
    return Solution.from_arrays(
        inst,
        method=kwargs.pop("method", "hand"),
        status=kwargs.pop("status", SolveStatus.OPTIMAL),
        job_site=job_site,
        job_start=job_start,
        served=served,
        unserved=unserved,
        energy=energy,
        **kwargs,
    )


def tampered(sol: Solution, name: str, index: tuple[int, ...], value: float) -> Solution:
    """A copy of ``sol`` with one array entry changed (scores left as reported)."""
    arr = np.array(getattr(sol, name), dtype=float if name not in ("job_site", "job_start") else np.int64)
    arr[index] = value
    return dataclasses.replace(sol, **{name: arr})


def with_plan(**changes):
    """Case builder: the rich plan with some entries changed, re-derived and re-scored."""

    def build(inst: Instance) -> Solution:
        plan = rich_plan()
        for key, (index, value) in changes.items():
            plan[key] = np.array(plan[key], copy=True)
            plan[key][index] = value
        return build_solution(inst, plan)

    return build


def with_array(name: str, index: tuple[int, ...], value: float):
    """Case builder: the rich solution with one stored entry changed after scoring."""

    def build(inst: Instance) -> Solution:
        return tampered(build_solution(inst, rich_plan()), name, index, value)

    return build


# ============================================================================ feasible solutions pass
@pytest.fixture
def inst() -> Instance:
    return rich_instance()


@pytest.fixture
def rich_solution(inst: Instance) -> Solution:
    return build_solution(inst, rich_plan(), bound=1e6, wall_seconds=1.5)


def test_rich_solution_is_feasible(inst, rich_solution):
    report = check_solution(inst, rich_solution)
    assert report.ok, report.format()
    assert isinstance(report, CheckReport)
    assert report.violations == [] and report.counts == {}
    assert report.objective == pytest.approx(rich_solution.objective, rel=1e-12)
    assert report.emissions == pytest.approx(rich_solution.emissions_t, rel=1e-12)
    assert report.format().startswith("OK  Z = ")
    assert " $  emissions = " in report.format() and report.format().endswith(" t")


def test_everything_from_grid_is_feasible():
    inst = rich_instance()
    plan = {"job_site": np.array([BETA, -1]), "job_start": np.array([0, -1])}  # mandatory job only
    sol = build_solution(inst, plan)
    assert np.all(sol.grid_importing == 1) and np.all(sol.gen == 0) and np.all(sol.soc == [[1.0], [0.0]])
    report = check_solution(inst, sol)
    assert report.ok, report.format()
    assert sol.breakdown["unserved_penalty"] == pytest.approx(-(4.0 * 100 + 1.0 * 50) * T)


def test_breakdown_matches_hand_computation():
    inst = make_instance(
        2,
        1,
        n_jobs=1,
        n_classes=1,
        period_hours=0.5,
        voll=1000.0,
        carbon_price=20.0,
        sites={
            "gpus": 10,
            "grid_import_mw": 10.0,
            "grid_export_mw": 10.0,
            "price_buy": [[100.0, -20.0]],
            "price_sell": [[50.0, -30.0]],
            "grid_co2": [[0.5, 0.1]],
            "gen_max_mw": 5.0,
            "gen_cost": 60.0,
            "gen_startup_cost": 7.0,
            "gen_co2": 0.8,
            "bat_power_mw": 1.0,
            "bat_energy_mwh": 1.0,
            "bat_cost": 3.0,
        },
        jobs={"gpus": 1, "duration": 1, "value": 42.0},
        inference={
            "demand": [[4.0, 4.0]],
            "revenue": 2.0,
            "penalty": 6.0,
            "latency_ms": [[np.inf]],
            "latency_slo_ms": 10.0,
            "latency_cost": 0.5,
        },
    )
    energy = {name: np.zeros((1, 2)) for name in ENERGY_FIELDS}
    energy["grid_import"][:] = [[2.0, 0.0]]
    energy["grid_export"][:] = [[0.0, 1.0]]
    energy["gen"][:] = [[0.0, 3.0]]
    energy["gen_start"][:] = [[0.0, 1.0]]
    energy["charge"][:] = [[0.4, 0.0]]
    energy["discharge"][:] = [[0.0, 0.2]]
    energy["ens"][:] = [[0.1, 0.0]]
    served = np.array([[[3.0, 1.0]]])  # infinite latency: no latency cost, no NaN
    unserved = np.array([[1.0, 3.0]])
    breakdown, emissions = breakdown_from_arrays(inst, np.array([0]), np.array([1]), served, unserved, energy)
    expected_emissions = 0.5 * (0.5 * 2.0 + 0.8 * 3.0)
    assert emissions == pytest.approx(expected_emissions)
    expected = {
        "training_value": 42.0,
        "inference_revenue": 0.5 * 2.0 * 4.0,
        "latency_cost": 0.0,
        "unserved_penalty": -0.5 * 6.0 * 4.0,
        "grid_cost": -0.5 * 100.0 * 2.0,
        "export_revenue": 0.5 * -30.0 * 1.0,
        "gen_cost": -0.5 * 60.0 * 3.0,
        "startup_cost": -7.0,
        "battery_cost": -0.5 * 3.0 * 0.6,
        "ens_cost": -0.5 * 1000.0 * 0.1,
        "carbon_cost": -20.0 * expected_emissions,
    }
    assert list(breakdown) == list(BREAKDOWN_TERMS)
    for term, value in expected.items():
        assert breakdown[term] == pytest.approx(value, abs=1e-12), term
    assert all(math.isfinite(v) for v in breakdown.values())


def test_latency_cost_uses_finite_latencies(inst, rich_solution):
    # chat at alpha: 100 GPUs × 10 ms × 0.01 $ × 6 h; search at beta: 30 × 5 × 0.02 × 6
    assert rich_solution.breakdown["latency_cost"] == pytest.approx(-(100 * 10 * 0.01 + 30 * 5 * 0.02) * T)


def test_violation_within_tolerance_passes(inst, rich_solution):
    nudged = tampered(rich_solution, "grid_import", (BETA, 2), rich_solution.grid_import[BETA, 2] + 5e-7)
    assert check_solution(inst, nudged).ok


# ================================================================ each constraint broken once is named
BROKEN_CASES = [
    ("job_mandatory", with_plan(job_site=((0,), -1), job_start=((0,), -1)), (0,)),
    ("job_once", with_plan(job_site=((1,), -1)), (1,)),
    ("job_site_allowed", with_plan(job_site=((1,), ALPHA)), (1,)),
    ("job_start_window", with_plan(job_start=((1,), 1)), (1,)),
    ("job_start_window", with_plan(job_start=((0,), 4)), (0,)),
    ("demand_balance", with_array("unserved", (1, 2), 25.0), (1, 2)),
    ("served_outside_slo", with_plan(served=((0, BETA, 4), 1.0)), (0, BETA, 4)),
    ("gpu_capacity", with_plan(served=((1, BETA, 3), 250.0)), (BETA, 3)),
    ("power_balance", with_array("grid_import", (BETA, 2), 1.0), (BETA, 2)),
    ("battery_dynamics", with_array("soc", (ALPHA, 1), 1.6), (ALPHA, 1)),
    ("battery_terminal", with_plan(discharge=((ALPHA, 5), 0.3)), (ALPHA,)),
    ("battery_charge_mode", with_plan(bat_charging=((ALPHA, 0), 0.0)), (ALPHA, 0)),
    ("battery_discharge_mode", with_plan(bat_charging=((ALPHA, 4), 1.0)), (ALPHA, 4)),
    ("grid_import_direction", with_array("grid_importing", (BETA, 0), 0), (BETA, 0)),
    ("grid_export_direction", with_array("grid_importing", (ALPHA, 2), 1), (ALPHA, 2)),
    ("gen_min_output", with_plan(gen=((ALPHA, 1), 0.2)), (ALPHA, 1)),
    ("gen_max_output", with_plan(gen=((ALPHA, 2), 2.5)), (ALPHA, 2)),
    ("gen_max_output", with_plan(gen_on=((ALPHA, 2), 0.0)), (ALPHA, 2)),
    ("gen_startup", with_plan(gen_start=((ALPHA, 1), 0.0)), (ALPHA, 1)),
    ("gen_min_up", with_plan(gen_on=((ALPHA, 2), 0.0), gen=((ALPHA, 2), 0.0)), (ALPHA, 2)),
    (
        "gen_min_down",
        with_plan(gen_on=((ALPHA, slice(4, 6)), 1.0), gen_start=((ALPHA, 4), 1.0), gen=((ALPHA, slice(4, 6)), 1.0)),
        (ALPHA, 4),
    ),
    ("gen_absent", with_plan(gen_on=((BETA, 3), 1.0), gen_start=((BETA, 3), 1.0)), (BETA, 3)),
    ("bound:served", with_plan(served=((0, ALPHA, 0), -1.0)), (0, ALPHA, 0)),
    ("bound:unserved", with_plan(served=((1, BETA, 0), 60.0)), (1, 0)),
    ("bound:grid_import", with_array("grid_import", (BETA, 1), 3.5), (BETA, 1)),
    ("bound:grid_export", with_plan(gen=((ALPHA, 2), 2.0), renewable_used=((ALPHA, 2), 1.0)), (ALPHA, 2)),
    ("bound:charge", with_plan(charge=((ALPHA, 0), 1.2)), (ALPHA, 0)),
    ("bound:discharge", with_array("discharge", (ALPHA, 3), -0.1), (ALPHA, 3)),
    ("bound:soc", with_plan(charge=((ALPHA, slice(0, 2)), 0.8)), (ALPHA, 1)),
    ("bound:gen", with_array("gen", (BETA, 0), -0.5), (BETA, 0)),
    ("bound:renewable_used", with_plan(renewable_used=((ALPHA, 0), 0.5)), (ALPHA, 0)),
    ("bound:ens", with_plan(ens=((BETA, 0), -0.1)), (BETA, 0)),
    ("binary:bat_charging", with_array("bat_charging", (ALPHA, 3), 0.5), (ALPHA, 3)),
    ("binary:gen_on", with_array("gen_on", (BETA, 2), 2), (BETA, 2)),
    ("binary:grid_importing", with_array("grid_importing", (BETA, 5), 1.0 + 1e-3), (BETA, 5)),
    ("binary:gen_start", with_array("gen_start", (ALPHA, 0), -1), (ALPHA, 0)),
    ("finite:soc", with_array("soc", (ALPHA, 3), np.nan), (ALPHA, 3)),
    ("finite:served", with_array("served", (0, ALPHA, 5), np.inf), (0, ALPHA, 5)),
]


@pytest.mark.parametrize(
    ("constraint", "build", "index"),
    BROKEN_CASES,
    ids=[f"{c[0]}-{i}" for i, c in enumerate(BROKEN_CASES)],
)
def test_broken_constraint_is_reported(inst, constraint, build, index):
    report = check_solution(inst, build(inst))
    assert not report.ok
    hits = [v for v in report.violations if v.constraint == constraint]
    assert hits, f"{constraint} not reported:\n{report.format()}"
    assert index in [v.index for v in hits], f"{constraint} at {[v.index for v in hits]}, not {index}"
    assert all(v.amount > 0 or math.isnan(v.amount) for v in hits)
    text = report.format()
    assert text.startswith("FAIL")
    assert any(line.startswith(f"{constraint}: ") for line in text.splitlines())


def test_every_constraint_family_has_a_case():
    families = {
        "job_once", "job_mandatory", "job_site_allowed", "job_start_window", "demand_balance",
        "served_outside_slo", "gpu_capacity", "power_balance", "battery_dynamics", "battery_terminal",
        "battery_charge_mode", "battery_discharge_mode", "grid_import_direction", "grid_export_direction",
        "gen_min_output", "gen_max_output", "gen_startup", "gen_min_up", "gen_min_down", "gen_absent",
    }  # fmt: skip
    assert families <= {case[0] for case in BROKEN_CASES}


def test_broken_case_reports_only_expected_families(inst):
    """A plan-level break leaves the rest of the solution consistent: only the intended row fails."""
    report = check_solution(inst, with_plan(gen_start=((ALPHA, 1), 0.0))(inst))
    assert report.violated() == {"gen_startup"}, report.format()
    report = check_solution(inst, with_plan(job_site=((0,), -1), job_start=((0,), -1))(inst))
    assert report.violated() == {"job_mandatory"}, report.format()


def test_messages_name_sites_periods_jobs_and_classes(inst):
    text = check_solution(inst, with_array("grid_import", (BETA, 2), 1.0)(inst)).format()
    assert "site 'beta' period 2" in text
    text = check_solution(inst, with_plan(job_start=((1,), 1))(inst)).format()
    assert "job 'finetune'" in text and "2..4" in text
    text = check_solution(inst, with_array("unserved", (1, 2), 25.0)(inst)).format()
    assert "class 'search' period 2" in text


def test_job_at_unknown_site_is_job_once(inst, rich_solution):
    report = check_solution(inst, tampered(rich_solution, "job_site", (1,), 7))
    assert (1,) in [v.index for v in report.violations if v.constraint == "job_once"]


# ============================================================================ carbon budget
def test_carbon_budget_violation_and_no_carbon_mode(rich_solution):
    emissions = rich_solution.emissions_t
    tight = rich_instance(carbon_budget_t=emissions / 2)
    report = check_solution(tight, rich_solution)
    assert report.violated() == {"carbon_budget"}, report.format()
    (violation,) = report.violations
    assert violation.index == () and violation.amount == pytest.approx(emissions / 2)
    assert report.carbon_excess_t == pytest.approx(emissions / 2)

    relaxed = check_solution(tight, rich_solution, carbon=False)
    assert relaxed.ok
    assert relaxed.carbon_excess_t == pytest.approx(emissions / 2)
    assert "exceeded by" in relaxed.format() and "not enforced" in relaxed.format()

    no_budget = check_solution(rich_instance(carbon_budget_t=math.inf), rich_solution)
    assert no_budget.ok and no_budget.carbon_excess_t == 0.0


# ============================================================================ reported scores
@pytest.mark.parametrize("term", BREAKDOWN_TERMS)
def test_wrong_breakdown_term_is_reported(inst, rich_solution, term):
    breakdown = dict(rich_solution.breakdown)
    breakdown[term] += 1.0
    sol = dataclasses.replace(rich_solution, breakdown=breakdown, objective=rich_solution.objective + 1.0)
    report = check_solution(inst, sol)
    assert report.violated() == {f"breakdown:{term}"}, report.format()


def test_missing_breakdown_term_is_reported(inst, rich_solution):
    breakdown = dict(rich_solution.breakdown)
    del breakdown["ens_cost"]
    report = check_solution(inst, dataclasses.replace(rich_solution, breakdown=breakdown))
    assert "breakdown:ens_cost" in report.violated()


def test_wrong_objective_and_emissions_are_reported(inst, rich_solution):
    report = check_solution(inst, dataclasses.replace(rich_solution, objective=rich_solution.objective + 1.0))
    assert report.violated() == {"objective"}
    report = check_solution(inst, dataclasses.replace(rich_solution, emissions_t=rich_solution.emissions_t + 0.01))
    assert report.violated() == {"emissions"}


def test_shape_mismatch_raises(inst, rich_solution):
    with pytest.raises(SolutionError, match="/energy/soc"):
        check_solution(inst, dataclasses.replace(rich_solution, soc=np.zeros((S, T + 1))))


# ============================================================================ many violations, big instance
def test_violations_are_capped_but_counted():
    inst = make_instance(100, 3, sites={"gpus": 10, "grid_import_mw": 10.0}, jobs=NO_JOBS)
    sol = build_solution(inst, {})
    broken = dataclasses.replace(sol, grid_import=sol.grid_import + 1.0)
    report = check_solution(inst, broken)
    assert report.counts["power_balance"] == 300
    assert len([v for v in report.violations if v.constraint == "power_balance"]) == 50
    assert "power_balance: ... and 250 more" in report.format()


def test_large_instance_is_checked_quickly():
    n_sites, n_periods, n_classes = 1000, 168, 4
    rng = np.random.default_rng(0)
    inst = make_instance(
        n_periods,
        n_sites,
        n_jobs=20,
        n_classes=n_classes,
        sites={"gpus": 100, "grid_import_mw": 10.0, "price_buy": rng.uniform(0, 100, (n_sites, n_periods))},
        jobs={"gpus": 10, "duration": 5},
        inference={"demand": 50.0, "latency_ms": rng.uniform(0, 100, (n_classes, n_sites)), "latency_slo_ms": 50.0},
    )
    served = np.zeros((n_classes, n_sites, n_periods))
    first_site_in_slo = np.argmax(inst.slo_mask(), axis=1)
    served[np.arange(n_classes), first_site_in_slo, :] = 10.0
    plan = {"job_site": np.arange(20) * 7, "job_start": np.arange(20) * 3, "served": served}
    sol = build_solution(inst, plan)
    started = time.perf_counter()
    report = check_solution(inst, sol)
    elapsed = time.perf_counter() - started
    assert report.ok, report.format()
    assert elapsed < 10.0


# ============================================================================ Solution object
def test_compute_gap():
    assert compute_gap(100.0, 110.0) == pytest.approx(0.1)
    assert compute_gap(0.5, 1.0) == pytest.approx(0.5)  # max(1, |Z|) = 1
    assert compute_gap(-200.0, -100.0) == pytest.approx(0.5)
    assert compute_gap(100.0, math.inf) == math.inf
    assert compute_gap(-math.inf, 5.0) == math.inf


def test_solution_gap_status_and_rounding(inst, rich_solution):
    assert rich_solution.gap == pytest.approx((1e6 - rich_solution.objective) / abs(rich_solution.objective))
    assert rich_solution.status is SolveStatus.OPTIMAL
    assert sum(rich_solution.breakdown.values()) == pytest.approx(rich_solution.objective)
    for name in ENERGY_BINARY_FIELDS:
        assert getattr(rich_solution, name).dtype == np.int8
    sol = build_solution(inst, rich_plan(), status="time_limit")
    assert sol.status is SolveStatus.TIME_LIMIT and sol.gap == math.inf
    with pytest.raises(SolutionError, match="status"):
        dataclasses.replace(sol, status="done")
    plan = rich_plan()
    plan["gen_on"][ALPHA, 1] = 1 - 1e-8  # within 1e-6: rounded
    assert build_solution(inst, plan).gen_on[ALPHA, 1] == 1
    plan["gen_on"][ALPHA, 1] = 0.7
    with pytest.raises(SolutionError, match=r"/energy/gen_on\[0, 1\]"):
        build_solution(inst, plan)


def test_trace_append_and_arrays():
    trace = Trace()
    assert len(trace) == 0 and all(a.size == 0 for a in trace.to_arrays().values())
    trace.append(0.1, -math.inf, math.inf, 0)
    trace.append(0.5, 10.0, 20.0, 3)
    arrays = trace.to_arrays()
    assert list(arrays) == ["seconds", "primal", "dual", "iteration"]
    assert arrays["iteration"].dtype == np.int64 and arrays["primal"].dtype == np.float64
    np.testing.assert_array_equal(arrays["dual"], [math.inf, 20.0])
    with pytest.raises(SolutionError, match="/trace"):
        Trace(seconds=[1.0], primal=[], dual=[], iteration=[])


# ============================================================================ HDF5 round trip
def assert_solutions_identical(a: Solution, b: Solution) -> None:
    for f in dataclasses.fields(Solution):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray):
            assert x.dtype == y.dtype, f.name
            assert x.shape == y.shape, f.name
            np.testing.assert_array_equal(x, y, err_msg=f.name)
        elif isinstance(x, Trace):
            for name, values in x.to_arrays().items():
                other = y.to_arrays()[name]
                assert values.dtype == other.dtype
                np.testing.assert_array_equal(values, other, err_msg=f"trace/{name}")
        elif f.name == "extra":
            assert set(x) == set(y)
            for key in x:
                np.testing.assert_array_equal(x[key], y[key], err_msg=key)
        else:
            assert x == y or (isinstance(x, float) and math.isnan(x) and math.isnan(y)), f.name
            assert type(x) is type(y), f.name


def test_save_load_round_trip_is_exact(inst, rich_solution, tmp_path):
    trace = Trace()
    trace.append(0.0, -math.inf, math.inf, 0)
    trace.append(1.25, rich_solution.objective, 1e6, 17)
    sol = dataclasses.replace(
        rich_solution,
        trace=trace,
        status=SolveStatus.GAP_LIMIT,
        certified=True,
        extra={"seed": np.int64(7), "solver": "scip 9", "weights": np.array([0.5, 1.5])},
    )
    path = tmp_path / "rich.sol.h5"
    sol.save(path)
    loaded = Solution.load(path, inst)
    assert_solutions_identical(sol, loaded)
    assert loaded.status is SolveStatus.GAP_LIMIT and loaded.certified is True
    assert check_solution(inst, loaded).ok

    with h5py.File(path, "r") as f:
        assert f.attrs["schema"] == "carbonsched-solution" and f.attrs["schema_version"] == 1
        assert f.attrs["status"] == "gap_limit"
        for name in ENERGY_BINARY_FIELDS:
            assert f["energy"][name].dtype == np.int8
        assert f["energy/soc"].dtype == np.float64 and f["energy/soc"].shape == (S, T)
        assert f["inference/served"].shape == (K, S, T)
        assert set(f["breakdown"].attrs) == set(BREAKDOWN_TERMS)
        assert f["trace/iteration"].dtype.kind == "i"


def test_round_trip_without_trace_and_with_infinite_bound(inst, tmp_path):
    sol = build_solution(inst, rich_plan(), status=SolveStatus.INTERRUPTED)
    assert sol.bound == math.inf and sol.gap == math.inf and sol.trace is None
    sol.save(tmp_path / "s.h5")
    loaded = Solution.load(tmp_path / "s.h5")
    assert_solutions_identical(sol, loaded)
    with h5py.File(tmp_path / "s.h5", "r") as f:
        assert "trace" not in f


def write_plain_h5py(path, inst: Instance, sol: Solution, *, empty_shapes: bool = False) -> None:
    """A file to SOLUTION.md written by plain h5py, with other widths and string encodings."""
    with h5py.File(path, "w") as f:
        f.attrs["schema"] = np.bytes_(b"carbonsched-solution")  # fixed-length ASCII
        f.attrs["schema_version"] = np.int32(1)
        f.attrs["instance_name"] = inst.name
        f.attrs["method"] = "my-heuristic"
        f.attrs["status"] = "time_limit"
        f.attrs["objective"] = sol.objective
        f.attrs["bound"] = np.inf
        f.attrs["gap"] = np.inf
        f.attrs["certified"] = np.int8(0)
        f.attrs["emissions_t"] = sol.emissions_t
        f.attrs["wall_seconds"] = np.float32(3.5)
        f.attrs["note"] = "written by hand"
        f.create_dataset("jobs/site", data=sol.job_site.astype(np.int32))
        f.create_dataset("jobs/start", data=sol.job_start.astype(np.int16))
        served = np.zeros(0) if empty_shapes and sol.served.size == 0 else sol.served
        f.create_dataset("inference/served", data=served, chunks=True if served.size else None)
        f.create_dataset("inference/unserved", data=sol.unserved)
        for name in ENERGY_FIELDS:
            data = getattr(sol, name)
            if name in ENERGY_BINARY_FIELDS:
                data = data.astype(bool)
            f.create_dataset(f"energy/{name}", data=data, compression="lzf")
        grp = f.create_group("breakdown")
        for term in BREAKDOWN_TERMS:
            grp.attrs[term] = sol.breakdown[term]
        f.create_dataset("trace/seconds", data=[0.5, 1.0])
        f.create_dataset("trace/primal", data=[-np.inf, sol.objective])
        f.create_dataset("trace/dual", data=[np.inf, np.inf])
        f.create_dataset("trace/iteration", data=np.array([1, 2], dtype=np.uint16))


def test_file_written_by_plain_h5py_loads(inst, rich_solution, tmp_path):
    path = tmp_path / "plain.h5"
    write_plain_h5py(path, inst, rich_solution)
    loaded = Solution.load(path, inst)
    assert loaded.method == "my-heuristic" and loaded.status is SolveStatus.TIME_LIMIT
    assert loaded.certified is False and loaded.wall_seconds == 3.5 and loaded.extra == {"note": "written by hand"}
    assert loaded.job_site.dtype == np.int64 and loaded.gen_on.dtype == np.int8
    np.testing.assert_array_equal(loaded.gen_on, rich_solution.gen_on)
    np.testing.assert_array_equal(loaded.trace.iteration, [1, 2])
    assert check_solution(inst, loaded).ok


def test_file_without_jobs_or_classes_loads(tmp_path):
    inst = make_instance(3, 2, sites={"grid_import_mw": 1.0, "gpus": 4}, jobs=NO_JOBS)
    sol = build_solution(inst, {})
    path = tmp_path / "empty.h5"
    write_plain_h5py(path, inst, sol, empty_shapes=True)
    loaded = Solution.load(path, inst)
    assert loaded.served.shape == (0, 2, 3) and loaded.job_site.shape == (0,)
    assert check_solution(inst, loaded).ok


def _delete(name):
    def edit(f):
        del f[name]

    return edit


def _set_attr(name, value, group="/"):
    def edit(f):
        f[group].attrs[name] = value

    return edit


def _del_attr(name, group="/"):
    def edit(f):
        del f[group].attrs[name]

    return edit


def _reshape(name, shape):
    def edit(f):
        del f[name]
        f.create_dataset(name, data=np.zeros(shape))

    return edit


BAD_FILES = [
    (_delete("energy/soc"), "/energy/soc: missing dataset"),
    (_delete("jobs"), "/jobs: missing group"),
    (_delete("breakdown"), "/breakdown: missing group"),
    (_reshape("energy/gen", (S, T + 1)), "/energy/gen: shape must be (S,T)"),
    (_reshape("inference/served", (K, S + 1, T)), "/inference/served: shape must be (K,S,T)"),
    (_reshape("jobs/start", (J + 1,)), "/jobs/start: shape must be (J,)"),
    (_reshape("energy/ens", (S * T,)), "/energy/ens: must have 2 dimension(s)"),
    (_del_attr("gen_cost", "breakdown"), "/breakdown: missing attribute 'gen_cost'"),
    (_del_attr("emissions_t"), "attribute 'emissions_t': missing root attribute"),
    (_set_attr("status", "finished"), "attribute 'status': must be one of"),
    (_set_attr("schema", "carbonsched-instance"), "attribute 'schema': must be 'carbonsched-solution'"),
    (_set_attr("schema_version", 2), "attribute 'schema_version': unknown schema_version 2"),
    (_set_attr("objective", "high"), "attribute 'objective': must be a number"),
    (_reshape("trace/dual", (3,)), "/trace: datasets must have one length"),
]


@pytest.mark.parametrize(("edit", "message"), BAD_FILES, ids=[m.split(":")[0] for _, m in BAD_FILES])
def test_bad_files_are_rejected_with_one_line(rich_solution, tmp_path, edit, message):
    path = tmp_path / "bad.h5"
    dataclasses.replace(rich_solution, trace=Trace([0.0, 1.0], [0.0, 1.0], [2.0, 2.0], [0, 1])).save(path)
    with h5py.File(path, "r+") as f:
        edit(f)
    with pytest.raises(SolutionError) as info:
        Solution.load(path)
    text = str(info.value)
    assert message in text and "\n" not in text and str(path) in text


def test_load_checks_shapes_against_instance(rich_solution, tmp_path):
    rich_solution.save(tmp_path / "s.h5")
    other = make_instance(T + 1, S, n_jobs=J, n_classes=K, jobs={"gpus": 1, "duration": 1})
    with pytest.raises(SolutionError, match=r"shape must be \(J,\)|shape must be \(K,S,T\)"):
        Solution.load(tmp_path / "s.h5", other)


def test_load_of_missing_or_foreign_file(tmp_path):
    with pytest.raises(SolutionError, match="file not found"):
        Solution.load(tmp_path / "nope.h5")
    (tmp_path / "text.h5").write_text("hello")
    with pytest.raises(SolutionError, match="not an HDF5 file"):
        Solution.load(tmp_path / "text.h5")


# ============================================================================ atomic writes
def test_save_leaves_no_temporary_file(rich_solution, tmp_path):
    rich_solution.save(tmp_path / "a.h5")
    rich_solution.save(tmp_path / "a.h5")  # overwrite
    assert sorted(os.listdir(tmp_path)) == ["a.h5"]


def test_failed_save_keeps_target_and_removes_temporary(rich_solution, tmp_path, monkeypatch):
    target = tmp_path / "keep.h5"
    rich_solution.save(target)
    before = target.read_bytes()

    calls = {"n": 0}
    real_write = solution_module.write_array

    def failing_write(group, name, arr):
        calls["n"] += 1
        if calls["n"] == 5:
            raise RuntimeError("disk full")
        real_write(group, name, arr)

    monkeypatch.setattr(solution_module, "write_array", failing_write)
    changed = dataclasses.replace(rich_solution, method="other")
    with pytest.raises(RuntimeError, match="disk full"):
        changed.save(target)
    assert target.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["keep.h5"]
    assert Solution.load(target).method == "hand"


def test_save_refuses_incomplete_solutions(rich_solution, tmp_path):
    breakdown = dict(rich_solution.breakdown)
    del breakdown["carbon_cost"]
    with pytest.raises(SolutionError, match="carbon_cost"):
        dataclasses.replace(rich_solution, breakdown=breakdown).save(tmp_path / "x.h5")
    with pytest.raises(SolutionError, match="bat_charging"):
        tampered(rich_solution, "bat_charging", (0, 0), 0.5).save(tmp_path / "x.h5")
    assert not any(tmp_path.iterdir())
