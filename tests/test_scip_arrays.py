"""The three model-building paths (compiled loops, ctypes loop, PySCIPOpt API) build the same model."""

from __future__ import annotations

import carbonsched.formulations.scip_arrays as scip_arrays
import pytest
from carbonsched.formulations.checker import check_solution
from carbonsched.formulations.monolithic import solve_monolithic
from carbonsched.instances import generate


@pytest.fixture(scope="module")
def inst():
    return generate(sites=3, periods=6, jobs=4, classes=2, seed=5)


def _solve(inst):
    sol = solve_monolithic(inst, gap=0.0)
    assert check_solution(inst, sol).ok
    return sol


def test_build_paths_agree(inst, monkeypatch):
    reference = _solve(inst)  # default path for a small model: the ctypes loop
    assert scip_arrays.compile_build_kernels()
    monkeypatch.setattr(scip_arrays, "NUMBA_MIN_BLOCK", 1)  # every block through the compiled loops
    compiled = _solve(inst)
    monkeypatch.setenv("CARBONSCHED_NO_CTYPES", "1")
    scip_arrays.scip_c.cache_clear()
    try:
        api = _solve(inst)  # PySCIPOpt's own API
    finally:
        monkeypatch.delenv("CARBONSCHED_NO_CTYPES")
        scip_arrays.scip_c.cache_clear()
    for sol in (compiled, api):
        assert sol.objective == pytest.approx(reference.objective, rel=1e-9, abs=1e-6)
        assert sol.bound == pytest.approx(reference.bound, rel=1e-6, abs=1e-4)


def test_model_sizes_are_counted(inst):
    from carbonsched.formulations.joint import build_joint_model

    jm = build_joint_model(inst)
    assert jm.am.n_vars == jm.model.getNVars()
    assert jm.am.n_rows == jm.model.getNConss()
    assert jm.am.n_nonzeros > jm.am.n_rows
    assert len(jm.am.variables()) == jm.am.n_vars


@pytest.mark.parametrize("c_api", [True, False])
def test_start_solution_is_offered_and_used(inst, monkeypatch, c_api):
    """A full solution offered before the solve is SCIP's first incumbent, through the C API or PySCIPOpt."""
    import numpy as np
    from carbonsched.formulations.joint import build_joint_model

    if not c_api:
        monkeypatch.setenv("CARBONSCHED_NO_CTYPES", "1")
        scip_arrays.scip_c.cache_clear()
    try:
        reference = build_joint_model(inst)
        reference.model.hideOutput()
        reference.model.optimize()
        best = reference.am.values()
        seeded = build_joint_model(inst)
        seeded.model.hideOutput()
        with pytest.raises(ValueError, match="expected"):
            seeded.am.add_solution(best[:-1])
        assert seeded.am.add_solution(best)
        assert seeded.model.getNSols() == 1  # stored before the solve
        seeded.model.setParam("limits/nodes", 1)
        seeded.model.optimize()
        assert seeded.model.getPrimalbound() >= reference.model.getPrimalbound() - 1e-6
        assert np.isfinite(seeded.am.values()).all()
    finally:
        if not c_api:
            monkeypatch.delenv("CARBONSCHED_NO_CTYPES")
            scip_arrays.scip_c.cache_clear()
