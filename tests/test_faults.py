"""Faults and hostile input (issue #15): every run ends with its best result on disk or a clear error.

Each case asserts the exit status, a one-line message without a traceback, the files afterwards (a valid
output or none, no temporary file, the inputs untouched) and, for runs with workers, that no process of
the run survives it. Marked ``faults`` (excluded from the default run; ``pytest -m faults``, run in CI).
"""

from __future__ import annotations

import contextlib
import errno
import glob
import importlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
import zlib
from pathlib import Path

import carbonsched.instances.storage as storage
import h5py
import numpy as np
import pytest
from carbonsched.cli import main
from carbonsched.errors import InputError, InstanceError, OutputError
from carbonsched.formulations import ComputePlan, evaluate
from carbonsched.formulations.checker import check_solution
from carbonsched.formulations.evaluator import Evaluator, MoveJob, SetPlan, ShiftRouting, SwapJobs
from carbonsched.formulations.plan import PlanError
from carbonsched.formulations.solution import Solution, SolutionError, SolveStatus
from carbonsched.instances import load, make_instance, save
from carbonsched.instances.generator import generate
from carbonsched.instances.shipped import default_instance_path
from carbonsched.instances.storage import CHECKSUM_ATTR
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

psutil = pytest.importorskip("psutil")

pytestmark = pytest.mark.faults

ENV = dict(os.environ)
#: Seconds a run may take to exit after a signal: the promise is one second, plus one for the shared, noisy
#: 2-core test machine (writing and checking the solution and the interpreter's exit are included; measured
#: medians 0.2-1.1 s, the slowest run 1.25 s, see docs/reliability.md).
EXIT_SECONDS = 2.0


# ----------------------------------------------------------------------------------------- helpers
@pytest.fixture(scope="module")
def paper_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("paper") / "paper.h5"
    shutil.copy(default_instance_path(), path)
    return path


@pytest.fixture(scope="module")
def small_file(tmp_path_factory) -> Path:
    """10 sites: long enough to be interrupted in every phase."""
    path = tmp_path_factory.mktemp("small") / "small.h5"
    save(generate("small", seed=1), path)
    return path


@pytest.fixture(scope="module")
def paper_solution(tmp_path_factory, paper_file) -> Path:
    path = tmp_path_factory.mktemp("sol") / "greedy.h5"
    assert main(["solve", str(paper_file), "--method", "greedy", "-q", "-o", str(path)]) == 0
    return path


def _one_line_error(err: str) -> str:
    lines = [line for line in err.splitlines() if "carbonsched" in line and "error" in line]
    assert "Traceback" not in err, err
    assert len(lines) == 1, err
    return lines[0]


def _no_temporary_files(folder: Path) -> None:
    assert not [p for p in os.listdir(folder) if p.endswith(".tmp") or p.startswith(".carbonsched-probe")]


def _run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "carbonsched.cli", *args], capture_output=True, text=True,
                          timeout=300, env=ENV, cwd=cwd)


class _Run:
    """A CLI run in its own process group, its stdout read by a thread (to see progress lines)."""

    def __init__(self, *args: str, sigint_ignored: bool = False) -> None:
        # sigint_ignored: started as a non-interactive shell starts a background job (``cmd &`` in a script)
        ignore = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if sigint_ignored else None
        self.proc = subprocess.Popen([sys.executable, "-m", "carbonsched.cli", *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=ENV, start_new_session=True,
                                     preexec_fn=ignore)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)

    def wait_for(self, pattern: str, timeout: float = 120.0) -> None:
        end = time.monotonic() + timeout
        rx = re.compile(pattern)
        while time.monotonic() < end:
            if any(rx.search(line) for line in self.lines):
                return
            if self.proc.poll() is not None:
                pytest.fail(f"run ended before {pattern!r}: {self.proc.stderr.read()}")
            time.sleep(0.05)
        pytest.fail(f"no line matching {pattern!r} within {timeout} s")

    def descendants(self) -> list:
        return psutil.Process(self.proc.pid).children(recursive=True)

    def signal(self, sig: int, group: bool) -> float:
        if group:
            os.killpg(self.proc.pid, sig)
        else:
            os.kill(self.proc.pid, sig)
        return time.monotonic()

    def finish(self, timeout: float = 60.0) -> tuple[int, str, str]:
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            # what the run last said, so that a hang seen once (a Benders run after a killed worker, CI of
            # 2026-11-30) names its phase next time
            pytest.fail("the run did not end; its last progress lines:\n" + "".join(self.lines[-8:])
                        + "\nstderr (tail):\n" + self.proc.stderr.read()[-3000:])
        self._reader.join(5)
        return self.proc.returncode, "".join(self.lines), self.proc.stderr.read()


def _gone(procs, timeout: float = 5.0) -> list[int]:
    """Process ids of ``procs`` still alive (not zombies) after up to ``timeout`` s."""
    end = time.monotonic() + timeout
    while True:
        alive = []
        for p in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                    alive.append(p.pid)
        if not alive or time.monotonic() > end:
            for pid in alive:  # do not leave them to the next test
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            return alive
        time.sleep(0.1)


