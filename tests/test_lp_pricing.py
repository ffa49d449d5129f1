"""The LP relaxation solved by pricing placements or routing columns in: same optimum as the full LP, a valid
bound every round."""

from __future__ import annotations

import numpy as np
import pytest
from carbonsched.formulations.joint import serving_value
from carbonsched.formulations.lp_relaxation import initial_columns, initial_routing, solve_lp_relaxation
from carbonsched.formulations.monolithic import solve_monolithic
from carbonsched.instances.generator import generate

from .conftest import routing_priced_from_afar


def dense(seed: int, sites: int = 4):
    inst = generate(sites=sites, periods=8, jobs=10, classes=2, seed=seed, job_sites=sites)
    inst.jobs.mandatory[0] = True
    return inst


def _out_of_time_after(monkeypatch, lpr, rounds: int) -> None:
    """The LP after ``rounds`` solved ones "hits its time limit"."""
    real, calls = lpr._highs, []

    def solve(*args):
        calls.append(1)
        if len(calls) > rounds:
            res, _ = real(*args)
            res.status = 1
            return res, None
        return real(*args)

    monkeypatch.setattr(lpr, "_highs", solve)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_priced_lp_equals_the_full_lp(seed, monkeypatch):
    import carbonsched.formulations.lp_relaxation as lpr

    inst = dense(seed)
    monkeypatch.setattr(lpr, "PRICING_SITES", 1)  # start far from the optimum: pricing must do the work
    full = solve_lp_relaxation(inst)
    priced = solve_lp_relaxation(inst, pricing=True)
    assert priced.optimal and full.optimal
    assert priced.pricing_rounds > 1 and priced.placements_in < priced.jm.x.size
    assert priced.bound == pytest.approx(full.bound, rel=1e-7, abs=1e-6)
    # the priced LP's point is feasible for the full LP: left-out placements are zero
    assert priced.values[priced.jm.x].min() >= -1e-9


@pytest.mark.parametrize("stop_after", [1, 2])
def test_the_bound_of_a_stopped_pricing_is_valid(monkeypatch, stop_after):
    import carbonsched.formulations.lp_relaxation as lpr

    inst = dense(3)
    monkeypatch.setattr(lpr, "PRICING_SITES", 1)
    monkeypatch.setattr(lpr, "PRICING_COLUMNS_PER_JOB", 1)
    opt = solve_monolithic(inst, gap=0.0)
    full = solve_lp_relaxation(inst)
    _out_of_time_after(monkeypatch, lpr, stop_after)
    stopped = solve_lp_relaxation(inst, pricing=True)
    assert stopped.optimal and stopped.pricing_rounds == stop_after
    assert stopped.placements_in < stopped.jm.x.size  # pricing was not finished
    # restricted optimum + left-out positive reduced costs ≥ the full LP's optimum ≥ Z*
    assert stopped.bound >= full.bound - 1e-6 * abs(full.bound)
    assert full.bound >= opt.objective - 1e-6 * abs(opt.objective)


def test_initial_columns_keep_every_placement_of_a_mandatory_job():
    inst = dense(4, sites=6)
    lp = solve_lp_relaxation(inst)
    active = initial_columns(inst, lp.jm, sites_per_job=2)
    pl = lp.jm.placements
    assert active[pl.job == 0].all()  # mandatory
    per_job_sites = [np.unique(pl.site[active & (pl.job == j)]).size for j in range(inst.n_jobs)
                     if not inst.jobs.mandatory[j]]
    assert max(per_job_sites) <= 2


# ---------------------------------------------------------------- routing columns priced in
@pytest.mark.parametrize("seed", [0, 1])
def test_routing_priced_lp_equals_the_full_lp(seed, monkeypatch):
    import carbonsched.formulations.lp_relaxation as lpr

    inst = generate(sites=30, periods=8, seed=seed)
    full = solve_lp_relaxation(inst, routing=False)
    routing_priced_from_afar(monkeypatch)
    monkeypatch.setattr(lpr, "ROUTING_GAP", 0.0)  # price until nothing prices out
    monkeypatch.setattr(lpr, "ROUTING_STALL", -1.0)
    priced = solve_lp_relaxation(inst, routing=True)
    jm = priced.jm
    assert priced.optimal and priced.pricing_rounds > 1
    assert 0 < priced.routing_in < int((jm.y >= 0).sum())
    assert priced.bound == pytest.approx(full.bound, rel=1e-7, abs=1e-6)
    # its point is feasible for the full LP: left-out routing columns are zero, every row holds
    a, lhs, rhs, lb, ub, _ = jm.am.recorded_arrays()
    left_out = (jm.y >= 0) & ~priced.routing_active
    assert left_out.any() and np.all(priced.values[jm.y[left_out]] == 0.0)
    act = a @ priced.values
    scale = 1e-6 * np.maximum(1.0, np.abs(act))
    assert np.all(act <= rhs + scale) and np.all(act >= lhs - scale)
    assert np.all(priced.values >= lb - 1e-9) and np.all(priced.values <= ub + 1e-6 * np.maximum(1.0, ub))


