"""Candidate placements: a job is never offered a site with fewer GPUs than it needs, and that changes no optimum."""

from __future__ import annotations

import numpy as np
import pytest
from carbonsched.formulations.checker import check_solution
from carbonsched.formulations.lp_relaxation import solve_lp_relaxation
from carbonsched.formulations.monolithic import solve_monolithic
from carbonsched.instances.generator import generate


def with_large_jobs(seed: int):
    """Jobs allowed everywhere, two of them larger than the smallest sites but not than the largest."""
    inst = generate(sites=4, periods=8, jobs=8, classes=2, seed=seed, job_sites=4)
    gpus = np.sort(inst.sites.gpus)
    inst.jobs.gpus[:2] = (gpus[0] + gpus[-1]) // 2
    inst.jobs.mandatory[0] = True
    return inst


def test_placements_leave_out_exactly_the_sites_too_small_for_the_job():
    import carbonsched.formulations.joint as joint

    inst = with_large_jobs(0)
    pl = joint.enumerate_placements(inst)
    jb = inst.jobs
    assert (jb.gpus[pl.job] <= inst.sites.gpus[pl.site]).all()
    starts = np.maximum(jb.deadline - jb.duration - jb.release + 1, 0)
    fits = jb.allowed & (jb.gpus[:, None] <= inst.sites.gpus[None, :])
    assert not fits.all()  # the instance really has sites too small for a job
    assert pl.size == int((fits.sum(axis=1) * starts).sum())
    for j in range(inst.n_jobs):  # every allowed site the job fits is still offered
        assert set(np.unique(pl.site[pl.job == j]).tolist()) == set(np.flatnonzero(fits[j]).tolist())


@pytest.mark.parametrize("seed", [0, 1])
def test_leaving_out_sites_too_small_keeps_the_optimum_and_tightens_the_lp(seed, monkeypatch):
    import carbonsched.formulations.joint as joint

    inst = with_large_jobs(seed)
    opt = solve_monolithic(inst, gap=0.0)
    lp = solve_lp_relaxation(inst)
    assert check_solution(inst, opt).ok
    monkeypatch.setattr(joint, "usable_sites", lambda inst: np.asarray(inst.jobs.allowed, dtype=bool))
    opt_all = solve_monolithic(inst, gap=0.0)
    lp_all = solve_lp_relaxation(inst)
    assert opt.objective == pytest.approx(opt_all.objective, rel=1e-6, abs=1e-6)
    assert lp_all.bound >= lp.bound - 1e-6 * abs(lp.bound)  # fewer columns: never a looser relaxation
    assert lp.bound >= opt.objective - 1e-6 * abs(opt.objective)  # still a valid bound