def _pool_dirs(pid: int) -> list[str]:
    return glob.glob(os.path.join(tempfile.gettempdir(), f"carbonsched-pool-{pid}-*"))


# ----------------------------------------------------------------------------------------- 1. outputs
def _output_cases(tmp_path: Path, inst: Path, sol: Path) -> dict[str, tuple[list[str], str]]:
    (tmp_path / "sub").mkdir()
    link = tmp_path / "link.h5"
    link.symlink_to(inst)
    hard = tmp_path / "hard.h5"
    os.link(inst, hard)
    base = ["solve", str(inst), "--method", "greedy", "-q"]
    return {
        "same path": (base + ["-o", str(inst)], "is the instance file"),
        "dotdot spelling": (base + ["-o", str(tmp_path / "sub" / ".." / inst.name)], "is the instance file"),
        "symlink to input": (base + ["-o", str(link)], "is the instance file"),
        "hard link to input": (base + ["-o", str(hard)], "is the instance file"),
        "the --initial file": (base + ["--initial", str(sol), "-o", str(sol)], "is the --initial file"),
        "empty string": (base + ["-o", ""], "--output: must name a file"),
        "a directory": (base + ["-o", str(tmp_path / "sub")], "is a directory"),
        "missing folder": (base + ["-o", str(tmp_path / "nope" / "x.h5")], "does not exist"),
        "compare: out-dir is a file": (["compare", str(inst), "--out-dir", str(sol)], "is not a folder"),
        "generate: a directory": (["generate", "--preset", "paper", "-o", str(tmp_path)], "is a directory"),
    }


@pytest.mark.parametrize("case", ["same path", "dotdot spelling", "symlink to input", "hard link to input",
                                  "the --initial file", "empty string", "a directory", "missing folder",
                                  "compare: out-dir is a file", "generate: a directory"])
def test_output_refused_before_any_work(tmp_path, paper_file, paper_solution, case, capsys):
    inst = tmp_path / "inst.h5"
    shutil.copy(paper_file, inst)
    sol = tmp_path / "initial.h5"
    shutil.copy(paper_solution, sol)
    args, needle = _output_cases(tmp_path, inst, sol)[case]
    before = {p: p.read_bytes() for p in (inst, sol)}
    listing = sorted(os.listdir(tmp_path))
    assert main(args) == 2
    out, err = capsys.readouterr()
    assert needle in _one_line_error(err)
    assert out == ""  # refused before loading or solving: not even the solve's header line
    assert {p: p.read_bytes() for p in before} == before
    assert sorted(os.listdir(tmp_path)) == listing
    _no_temporary_files(tmp_path)


def test_compare_out_dir_holding_the_instance_is_refused(tmp_path, paper_file, capsys):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    inst = out_dir / "joint.h5"  # compare would write DIR/joint.h5 over its input
    shutil.copy(paper_file, inst)
    before = inst.read_bytes()
    assert main(["compare", str(inst), "--out-dir", str(out_dir)]) == 2
    assert "is the instance file" in _one_line_error(capsys.readouterr().err)
    assert inst.read_bytes() == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder_refused(tmp_path, paper_file, capsys):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        assert main(["solve", str(paper_file), "--method", "greedy", "-o", str(folder / "s.h5")]) == 2
        assert "not writable" in _one_line_error(capsys.readouterr().err)
    finally:
        folder.chmod(0o755)


def test_huge_seed_is_refused(tmp_path, paper_file):
    res = _run("solve", str(paper_file), "--seed", "99999999999", "-o", str(tmp_path / "s.h5"))
    assert res.returncode == 2
    assert "--seed" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "s.h5").exists()


# ------------------------------------------------------------------------------ 1b. heuristics' limits
#: ``--time-limit`` of the heuristics' test, s: on the 40-site instance one greedy plan is scored in about
#: 0.9 s and all seven take 6 s, so the limit binds after the first plan.
HEURISTIC_LIMIT = 3.0
#: Seconds a heuristic may run past its limit: the promise is one second (one site solve, then the
#: rest is writing); the margin is the shared 2-core test machine.
LIMIT_SLACK = 2.0


@pytest.fixture(scope="module")
def sites40_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("s40") / "s40.h5"
    save(generate(sites=40, seed=1), path)
    return path


@pytest.mark.parametrize("method", ["greedy", "local-search"])
def test_heuristics_honour_the_time_limit(tmp_path, sites40_file, method):
    out = tmp_path / "sol.h5"
    started = time.monotonic()
    res = _run("solve", str(sites40_file), "--method", method, "--time-limit", f"{HEURISTIC_LIMIT:g}", "-q",
               "-o", str(out))
    took = time.monotonic() - started
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    sol = Solution.load(out)
    assert sol.status is SolveStatus.TIME_LIMIT
    assert sol.wall_seconds < HEURISTIC_LIMIT + LIMIT_SLACK, f"solved for {sol.wall_seconds:.2f} s"
    assert took < HEURISTIC_LIMIT + LIMIT_SLACK + 6.0, f"the command took {took:.2f} s"  # + start-up, writing
    assert check_solution(load(sites40_file), sol).ok
    _no_temporary_files(tmp_path)


