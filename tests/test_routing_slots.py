"""Routing slots of the site subproblems: a few best classes per period give the exact site optimum."""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import pytest
from carbonsched.decomp.lagrangian import make_layout, solve_lagrangian
from carbonsched.formulations import site_milp
from carbonsched.formulations.checker import check_solution
from carbonsched.formulations.monolithic import solve_monolithic
from carbonsched.formulations.site_milp import SiteMILP, assign_slots, routing_slot_count
from carbonsched.instances import generate


def _crowded(seed: int):
    """Inference demand raised until a site holds fewer routing slots than it has classes within SLO."""
    inst = generate(sites=3, periods=6, jobs=5, classes=6, seed=seed)
    ratio = inst.sites.gpus.max() / max(float(inst.inference.demand.max()), 1e-9)
    inf = dataclasses.replace(inst.inference, demand=inst.inference.demand * ratio * 0.6)
    return dataclasses.replace(inst, inference=inf)


def _all_classes(monkeypatch) -> None:
    """The reference: one slot per class (the model before slots)."""
    monkeypatch.setattr(site_milp, "routing_slot_count", lambda demand, gpus: (np.asarray(demand) > 0).sum(axis=0))


def test_slot_count_is_the_longest_greedy_prefix():
    """Brute force over every order of the classes: the prefix that fills up to the site's GPUs is never longer
    than the count, and the adversarial order reaches it."""
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(1, 6))
        demand = np.where(rng.random(n) < 0.2, 0.0, rng.uniform(0.5, 10.0, n))
        gpus = float(rng.uniform(0.0, 30.0))
        longest = 0
        for order in itertools.permutations(range(n)):
            d = demand[list(order)]
            d = d[d > 0]
            # classes the greedy fill of gpus touches: those whose predecessors leave room
            longest = max(longest, int((np.cumsum(d) - d < gpus).sum()) if gpus > 0 else min(d.size, 1))
        assert routing_slot_count(demand[:, None], gpus)[0] == longest


def test_fewer_slots_give_the_exact_site_optimum(monkeypatch):
    inst = _crowded(1)
    lay = make_layout(inst)
    rng = np.random.default_rng(3)
    draws = [lay.split(lay.project(rng.normal(0.0, s, lay.size))) for s in (0.0, 0.05, 0.2)]
    slotted = {i: SiteMILP(inst, i) for i in range(inst.n_sites)}
    fewer = [int(s.slot_t.size < s.classes.size * inst.n_periods) for s in slotted.values()]
    assert sum(fewer) > 0, "the instance must have a site with fewer slots than class-periods"
    got = {(i, d): slotted[i].solve(*z) for i in slotted for d, z in enumerate(draws)}
    _all_classes(monkeypatch)
    for (i, d), r in got.items():
        ref = SiteMILP(inst, i).solve(*draws[d])
        assert ref.status == r.status == "optimal"
        assert r.value == pytest.approx(ref.value, rel=1e-7, abs=1e-6)
        assert r.bound >= ref.value - 1e-6 * max(1.0, abs(ref.value))
        # the routing it reports is within demand and the SLO
        assert np.all(r.served <= inst.inference.demand + 1e-6)
        assert np.all(r.served[~inst.slo_mask()[:, i]] == 0)


def test_a_start_from_other_multipliers_is_poured_into_the_new_slots():
    inst = _crowded(2)
    lay = make_layout(inst)
    rng = np.random.default_rng(1)
    a, b = (lay.split(lay.project(rng.normal(0.0, 0.1, lay.size))) for _ in range(2))
    for i in range(inst.n_sites):
        model = SiteMILP(inst, i)
        first = model.solve(*a)
        poured = model._refill_slots(first.values, model._assign_slots(
            model.y_unit[:, None] - b[1][model.classes], model.demand, merge=False))
        ids = model.slot_ids
        totals = np.bincount(model.slot_t, weights=first.values[ids], minlength=inst.n_periods)
        np.testing.assert_allclose(np.bincount(model.slot_t, weights=poured[ids], minlength=inst.n_periods), totals,
                                   atol=1e-7)
        again = model.solve(*b, start=first.values)
        fresh = SiteMILP(inst, i).solve(*b)
        assert (again.value, again.bound) == pytest.approx((fresh.value, fresh.bound), rel=1e-9, abs=1e-6)


def test_allocation_mode_pools_the_classes_beyond_the_slots():
    inst = _crowded(1)
    K, T, J = inst.n_classes, inst.n_periods, inst.n_jobs
    for i in range(inst.n_sites):
        model = SiteMILP(inst, i)
        count = np.bincount(model.slot_t, minlength=T)
        cap = np.where(inst.slo_mask()[:, i][:, None], inst.inference.demand / (K + 1), 0.0)  # many small caps
        r = model.solve_allocated(np.ones(J, bool), np.zeros(J, bool), cap, math.inf, gap=1e-9)
        assert r.has_solution
        assert np.all(r.served <= cap) and np.all(r.served >= 0)
        classes_served = (r.served > 1e-9).sum(axis=0)
        if model.classes.size > count.max():
            assert (classes_served > count).any(), "the last slot serves the classes pooled in it"


def test_assign_slots_orders_by_value_and_pools_the_rest():
    value = np.array([[3.0], [5.0], [1.0], [4.0]])
    ub = np.array([[2.0], [1.0], [7.0], [0.0]])
    slot_t, slot_rank = np.zeros(2, np.int64), np.arange(2)
    kept = assign_slots(value, ub, slot_t, slot_rank, merge=False)
    np.testing.assert_array_equal(kept.member_class, [1, 0])  # 5 then 3; class 3 has no room
    np.testing.assert_array_equal(kept.obj, [5.0, 3.0])
    pooled = assign_slots(value, ub, slot_t, slot_rank, merge=True)
    np.testing.assert_array_equal(pooled.member_class, [1, 0, 2])
    np.testing.assert_array_equal(pooled.ub, [1.0, 9.0])
    np.testing.assert_array_equal(pooled.obj, [5.0, 1.0])  # the pool at its lowest value
    served = pooled.served(np.array([1.0, 4.0]), np.arange(4), slot_t, 4, 1)
    np.testing.assert_array_equal(served[:, 0], [2.0, 1.0, 2.0, 0.0])


def test_lagrangian_bound_stays_valid_with_few_slots():
    inst = _crowded(1)
    assert any(SiteMILP(inst, i).slot_t.size < SiteMILP(inst, i).classes.size * inst.n_periods
               for i in range(inst.n_sites))
    opt = solve_monolithic(inst, gap=0).objective
    sol = solve_lagrangian(inst, iteration_limit=10, progress=lambda line: None, close=False)
    report = check_solution(inst, sol)
    assert report.ok, report.format()
    slack = 1e-6 * max(1.0, abs(opt))
    assert np.all(sol.trace.dual >= opt - slack) and sol.objective <= opt + slack
