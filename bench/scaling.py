"""Scaling study: every method on growing instances, one child process per run, one HDF5 results file.

``run`` sweeps sites × periods × seeds × methods. Each run is a fresh child process (``python -m
bench.scaling _child …``) in its own process group, so a crash or a memory blow-up of one run does not
end the sweep; the parent kills the group at time limit + grace (or when the run's resident memory passes
``--mem-limit-mb``), relays the child's progress lines, and samples the memory of the child and its
workers. A run is written to the results file only once it has finished (solved, failed, crashed or
killed), in its own group ``S{S}/T{T}/seed{k}/{method}``; a sweep started again skips the runs already
stored, so an interrupted sweep resumes where it stopped.

``report`` turns a results file into markdown tables and PNG plots.

    python -m carbonsched.bench.scaling run --results my-scaling.h5 --sites 3 10 30 100 --periods 24 --seeds 0 \\
        --methods monolithic highs benders lagrangian --time-limit 60 --jobs 2
    python -m carbonsched.bench.scaling report my-scaling.h5 --out my-scaling.md --img-dir my-scaling-img

Every run group records the commit (``git rev-parse``, "unknown" outside a checkout), the package versions,
the CPU count and the host (:func:`carbonsched.provenance.provenance`). Load a results file into pandas with
``carbonsched.bench.scaling_results.to_dataframe(path)``.

Methods: ``monolithic`` (the joint MILP in SCIP), ``highs`` (HiGHS on the same joint model, read from the
MPS file SCIP writes; needs the optional ``peers`` extra), ``benders`` and ``lagrangian`` (the
decompositions, ``--jobs`` workers) and ``scip-benders`` (SCIP's built-in Benders on the Benders split).
Every final solution goes through the checker; a run whose solution
fails the checker is recorded as failed.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from carbonsched.bench.scaling_results import (
    METHODS,
    STAGING,
    TRACE_FIELDS,
    certified_gap,
    run_key,
    stored_runs,
)
from carbonsched.progress import ProgressEvent
from carbonsched.provenance import provenance

#: Prefix of the lines a child writes to stdout for the parent (everything else is relayed as is).
PROGRESS_TAG = "@@progress "


# ============================================================================== helpers
def highs_available() -> bool:
    """Whether :mod:`highspy` can be imported (the optional ``peers`` extra)."""
    try:
        import highspy  # noqa: F401
    except ImportError:
        return False
    return True


# ============================================================================== child side
def _emit(seconds: float, primal: float, dual: float, iteration: int, **extra: Any) -> None:
    """One progress line on stdout for the parent."""
    row = {"t": float(seconds), "primal": float(primal), "dual": float(dual), "it": int(iteration), **extra}
    print(PROGRESS_TAG + json.dumps(row), flush=True)


def _emit_event(event: ProgressEvent) -> None:
    """A method's progress event as one progress line on stdout for the parent."""
    _emit(event.seconds, event.primal, event.bound, event.iteration, phase=event.phase)


def _model_size(inst) -> dict[str, int]:
    """Variables, rows and nonzeros of the joint MILP of ``inst`` (build is fast: tenths of a second)."""
    from carbonsched.formulations.joint import build_joint_model

    jm = build_joint_model(inst)
    return _scip_size(jm.model)


def _scip_size(model) -> dict[str, int]:
    out = {"n_vars": int(model.getNVars()), "n_rows": int(model.getNConss())}
    with contextlib.suppress(Exception):
        out["n_nonzeros"] = int(sum(len(model.getValsLinear(c)) for c in model.getConss()))
    return out


