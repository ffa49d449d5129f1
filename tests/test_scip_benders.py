"""SCIP's built-in Benders (the peer): exact on the commitment-in-master split, certified bounds, CLI."""

from __future__ import annotations

import pytest
from carbonsched.decomp.scip_benders import site_energy_subproblem, solve_scip_benders
from carbonsched.errors import InfeasibleError
from carbonsched.formulations.benders_master import build_benders_master
from carbonsched.formulations.checker import check_solution
from carbonsched.formulations.solution import Solution
from carbonsched.instances import load, make_instance, save
from carbonsched.instances.generator import generate

from .edge_cases import EDGE_CASES, assert_exact_against_monolithic, random_small
from .test_cli import run_cli

GAP = 1e-4


def assert_matches_monolithic(inst):
    assert_exact_against_monolithic(inst, lambda i: solve_scip_benders(i, gap=GAP, time_limit=120), GAP)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_small_instances(seed):
    assert_matches_monolithic(random_small(seed))


@pytest.mark.parametrize("name", sorted(EDGE_CASES))
def test_edge_cases(name):
    # binding_budget is the case on which SCIP's MIR-strengthened optimality cuts cut off the optimum
    assert_matches_monolithic(EDGE_CASES[name]())


def test_subproblems_are_lps_linked_by_master_names():
    inst = random_small(0)
    master = build_benders_master(inst)
    master_names = {v.name for v in master.am.variables()}
    for site in range(inst.n_sites):
        sub = site_energy_subproblem(inst, master, site).model
        assert all(v.vtype() == "CONTINUOUS" for v in sub.getVars())
        linked = [v.name for v in sub.getVars() if v.name in master_names]
        # busy GPUs of every period, plus the commitment copies and the allowance
        assert len(linked) >= inst.n_periods
        assert not any(c.name.startswith(("startup", "min_up", "min_down")) for c in sub.getConss())
        assert sub.getObjectiveSense() == "minimize"


def test_infeasible_mandatory_jobs_are_named():
    inst = make_instance(2, 1, n_jobs=2, sites=dict(gpus=4),
                         jobs=dict(gpus=4, duration=2, mandatory=True, name=["first", "second"]))
    with pytest.raises(InfeasibleError) as err:
        solve_scip_benders(inst)
    assert {"first", "second"} <= set(err.value.jobs)


def test_cli_method_scip_benders(tmp_path):
    inst_path, sol_path = tmp_path / "i.h5", tmp_path / "s.h5"
    save(random_small(1), inst_path)
    res = run_cli("solve", str(inst_path), "--method", "scip-benders", "--time-limit", "60", "-o", str(sol_path))
    assert res.returncode == 0, res.stderr
    assert "check: OK" in res.stdout and "certified yes" in res.stdout
    sol = Solution.load(sol_path)
    assert sol.method == "scip-benders"
    assert check_solution(load(inst_path), sol).ok


def test_a_scip_error_inside_its_benders_is_one_line_not_a_traceback(tmp_path):
    # on this instance (jobs at every site) SCIP 10's Benders stops with "error in LP solver"
    inst_path, sol_path = tmp_path / "i.h5", tmp_path / "s.h5"
    save(generate(sites=6, periods=24, seed=1, job_sites=6), inst_path)
    res = run_cli("solve", str(inst_path), "--method", "scip-benders", "--time-limit", "60", "-o", str(sol_path))
    assert "Traceback" not in res.stderr
    if res.returncode == 0:  # a SCIP that does not fail here must still give a checked solution
        assert check_solution(load(inst_path), Solution.load(sol_path)).ok
    else:
        assert res.returncode == 4 and "scip-benders: SCIP stopped with an error" in res.stderr
        assert not sol_path.exists()
