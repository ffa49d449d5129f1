"""Primal completion by allocation (per-site MILPs on the pool) and the neighbourhood improvement."""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import pytest
from carbonsched.decomp.completion import (
    SITE_MILP_KIND,
    allocate,
    choose_groups,
    complete_by_allocation,
    complete_from_site_results,
    improve_by_neighbourhoods,
    lp_site_shares,
    point_from_lp,
    solution_site_shares,
    solve_allocation,
)
from carbonsched.decomp.lagrangian import lp_relaxation, make_layout
from carbonsched.decomp.parallel import ParallelConfig, SitePool
from carbonsched.formulations.checker import check_solution
from carbonsched.formulations.lp_relaxation import solve_lp_relaxation
from carbonsched.formulations.monolithic import solve_monolithic
from carbonsched.formulations.site_milp import SiteMILP, make_site_milp
from carbonsched.instances.generator import generate
from carbonsched.instances.shipped import load_default

#: The 5-site day takes 10-40 s per case (slow); the others a few seconds.
CASES = ["gen4x12", "paper", pytest.param("gen5x24", marks=pytest.mark.slow)]


@functools.cache
def instance(name: str, binding: bool):
    inst = {"gen4x12": lambda: generate(sites=4, periods=12, seed=1),
            "gen5x24": lambda: generate(sites=5, periods=24, seed=2),
            "paper": load_default}[name]()
    if binding:  # 70 % of the budget: the carbon row binds
        inst = dataclasses.replace(inst, carbon_budget_t=0.7 * inst.carbon_budget_t)
    return inst


@functools.cache
def monolithic(name: str, binding: bool):
    return solve_monolithic(instance(name, binding), gap=1e-6)


@functools.cache
def lp(name: str, binding: bool):
    return solve_lp_relaxation(instance(name, binding))


def assert_feasible(inst, sol) -> None:
    report = check_solution(inst, sol)
    assert report.n_violations == 0, report.format()
    assert (sol.job_site[inst.jobs.mandatory] >= 0).all()


@pytest.mark.parametrize("binding", [False, True])
@pytest.mark.parametrize("name", CASES)
def test_completion_is_feasible_and_below_the_optimum(name: str, binding: bool) -> None:
    inst, mono = instance(name, binding), monolithic(name, binding)
    with SitePool(inst) as pool:
        sol = complete_by_allocation(inst, pool, lp(name, binding))
        assert_feasible(inst, sol)
        assert sol.objective <= mono.bound + 1e-6 * abs(mono.bound)
        assert sol.objective >= sol.extra["first_pass_objective"]  # the rebalance round never loses value
        assert sol.bound == pytest.approx(lp(name, binding).bound)
        left = lp_site_shares(lp(name, binding)) - solution_site_shares(inst, sol)
        groups = choose_groups(inst, sol, value_left=left)
        better = improve_by_neighbourhoods(inst, pool, sol, groups)
    assert_feasible(inst, better)
    assert sol.objective <= better.objective <= mono.bound + 1e-6 * abs(mono.bound)
    if binding:
        assert sol.emissions_t <= inst.carbon_budget_t and better.emissions_t <= inst.carbon_budget_t


def test_drawn_partitions_are_disjoint_linked_reproducible_and_vary() -> None:
    inst = generate(sites=12, periods=6, seed=3)
    with SitePool(inst) as pool:
        sol = complete_by_allocation(inst, pool, solve_lp_relaxation(inst))
    slo = inst.slo_mask().astype(float)
    jobs = inst.jobs.allowed.astype(float)
    linked = (slo.T @ slo + jobs.T @ jobs) > 0
    drawn = []
    for seed in range(6):
        groups = choose_groups(inst, sol, size=3, rng=np.random.default_rng(seed))
        sites = np.concatenate(groups)
        assert np.unique(sites).size == sites.size  # disjoint
        for g in groups:
            assert 2 <= len(g) <= 3
            # a site joins only a group it is linked to (the noise scales links, it never creates one)
            assert all(linked[g[k], [x for x in g if x != g[k]]].any() for k in range(len(g)))
        again = choose_groups(inst, sol, size=3, rng=np.random.default_rng(seed))
        assert [g.tolist() for g in groups] == [g.tolist() for g in again]
        drawn.append(tuple(tuple(g.tolist()) for g in groups))
    assert len(set(drawn)) > 1  # the draws regroup the sites
    with SitePool(inst) as pool:
        better = improve_by_neighbourhoods(inst, pool, sol, [np.array(g) for g in drawn[1]])
    assert_feasible(inst, better)
    assert sol.objective <= better.objective <= solve_monolithic(inst, gap=1e-6).bound + 1e-6


def test_site_shares_add_up_to_the_objective() -> None:
    inst = instance("gen4x12", True)
    sol = monolithic("gen4x12", True)
    constant = inst.period_hours * float((inst.inference.penalty[:, None] * inst.inference.demand).sum())
    assert solution_site_shares(inst, sol).sum() - constant == pytest.approx(sol.objective, rel=1e-9, abs=1e-6)
    # the LP's shares add up to its bound the same way
    relax = lp("gen4x12", True)
    assert lp_site_shares(relax).sum() - constant == pytest.approx(relax.bound, rel=1e-6)