def _solve_highs(inst, time_limit: float, gap: float, workdir: Path):
    """HiGHS on the joint MILP read from the MPS file SCIP writes; returns (Solution, size dict).

    SCIP writes ``OBJSENSE MAX``; HiGHS reads the sense with the model, so its primal objective and its
    dual bound are already in Z's sense (checked below: a minimization read would be negated back).
    The file is written with SCIP's generic names: the joint model repeats some row names (``min_up_*``),
    and an MPS reader matches rows by name, so the model's own names would merge distinct rows. Columns
    keep SCIP's variable order; the objective coefficients are compared to make sure. HiGHS is also
    interrupted from its callback at the time limit (it can overrun its own limit by more than 30 s at
    100 sites). The final solution is rescored exactly from the arrays.
    """
    try:
        import highspy
    except ImportError as exc:  # recorded as a failed run with this message
        raise RuntimeError("highspy is not installed: pip install 'carbonsched[peers]' (highspy>=1.7)") from exc
    from carbonsched.formulations.energy import has_battery
    from carbonsched.formulations.joint import build_joint_model
    from carbonsched.formulations.solution import Solution, SolveStatus, Trace

    t0 = time.perf_counter()
    jm = build_joint_model(inst)
    mps = workdir / "model.mps"
    jm.model.writeProblem(str(mps), genericnames=True, verbose=False)
    scip_offset = float(jm.model.getObjoffset())
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.readModel(str(mps))
    lp = h.getLp()
    sign = 1.0 if lp.sense_ == highspy.ObjSense.kMaximize else -1.0
    offset_fix = scip_offset - sign * float(lp.offset_)
    # generic column name x{k} is the k-th variable of SCIP's problem order (sorted by type), not id order
    scip_vars = jm.am.variables()
    id_of = {v.getIndex(): i for i, v in enumerate(scip_vars)}
    problem_vars = jm.model.getVars()
    col_id = np.array([id_of[problem_vars[int(n[1:])].getIndex()] for n in lp.col_names_], dtype=np.int64)
    scip_cost = np.array([v.getObj() for v in scip_vars], dtype=np.float64)
    if col_id.size != len(scip_vars) or not np.allclose(np.asarray(lp.col_cost_), scip_cost[col_id], rtol=1e-9,
                                                          atol=1e-9):
        raise RuntimeError("HiGHS read the MPS file with other columns than SCIP's model")
    size = {"n_vars": int(h.getNumCol()), "n_rows": int(h.getNumRow()), "n_nonzeros": int(h.getNumNz())}
    prep = time.perf_counter() - t0
    h.setOptionValue("time_limit", max(time_limit - prep, 1.0))
    h.setOptionValue("mip_rel_gap", gap)
    h.setOptionValue("threads", 1)
    trace = Trace()
    last = [-math.inf]

    def on_event(ctype, _msg, dout, _din, _udata) -> None:
        now = time.perf_counter() - t0
        if ctype == highspy.cb.HighsCallbackType.kCallbackMipInterrupt and now > time_limit:
            _din.user_interrupt = True
        improving = ctype == highspy.cb.HighsCallbackType.kCallbackMipImprovingSolution
        if not improving and now - last[0] < 1.0:
            return
        last[0] = now
        primal = sign * float(dout.mip_primal_bound) + offset_fix
        dual = sign * float(dout.mip_dual_bound) + offset_fix
        primal = primal if math.isfinite(primal) else -math.inf
        dual = dual if math.isfinite(dual) else math.inf
        trace.append(now, primal, dual, int(dout.mip_node_count))
        _emit(now, primal, dual, int(dout.mip_node_count))

    h.setCallback(on_event, None)
    h.startCallback(highspy.cb.HighsCallbackType.kCallbackMipImprovingSolution)
    h.startCallback(highspy.cb.HighsCallbackType.kCallbackMipInterrupt)
    h.run()
    wall = time.perf_counter() - t0
    info = h.getInfo()
    model_status = h.getModelStatus()
    status_text = h.modelStatusToString(model_status)
    if info.primal_solution_status != 2:  # kSolutionStatusFeasible
        raise RuntimeError(f"HiGHS found no feasible solution ({status_text}, {wall:.1f} s)")
    dual = sign * float(info.mip_dual_bound) + offset_fix
    primal_highs = sign * float(info.objective_function_value) + offset_fix
    values = np.zeros(len(scip_vars))
    values[col_id] = np.asarray(h.getSolution().col_value, dtype=np.float64)
    arrays = jm.extract(values)
    energy = arrays.pop("energy")
    no_bat = ~has_battery(jm.inst)
    energy["soc"][no_bat] = np.asarray(inst.sites.bat_soc0_mwh)[no_bat, None]
    status = {
        highspy.HighsModelStatus.kOptimal: SolveStatus.GAP_LIMIT,
        highspy.HighsModelStatus.kTimeLimit: SolveStatus.TIME_LIMIT,
        highspy.HighsModelStatus.kInterrupt: SolveStatus.TIME_LIMIT,
    }.get(model_status, SolveStatus.INTERRUPTED)
    if math.isfinite(primal_highs):
        trace.append(wall, primal_highs, dual if math.isfinite(dual) else math.inf, int(info.mip_node_count))
    sol = Solution.from_arrays(
        inst, method="highs", status=status, bound=dual if math.isfinite(dual) else math.inf, certified=True,
        wall_seconds=wall, trace=trace, energy=energy, **arrays,
        extra={"highs_status": status_text, "highs_primal": primal_highs, "highs_mip_gap": float(info.mip_gap),
               "prep_seconds": prep, "mps_names": "generic"},
    )
    return sol, size


