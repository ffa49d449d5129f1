"""The three model-building paths (compiled loops, ctypes loop, PySCIPOpt API) build the same model."""

from __future__ import annotations

import contextlib

import carbonsched.formulations.scip_arrays as scip_arrays
import numpy as np
import pyscipopt
import pytest
from carbonsched.formulations.checker import check_solution
from carbonsched.formulations.monolithic import solve_monolithic
from carbonsched.instances import generate

from .conftest import build_small_instance


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
    monkeypatch.setenv(scip_arrays.FASTPATH_ENV, "0")
    scip_arrays.scip_c.cache_clear()
    try:
        api = _solve(inst)  # PySCIPOpt's own API
    finally:
        monkeypatch.delenv(scip_arrays.FASTPATH_ENV)
        scip_arrays.scip_c.cache_clear()
    for sol in (compiled, api):
        assert sol.objective == pytest.approx(reference.objective, rel=1e-9, abs=1e-6)
        assert sol.bound == pytest.approx(reference.bound, rel=1e-6, abs=1e-4)


@pytest.mark.parametrize("path", ["ctypes", "compiled", "pyscipopt"])
def test_model_sizes_are_counted(inst, monkeypatch, path):
    from carbonsched.formulations.joint import build_joint_model

    with build_path(monkeypatch, path):
        jm = build_joint_model(inst)
    assert jm.am.n_vars == jm.model.getNVars()
    assert jm.am.n_rows == jm.model.getNConss()
    assert jm.am.n_nonzeros > jm.am.n_rows
    assert len(jm.am.variables()) == jm.am.n_vars


def test_arrays_only_model_records_what_the_scip_model_is_built_from(inst):
    """``scip=False``: no SCIP model, the same recorded arrays and counts as a SCIP-built recording."""
    from carbonsched.formulations.joint import build_joint_model

    with_scip = build_joint_model(inst, record=True)
    arrays_only = build_joint_model(inst, record=True, scip=False)
    assert arrays_only.model is None and with_scip.model is not None
    for got, ref in zip(arrays_only.am.recorded_arrays(), with_scip.am.recorded_arrays(), strict=True):
        if hasattr(ref, "toarray"):
            assert (got != ref).nnz == 0
        else:
            np.testing.assert_array_equal(got, ref)
    for count in ("n_vars", "n_rows", "n_nonzeros"):
        assert getattr(arrays_only.am, count) == getattr(with_scip.am, count)
    np.testing.assert_array_equal(arrays_only.y, with_scip.y)
    with pytest.raises(ValueError, match="record=True"):
        scip_arrays.ArrayModel("nothing", scip=False)


@pytest.mark.parametrize("c_api", [True, False])
def test_start_solution_is_offered_and_used(inst, monkeypatch, c_api):
    """A full solution offered before the solve is SCIP's first incumbent, through the C API or PySCIPOpt."""
    import numpy as np
    from carbonsched.formulations.joint import build_joint_model

    if not c_api:
        monkeypatch.setenv(scip_arrays.FASTPATH_ENV, "0")
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
            monkeypatch.delenv(scip_arrays.FASTPATH_ENV)
            scip_arrays.scip_c.cache_clear()


# ============================================================== both paths, identical models
PATHS = ("ctypes", "compiled", "pyscipopt")


@contextlib.contextmanager
def build_path(monkeypatch, path: str):
    """Build through ``path``: the ctypes loop, the numba-compiled loops, or PySCIPOpt's API (fallback)."""
    with monkeypatch.context() as patch:
        if path == "pyscipopt":
            patch.setenv(scip_arrays.FASTPATH_ENV, "0")
        elif path == "compiled":
            assert scip_arrays.compile_build_kernels()
            patch.setattr(scip_arrays, "NUMBA_MIN_BLOCK", 1)
        scip_arrays.scip_c.cache_clear()
        try:
            yield
        finally:
            scip_arrays.scip_c.cache_clear()


def model_signature(model) -> dict:
    """Everything that defines a linear model: sense, variables in order, rows with their coefficients."""
    variables = model.getVars()
    position = {v.ptr(): q for q, v in enumerate(variables)}
    rows = []
    for cons in model.getConss():
        coefficients = sorted(
            (position[v.ptr()], c) for v, c in zip(model.getConsVars(cons), model.getConsVals(cons), strict=True)
        )
        rows.append((cons.name, model.getLhs(cons), model.getRhs(cons), tuple(coefficients)))
    return {
        "sense": model.getObjectiveSense(),
        "vars": [(v.name, v.vtype(), v.getLbOriginal(), v.getUbOriginal(), v.getObj()) for v in variables],
        "rows": rows,
    }


def test_fast_path_is_on_only_for_tested_versions(monkeypatch):
    m = pyscipopt.Model()
    assert scip_arrays.SCIP_VERSION == (m.getMajorVersion(), m.getMinorVersion(), m.getTechVersion())
    monkeypatch.delenv(scip_arrays.FASTPATH_ENV, raising=False)
    monkeypatch.delenv("CARBONSCHED_NO_CTYPES", raising=False)
    scip_arrays.scip_c.cache_clear()
    try:
        if scip_arrays.SCIP_VERSION in scip_arrays.TESTED_SCIP_VERSIONS:
            assert scip_arrays.fast_path_refusal() is None
            assert scip_arrays.ArrayModel().uses_c_api
        monkeypatch.setattr(scip_arrays, "TESTED_SCIP_VERSIONS", frozenset({(1, 2, 3)}))
        scip_arrays.scip_c.cache_clear()
        assert "not a tested version (1.2.3)" in scip_arrays.fast_path_refusal()
        assert scip_arrays.scip_c() is None and not scip_arrays.ArrayModel().uses_c_api
        monkeypatch.setattr(scip_arrays, "TESTED_SCIP_VERSIONS", frozenset({scip_arrays.SCIP_VERSION}))
        monkeypatch.setenv(scip_arrays.FASTPATH_ENV, "0")
        scip_arrays.scip_c.cache_clear()
        assert "switched off" in scip_arrays.fast_path_refusal()
        assert not scip_arrays.ArrayModel().uses_c_api
    finally:
        scip_arrays.scip_c.cache_clear()