@pytest.mark.parametrize("method", ["greedy", "local-search"])
def test_heuristic_limit_before_any_plan_is_exit_4(tmp_path, sites40_file, method):
    res = _run("solve", str(sites40_file), "--method", method, "--time-limit", "0.05", "-q", "-o",
               str(tmp_path / "sol.h5"))
    assert res.returncode == 4, res.stderr
    assert "time limit" in _one_line_error(res.stderr)
    assert not (tmp_path / "sol.h5").exists()
    _no_temporary_files(tmp_path)


@pytest.mark.parametrize("method", ["greedy", "local-search"])
def test_heuristics_report_an_infeasible_instance_as_3(tmp_path, method):
    path = tmp_path / "inf.h5"
    save(make_instance(2, 1, n_jobs=2, sites=dict(gpus=4),
                       jobs=dict(gpus=4, duration=2, mandatory=True, name=["first", "second"])), path)
    res = _run("solve", str(path), "--method", method, "-q", "-o", str(tmp_path / "sol.h5"))
    assert res.returncode == 3, res.stderr
    line = _one_line_error(res.stderr)
    assert "first" in line and "second" in line
    assert not (tmp_path / "sol.h5").exists()


def test_site_dispatch_scip_called_infeasible_is_solved():
    """SCIP 10's strong dual reductions declared this site's (always feasible) dispatch infeasible."""
    from carbonsched.decomp.heuristics import greedy_plan
    from carbonsched.formulations.evaluate import SiteEnergySolver, it_power_mw

    inst = generate(sites=300, seed=1)
    site = list(inst.sites.name).index("ap-southeast-mel-001")
    load_mw = it_power_mw(inst, greedy_plan(inst, 0.0).busy_gpus(inst))
    res = SiteEnergySolver(inst, site).solve(load_mw[site])
    assert res["status"] == "optimal" and res["has_solution"]
    # the dispatch meets the balance of MODEL.md constraint 5 in every period
    e = res["energy"]
    supply = e["renewable_used"] + e["gen"] + e["discharge"] + e["grid_import"] + e["ens"]
    demand = inst.sites.pue[site] * load_mw[site] + e["charge"] + e["grid_export"]
    np.testing.assert_allclose(supply, demand, atol=1e-6)


# ---------------------------------------------------------------------------------- 1c. out of memory
_UNDER_LIMIT = """
import resource, sys
limit = int(sys.argv[1]) * 2**20
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
from carbonsched.cli import main
sys.exit(main(sys.argv[2:]))
"""

MEMORY_CASES = [
    # method, address-space limit MB: measured on the 40-site instance, the monolithic SCIP run stops at its
    # soft memory limit before a solution (status 6) from 360 to 500 MB; the Lagrangian (one process, its
    # site models cached) runs out after 9.6 s at 900 MB with an incumbent (status 0, iteration_limit), at
    # 800 MB before one (status 6); at 1000 MB, since its LP is built without a SCIP model, it may reach its
    # 60 s time limit first
    ("monolithic", 450),
    ("lagrangian", 900),
    ("benders", 450),  # numba's llvmlite library cannot be mapped: status 6, not an OSError traceback
]


@pytest.mark.parametrize("method,limit_mb", MEMORY_CASES)
def test_out_of_memory_ends_with_one_line_or_the_best_solution(tmp_path, sites40_file, method, limit_mb):
    out = tmp_path / "sol.h5"
    res = subprocess.run([sys.executable, "-c", _UNDER_LIMIT, str(limit_mb), "solve", str(sites40_file), "--method",
                          method, "--time-limit", "60", "-o", str(out)], capture_output=True, text=True,
                         timeout=120, env=ENV)
    assert "Traceback" not in res.stderr, res.stderr
    assert "ERROR" not in res.stderr, res.stderr  # SCIP's own error lines go to the log (debug), not stderr
    assert res.returncode in (0, 6), res.stderr
    if res.returncode == 6:
        assert "out of memory" in _one_line_error(res.stderr)
        assert not out.exists()
    else:  # the memory limit bound: the best solution so far, with the status of a limit
        sol = Solution.load(out)
        assert sol.status is SolveStatus.ITERATION_LIMIT, sol.status
        assert "out of memory" in res.stderr
        assert check_solution(load(sites40_file), sol).ok
    _no_temporary_files(tmp_path)


def test_scip_memory_error_is_status_6(tmp_path, paper_file, monkeypatch, capsys):
    """SCIP's error -8 (SCIP_NOMEMORY), which PySCIPOpt raises as MemoryError, from inside a solve."""
    import carbonsched.formulations.monolithic as monolithic

    def no_memory(model, **kwargs):
        raise MemoryError("SCIP: insufficient memory error!")

    monkeypatch.setattr(monolithic, "run_scip", no_memory)
    out = tmp_path / "sol.h5"
    assert main(["solve", str(paper_file), "-q", "-o", str(out)]) == 6
    line = _one_line_error(capsys.readouterr().err)
    assert "out of memory (SCIP: insufficient memory error!)" in line
    assert not out.exists()
    _no_temporary_files(tmp_path)