def _solve(method: str, inst, time_limit: float, gap: float, jobs: int, workdir: Path):
    """Run one method with progress lines on stdout; returns (Solution, size dict)."""
    if method == "highs":
        return _solve_highs(inst, time_limit, gap, workdir)
    if method == "monolithic":
        from carbonsched.formulations.monolithic import solve_monolithic

        sol = solve_monolithic(inst, time_limit=time_limit, gap=gap, progress=_emit_event)
        return sol, {}
    if method == "scip-benders":
        from carbonsched.decomp.scip_benders import solve_scip_benders

        return solve_scip_benders(inst, time_limit=time_limit, gap=gap, progress=_emit_event), {}
    from carbonsched.decomp.parallel import ParallelConfig

    config = ParallelConfig(n_jobs=jobs)
    def progress(event) -> None:
        _emit(event.seconds, event.primal, event.bound, event.iteration, phase=event.phase)

    if method == "benders":
        from carbonsched.decomp.benders import solve_benders

        # close=False: the study measures the decomposition itself, not the closing phase
        return solve_benders(inst, time_limit=time_limit, gap=gap, config=config, progress=progress, close=False), {}
    if method == "lagrangian":
        from carbonsched.decomp.lagrangian import solve_lagrangian

        # close=False: the study measures the decomposition itself, not its B&B closing phase
        return solve_lagrangian(inst, time_limit=time_limit, gap=gap, config=config, progress=progress,
                                close=False), {}
    if method == "fail":  # a method that always fails, for the tests of the failure path
        raise RuntimeError("deliberate failure (test method)")
    if method == "hang":  # a method that overruns any limit, for the tests of the kill path
        time.sleep(3600.0)
    raise ValueError(f"unknown method {method!r}")


def child_main(args: argparse.Namespace) -> int:
    """Entry point of one run in its own process: solve, check, write ``args.out`` (npz + json)."""
    from carbonsched.formulations.checker import check_solution
    from carbonsched.instances.generator import generate

    t0 = time.perf_counter()
    out = Path(args.out)
    summary: dict[str, Any] = {"ok": False}
    arrays: dict[str, np.ndarray] = {}
    try:
        inst = generate(sites=args.sites, periods=args.periods, seed=args.seed)
        with tempfile.TemporaryDirectory(prefix="scaling-") as tmp:
            sol, size = _solve(args.method, inst, args.time_limit, args.gap, args.jobs, Path(tmp))
        wall = time.perf_counter() - t0
        if not size:
            with contextlib.suppress(Exception):
                size = _model_size(inst)
        report = check_solution(inst, sol)
        summary.update(size)
        if sol.trace is not None:
            arrays = {k: np.asarray(v) for k, v in sol.trace.to_arrays().items()}
        summary.update(objective=float(sol.objective), bound=float(sol.bound), gap=float(sol.gap),
                       certified=bool(sol.certified), status=str(sol.status), wall_seconds=wall,
                       method_wall_seconds=float(sol.wall_seconds))
        if report.ok:
            summary["ok"] = True
        else:
            summary.update(status="failed", error="checker: " + report.format().replace("\n", " | ")[:2000])
    except Exception as exc:  # a failed run is a result: record it
        summary.update(status="failed", error=f"{type(exc).__name__}: {exc}"[:2000],
                       wall_seconds=time.perf_counter() - t0)
    np.savez(out.with_suffix(".npz"), **arrays)
    tmp_json = out.with_suffix(".json.tmp")
    tmp_json.write_text(json.dumps(summary))
    os.replace(tmp_json, out.with_suffix(".json"))
    return 0