def test_installed_scip_is_a_tested_version():
    """The fast path is what the suite exercises here; a new SCIP must be added to the list deliberately."""
    assert scip_arrays.SCIP_VERSION in scip_arrays.TESTED_SCIP_VERSIONS, scip_arrays.SCIP_VERSION


def test_library_of_another_version_is_not_bound(monkeypatch):
    monkeypatch.setattr(scip_arrays, "SCIP_VERSION", (scip_arrays.SCIP_VERSION[0] + 1, 0, 0))
    monkeypatch.setattr(scip_arrays, "TESTED_SCIP_VERSIONS", frozenset({scip_arrays.SCIP_VERSION}))
    scip_arrays.scip_c.cache_clear()
    try:
        assert scip_arrays.fast_path_refusal() is None
        assert scip_arrays.scip_c() is None  # the loaded libscip reports the real version
    finally:
        scip_arrays.scip_c.cache_clear()


@pytest.mark.parametrize("sized", ["small", "edge"])
def test_joint_model_is_identical_on_every_path(monkeypatch, sized):
    from carbonsched.formulations.joint import build_joint_model

    inst = generate(sites=3, periods=6, jobs=4, classes=2, seed=5) if sized == "small" else build_small_instance()
    signatures = {}
    for path in PATHS:
        with build_path(monkeypatch, path):
            jm = build_joint_model(inst)
            assert jm.am.uses_c_api == (path != "pyscipopt")
            signatures[path] = model_signature(jm.model)
            assert len(signatures[path]["vars"]) == jm.am.n_vars and len(signatures[path]["rows"]) == jm.am.n_rows
    assert signatures["ctypes"]["rows"], "empty model"
    for path in PATHS[1:]:
        for key in ("sense", "vars", "rows"):
            assert signatures[path][key] == signatures["ctypes"][key], (path, key)


def _tiny_model() -> scip_arrays.ArrayModel:
    import scipy.sparse as sp

    am = scip_arrays.ArrayModel("tiny")
    x = am.add_vars("x", 0.0, [4.0, 5.0, 3.0], [1.0, 2.0, -3.0], "I")
    b = am.add_vars("b", 0.0, 1.0, [0.5], "B")
    matrix = sp.csr_matrix(([1.0, 1.0, 2.0, 1.0, -1.0], ([0, 0, 1, 1, 1], [x[0], x[1], x[2], b[0], x[0]])),
                           shape=(2, am.n_vars))
    am.add_rows("r", matrix, [-np.inf, 0.0], [6.0, 3.0])
    return am


@pytest.mark.parametrize("path", PATHS)
def test_renamed_updated_model_is_identical_and_solves(monkeypatch, path):
    """rename_vars, set_var_data and set_row_bounds give the same model on every path, and it solves."""
    with build_path(monkeypatch, "ctypes"):
        reference = _tiny_model()
        reference.set_var_data(np.array([2]), obj=-1.0, ub=2.0)
        reference.set_row_bounds(np.array([0]), rhs=7.0)
        reference.rename_vars(np.array([0, 3]), ["first", "switch"])
    with build_path(monkeypatch, path):
        am = _tiny_model()
        am.model.hideOutput()
        am.set_var_data(np.array([2]), obj=-1.0, ub=2.0)
        am.set_row_bounds(np.array([0]), rhs=7.0)
        am.rename_vars(np.array([0, 3]), ["first", "switch"])
        assert [v.name for v in am.variables()] == ["first", "x_1", "x_2", "switch"]
        assert model_signature(am.model) == model_signature(reference.model)
        am.model.optimize()
        values = am.values()
        assert am.model.getObjVal() == pytest.approx(values @ np.array([1.0, 2.0, -1.0, 0.5]))
        assert values[0] + values[1] <= 7.0 + 1e-9


@pytest.mark.parametrize("path", ["ctypes", "pyscipopt"])
def test_start_solution_after_transform_survives_maxorigsol_zero(monkeypatch, path):
    with build_path(monkeypatch, path):
        am = _tiny_model()
        am.model.hideOutput()
        am.model.setParam("limits/maxorigsol", 0)
        start = np.array([1.0, 0.0, 0.0, 0.0])
        if path == "pyscipopt":
            assert not am.add_solution(start)  # dropped by the limit, as SCIP does
        am.transform()
        assert am.add_solution(start)
        assert am.model.getParam("limits/maxorigsol") == 0
        assert am.model.getNSols() == 1


def test_matrix_api_route_of_the_benchmark_builds_the_same_model(inst):
    """bench/build_speed.py --apis times PySCIPOpt's matrix API on this very model (names included)."""
    from carbonsched.bench.build_speed import build, build_matrix

    assert model_signature(build_matrix(inst).model) == model_signature(build(inst).model)
