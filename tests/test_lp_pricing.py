"""The LP relaxation solved by pricing placements in: same optimum as the full LP, a valid bound every round."""

from __future__ import annotations

import numpy as np
import pytest
from carbonsched.formulations.lp_relaxation import initial_columns, solve_lp_relaxation
from carbonsched.formulations.monolithic import solve_monolithic
from carbonsched.instances.generator import generate


def dense(seed: int, sites: int = 4):
    inst = generate(sites=sites, periods=8, jobs=10, classes=2, seed=seed, job_sites=sites)
    inst.jobs.mandatory[0] = True
    return inst


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
    real, calls = lpr._highs, []

    def out_of_time_after(*args):  # the next LP "hits its time limit"
        calls.append(1)
        if len(calls) > stop_after:
            res, _ = real(*args)
            res.status = 1
            return res, None
        return real(*args)

    monkeypatch.setattr(lpr, "_highs", out_of_time_after)
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