# ============================================================================== parent side
def _proc_table() -> dict[int, tuple[int, float]]:
    """pid → (ppid, resident MB) for every process visible in /proc."""
    table: dict[int, tuple[int, float]] = {}
    page_mb = os.sysconf("SC_PAGE_SIZE") / 2**20
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as fh:
                stat = fh.read()
            with open(f"/proc/{name}/statm") as fh:
                rss_pages = int(fh.read().split()[1])
        except (OSError, IndexError, ValueError):
            continue
        rest = stat[stat.rfind(")") + 2:].split()
        table[int(name)] = (int(rest[1]), rss_pages * page_mb)
    return table


def tree_rss_mb(root: int) -> float:
    """Resident memory of ``root`` and all its descendants, MB (0 if ``root`` is gone)."""
    table = _proc_table()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    total, stack = 0.0, [root]
    while stack:
        pid = stack.pop()
        if pid in table:
            total += table[pid][1]
        stack.extend(children.get(pid, ()))
    return total


def _vm_hwm_mb(pid: int) -> float:
    with contextlib.suppress(OSError, ValueError), open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def available_memory_mb() -> float:
    """MemAvailable of /proc/meminfo, MB (inf when unknown)."""
    with contextlib.suppress(OSError, ValueError), open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024.0
    return math.inf


@dataclass
class RunOutcome:
    """What the parent stores for one run."""

    summary: dict[str, Any]
    trace: dict[str, np.ndarray] = field(default_factory=dict)