# ----------------------------------------------------------------------------------------- 2. signals
SIGNAL_CASES = [
    # method, jobs, signal, to the process group
    ("monolithic", 1, "SIGINT", False),
    ("monolithic", 1, "SIGTERM", True),
    ("greedy", 1, "SIGINT", False),
    ("local-search", 1, "SIGTERM", False),
    ("scip-benders", 1, "SIGINT", True),
    ("benders", 1, "SIGINT", False),
    ("benders", 2, "SIGTERM", True),
    ("lagrangian", 1, "SIGTERM", False),
    ("lagrangian", 2, "SIGINT", False),  # to the parent only: its workers are not told
    ("lagrangian", 2, "SIGINT", True),
]


@pytest.mark.parametrize("method,jobs,sig,group", SIGNAL_CASES)
def test_signal_ends_run_with_best_solution(tmp_path, small_file, method, jobs, sig, group):
    out = tmp_path / "sol.h5"
    before = small_file.read_bytes()
    run = _Run("solve", str(small_file), "--method", method, "--jobs", str(jobs), "--time-limit", "120",
               "-o", str(out))
    # once an incumbent exists (a progress line with a primal value), and a little later
    run.wait_for(r"primal\s+-?\d")
    time.sleep(0.5)
    children = run.descendants()
    sent = run.signal(getattr(signal, sig), group)
    code, stdout, stderr = run.finish()
    took = time.monotonic() - sent
    assert "Traceback" not in stderr, stderr
    assert code == 0, stderr
    assert took < EXIT_SECONDS, f"exit {took:.2f} s after {sig}"
    sol = Solution.load(out)
    assert sol.status is SolveStatus.INTERRUPTED
    assert check_solution(load(small_file), sol).ok
    assert "status interrupted" in stdout
    assert small_file.read_bytes() == before
    _no_temporary_files(tmp_path)
    assert _gone(children) == []
    assert _pool_dirs(run.proc.pid) == []


@pytest.mark.parametrize("sig,sigint_ignored", [("SIGINT", False), ("SIGTERM", True)])
def test_ctrl_c_during_the_lp_relaxation_is_honoured(tmp_path, sig, sigint_ignored):
    # the 100-site relaxation takes HiGHS several seconds in one C call; Ctrl-C used to wait for its end (4.8 s).
    # SIGTERM to a run that inherited SIGINT ignored (a background job of a script) was not honoured at all.
    inst = tmp_path / "s100.h5"
    save(generate(sites=100, periods=24, seed=0), inst)
    out = tmp_path / "sol.h5"
    run = _Run("solve", str(inst), "--method", "lagrangian", "--jobs", "2", "--time-limit", "120", "-o", str(out),
               sigint_ignored=sigint_ignored)
    run.wait_for(r"lp phase")
    time.sleep(2.0)  # inside HiGHS by now (the model is built in about a second)
    children = run.descendants()
    sent = run.signal(getattr(signal, sig), False)
    code, _, stderr = run.finish()
    took = time.monotonic() - sent
    assert "Traceback" not in stderr, stderr
    assert took < EXIT_SECONDS, f"exit {took:.2f} s after {sig}"
    assert code == 130 and "interrupted" in stderr  # no plan yet: nothing to write
    assert not out.exists()
    _no_temporary_files(tmp_path)
    assert _gone(children) == []


def test_compare_interrupted_is_no_verdict(tmp_path, paper_file):
    run = _Run("compare", str(paper_file), "--out-dir", str(tmp_path / "out"))
    run.wait_for("running strategies")
    time.sleep(1.0)  # inside the joint MILP
    run.signal(signal.SIGINT, False)
    code, stdout, stderr = run.finish()
    assert code == 130
    assert "every solution OK" not in stdout
    assert "Traceback" not in stderr
    assert "carbonsched: interrupted during strategy joint" in stderr
    assert os.listdir(tmp_path / "out") == []  # no verdict, no files


# ----------------------------------------------------------------------------------------- 3. workers
@pytest.mark.parametrize("sig", ["SIGKILL", "SIGTERM"])
def test_workers_and_pool_folder_do_not_outlive_a_killed_parent(tmp_path, small_file, sig):
    run = _Run("solve", str(small_file), "--method", "lagrangian", "--jobs", "2", "--time-limit", "120",
               "-o", str(tmp_path / "sol.h5"))
    run.wait_for(r"iteration\s+it\s+1\b")
    children = run.descendants()
    assert any("LokyProcess" in " ".join(p.cmdline()) for p in children)
    assert _pool_dirs(run.proc.pid)
    run.signal(getattr(signal, sig), False)
    code, _stdout, stderr = run.finish()
    assert code == (-signal.SIGKILL if sig == "SIGKILL" else 0), stderr
    assert _gone(children, timeout=5.0) == []
    assert _pool_dirs(run.proc.pid) == []
    if sig == "SIGTERM":
        assert Solution.load(tmp_path / "sol.h5").status is SolveStatus.INTERRUPTED
    else:
        assert not (tmp_path / "sol.h5").exists()
        _no_temporary_files(tmp_path)