@pytest.mark.parametrize("stop_after", [1, 2])
def test_the_bound_of_a_stopped_routing_pricing_is_valid(monkeypatch, stop_after):
    import carbonsched.formulations.lp_relaxation as lpr

    inst = generate(sites=8, periods=8, seed=5)
    opt = solve_monolithic(inst, gap=0.0)
    full = solve_lp_relaxation(inst, routing=False)
    routing_priced_from_afar(monkeypatch)
    _out_of_time_after(monkeypatch, lpr, stop_after)
    stopped = solve_lp_relaxation(inst, routing=True)
    assert stopped.optimal and stopped.pricing_rounds == stop_after
    assert stopped.routing_in < int((stopped.jm.y >= 0).sum())  # pricing was not finished
    # restricted optimum + λ_{k,t} × the largest left-out reduced cost ≥ the full LP's optimum ≥ Z*
    assert stopped.bound >= full.bound - 1e-6 * abs(full.bound)
    assert full.bound >= opt.objective - 1e-6 * abs(opt.objective)


def test_initial_routing_keeps_the_nearest_sites_and_a_drawn_few():
    inst = generate(sites=20, periods=4, seed=2)
    lp = solve_lp_relaxation(inst, routing=False)
    jm = lp.jm
    first = initial_routing(inst, jm, nearest=2, drawn=3, seed=7)
    assert np.array_equal(first, initial_routing(inst, jm, nearest=2, drawn=3, seed=7))  # deterministic
    assert not (first & (jm.y < 0)).any()  # only columns that exist (sites within SLO)
    per_class = first[:, :, 0].sum(axis=1)
    within = (jm.y[:, :, 0] >= 0).sum(axis=1)
    assert np.all(per_class <= np.minimum(within, 5)) and np.all(per_class >= np.minimum(within, 2))
    assert (first == first[:, :, :1]).all()  # the same sites in every period
    value = np.where(jm.y[:, :, 0] >= 0, serving_value(inst), -np.inf)
    for k in range(inst.n_classes):  # the class's nearest (highest serving value) site is in
        assert first[k, int(np.argmax(value[k])), 0]


def test_suggested_routing_columns_join_the_next_round(monkeypatch):
    """Each round that goes on asks for columns with its own LP; they are in the next round, and the pricing
    still ends at the full LP's optimum."""
    import carbonsched.formulations.lp_relaxation as lpr

    inst = generate(sites=30, periods=8, seed=1)
    full = solve_lp_relaxation(inst, routing=False)
    routing_priced_from_afar(monkeypatch)
    monkeypatch.setattr(lpr, "ROUTING_GAP", 0.0)
    monkeypatch.setattr(lpr, "ROUTING_STALL", -1.0)
    asked, routed = [], []
    rng = np.random.default_rng(0)

    def suggest(round_lp):
        asked.append(round_lp.pricing_rounds)
        assert round_lp.optimal and np.isfinite(round_lp.bound)
        cols = (round_lp.jm.y >= 0) & (rng.random(round_lp.jm.y.shape) < 0.05)
        routed.append(cols)
        return cols

    priced = solve_lp_relaxation(inst, routing=True, suggest_routing=suggest)
    assert asked == list(range(1, priced.pricing_rounds))  # every round but the last, in order
    for cols in routed:
        assert not (cols & ~priced.routing_active).any()
    assert priced.bound == pytest.approx(full.bound, rel=1e-7, abs=1e-6)
    # without suggestions the same pricing needs more rounds
    plain = solve_lp_relaxation(inst, routing=True)
    assert plain.pricing_rounds >= priced.pricing_rounds


def test_a_round_expected_to_overrun_the_time_limit_is_not_started(monkeypatch):
    """Rounds grow: the next one is expected to take the last one's duration times its growth, and is not
    started when that does not fit (a round cut off by the limit is lost). Clocked by a fake clock."""
    import types

    import carbonsched.formulations.lp_relaxation as lpr

    clock = [0.0]
    monkeypatch.setattr(lpr, "time", types.SimpleNamespace(perf_counter=lambda: clock[0]))
    real, durations = lpr._highs, [100.0, 200.0, 400.0, 800.0]
    calls = []

    def timed(*args):
        clock[0] += durations[len(calls)]
        calls.append(1)
        return real(*args[:-1], None)

    monkeypatch.setattr(lpr, "_highs", timed)
    routing_priced_from_afar(monkeypatch)
    monkeypatch.setattr(lpr, "ROUTING_GAP", 0.0)
    monkeypatch.setattr(lpr, "ROUTING_STALL", -1.0)
    inst = generate(sites=30, periods=8, seed=0)
    # after two rounds (300 s) 350 s are left: more than the last round's 200 s, less than the expected 400 s
    lp = solve_lp_relaxation(inst, routing=True, time_limit=650.0)
    assert len(calls) == 2 and lp.pricing_rounds == 2 and lp.optimal
