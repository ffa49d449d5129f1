"""The command line: exit statuses, one-line errors, files written, checker verdicts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import h5py
import pytest
from carbonsched.cli import main
from carbonsched.formulations.checker import check_solution
from carbonsched.formulations.solution import Solution
from carbonsched.instances import load, make_instance, save

# Subprocesses import the installed package, as a user's shell would.
ENV = dict(os.environ)


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "carbonsched.cli", *args], capture_output=True, text=True,
                          timeout=300, env=ENV, cwd=cwd)


def test_generate_and_info(tmp_path, capsys):
    out = tmp_path / "p.h5"
    assert main(["generate", "--preset", "paper", "--seed", "3", "-o", str(out)]) == 0
    inst = load(out)
    assert (inst.n_sites, inst.n_periods, inst.n_jobs, inst.n_classes) == (3, 24, 6, 3)
    capsys.readouterr()
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    for figure in ("GPU-h capacity", "on-site renewables", "carbon budget C", "CO2 all-grid plan", "price buy"):
        assert figure in text


def test_generate_by_size(tmp_path):
    out = tmp_path / "s.h5"
    assert main(["generate", "--sites", "4", "--periods", "12", "--jobs", "3", "--classes", "2",
                 "--period-hours", "0.5", "-o", str(out)]) == 0
    inst = load(out)
    assert (inst.n_sites, inst.n_periods, inst.n_jobs, inst.n_classes) == (4, 12, 3, 2)
    assert inst.period_hours == 0.5


@pytest.mark.parametrize("args,needle", [
    (["info", "missing.h5"], "missing.h5: file not found"),
    (["generate", "-o", "x.h5"], "--preset"),
    (["generate", "--preset", "paper", "--sites", "3", "-o", "x.h5"], "exclusive"),
    (["generate", "--sites", "0", "-o", "x.h5"], "--sites"),
    (["generate", "--preset", "nope", "-o", "x.h5"], "nope"),
    (["solve", "missing.h5", "-o", "s.h5"], "file not found"),
    (["solve", "x.h5", "--time-limit", "-3", "-o", "s.h5"], "--time-limit"),
    (["solve", "x.h5", "--method", "lagrangian", "--worker-cache-mb", "0", "-o", "s.h5"], "--worker-cache-mb"),
])
def test_bad_input_is_one_line_and_status_2(tmp_path, args, needle):
    res = run_cli(*args, cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    assert needle in res.stderr
    assert "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) <= 2  # argparse adds its usage line


def test_corrupt_instance_gives_status_2(tmp_path):
    bad = tmp_path / "bad.h5"
    save(make_instance(2, 1), bad)
    with h5py.File(bad, "r+") as f:
        f["sites/pue"][0, 1] = 0.5
    res = run_cli("info", str(bad))
    assert res.returncode == 2
    assert res.stderr.strip().endswith("/sites/pue[0, 1]: must be >= 1 (got 0.5)")


def test_solve_check_roundtrip_and_invalid_solution(tmp_path):
    inst_path, sol_path = tmp_path / "i.h5", tmp_path / "s.h5"
    assert main(["generate", "--sites", "2", "--periods", "6", "--jobs", "3", "--classes", "2",
                 "-o", str(inst_path)]) == 0
    res = run_cli("solve", str(inst_path), "--time-limit", "60", "-o", str(sol_path))
    assert res.returncode == 0, res.stderr
    assert "status optimal" in res.stdout and "check: OK" in res.stdout
    inst, sol = load(inst_path), Solution.load(sol_path)
    assert check_solution(inst, sol).ok and sol.certified
    assert len(sol.trace) >= 1
    res = run_cli("check", str(inst_path), str(sol_path))
    assert res.returncode == 0 and res.stdout.startswith("OK")
    with h5py.File(sol_path, "r+") as f:
        f["energy/ens"][0, 0] += 5.0
    res = run_cli("check", str(inst_path), str(sol_path))
    assert res.returncode == 1
    assert "power_balance" in res.stdout


def test_infeasible_instance_gives_status_3(tmp_path):
    path = tmp_path / "inf.h5"
    save(make_instance(2, 1, n_jobs=2, sites=dict(gpus=4),
                       jobs=dict(gpus=4, duration=2, mandatory=True, name=["first", "second"])), path)
    res = run_cli("solve", str(path), "-o", str(tmp_path / "s.h5"))
    assert res.returncode == 3
    assert "first" in res.stderr and "second" in res.stderr and "Traceback" not in res.stderr


def test_demo_compares_all_strategies(tmp_path):
    res = run_cli("demo", "--out-dir", str(tmp_path))
    assert res.returncode == 0, res.stderr
    for name in ("joint", "compute-only", "energy-only", "sequential", "no-routing", "no-battery", "no-carbon"):
        assert name in res.stdout
        assert (tmp_path / f"{name}.h5").exists()
    assert "every solution OK" in res.stdout


@pytest.mark.parametrize("method", ["benders", "lagrangian"])
def test_solve_with_a_decomposition_writes_a_checked_file(tmp_path, method):
    inst_path = tmp_path / "p.h5"
    assert main(["generate", "--preset", "paper", "--seed", "1", "-o", str(inst_path)]) == 0
    out = tmp_path / f"{method}.h5"
    proc = run_cli("solve", str(inst_path), "--method", method, "--jobs", "2", "--time-limit", "15", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    sol = Solution.load(out)
    assert sol.method == method and sol.certified
    assert check_solution(load(inst_path), sol).ok
    assert "inf" not in proc.stdout and "-0.000" not in proc.stdout


def test_worker_cache_bound_from_the_command_line(tmp_path):
    inst_path = tmp_path / "p.h5"
    assert main(["generate", "--sites", "3", "--periods", "6", "--jobs", "5", "--classes", "2", "--seed", "4",
                 "-o", str(inst_path)]) == 0
    out = tmp_path / "l.h5"
    # far below a worker's resident memory: the workers drop their site models after every task
    proc = run_cli("solve", str(inst_path), "--method", "lagrangian", "--jobs", "2", "--worker-cache-mb", "1",
                   "--time-limit", "30", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    sol = Solution.load(out)
    assert sol.extra["site_solvers_dropped"] > 0 and sol.extra["site_solvers_built"] > 3
    assert check_solution(load(inst_path), sol).ok


def test_a_heuristic_solve_prints_no_inf(tmp_path):
    inst_path = tmp_path / "p.h5"
    assert main(["generate", "--preset", "paper", "-o", str(inst_path)]) == 0
    proc = run_cli("solve", str(inst_path), "--method", "greedy", "-o", str(tmp_path / "g.h5"))
    assert proc.returncode == 0, proc.stderr
    assert "inf" not in proc.stdout.replace("info", "") and "nan" not in proc.stdout
    assert "bound = - (none proven)" in proc.stdout