class _DyingSolver:
    """A site solver whose worker dies at site 0's call: once (a marker file remembers it) or always."""

    def __init__(self, inst, site: int, marker: str | None) -> None:
        self.site, self.marker = site, marker

    def solve(self, x: float) -> float:
        if self.site == 0 and (self.marker is None or not os.path.exists(self.marker)):
            if self.marker is not None:
                Path(self.marker).touch()
            os._exit(1)  # the worker process dies, as under SIGKILL or the OOM killer
        return self.site * x


def _dying_solver(inst, site: int, marker: str | None = None) -> _DyingSolver:
    return _DyingSolver(inst, site, marker)


def test_site_pool_replaces_a_lost_worker_and_resubmits(tmp_path, paper):
    from carbonsched.decomp.parallel import ParallelConfig, SitePool

    calls = {s: ((2.0,), {}) for s in range(paper.n_sites)}
    with SitePool(paper, ParallelConfig(n_jobs=2)) as pool:
        out = pool.map("dying", _dying_solver, "solve", calls, options={"marker": str(tmp_path / "died")})
        assert out == {s: 2.0 * s for s in range(paper.n_sites)}
        assert pool.recoveries == 1
        assert (tmp_path / "died").exists()


def test_site_pool_gives_up_as_an_interrupt(paper):
    from carbonsched.decomp.parallel import MAX_RECOVERIES_PER_MAP, ParallelConfig, SitePool, WorkersLost

    calls = {s: ((2.0,), {}) for s in range(paper.n_sites)}
    with SitePool(paper, ParallelConfig(n_jobs=2)) as pool:
        with pytest.raises(WorkersLost):  # a KeyboardInterrupt: the hub ends with its best solution
            pool.map("dying", _dying_solver, "solve", calls, options={"marker": None})
        assert pool.recoveries == MAX_RECOVERIES_PER_MAP


@pytest.mark.parametrize("method", ["lagrangian", "benders"])
def test_a_killed_worker_does_not_end_the_run(tmp_path, small_file, method):
    out = tmp_path / "sol.h5"
    run = _Run("solve", str(small_file), "--method", method, "--jobs", "2", "--time-limit", "12", "-o", str(out))
    run.wait_for(r"it\s+1\b")
    workers = [p for p in run.descendants() if "LokyProcess" in " ".join(p.cmdline())]
    assert workers
    os.kill(workers[0].pid, signal.SIGKILL)
    code, stdout, stderr = run.finish(timeout=120)
    assert code == 0, stderr
    assert "Traceback" not in stderr
    sol = Solution.load(out)
    assert check_solution(load(small_file), sol).ok
    # killed during a round of site solves: recovered and counted; killed while idle: loky replaces it
    assert sol.extra["worker_recoveries"] == stderr.count("a worker was lost")


# ----------------------------------------------------------------------------------------- 4. files
def test_failed_write_keeps_the_previous_file(tmp_path, paper_file, monkeypatch):
    target = tmp_path / "inst.h5"
    shutil.copy(paper_file, target)
    before = target.read_bytes()
    real_write = os.write

    def full_disk(fd, data):
        if len(data) > 100:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(storage.os, "write", full_disk)
    with pytest.raises(OutputError, match="No space left on device"):
        save(load(paper_file), target)
    monkeypatch.undo()
    assert target.read_bytes() == before
    assert os.listdir(tmp_path) == ["inst.h5"]


@contextlib.contextmanager
def _tiny_tmpfs(folder: Path, size: str):
    folder.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True)
    if res.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=False)


def test_full_disk_is_exit_5_and_the_previous_solution_stays(tmp_path, paper_file, paper_solution):
    with _tiny_tmpfs(tmp_path / "fs", "64k") as fs:
        target = fs / "sol.h5"
        shutil.copy(paper_solution, target)
        before = target.read_bytes()
        free = os.statvfs(fs).f_bavail * os.statvfs(fs).f_frsize
        (fs / "filler").write_bytes(b"\0" * max(free - 8192, 0))  # leave less than one solution's size
        res = _run("solve", str(paper_file), "--method", "greedy", "-q", "-o", str(target))
        assert res.returncode == 5, res.stderr
        assert "cannot write" in _one_line_error(res.stderr)
        assert target.read_bytes() == before
        _no_temporary_files(fs)


# ----------------------------------------------------------------------------------------- 5. validation
def _edit(src: Path, dst: Path, edit) -> Path:
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        edit(f)
    return dst


def _replace(name: str, values):
    def edit(f):
        del f[name]
        f.create_dataset(name, data=values)
    return edit


def _set(name: str, index, value):
    def edit(f):
        data = f[name][()]
        data[index] = value
        _replace(name, data)(f)
    return edit