def test_one_and_two_workers_give_identical_results() -> None:
    inst = instance("gen4x12", True)
    out = []
    for n in (1, 2):
        with SitePool(inst, ParallelConfig(n_jobs=n)) as pool:
            sol = complete_by_allocation(inst, pool, lp("gen4x12", True))
            groups = choose_groups(inst, sol, size=2)
            out.append((sol, improve_by_neighbourhoods(inst, pool, sol, groups)))
    for a, b in zip(out[0], out[1], strict=True):
        assert a.objective == b.objective
        np.testing.assert_array_equal(a.job_site, b.job_site)
        np.testing.assert_array_equal(a.job_start, b.job_start)
        np.testing.assert_array_equal(a.served, b.served)
        np.testing.assert_array_equal(a.grid_import, b.grid_import)


def test_completion_from_lagrangian_site_results() -> None:
    name, binding = "gen4x12", False
    inst, mono = instance(name, binding), monolithic(name, binding)
    layout = make_layout(inst)
    mu, pi, lam_c = layout.split(lp_relaxation(inst, layout).z)
    with SitePool(inst) as pool:
        calls = {i: ((mu, pi, lam_c), {"gap": 1e-6}) for i in range(inst.n_sites)}
        results = pool.map(SITE_MILP_KIND, make_site_milp, "solve", calls)
        sol = complete_from_site_results(inst, pool, results, lam_c=lam_c)
        # the same cached site models answer the Lagrangian again exactly as before the completion
        again = pool.map(SITE_MILP_KIND, make_site_milp, "solve", calls)
    assert_feasible(inst, sol)
    assert sol.objective <= mono.bound + 1e-6 * abs(mono.bound)
    for i in results:
        assert again[i].value == results[i].value and again[i].nodes == results[i].nodes
        np.testing.assert_array_equal(again[i].values, results[i].values)


def test_allocated_solve_leaves_the_lagrangian_solve_unchanged() -> None:
    inst = instance("gen4x12", True)
    rng = np.random.default_rng(0)
    mu = rng.uniform(0.0, 1.0, inst.n_jobs) * inst.jobs.value
    pi = rng.uniform(0.0, 50.0, (inst.n_classes, inst.n_periods))
    for i in range(inst.n_sites):
        fresh = SiteMILP(inst, i).solve(mu, pi, 3.0, gap=1e-6)
        used = SiteMILP(inst, i)
        here = inst.jobs.allowed[:, i]
        part = used.solve_allocated(here, here & inst.jobs.mandatory, 0.5 * inst.inference.demand, 1.0, gap=1e-6)
        assert part.has_solution and part.emissions_t <= 1.0 + 1e-6
        assert (part.served <= 0.5 * inst.inference.demand + 1e-12).all()
        assert (part.job_start[inst.jobs.mandatory & here] >= 0).all()
        assert (part.job_start[~here] < 0).all()
        after = used.solve(mu, pi, 3.0, gap=1e-6)
        assert (after.value, after.bound, after.nodes) == (fresh.value, fresh.bound, fresh.nodes)
        np.testing.assert_array_equal(after.values, fresh.values)


def test_allocation_splits_jobs_demand_and_budget() -> None:
    inst = instance("gen4x12", True)
    alloc = allocate(inst, point_from_lp(lp("gen4x12", True)), min_mass=0.0)
    placed = alloc.job_site >= 0
    assert inst.jobs.allowed[np.flatnonzero(placed), alloc.job_site[placed]].all()
    assert (alloc.required == inst.jobs.mandatory).all()
    assert (alloc.serve_cap.sum(axis=1) <= inst.inference.demand).all()
    assert (alloc.serve_cap[~inst.slo_mask()] == 0).all()
    assert alloc.allowance.sum() <= inst.carbon_budget_t


def test_required_jobs_that_do_not_fit_are_reallocated() -> None:
    base = instance("gen4x12", False)
    job, small_site = 8, 3  # job 8 (14,408 GPUs) is allowed at site 3 (9,936 GPUs), where it cannot run
    assert base.jobs.allowed[job, small_site] and base.jobs.gpus[job] > base.sites.gpus[small_site]
    inst = dataclasses.replace(base, jobs=dataclasses.replace(
        base.jobs, mandatory=base.jobs.mandatory | (np.arange(base.n_jobs) == job)))
    point = point_from_lp(solve_lp_relaxation(inst))
    alloc = allocate(inst, point)
    assert alloc.job_site[job] != small_site
    alloc.job_site[job], alloc.required[job] = small_site, True  # force the bad choice
    with SitePool(inst) as pool:
        sol = solve_allocation(inst, pool, alloc, point=point)
    assert_feasible(inst, sol)
    assert sol.extra["reallocations"] == 1
    assert sol.job_site[job] not in (-1, small_site)


def test_groups_reached_after_the_deadline_are_not_built(monkeypatch) -> None:
    """A neighbourhood pass whose deadline has passed builds no group model (builds took 0.5-1 s each on a
    dense instance and ran the pass past it); the incumbent comes back unchanged."""
    import carbonsched.decomp.completion as completion

    inst = instance("gen4x12", True)
    sol = monolithic("gen4x12", True)
    groups = choose_groups(inst, sol, size=2)

    def no_build(*args, **kwargs):
        raise AssertionError("a group model was built after the deadline")

    monkeypatch.setattr(completion, "ArrayModel", no_build)
    with SitePool(inst, ParallelConfig(n_jobs=1)) as pool:
        assert improve_by_neighbourhoods(inst, pool, sol, groups, time_limit=-1.0) is sol
