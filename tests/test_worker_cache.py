"""The workers' cache of site solvers: bounded in memory, the least used dropped first, results unchanged."""

from __future__ import annotations

import math

import numpy as np
import pytest
from carbonsched.decomp import parallel
from carbonsched.decomp.benders import solve_benders
from carbonsched.decomp.lagrangian import solve_lagrangian
from carbonsched.decomp.parallel import ParallelConfig, default_worker_cache_mb
from carbonsched.errors import InputError
from carbonsched.formulations.checker import check_solution
from carbonsched.instances import generate

from .edge_cases import random_small

#: Far below any worker's resident memory: every solver is dropped after every task.
TINY_CACHE_MB = 1.0


def _lagrangian_instance():
    return generate(sites=3, periods=6, jobs=5, classes=2, seed=4)


def test_least_used_solvers_are_dropped_first_down_below_the_bound(monkeypatch):
    for name in ("_SOLVERS", "_LAST_USE", "_USES"):
        monkeypatch.setattr(parallel, name, {})
    # (calls, last call) of 16 solvers: an energy model called once lately goes before a site MILP called
    # often long ago
    uses = [(5, 40), (1, 60), (9, 30), (1, 2), (3, 50), (2, 10), (8, 20), (1, 3),
            (4, 45), (6, 35), (2, 5), (7, 25), (3, 15), (9, 55), (5, 8), (2, 1)]
    for site, (calls, last) in enumerate(uses):
        key = ("tok", "kind", site)
        parallel._SOLVERS[key] = object()
        parallel._USES[key], parallel._LAST_USE[key] = calls, last
    # resident memory: 100 MB plus 10 MB per cached solver
    monkeypatch.setattr(parallel, "resident_mb", lambda: 100.0 + 10.0 * len(parallel._SOLVERS))
    assert parallel._drop_solvers_over(260.0) == 0  # within the bound: nothing dropped
    # past 250 MB: batches of an eighth of the cache (2 of 16, then 1) until within 90 % of it (225 MB)
    assert parallel._drop_solvers_over(250.0) == 4
    dropped = {site for site in range(16) if ("tok", "kind", site) not in parallel._SOLVERS}
    assert dropped == {3, 7, 1, 15}  # one call each (last at 2, 3, 60), then two calls with the oldest last (1)
    # the counts outlive the drop: a rebuilt solver is not taken for a new one
    assert len(parallel._USES) == 16 and parallel._USES[("tok", "kind", 1)] == 1
    assert parallel._drop_solvers_over(0.0) == 12 and not parallel._SOLVERS


def test_cache_bound_defaults_and_validation():
    assert ParallelConfig(n_jobs=1).worker_cache_mb == math.inf  # in-process: measured on the whole run
    assert ParallelConfig(n_jobs=2, backend="sequential").worker_cache_mb == math.inf
    two = ParallelConfig(n_jobs=2).worker_cache_mb
    assert two == default_worker_cache_mb(2) and two >= parallel.MIN_WORKER_CACHE_MB
    assert default_worker_cache_mb(8) <= default_worker_cache_mb(2)
    with pytest.raises(InputError, match="worker_cache_mb"):
        ParallelConfig(n_jobs=2, worker_cache_mb=0.0)


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_lagrangian_gives_the_same_results_when_workers_drop_their_solvers(n_jobs):
    inst = _lagrangian_instance()
    kw = dict(iteration_limit=6, progress=lambda line: None, close=False)
    kept = solve_lagrangian(inst, config=ParallelConfig(n_jobs=n_jobs), **kw)
    dropping = solve_lagrangian(inst, config=ParallelConfig(n_jobs=n_jobs, worker_cache_mb=TINY_CACHE_MB), **kw)
    assert kept.extra["site_solvers_dropped"] == 0
    # every task's solvers were dropped after it and built again for the next
    assert dropping.extra["site_solvers_dropped"] > 0
    assert dropping.extra["site_solvers_built"] > kept.extra["site_solvers_built"]
    assert dropping.objective == kept.objective
    assert np.array_equal(dropping.trace.dual, kept.trace.dual)
    assert np.array_equal(dropping.trace.primal, kept.trace.primal)
    assert np.array_equal(dropping.job_site, kept.job_site)
    report = check_solution(inst, dropping)
    assert report.ok, report.format()


def test_benders_gives_the_same_results_when_workers_drop_their_solvers():
    inst = random_small(3)
    kept = solve_benders(inst, gap=1e-4, config=ParallelConfig(n_jobs=2))
    dropping = solve_benders(inst, gap=1e-4, config=ParallelConfig(n_jobs=2, worker_cache_mb=TINY_CACHE_MB))
    assert dropping.extra["site_solvers_dropped"] > 0
    np.testing.assert_array_equal(dropping.job_site, kept.job_site)
    np.testing.assert_array_equal(dropping.job_start, kept.job_start)
    # Z may differ in the last bits: a site LP re-solved in place and a fresh build of it differ by float noise
    assert dropping.objective == pytest.approx(kept.objective, rel=1e-12)
    assert dropping.bound == kept.bound
    np.testing.assert_array_equal(dropping.trace.dual, kept.trace.dual)
    report = check_solution(inst, dropping)
    assert report.ok, report.format()