@pytest.mark.parametrize("name,index,value,needle", [
    ("jobs/value", 0, 1e30, "/jobs/value[0]"),
    ("inference/latency_cost", 1, 1e25, "/inference/latency_cost[1]"),
    ("sites/price_buy", (2, 5), 1e300, "/sites/price_buy[2, 5]"),
    ("inference/demand", (0, 3), 1e300, "/inference/demand[0, 3]"),
    ("sites/gpus", 1, 10**12, "/sites/gpus[1]"),
])
def test_magnitudes_beyond_the_solver_are_refused(tmp_path, paper_file, name, index, value, needle):
    bad = _edit(paper_file, tmp_path / "bad.h5", _set(name, index, value))
    res = _run("solve", str(bad), "--method", "greedy", "-o", str(tmp_path / "s.h5"))
    assert res.returncode == 2
    line = _one_line_error(res.stderr)
    assert needle in line and "magnitude" in line
    assert not (tmp_path / "s.h5").exists()


def test_declared_size_beyond_the_file_is_refused_before_reading(tmp_path, paper_file):
    def huge_names(f):
        del f["sites/name"]
        ds = f["sites"].create_dataset("name", shape=(3,), maxshape=(None,), chunks=(1,),
                                       dtype=h5py.string_dtype("utf-8"))
        ds[:] = ["a", "b", "c"]
        ds.resize((10**9,))  # declared: 1e9 names; stored: three

    bad = _edit(paper_file, tmp_path / "bad.h5", huge_names)
    t0 = time.perf_counter()
    with pytest.raises(InstanceError, match=r"/sites/name: declares \d+ bytes but the file holds"):
        load(bad)
    assert time.perf_counter() - t0 < 5.0  # nothing of 16 GB was allocated or read


def test_truncated_contiguous_dataset_is_refused(tmp_path, paper_file):
    def unallocated(f):
        del f["sites/price_buy"]
        f["sites"].create_dataset("price_buy", shape=(3, 24), dtype="f8")  # declared, never written

    with pytest.raises(InstanceError, match="/sites/price_buy: declares 576 bytes but the file holds 0"):
        load(_edit(paper_file, tmp_path / "bad.h5", unallocated))


def test_external_link_and_external_storage_are_refused(tmp_path, paper_file):
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["price"] = np.ones((3, 24))

    def link(f):
        del f["sites/price_buy"]
        f["sites/price_buy"] = h5py.ExternalLink(str(other), "price")

    with pytest.raises(InstanceError, match="/sites/price_buy: external link"):
        load(_edit(paper_file, tmp_path / "link.h5", link))

    raw = tmp_path / "raw.bin"
    raw.write_bytes(np.ones(72).tobytes())

    def external(f):
        del f["sites/price_buy"]
        f["sites"].create_dataset("price_buy", shape=(3, 24), dtype="f8", external=[(str(raw), 0, 72 * 8)])

    with pytest.raises(InstanceError, match="/sites/price_buy: external raw storage"):
        load(_edit(paper_file, tmp_path / "ext.h5", external))


def _flip_in_dataset(path: Path, name: str) -> None:
    with h5py.File(path, "r") as f:
        ds = f[name]
        assert ds.chunks is None  # contiguous: its bytes sit at one offset
        offset = ds.id.get_offset()
    with open(path, "r+b") as fh:
        fh.seek(offset + 3)
        byte = fh.read(1)
        fh.seek(offset + 3)
        fh.write(bytes([byte[0] ^ 0x40]))


def test_flipped_byte_is_refused_naming_the_dataset(tmp_path, paper_file, paper_solution):
    inst = tmp_path / "inst.h5"
    save(load(paper_file), inst)  # written by this version: every dataset has its checksum
    _flip_in_dataset(inst, "sites/gen_cost")
    with pytest.raises(InstanceError, match="/sites/gen_cost: checksum mismatch"):
        load(inst)
    sol = tmp_path / "sol.h5"
    shutil.copy(paper_solution, sol)
    _flip_in_dataset(sol, "jobs/start")
    with pytest.raises(SolutionError, match="/jobs/start: checksum mismatch"):
        Solution.load(sol)


def test_check_reports_a_modified_solution_as_a_finding(tmp_path, paper_file, paper_solution):
    sol = tmp_path / "sol.h5"
    shutil.copy(paper_solution, sol)
    _flip_in_dataset(sol, "jobs/start")
    res = _run("check", str(paper_file), str(sol))
    assert res.returncode == 1  # judged, not refused: a modified start may or may not break a constraint
    assert "integrity: /jobs/start: checksum mismatch" in res.stdout
    assert "Traceback" not in res.stderr


def test_files_without_checksums_still_load(tmp_path, paper_file, paper_solution):
    def strip(f):
        f.visititems(lambda name, obj: obj.attrs.__delitem__(CHECKSUM_ATTR)
                     if isinstance(obj, h5py.Dataset) and CHECKSUM_ATTR in obj.attrs else None)

    inst = _edit(paper_file, tmp_path / "inst.h5", strip)
    assert load(inst).n_sites == 3
    sol = _edit(paper_solution, tmp_path / "sol.h5", strip)
    assert check_solution(load(inst), Solution.load(sol)).ok


