"""The benefit–emissions frontier on the shipped paper instance: monotone joint benefit, every point checked."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from carbonsched.cli import main
from carbonsched.errors import InputError
from carbonsched.formulations.checker import check_solution
from carbonsched.formulations.frontier import COLUMNS, load_frontier, solve_frontier, to_dataframe, with_budget
from carbonsched.formulations.solution import Solution
from carbonsched.instances import load_default
from carbonsched.instances.shipped import default_instance_path

BUDGETS = (60.0, 130.0, 200.0)  # t; the paper instance's own budget is 92 t


@pytest.fixture(scope="module")
def frontier_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("frontier")
    argv = ["frontier", str(default_instance_path()), "--budgets", *[f"{b:g}" for b in reversed(BUDGETS)],
            "--strategies", "joint", "compute-only", "energy-only", "--time-limit", "60",
            "-o", str(out / "front.h5"), "--plot", str(out / "front.png"), "--out-dir", str(out / "sols")]
    assert main(argv) == 0
    return out


def test_results_file_has_one_row_per_strategy_and_budget(frontier_run):
    cols, attrs = load_frontier(frontier_run / "front.h5")
    assert set(COLUMNS) <= set(cols)
    assert len(cols["strategy"]) == 3 * len(BUDGETS)
    assert sorted(set(cols["strategy"])) == ["compute-only", "energy-only", "joint"]
    for key in ("commit", "versions", "cpu_count", "host"):
        assert key in attrs
    assert "numpy=" in attrs["versions"] and attrs["cpu_count"] >= 1
    df = to_dataframe(frontier_run / "front.h5")
    assert df.shape[0] == 3 * len(BUDGETS) and df["checked"].all()
    assert (frontier_run / "front.png").stat().st_size > 10_000


def test_joint_benefit_is_monotone_in_the_budget_and_every_point_checks(frontier_run):
    inst = load_default()
    cols, _ = load_frontier(frontier_run / "front.h5")
    joint = np.flatnonzero(cols["strategy"] == "joint")
    joint = joint[np.argsort(cols["budget_t"][joint])]
    assert list(cols["budget_t"][joint]) == list(BUDGETS)
    assert all(s == "optimal" for s in cols["status"][joint])
    z = cols["objective"][joint]
    assert np.all(np.diff(z) >= -1e-6 * np.abs(z[1:])), z
    # the joint bound is valid and no other strategy beats a proven joint optimum at the same budget
    for k in joint:
        assert cols["bound"][k] >= cols["objective"][k] - 1e-6 * abs(cols["objective"][k])
        same = np.flatnonzero(cols["budget_t"] == cols["budget_t"][k])
        assert np.all(cols["objective"][same] <= cols["bound"][k] + 1e-6 * abs(cols["bound"][k]))
    for strategy, budget in zip(cols["strategy"], cols["budget_t"], strict=True):
        sol = Solution.load(frontier_run / "sols" / f"{strategy}-{budget:g}.h5")
        report = check_solution(with_budget(inst, budget), sol)
        assert report.ok, (strategy, budget, report.format())
        assert sol.emissions_t <= budget * (1 + 1e-6)


def test_frontier_refuses_bad_budgets_and_strategies():
    inst = load_default()
    with pytest.raises(InputError, match="budgets must be >= 0"):
        solve_frontier(inst, [-1.0])
    with pytest.raises(InputError, match="unknown strategy 'magic'"):
        solve_frontier(inst, [10.0], strategies=["magic"])
    with pytest.raises(InputError, match="distinct"):
        solve_frontier(inst, [10.0, 10.0])


def test_results_file_is_plain_hdf5(frontier_run):
    with h5py.File(frontier_run / "front.h5", "r") as f:
        assert f["budget_t"].shape == (3 * len(BUDGETS),)
        assert f.attrs["schema"] == "carbonsched-frontier"
