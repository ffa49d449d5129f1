"""The checker against numbers worked out by hand on a 2-site, 2-period instance.

The instance and the solution are written out below with every number; the expected objective
terms, Z and emissions are plain arithmetic in this file (no project code computes them), so the
checker's own recomputation is compared with an independent derivation.  Then each reported number
is put off by a small amount, and each constraint family is broken at one row, and the checker must
name exactly that term or that row.

Hand solution (Δ = 0.5 h), site a (4 GPUs, idle 100 kW, busy 300 kW, pue 2) and site b (2 GPUs,
idle 50 kW, busy 150 kW, pue 1, grid only):

* job "train" (2 GPUs, 2 periods) at a from period 0; class "chat" (demand 3, 1) served 1, 0 at a
  and 1, 1 at b, unserved 1, 0;
* busy GPUs U_a = 3, 2 → P^IT_a = (400 + 200·U)/1000 = 1.0, 0.8 MW → load 2.0, 1.6 MW;
  U_b = 1, 1 → P^IT_b = (100 + 100·U)/1000 = 0.2 MW → load 0.2 MW;
* a, t0: 2.0 + charge 0.5 = renewable 0.5 + gen 1.0 + import 1.0 (γ = 1, β = 1, gen starts);
  a, t1: 1.6 + export 1.0 = renewable 0.5 + gen 1.8 + discharge 0.2 + ens 0.1 (γ = 0, β = 0);
  soc: 1 + 0.5·(0.8·0.5) = 1.2, then 1.2 − 0.5·0.2/0.5 = 1.0 (= soc0, terminal holds);
* b: import 0.2 MW in both periods.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from carbonsched.formulations.checker import check_solution
from carbonsched.formulations.solution import BREAKDOWN_TERMS, Solution
from carbonsched.instances import Instance, make_instance

A, B = 0, 1

#: The objective terms of the hand solution, $, each from its formula with the numbers above.
HAND_TERMS = {
    "training_value": 500.0,  # v = 500, scheduled
    "inference_revenue": 0.5 * 6.0 * (1 + 0 + 1 + 1),  # Δ·ρ·Σy = 9.0
    "latency_cost": -0.5 * 0.1 * (10.0 * (1 + 0) + 40.0 * (1 + 1)),  # −Δ·ω·Σ L·y = −4.5
    "unserved_penalty": -0.5 * 4.0 * (1 + 0),  # −Δ·φ·Σu = −2.0
    "grid_cost": -0.5 * (40.0 * 1.0 + -10.0 * 0.0 + 30.0 * 0.2 + 30.0 * 0.2),  # −26.0
    "export_revenue": 0.5 * (20.0 * 0.0 + -30.0 * 1.0),  # a exports at a negative price: −15.0
    "gen_cost": -0.5 * 80.0 * (1.0 + 1.8),  # −112.0
    "startup_cost": -100.0 * 1,  # one start-up
    "battery_cost": -0.5 * 2.0 * (0.5 + 0.2),  # −0.7
    "ens_cost": -0.5 * 1000.0 * 0.1,  # −50.0
    "carbon_cost": -10.0 * 1.11,  # −τ·Em = −11.1
}
#: Em = Δ·(κ_a·imp_a + κ_b·imp_b + e^gen·gen) = 0.5·(0.5·1.0 + 0.1·0.2 + 0.1·0.2 + 0.6·2.8), t.
HAND_EMISSIONS_T = 0.5 * (0.5 * 1.0 + 0.1 * 0.2 + 0.1 * 0.2 + 0.6 * 2.8)
#: Z = 500 + 9 − 4.5 − 2 − 26 − 15 − 112 − 100 − 0.7 − 50 − 11.1.
HAND_Z = 187.7


def hand_instance(*, jobs: dict | None = None, inference: dict | None = None, **overrides) -> Instance:
    """The 2-site, 2-period instance of the module docstring (``overrides``: site fields or globals)."""
    params = {"period_hours": 0.5, "voll": 1000.0, "carbon_budget_t": 100.0, "carbon_price": 10.0}
    sites = {
        "name": ["a", "b"],
        "gpus": [4, 2],
        "gpu_idle_kw": [100.0, 50.0],
        "gpu_busy_kw": [300.0, 150.0],
        "pue": [[2.0, 2.0], [1.0, 1.0]],
        "renewable_mw": [[0.5, 0.5], [0.0, 0.0]],
        "grid_import_mw": [5.0, 3.0],
        "grid_export_mw": [1.0, 0.0],
        "price_buy": [[40.0, -10.0], [30.0, 30.0]],
        "price_sell": [[20.0, -30.0], [10.0, 10.0]],
        "grid_co2": [[0.5, 0.2], [0.1, 0.1]],
        "gen_max_mw": [2.0, 0.0],
        "gen_min_mw": [0.5, 0.0],
        "gen_cost": [80.0, 0.0],
        "gen_startup_cost": [100.0, 0.0],
        "gen_co2": [0.6, 0.0],
        "gen_min_up": [1, 1],
        "gen_min_down": [1, 1],
        "bat_energy_mwh": [2.0, 0.0],
        "bat_power_mw": [1.0, 0.0],
        "bat_eta_charge": [0.8, 1.0],
        "bat_eta_discharge": [0.5, 1.0],
        "bat_soc0_mwh": [1.0, 0.0],
        "bat_cost": [2.0, 0.0],
    }
    for key in list(overrides):
        if key in sites:
            sites[key] = overrides.pop(key)
    params.update(overrides)
    job_fields = {"name": ["train"], "gpus": [2], "duration": [2], "release": [0], "deadline": [2],
                  "value": [500.0], "mandatory": [False], "allowed": [[True, False]], **(jobs or {})}
    class_fields = {"name": ["chat"], "demand": [[3.0, 1.0]], "revenue": [6.0], "penalty": [4.0],
                    "latency_ms": [[10.0, 40.0]], "latency_slo_ms": [50.0], "latency_cost": [0.1],
                    **(inference or {})}
    return make_instance(2, 2, n_jobs=1, n_classes=1, name="hand", sites=sites, jobs=job_fields,
                         inference=class_fields, **params)


def hand_solution(**changes) -> Solution:
    """The hand solution with the reported numbers above; ``changes`` replace fields as given."""
    fields = {
        "job_site": np.array([A]),
        "job_start": np.array([0]),
        "served": np.array([[[1.0, 0.0], [1.0, 1.0]]]),
        "unserved": np.array([[1.0, 0.0]]),
        "grid_import": np.array([[1.0, 0.0], [0.2, 0.2]]),
        "grid_export": np.array([[0.0, 1.0], [0.0, 0.0]]),
        "grid_importing": np.array([[1.0, 0.0], [1.0, 1.0]]),
        "charge": np.array([[0.5, 0.0], [0.0, 0.0]]),
        "discharge": np.array([[0.0, 0.2], [0.0, 0.0]]),
        "bat_charging": np.array([[1.0, 0.0], [0.0, 0.0]]),
        "soc": np.array([[1.2, 1.0], [0.0, 0.0]]),
        "gen": np.array([[1.0, 1.8], [0.0, 0.0]]),
        "gen_on": np.array([[1.0, 1.0], [0.0, 0.0]]),
        "gen_start": np.array([[1.0, 0.0], [0.0, 0.0]]),
        "renewable_used": np.array([[0.5, 0.5], [0.0, 0.0]]),
        "ens": np.array([[0.0, 0.1], [0.0, 0.0]]),
        "breakdown": dict(HAND_TERMS),
        "objective": HAND_Z,
        "emissions_t": HAND_EMISSIONS_T,
        "bound": 200.0,
        "gap": (200.0 - HAND_Z) / HAND_Z,  # of the true Z: kept when a test puts the reported Z off
    }
    for name, change in changes.items():
        if callable(change):
            fields[name] = change(np.array(fields[name], copy=True))
        else:
            fields[name] = change
    return Solution(instance_name="hand", method="hand", status="optimal", **fields)


def setting(index: tuple[int, ...], value: float):
    """A change for :func:`hand_solution`: one array entry set to ``value``."""

    def change(array: np.ndarray) -> np.ndarray:
        array[index] = value
        return array

    return change


def test_hand_numbers_add_up():
    assert HAND_EMISSIONS_T == pytest.approx(1.11)
    assert math.fsum(HAND_TERMS.values()) == pytest.approx(HAND_Z, abs=1e-9)
    assert set(HAND_TERMS) == set(BREAKDOWN_TERMS)


def test_recomputed_terms_equal_the_hand_derivation():
    report = check_solution(hand_instance(), hand_solution())
    assert report.ok, report.format()
    assert set(report.terms) == set(HAND_TERMS)
    for term, value in HAND_TERMS.items():
        assert report.terms[term] == pytest.approx(value, rel=1e-12, abs=1e-12), term
    assert report.objective == pytest.approx(HAND_Z, rel=1e-12)
    assert report.emissions == pytest.approx(HAND_EMISSIONS_T, rel=1e-12)
    assert report.carbon_excess_t == 0.0


def test_solve_path_scoring_agrees_with_the_hand_derivation():
    """Solution.from_arrays (the solve path's scoring) gives the same numbers, checked by the checker."""
    inst, hand = hand_instance(), hand_solution()
    energy = {name: getattr(hand, name) for name in ("grid_import", "grid_export", "grid_importing", "charge",
                                                     "discharge", "bat_charging", "soc", "gen", "gen_on",
                                                     "gen_start", "renewable_used", "ens")}
    scored = Solution.from_arrays(inst, method="hand", status="optimal", job_site=hand.job_site,
                                  job_start=hand.job_start, served=hand.served, unserved=hand.unserved,
                                  energy=energy, bound=200.0)
    assert check_solution(inst, scored).ok
    for term, value in HAND_TERMS.items():
        assert scored.breakdown[term] == pytest.approx(value, rel=1e-12, abs=1e-12), term


@pytest.mark.parametrize("term", BREAKDOWN_TERMS)
def test_a_term_off_by_a_little_is_named(term):
    breakdown = dict(HAND_TERMS)
    breakdown[term] += 1e-3  # above 1e-6·max(1, |term|) for every term here (largest: 500 → 5e-4)
    sol = hand_solution(breakdown=breakdown, objective=HAND_Z + 1e-3)
    report = check_solution(hand_instance(), sol)
    assert report.violated() == {f"breakdown:{term}"}, report.format()
    (violation,) = report.violations
    assert violation.amount == pytest.approx(1e-3, rel=1e-6)
    assert term in violation.message


def test_reported_objective_emissions_and_gap_off_by_a_little_are_named():
    inst = hand_instance()
    report = check_solution(inst, hand_solution(objective=HAND_Z + 1e-3))
    assert report.violated() == {"objective"}, report.format()
    report = check_solution(inst, hand_solution(emissions_t=HAND_EMISSIONS_T + 1e-5))
    assert report.violated() == {"emissions"}, report.format()
    # gap = (200 − 187.7)/187.7; a Solution given no gap computes it, one given a wrong gap is caught
    assert hand_solution(gap=None).gap == pytest.approx((200.0 - 187.7) / 187.7)
    assert check_solution(inst, hand_solution(gap=None)).ok
    report = check_solution(inst, hand_solution(gap=(200.0 - 187.7) / 187.7 + 1e-4))
    assert report.violated() == {"gap"}, report.format()
    assert check_solution(inst, hand_solution(bound=math.inf, gap=math.inf)).ok
    assert check_solution(inst, hand_solution(bound=math.inf, gap=0.0)).violated() == {"gap"}


def test_within_tolerance_passes():
    report = check_solution(hand_instance(), hand_solution(grid_import=setting((B, 0), 0.2 + 5e-7)))
    assert report.violated() <= {"breakdown:grid_cost", "breakdown:carbon_cost", "emissions"}
    assert "power_balance" not in report.violated()


#: (family, instance overrides, solution changes, the one row that must be named)
ONE_ROW_CASES = [
    ("job_once", {}, {"job_site": np.array([-1])}, (0,)),
    ("job_mandatory", {"jobs": {"mandatory": [True]}}, {"job_site": np.array([-1]), "job_start": np.array([-1])},
     (0,)),
    ("job_site_allowed", {}, {"job_site": np.array([B])}, (0,)),
    ("job_start_window", {}, {"job_start": np.array([1])}, (0,)),
    ("demand_balance", {}, {"unserved": setting((0, 1), 0.5)}, (0, 1)),
    ("served_outside_slo", {"inference": {"latency_ms": [[10.0, 60.0]]}},
     {"served": setting((0, B, 1), 0.0), "unserved": setting((0, 1), 1.0)}, (0, B, 0)),
    ("gpu_capacity", {}, {"served": setting((0, A, 0), 3.0)}, (A, 0)),
    ("power_balance", {}, {"grid_import": setting((B, 0), 0.3)}, (B, 0)),
    ("battery_dynamics", {}, {"soc": setting((A, 1), 1.1)}, (A, 1)),
    ("battery_terminal", {}, {"discharge": setting((A, 1), 0.25), "soc": setting((A, 1), 0.95)}, (A,)),
    ("battery_charge_mode", {}, {"bat_charging": setting((A, 0), 0)}, (A, 0)),
    ("battery_discharge_mode", {}, {"bat_charging": setting((A, 1), 1)}, (A, 1)),
    ("grid_import_direction", {}, {"grid_importing": setting((B, 0), 0)}, (B, 0)),
    ("grid_export_direction", {}, {"grid_importing": setting((A, 1), 1)}, (A, 1)),
    ("gen_min_output", {}, {"gen": setting((A, 0), 0.4)}, (A, 0)),
    ("gen_max_output", {}, {"gen": setting((A, 1), 2.1)}, (A, 1)),
    ("gen_startup", {}, {"gen_start": setting((A, 0), 0)}, (A, 0)),
    ("gen_min_up", {"gen_min_up": [2, 1]}, {"gen_on": setting((A, 1), 0), "gen": setting((A, 1), 0.0)}, (A, 1)),
    ("gen_min_down", {}, {"gen_start": setting((A, 1), 1)}, (A, 1)),
    ("gen_absent", {}, {"gen_on": setting((B, 0), 1), "gen_start": setting((B, 0), 1)}, (B, 0)),
    ("carbon_budget", {"carbon_budget_t": 1.0}, {}, ()),
    ("bound:ens", {}, {"ens": setting((B, 1), -0.05), "grid_import": setting((B, 1), 0.25)}, (B, 1)),
    ("bound:soc", {"bat_energy_mwh": [1.1, 0.0]}, {}, (A, 0)),
    ("binary:bat_charging", {}, {"bat_charging": setting((A, 0), 0.5)}, (A, 0)),
    ("finite:ens", {}, {"ens": setting((B, 1), np.nan)}, (B, 1)),
]


@pytest.mark.parametrize(("family", "inst_changes", "sol_changes", "index"), ONE_ROW_CASES,
                         ids=[case[0] for case in ONE_ROW_CASES])
def test_one_violated_row_is_named_with_its_index(family, inst_changes, sol_changes, index):
    report = check_solution(hand_instance(**inst_changes), hand_solution(**sol_changes))
    assert report.counts.get(family) == 1, report.format()
    (violation,) = [v for v in report.violations if v.constraint == family]
    assert violation.index == index
    assert violation.amount > 0 or math.isnan(violation.amount)


def test_every_model_family_has_a_one_row_case():
    families = {case[0] for case in ONE_ROW_CASES}
    model_families = {
        "job_once", "job_mandatory", "job_site_allowed", "job_start_window", "demand_balance",
        "served_outside_slo", "gpu_capacity", "power_balance", "battery_dynamics", "battery_terminal",
        "battery_charge_mode", "battery_discharge_mode", "grid_import_direction", "grid_export_direction",
        "gen_min_output", "gen_max_output", "gen_startup", "gen_min_up", "gen_min_down", "gen_absent",
        "carbon_budget",
    }  # fmt: skip
    assert model_families <= families


def test_carbon_excess_is_the_hand_difference_when_not_enforced():
    report = check_solution(hand_instance(carbon_budget_t=1.0), hand_solution(), carbon=False)
    assert report.ok, report.format()
    assert report.carbon_excess_t == pytest.approx(1.11 - 1.0)


def test_checker_does_not_use_the_solve_path_scoring():
    """The checker's module never imports the scoring code it verifies."""
    import carbonsched.formulations.checker as checker

    source = open(checker.__file__, encoding="utf-8").read()
    for name in ("breakdown_from_arrays", "emissions_from_arrays", "sum_terms", "from .energy", "from .joint"):
        assert name not in source.split('"""', 2)[2], name
    assert not hasattr(checker, "breakdown_from_arrays")
    assert dataclasses.is_dataclass(checker.CheckReport)