def test_checksum_is_crc32_of_the_values(tmp_path, paper_file):
    inst = tmp_path / "inst.h5"
    save(load(paper_file), inst)
    with h5py.File(inst) as f:
        ds = f["sites/price_buy"]
        assert int(ds.attrs[CHECKSUM_ATTR]) == zlib.crc32(np.ascontiguousarray(ds[()]).tobytes())


# ----------------------------------------------------------------------------------------- fuzzing
FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                       HealthCheck.too_slow])


#: The readers' allocation cap for a file of B bytes: ``READ_CAP_FACTOR * B + READ_CAP_SLACK`` bytes of
#: Python and numpy memory (tracemalloc's peak). From the declared-size rule (docs/reliability.md): a
#: dataset is read only if it occupies its declared size in the file, or 1/1100 of it (+1 MiB) compressed.
READ_CAP_FACTOR = 1100
READ_CAP_SLACK = 8 * 2**20


def _read_within_cap(read, path: Path, error: type[Exception]) -> None:
    """``read(path)``: a result or a one-line ``error``, with tracemalloc's peak below the cap."""
    cap = READ_CAP_FACTOR * path.stat().st_size + READ_CAP_SLACK
    tracemalloc.start()
    try:
        read(path)
    except error as exc:
        assert "\n" not in str(exc)
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < cap, f"reading allocated {peak} bytes, cap {cap}"


def _corrupt(data: bytes, kind: str, position: float, value: int) -> bytes:
    at = int(position * (len(data) - 1))
    if kind == "truncate":
        return data[:at]
    out = bytearray(data)
    out[at] ^= value or 1
    return bytes(out)


@FUZZ
@given(kind=st.sampled_from(["truncate", "flip"]), position=st.floats(0.0, 1.0), value=st.integers(0, 255))
def test_fuzz_instance_reader_bytes(tmp_path_factory, paper_file, kind, position, value):
    path = tmp_path_factory.mktemp("fz") / "inst.h5"
    path.write_bytes(_corrupt(paper_file.read_bytes(), kind, position, value))
    _read_within_cap(load, path, InstanceError)


@FUZZ
@given(kind=st.sampled_from(["truncate", "flip"]), position=st.floats(0.0, 1.0), value=st.integers(0, 255))
def test_fuzz_solution_reader_bytes(tmp_path_factory, paper_solution, kind, position, value):
    path = tmp_path_factory.mktemp("fz") / "sol.h5"
    path.write_bytes(_corrupt(paper_solution.read_bytes(), kind, position, value))
    _read_within_cap(Solution.load, path, SolutionError)


def _datasets(path: Path) -> list[str]:
    names: list[str] = []
    with h5py.File(path) as f:
        f.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
    return sorted(names)


_RESHAPES = st.sampled_from(["grow", "shrink", "retype-int8", "retype-str", "retype-f4", "scalar", "2d"])


def _reshape_dataset(f: h5py.File, name: str, how: str) -> None:
    data = f[name][()]
    del f[name]
    arr = np.asarray(data)
    if how == "grow":
        f.create_dataset(name, shape=(arr.shape[0] + 5,) + arr.shape[1:] if arr.ndim else (5,), dtype=arr.dtype)
    elif how == "shrink":
        f.create_dataset(name, data=arr.reshape(-1)[:-1] if arr.size else arr)
    elif how == "retype-int8":
        f.create_dataset(name, shape=arr.shape, dtype="i1")
    elif how == "retype-str":
        f.create_dataset(name, data=np.array(["x"] * max(arr.size, 1), dtype=object),
                         dtype=h5py.string_dtype("utf-8"))
    elif how == "retype-f4":
        f.create_dataset(name, data=arr.astype("f4") if arr.dtype.kind in "biuf" else np.zeros(arr.shape, "f4"))
    elif how == "scalar":
        f.create_dataset(name, data=1.5)
    else:
        f.create_dataset(name, data=np.zeros((2, 2, 2)))


@FUZZ
@given(which=st.integers(0, 10**6), how=_RESHAPES)
def test_fuzz_instance_reader_datasets(tmp_path_factory, paper_file, which, how):
    names = _datasets(paper_file)
    name = names[which % len(names)]
    path = _edit(paper_file, tmp_path_factory.mktemp("fz") / "inst.h5", lambda f: _reshape_dataset(f, name, how))
    _read_within_cap(load, path, InstanceError)


@FUZZ
@given(which=st.integers(0, 10**6), how=_RESHAPES)
def test_fuzz_solution_reader_datasets(tmp_path_factory, paper_solution, which, how):
    names = _datasets(paper_solution)
    name = names[which % len(names)]
    path = _edit(paper_solution, tmp_path_factory.mktemp("fz") / "sol.h5", lambda f: _reshape_dataset(f, name, how))
    _read_within_cap(Solution.load, path, SolutionError)


# ----------------------------------------------------------------------------------------- 6. library API
@pytest.fixture(scope="module")
def paper(paper_file):
    return load(paper_file)


def _greedy_plan(paper_solution) -> ComputePlan:
    return ComputePlan.from_solution(Solution.load(paper_solution))