def run_child(method: str, n_sites: int, n_periods: int, seed: int, *, time_limit: float, gap: float, jobs: int,
              grace: float, mem_limit_mb: float, echo: Callable[[str], None] = print,
              label: str = "") -> RunOutcome:
    """Run one method in a child process group; enforce time and memory from outside; measure memory.

    Peak memory is the largest of: the sampled (every 0.5 s) resident memory of the child and all its
    descendants (the decomposition workers), the child's own VmHWM, and the ``ru_maxrss`` that
    ``wait4`` reports for it.
    """
    with tempfile.TemporaryDirectory(prefix="scaling-run-") as tmp:
        out = Path(tmp) / "result"
        cmd = [sys.executable, "-m", "carbonsched.bench.scaling", "_child", "--method", method, "--sites", str(n_sites),
               "--periods", str(n_periods), "--seed", str(seed), "--time-limit", str(time_limit),
               "--gap", str(gap), "--jobs", str(jobs), "--out", str(out)]
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                                start_new_session=True, env=env, cwd=tmp)
        os.set_blocking(proc.stdout.fileno(), False)
        rows: list[dict[str, Any]] = []
        tail: list[str] = []
        peak_tree, peak_hwm, killed = 0.0, 0.0, ""
        buf = ""
        last_echo = -math.inf

        def drain() -> None:
            nonlocal buf, last_echo
            with contextlib.suppress(BlockingIOError, TypeError):
                chunk = proc.stdout.read()
                if chunk:
                    buf += chunk
            *lines, buf = buf.split("\n")
            for line in lines:
                if line.startswith(PROGRESS_TAG):
                    with contextlib.suppress(ValueError):
                        rows.append(json.loads(line[len(PROGRESS_TAG):]))
                        r = rows[-1]
                        now = time.perf_counter() - t0
                        if now - last_echo >= 10.0:
                            last_echo = now
                            g = certified_gap(np.array([r["primal"]]), np.array([r["dual"]]))[0]
                            echo(f"  {label} {now:6.1f}s  primal {r['primal']:,.0f}  dual {r['dual']:,.0f}  "
                                 f"gap {100 * g:.3f} %" if math.isfinite(g) else
                                 f"  {label} {now:6.1f}s  primal {r['primal']:,.0f}  dual {r['dual']:,.0f}")
                elif line.strip():
                    tail.append(line)
                    del tail[:-40]

        usage = None

        def reap(flags: int) -> bool:
            nonlocal usage
            pid, wait_status, ru = os.wait4(proc.pid, flags)
            if pid == 0:
                return False
            proc.returncode = os.waitstatus_to_exitcode(wait_status)
            usage = ru
            return True

        try:
            while not reap(os.WNOHANG):
                drain()
                rss = tree_rss_mb(proc.pid)
                peak_tree = max(peak_tree, rss)
                peak_hwm = max(peak_hwm, _vm_hwm_mb(proc.pid))
                elapsed = time.perf_counter() - t0
                if elapsed > time_limit + grace:
                    killed = f"killed after {elapsed:.0f} s (time limit {time_limit:g} s + grace {grace:g} s)"
                elif rss > mem_limit_mb:
                    killed = f"killed at {rss:,.0f} MB resident (memory limit {mem_limit_mb:,.0f} MB)"
                if killed:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    reap(0)
                    break
                time.sleep(0.5)
        except BaseException:  # interrupted sweep: end the run's process group, store nothing
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                reap(0)
            raise
        with contextlib.suppress(ProcessLookupError):  # stray workers of a killed or crashed child
            os.killpg(proc.pid, signal.SIGKILL)
        os.set_blocking(proc.stdout.fileno(), True)
        with contextlib.suppress(Exception):
            buf += proc.stdout.read()
        buf += "\n"
        drain()
        proc.stdout.close()
        wall = time.perf_counter() - t0
        peak = max(peak_tree, peak_hwm, (usage.ru_maxrss / 1024.0) if usage is not None else 0.0)

        json_path = out.with_suffix(".json")
        if json_path.exists() and not killed:
            summary = json.loads(json_path.read_text())
            with np.load(out.with_suffix(".npz")) as npz:
                trace = {k: npz[k] for k in npz.files}
        else:
            trace = _trace_from_rows(rows)
            reason = killed or f"child exited with code {proc.returncode} and no result"
            last = "; ".join(tail[-5:])
            summary = {"ok": False, "status": "killed" if killed else "crashed",
                       "error": reason + (f"; last output: {last}" if last else "")}
            if len(rows):
                summary.update(objective=float(trace["primal"][-1]), bound=float(trace["dual"][-1]))
        summary["wall_seconds"] = wall
        summary["peak_rss_mb"] = peak
        summary["peak_tree_rss_mb"] = peak_tree
        summary["exit_code"] = int(proc.returncode if proc.returncode is not None else -1)
        return RunOutcome(summary=summary, trace=trace)


