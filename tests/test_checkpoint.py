"""Checkpoint and resume of the decompositions (issue #15).

The state of each algorithm survives a file round trip and a resume (the resumed run holds the same cuts,
multipliers, pool, core point as the run that wrote the checkpoint); a resume on another instance, method
or option set, or from a corrupted file, is refused with one line naming the field; a CLI run SIGKILLed at
a random moment after its first checkpoint and resumed ends no worse than the same run uninterrupted, with
a valid bound, its trace continued and its solution checked (marked ``faults``, run by CI).
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from carbonsched.cli import main
from carbonsched.decomp.benders import solve_benders
from carbonsched.decomp.checkpoint import instance_fingerprint, load_checkpoint
from carbonsched.decomp.hooks import DecompositionHooks
from carbonsched.decomp.lagrangian import solve_lagrangian
from carbonsched.errors import InputError
from carbonsched.formulations.checker import check_solution
from carbonsched.formulations.monolithic import solve_monolithic
from carbonsched.formulations.solution import Solution, SolveStatus
from carbonsched.instances import generate, save

#: The small instance of the kill-and-resume test: both methods prove optimality in a few seconds.
TINY = dict(sites=3, periods=12, jobs=6, classes=2, seed=3)
SOLVERS = {"lagrangian": solve_lagrangian, "benders": solve_benders}
#: State fields that describe where the run stopped (they differ between a run and its resumed end).
WHERE = {"stage", "loop_status", "final_status", "gap_before_closing"}


@pytest.fixture(scope="module")
def tiny():
    return generate(**TINY)


@pytest.fixture(scope="module")
def optimum(tiny) -> float:
    return solve_monolithic(tiny, gap=0).objective


class _StopAt(DecompositionHooks):
    """Ends the run like Ctrl-C after ``iteration`` iterations of ``phase``."""

    def __init__(self, phase: str, iteration: int) -> None:
        self.phase, self.iteration = phase, iteration

    def post_iteration(self, state):
        if state.phase == self.phase and state.iteration >= self.iteration:
            raise KeyboardInterrupt


def _assert_same_state(a: dict, b: dict) -> None:
    assert set(a) == set(b)
    for key in sorted(set(a) - WHERE):
        va, vb = a[key], b[key]
        if isinstance(va, np.ndarray):
            assert va.shape == vb.shape and np.array_equal(va, vb, equal_nan=va.dtype.kind == "f"), key
        elif isinstance(va, float):
            assert va == vb or (math.isnan(va) and math.isnan(vb)), key
        else:
            assert va == vb, key


def _valid(inst, sol: Solution, optimum: float) -> None:
    assert check_solution(inst, sol).ok
    slack = 1e-6 * max(1.0, abs(optimum))
    assert sol.bound >= optimum - slack and sol.certified
    assert np.all(sol.trace.dual >= optimum - slack)
    assert sol.objective <= optimum + slack


# ------------------------------------------------------------------------------- state round trips
CASES = {
    "lagrangian-bundle": ("lagrangian", dict(close=False), "iteration", 3, "iteration_limit", 8),
    "lagrangian-subgradient": ("lagrangian", dict(close=False, method="subgradient"), "iteration", 3,
                               "iteration_limit", 8),
    "lagrangian-parallel-primal": ("lagrangian", dict(close=False, primal="parallel"), "iteration", 2,
                                   "iteration_limit", 4),
    "benders-multi-tree": ("benders", dict(master="multi-tree"), "master", 1, "max_iterations", 4),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_state_survives_the_file_and_the_resume(tmp_path, tiny, optimum, case):
    method, options, phase, stop, limit_name, more = CASES[case]
    solve = SOLVERS[method]
    first, second, third = (str(tmp_path / f"{n}.h5") for n in ("first", "second", "third"))
    # a run stopped mid-way writes its final checkpoint (status interrupted)
    sol = solve(tiny, gap=0.0, hooks=_StopAt(phase, stop), checkpoint=first, checkpoint_every=3600.0, **options)
    assert sol.status is SolveStatus.INTERRUPTED
    ckpt = load_checkpoint(first)
    assert ckpt.method == method and ckpt.fingerprint == instance_fingerprint(tiny)
    assert ckpt.algorithm["stage"] in ("loop", "milp")
    assert np.array_equal(ckpt.trace.seconds, sol.trace.seconds) and ckpt.bound == sol.bound
    assert ckpt.seconds <= sol.wall_seconds
    # resumed with an iteration limit already reached: nothing runs, the state it writes back is the same
    done = ckpt.algorithm["iterations"] if method == "lagrangian" else ckpt.algorithm["next_iteration"]
    solve(tiny, gap=0.0, resume=first, checkpoint=second, **{limit_name: done}, **options)
    _assert_same_state(ckpt.algorithm, load_checkpoint(second).algorithm)
    # resumed with more iterations: it continues where it was (not from scratch), its bound stays valid
    sol = solve(tiny, gap=0.0, resume=first, checkpoint=third, **{limit_name: more}, **options)
    _valid(tiny, sol, optimum)
    assert sol.objective >= ckpt.trace.primal[-1] - 1e-9 * abs(optimum)  # the incumbent was re-scored and kept
    n = len(ckpt.trace)
    assert np.array_equal(sol.trace.seconds[:n], ckpt.trace.seconds)
    assert np.all(np.diff(sol.trace.seconds) >= 0) and sol.trace.seconds[n] >= ckpt.seconds
    end = load_checkpoint(third).algorithm
    if method == "lagrangian":
        assert sol.extra["iterations"] == end["iterations"] > done
        if "cut_site" in end:  # the bundle keeps the cuts of the first run
            assert end["cut_site"].size > ckpt.algorithm["cut_site"].size
    else:
        assert end["cut_site"].size >= ckpt.algorithm["cut_site"].size
        assert np.array_equal(end["cut_coef"][:ckpt.algorithm["cut_site"].size], ckpt.algorithm["cut_coef"])


def test_checkpoints_are_written_every_few_seconds_and_at_the_end(tmp_path, tiny):
    path = tmp_path / "ck.h5"
    sol = solve_lagrangian(tiny, close=False, iteration_limit=6, checkpoint=str(path), checkpoint_every=1e-3)
    assert sol.extra["checkpoints_written"] >= 5  # every trace row here, and the final one
    ckpt = load_checkpoint(path)
    assert ckpt.algorithm["stage"] == "done" and ckpt.algorithm["iterations"] == 6
    assert np.array_equal(ckpt.trace.dual, sol.trace.dual)
    assert ckpt.plan is not None and np.array_equal(ckpt.plan.job_site, sol.job_site)
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


# ------------------------------------------------------------------------------------- refusals
@pytest.fixture(scope="module")
def lagrangian_checkpoint(tmp_path_factory, tiny) -> Path:
    path = tmp_path_factory.mktemp("ck") / "lagrangian.h5"
    solve_lagrangian(tiny, close=False, iteration_limit=3, checkpoint=str(path))
    return path


def test_resume_refuses_another_instance_method_or_options(lagrangian_checkpoint, tiny):
    other = generate(**{**TINY, "seed": 4})
    with pytest.raises(InputError, match="field 'instance_fingerprint'"):
        solve_lagrangian(other, close=False, resume=str(lagrangian_checkpoint))
    with pytest.raises(InputError, match="field 'method' is 'lagrangian', this run is 'benders'"):
        solve_benders(tiny, resume=str(lagrangian_checkpoint))
    with pytest.raises(InputError, match="option 'seed' is 0 in the checkpoint, 5 in this run"):
        solve_lagrangian(tiny, close=False, seed=5, resume=str(lagrangian_checkpoint))
    with pytest.raises(InputError, match="option 'method'"):
        solve_lagrangian(tiny, close=False, method="subgradient", resume=str(lagrangian_checkpoint))


def test_resume_refuses_a_corrupted_or_foreign_file(tmp_path, lagrangian_checkpoint, tiny):
    bad = tmp_path / "bad.h5"
    bad.write_bytes(lagrangian_checkpoint.read_bytes())
    with h5py.File(bad, "r+") as f:  # an edited multiplier: its checksum no longer matches
        z = f["algorithm/z"][()]
        z[0] += 1.0
        f["algorithm/z"][...] = z
    with pytest.raises(InputError, match=r"/algorithm/z: checksum mismatch"):
        solve_lagrangian(tiny, close=False, resume=str(bad))
    inst_file = tmp_path / "inst.h5"
    save(tiny, inst_file)
    with pytest.raises(InputError, match="not a checkpoint file"):
        solve_lagrangian(tiny, close=False, resume=str(inst_file))
    with pytest.raises(InputError, match="checkpoint_every"):
        solve_lagrangian(tiny, checkpoint=str(tmp_path / "x.h5"), checkpoint_every=0.0)
    with pytest.raises(InputError, match="is the resume file"):
        solve_lagrangian(tiny, checkpoint=str(lagrangian_checkpoint), resume=str(lagrangian_checkpoint))


def test_cli_refuses_bad_checkpoint_arguments(tmp_path, lagrangian_checkpoint, tiny, capsys):
    inst = tmp_path / "tiny.h5"
    save(tiny, inst)
    out, ck = str(tmp_path / "out.h5"), str(tmp_path / "ck.h5")
    cases = [
        (["--method", "greedy", "--checkpoint", ck], "--checkpoint: only the methods benders and lagrangian"),
        (["--method", "monolithic", "--resume", str(lagrangian_checkpoint)], "--resume: only the methods"),
        (["--method", "benders", "--checkpoint", str(inst)], "is the instance file"),
        (["--method", "lagrangian", "--checkpoint", out], "is also the --output file"),
        (["--method", "lagrangian", "--resume", str(lagrangian_checkpoint), "--checkpoint",
          str(lagrangian_checkpoint)], "is the --resume file"),
        (["--method", "lagrangian", "--resume", str(inst)], "not a checkpoint file"),
        (["--method", "benders", "--resume", str(lagrangian_checkpoint)], "field 'method'"),
        (["--method", "lagrangian", "--resume", str(tmp_path / "missing.h5")], "no such file"),
        (["--method", "lagrangian", "--checkpoint", ck, "--checkpoint-every", "0"], "must be > 0"),
    ]
    for extra, message in cases:
        with pytest.raises(SystemExit) if "must be > 0" in message else contextlib.nullcontext():
            code = main(["solve", str(inst), "-q", "-o", out, *extra])
            assert code == 2, extra
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, (extra, err)
    assert not os.path.exists(out) and not os.path.exists(ck)


# ------------------------------------------------------------------------------ kill and resume
def _cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "carbonsched.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def _alive(pids: list[int], timeout: float = 5.0) -> list[int]:
    """Those of ``pids`` still running (not zombies) after up to ``timeout`` s; they are killed then."""
    psutil = pytest.importorskip("psutil")
    end = time.monotonic() + timeout
    while True:
        alive = []
        for pid in pids:
            with contextlib.suppress(psutil.NoSuchProcess):
                p = psutil.Process(pid)
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                    alive.append(pid)
        if not alive or time.monotonic() > end:
            for pid in alive:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            return alive
        time.sleep(0.1)


@pytest.mark.faults
@pytest.mark.parametrize("method,jobs", [("lagrangian", 2), ("benders", 1)])
def test_sigkill_and_resume_ends_no_worse_than_uninterrupted(tmp_path, tiny, optimum, method, jobs):
    psutil = pytest.importorskip("psutil")
    inst = tmp_path / "tiny.h5"
    save(tiny, inst)
    base = ["solve", str(inst), "--method", method, "--gap", "1e-6", "--jobs", str(jobs), "-q"]
    whole = _cli(*base, "-o", str(tmp_path / "whole.h5"))
    assert whole.wait(timeout=300) == 0, whole.stderr.read()
    uninterrupted = Solution.load(tmp_path / "whole.h5")

    seed = random.randrange(2**31)
    rng = random.Random(seed)
    ck, ck2 = tmp_path / "ck.h5", tmp_path / "ck2.h5"
    delay = rng.uniform(0.0, 1.5)  # a random moment after the first checkpoint
    killed = tmp_path / "killed.h5"
    for attempt in range(4):
        # a run that ends before the moment drawn is tried again with the delay halved (0 the last time):
        # how long the run lasts after its first checkpoint depends on the machine's load
        ck.unlink(missing_ok=True)
        run = _cli(*base, "--checkpoint", str(ck), "--checkpoint-every", "0.1", "-o", str(killed))
        end = time.monotonic() + 120
        while not ck.exists():
            assert run.poll() is None, f"the run ended before its first checkpoint: {run.stderr.read()}"
            assert time.monotonic() < end, "no checkpoint within 120 s"
            time.sleep(0.02)
        time.sleep(delay if attempt < 3 else 0.0)
        children = [p.pid for p in psutil.Process(run.pid).children(recursive=True)]
        if run.poll() is None and not killed.exists():
            break
        run.wait(timeout=60)  # it ended, or is ending with its output written: try again
        killed.unlink(missing_ok=True)
        delay /= 2
    assert run.poll() is None, f"seed {seed}: the run ended before the kill"
    os.kill(run.pid, signal.SIGKILL)  # the parent only: its workers must notice
    assert run.wait(timeout=30) == -signal.SIGKILL
    assert _alive(children) == [], f"seed {seed}: workers outlived the killed run"
    assert not killed.exists()
    saved = load_checkpoint(ck)  # the last checkpoint before the kill (never a half-written one)

    resumed_run = _cli(*base, "--resume", str(ck), "--checkpoint", str(ck2), "-o", str(tmp_path / "resumed.h5"))
    assert resumed_run.wait(timeout=300) == 0, f"seed {seed}: {resumed_run.stderr.read()}"
    resumed = Solution.load(tmp_path / "resumed.h5")
    _valid(tiny, resumed, optimum)
    assert resumed.objective >= uninterrupted.objective - 1e-6 * max(1.0, abs(uninterrupted.objective)), seed
    n = len(saved.trace)
    for name in ("seconds", "primal", "dual", "iteration"):  # the trace continues the checkpoint's rows
        assert np.array_equal(getattr(resumed.trace, name)[:n], getattr(saved.trace, name)), (seed, name)
    assert len(resumed.trace) > n and np.all(np.diff(resumed.trace.seconds) >= 0)
    assert resumed.wall_seconds >= saved.seconds
    assert resumed.extra["resumed_at_seconds"] == pytest.approx(saved.seconds)
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")], seed
    assert not [p for p in os.listdir(tempfile.gettempdir()) if p.startswith(f"carbonsched-pool-{run.pid}-")]