@pytest.mark.parametrize("call,needle", [
    (lambda inst, plan: MoveJob(-1, 0, 0), "MoveJob.job: must be >= 0"),
    (lambda inst, plan: MoveJob(0, -3, 0), "MoveJob.site"),
    (lambda inst, plan: MoveJob(1.7, 0, 0), "MoveJob.job: must be an integer"),
    (lambda inst, plan: SwapJobs(0, None), "SwapJobs.b"),
    (lambda inst, plan: ShiftRouting(0, 0, -1, 0, float("nan")), "ShiftRouting.gpus: must be finite"),
    (lambda inst, plan: ShiftRouting(0, -2, -1, 0, 1.0), "ShiftRouting.t"),
    (lambda inst, plan: SetPlan("plan"), "SetPlan.plan"),
    (lambda inst, plan: ComputePlan(plan.job_site + 0.7, plan.job_start, plan.served), "plan.job_site"),
    (lambda inst, plan: ComputePlan(plan.job_site.astype(str), plan.job_start, plan.served), "plan.job_site"),
    (lambda inst, plan: ComputePlan(plan.job_site, plan.job_start, np.full(plan.served.shape, "x")), "plan.served"),
    (lambda inst, plan: evaluate(inst, ComputePlan(np.full(6, -3), np.full(6, -7), plan.served)), "must be >= -1"),
    (lambda inst, plan: evaluate(inst, ComputePlan(plan.job_site[:-1], plan.job_start[:-1], plan.served)),
     "plan.job_site: shape"),
    (lambda inst, plan: evaluate(inst, ComputePlan(plan.job_site, plan.job_start, plan.served * np.nan)),
     "must be finite"),
    (lambda inst, plan: evaluate(inst, "plan"), "plan: must be a ComputePlan"),
    (lambda inst, plan: evaluate(inst, plan, time_limit=-1.0), "time_limit"),
    (lambda inst, plan: Evaluator(inst, plan).try_move(MoveJob(99, 0, 0)), "MoveJob.job: index 99 out of range"),
    (lambda inst, plan: Evaluator(inst, plan).try_move("move"), "move: must be"),
    (lambda inst, plan: Evaluator(inst, plan).try_move(ShiftRouting(9, 0, -1, 0, 1.0)), "ShiftRouting.k"),
])
def test_malformed_api_calls_name_the_argument(paper, paper_solution, call, needle):
    plan = _greedy_plan(paper_solution)
    with pytest.raises((PlanError, InputError)) as info:
        call(paper, plan)
    assert needle in str(info.value)



def test_monolithic_limit_counts_the_scoring_of_the_initial_plan(monkeypatch, sites40_file):
    """The closing phase seeds SCIP with a scored plan: that scoring is part of the time limit."""
    import carbonsched.formulations.monolithic as monolithic
    from carbonsched.formulations.baselines import energy_only_plan

    def slow_evaluate(*args, **kwargs):
        time.sleep(1.5)
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(monolithic, "evaluate", slow_evaluate)
    inst = load(sites40_file)
    plan = energy_only_plan(inst)
    evaluate(inst, plan)  # compiled and warm: the scoring below is the sleep plus well under a second
    started = time.monotonic()
    sol = monolithic.solve_monolithic(inst, time_limit=4.0, initial=plan)
    took = time.monotonic() - started
    assert took < 4.0 + 0.5, f"solve_monolithic took {took:.2f} s against a 4 s limit"
    assert sol.status is SolveStatus.TIME_LIMIT
    assert check_solution(inst, sol).ok


def test_carbon_price_scoring_on_a_pool_stops_at_its_deadline(monkeypatch):
    """Sites queued on a worker after the deadline are not solved: the scoring returns within its limit."""
    from carbonsched.decomp.parallel import ParallelConfig, SitePool
    from carbonsched.errors import NoSolutionError
    from carbonsched.formulations.baselines import energy_only_plan

    evaluate_module = importlib.import_module("carbonsched.formulations.evaluate")  # the package exports the function
    original = evaluate_module.SiteEnergySolver.solve

    def slow_solve(self, *args, **kwargs):  # a solve of 0.25 s more that keeps to the deadline it is given
        if kwargs.get("deadline") is None or time.time() < kwargs["deadline"]:
            time.sleep(0.25)
        return original(self, *args, **kwargs)

    inst = generate(sites=12, periods=24, seed=3)
    inst.carbon_budget_t *= 0.5  # binding: the price search needs several rounds over every site
    plan = energy_only_plan(inst)
    monkeypatch.setattr(evaluate_module.SiteEnergySolver, "solve", slow_solve)
    with SitePool(inst, ParallelConfig(n_jobs=1)) as pool:  # in this process: the patch applies
        started = time.monotonic()
        try:
            sol = evaluate_module.evaluate(inst, plan, time_limit=4.0, pool=pool, exact_joint=False)
        except NoSolutionError:
            sol = None
        took = time.monotonic() - started
    assert took < 4.0 + 0.75, f"scoring took {took:.2f} s against a 4 s limit"
    if sol is not None:
        assert check_solution(inst, sol).ok