def _trace_from_rows(rows: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    return {
        "seconds": np.array([r["t"] for r in rows], dtype=np.float64),
        "primal": np.array([r["primal"] for r in rows], dtype=np.float64),
        "dual": np.array([r["dual"] for r in rows], dtype=np.float64),
        "iteration": np.array([r["it"] for r in rows], dtype=np.int64),
    }


# ============================================================================== results file
@functools.lru_cache(maxsize=1)
def _provenance() -> dict[str, Any]:
    """Commit, package versions, CPU count and host of this sweep, stored on every run it writes."""
    return provenance()


def store_run(path: Path, key: str, outcome: RunOutcome, meta: dict[str, Any]) -> None:
    """Write one finished run: staged under ``_staging``, marked complete, then moved to ``key``."""
    with h5py.File(path, "a") as f:
        if STAGING in f:
            del f[STAGING]
        if key in f:  # an incomplete or replaced run
            del f[key]
        g = f.create_group(f"{STAGING}/run")
        trace = outcome.trace or _trace_from_rows([])
        for name in TRACE_FIELDS:
            g.create_dataset(name, data=np.asarray(trace.get(name, np.zeros(0))))
        s = outcome.summary
        attrs: dict[str, Any] = {
            "objective": float(s.get("objective", -math.inf)),
            "bound": float(s.get("bound", math.inf)),
            "certified": bool(s.get("certified", False)) and bool(s.get("ok", False)),
            "status": str(s.get("status", "failed")),
            "ok": bool(s.get("ok", False)),
            "wall_seconds": float(s.get("wall_seconds", math.nan)),
            "peak_rss_mb": float(s.get("peak_rss_mb", math.nan)),
            "peak_tree_rss_mb": float(s.get("peak_tree_rss_mb", math.nan)),
            "exit_code": int(s.get("exit_code", 0)),
            "error": str(s.get("error", "")),
        }
        attrs["gap"] = float(s["gap"]) if "gap" in s else float(
            certified_gap(np.array([attrs["objective"]]), np.array([attrs["bound"]]))[0])
        for k in ("n_vars", "n_rows", "n_nonzeros"):
            if k in s:
                attrs[k] = int(s[k])
        attrs.update(meta)
        attrs.update(_provenance())
        g.attrs.update(attrs)
        g.attrs["complete"] = True
        parent = key.rsplit("/", 1)[0]
        f.require_group(parent)
        f.move(f"{STAGING}/run", key)
        del f[STAGING]
        f.flush()


# ============================================================================== sweep
def sweep(results: Path, sites: Sequence[int], periods: Sequence[int], seeds: Sequence[int],
          methods: Sequence[str], *, time_limit: float, gap: float = 1e-4, jobs: int = 2,
          grace: float | None = None, mem_limit_mb: float | None = None, retry_failed: bool = False,
          redo: bool = False, echo: Callable[[str], None] = print) -> dict[str, int]:
    """Run every (sites, periods, seed, method) not yet in ``results``; return counts of run/skipped.

    ``retry_failed`` runs again the stored runs that did not succeed; ``redo`` runs everything again and
    replaces the stored runs (each one only when its new run has finished).
    """
    results = Path(results)
    grace = max(30.0, 0.5 * time_limit) if grace is None else grace
    if mem_limit_mb is None:
        mem_limit_mb = 0.8 * available_memory_mb()
    done = stored_runs(results)
    if redo:
        done = set()
    if retry_failed and done:
        with h5py.File(results, "r") as f:
            done = {k for k in done if f[k].attrs.get("ok", False)}
    counts = {"run": 0, "skipped": 0, "failed": 0}
    plan = [(s, t, k, m) for t in periods for s in sites for k in seeds for m in methods]
    for i, (n_sites, n_periods, seed, method) in enumerate(plan, 1):
        key = run_key(n_sites, n_periods, seed, method)
        if key in done:
            counts["skipped"] += 1
            echo(f"[{i}/{len(plan)}] {key}: stored, skipped")
            continue
        echo(f"[{i}/{len(plan)}] {key}: running (limit {time_limit:g} s) ...")
        outcome = run_child(method, n_sites, n_periods, seed, time_limit=time_limit, gap=gap, jobs=jobs,
                            grace=grace, mem_limit_mb=mem_limit_mb, echo=echo, label=key)
        meta = {"sites": n_sites, "periods": n_periods, "seed": seed, "method": method,
                "time_limit": time_limit, "jobs": jobs if method in ("benders", "lagrangian") else 1,
                "target_gap": gap}
        store_run(results, key, outcome, meta)
        counts["run"] += 1
        s = outcome.summary
        if s.get("ok"):
            g = s.get("gap", math.inf)
            gap_txt = f"{100 * g:.3f} %" if math.isfinite(g) else "inf"
            echo(f"[{i}/{len(plan)}] {key}: {s.get('status')}  Z {s.get('objective', math.nan):,.0f}  "
                 f"bound {s.get('bound', math.nan):,.0f}  gap {gap_txt}  {s['wall_seconds']:.0f} s  "
                 f"peak {s['peak_rss_mb']:,.0f} MB")
        else:
            counts["failed"] += 1
            echo(f"[{i}/{len(plan)}] {key}: {s.get('status')}: {s.get('error', '')[:300]}  "
                 f"({s['wall_seconds']:.0f} s, peak {s['peak_rss_mb']:,.0f} MB)")
    return counts


# ============================================================================== CLI
def _terminate(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    """``run``, ``report`` and the internal ``_child`` subcommands."""
    ap = argparse.ArgumentParser(prog="python -m carbonsched.bench.scaling", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="sweep sizes × seeds × methods into one HDF5 results file (resumable)")
    run.add_argument("--results", type=Path, default=Path("scaling.h5"))
    run.add_argument("--sites", type=int, nargs="+", default=[3, 10, 30, 100, 300, 1000])
    run.add_argument("--periods", type=int, nargs="+", default=[24, 168])
    run.add_argument("--seeds", type=int, nargs="+", default=[0])
    run.add_argument("--methods", nargs="+", default=list(METHODS), choices=[*METHODS, "fail"])
    run.add_argument("--time-limit", type=float, default=60.0, help="seconds per run")
    run.add_argument("--gap", type=float, default=1e-4, help="relative gap at which a method may stop")
    run.add_argument("--jobs", type=int, default=2, help="workers of the decompositions")
    run.add_argument("--grace", type=float, help="kill a run after time limit + grace s (default max(30, limit/2))")
    run.add_argument("--mem-limit-mb", type=float, help="kill a run above this resident MB (default 80 %% of free)")
    run.add_argument("--retry-failed", action="store_true", help="run again the stored runs that failed")
    run.add_argument("--redo", action="store_true", help="run again (and replace) the selected stored runs")
    rep = sub.add_parser("report", help="markdown tables and PNG plots from a results file")
    rep.add_argument("results", type=Path)
    rep.add_argument("--out", type=Path, help="write the markdown here (default: print)")
    rep.add_argument("--img-dir", type=Path, default=Path("scaling-report"),
                     help="folder for the PNGs (default scaling-report; never the shipped docs/img)")
    rep.add_argument("--img-prefix", default="scaling")
    rep.add_argument("--img-link", help="directory prefix of the image links in the markdown (default: img-dir)")
    child = sub.add_parser("_child", help=argparse.SUPPRESS)
    child.add_argument("--method", required=True)
    child.add_argument("--sites", type=int, required=True)
    child.add_argument("--periods", type=int, required=True)
    child.add_argument("--seed", type=int, required=True)
    child.add_argument("--time-limit", type=float, required=True)
    child.add_argument("--gap", type=float, default=1e-4)
    child.add_argument("--jobs", type=int, default=2)
    child.add_argument("--out", required=True)
    args = ap.parse_args(argv)

    if args.command == "_child":
        return child_main(args)
    if args.command == "report":
        from carbonsched.bench.report import write_report

        text = write_report(args.results, img_dir=args.img_dir, prefix=args.img_prefix, link_dir=args.img_link)
        if args.out is None:
            print(text)
        else:
            args.out.write_text(text)
            print(f"report written to {args.out}")
        return 0
    signal.signal(signal.SIGTERM, _terminate)  # a terminated sweep ends its current run too
    methods = list(args.methods)
    if "highs" in methods and not highs_available():
        print("highs: highspy is not installed (pip install 'carbonsched[peers]'); skipping the HiGHS runs")
        methods.remove("highs")
    t0 = time.perf_counter()
    counts = sweep(args.results, args.sites, args.periods, args.seeds, methods, time_limit=args.time_limit,
                   gap=args.gap, jobs=args.jobs, grace=args.grace, mem_limit_mb=args.mem_limit_mb,
                   retry_failed=args.retry_failed, redo=args.redo)
    print(f"done in {time.perf_counter() - t0:.0f} s: {counts['run']} run ({counts['failed']} failed), "
          f"{counts['skipped']} already stored; results in {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
