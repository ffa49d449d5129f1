"""Model build speed: ``build_joint_model`` against SCIP reading the same model from an MPS file.

For each instance size, the joint MILP is built once and written by SCIP itself to an MPS file in a
temporary directory. Then, in this one process and interleaved (A B A B ...), the script times

* **A (build)**: ``build_joint_model(inst)`` on an already generated instance (instance generation is
  timed separately and is not part of the build);
* **B (read)**: a fresh ``pyscipopt.Model()``, ``hideOutput()`` and ``readProblem(path)`` of that file.

Both sides end in the same state: the problem loaded in SCIP's PROBLEM stage, not presolved; this is
checked once per size (same stage, objective sense, variable/binary/row/nonzero counts). The ratio is
build / read per pair; the table reports medians and the min–max of the per-pair ratios. Peak memory
of each side is the increase of the process's peak RSS over a baseline taken after imports (and, for
the build, after generating the instance), measured in a separate child process per side so the two
measurements do not contaminate each other (Linux: ``VmHWM``, reset at the baseline; elsewhere
``ru_maxrss``). For the largest size a short profile of one build shows
where the time goes.

With ``--apis`` each round also builds the same joint model two more ways, interleaved with the
others, for a second table of build routes measured side by side:

* **PySCIPOpt API**: ``build_joint_model`` with the ctypes fast path switched off
  (``CARBONSCHED_SCIP_FASTPATH=0``): one ``Model.addVar`` per variable, one ``addCons`` of a
  ``quicksum``-style ``Expr`` per row;
* **matrix API**: ``build_joint_model`` with every variable block created by one
  ``Model.addMatrixVar`` and every row block by one ``Model.addMatrixCons`` of
  ``lhs <= (A_block @ x <= rhs)``, the matrix expression formed with numpy on the ``MatrixVariable``
  (gather by the CSR column ids, scale by the coefficients, ``np.add.reduceat`` per row). This is the
  whole joint model, every block of it: each block of ``build_joint_model`` is a sparse matrix over
  the variable ids, which is exactly what ``A @ x`` with a gathered ``MatrixVariable`` expresses.
  Variable and row names are the same as on the other routes.

All three end in the same state (stage, sense, variable/binary/row/nonzero counts; checked once per
size). The ratios are per round, against the ctypes build of that round.

Run from the repository root::

    python -m carbonsched.bench.build_speed                      # default three sizes, 3 pairs each
    python -m carbonsched.bench.build_speed --sizes 20x24 45x168 --repeats 5 --out /tmp/table.md
    python -m carbonsched.bench.build_speed --sizes 20x24 --apis --no-memory --no-profile

This is a benchmark, not a test: nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

#: The goal of the issue: build time at most this multiple of SCIP's own MPS read.
RATIO_GOAL = 1.5


@dataclass(frozen=True)
class SizeSpec:
    """One instance size of the benchmark (generator arguments by size).

    Attributes
    ----------
    label : str
        Short name printed in the table.
    sites, periods : int
        S and T.
    jobs, classes : int or None
        J and K; None lets the generator scale them with ``sites``.
    seed : int
        Generator seed.
    """

    label: str
    sites: int
    periods: int
    jobs: int | None = None
    classes: int | None = None
    seed: int = 0

    def generator_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`instances.generator.generate` for this size."""
        return {"sites": self.sites, "periods": self.periods, "jobs": self.jobs, "classes": self.classes,
                "seed": self.seed}


#: Default sizes: about 50k, 300k and (at least) 1M nonzeros in the joint model.
DEFAULT_SIZES: tuple[SizeSpec, ...] = (
    SizeSpec("~50k", sites=20, periods=24),
    SizeSpec("~300k", sites=110, periods=24),
    SizeSpec("~1M", sites=45, periods=168),
)


@dataclass
class SizeResult:
    """Measurements of one size.

    Attributes
    ----------
    spec : SizeSpec
        The size.
    n_jobs, n_classes, n_vars, n_rows, n_nonzeros : int
        Instance and model dimensions (from the ``ArrayModel``).
    gen_s, write_s : float
        Instance generation and SCIP's MPS write, seconds (once each, outside the comparison).
    mps_mb : float
        Size of the MPS file, MB.
    build_s, read_s : list of float
        Interleaved timings, one per pair.
    api_s, matrix_s : list of float
        With ``apis``: builds through PySCIPOpt's API and through its matrix API, one per pair.
    peak_build_mb, peak_read_mb : float
        Peak RSS increase of each side, measured in its own child process.
    """

    spec: SizeSpec
    n_jobs: int = 0
    n_classes: int = 0
    n_vars: int = 0
    n_rows: int = 0
    n_nonzeros: int = 0
    gen_s: float = 0.0
    write_s: float = 0.0
    mps_mb: float = 0.0
    build_s: list[float] = field(default_factory=list)
    read_s: list[float] = field(default_factory=list)
    api_s: list[float] = field(default_factory=list)
    matrix_s: list[float] = field(default_factory=list)
    peak_build_mb: float = float("nan")
    peak_read_mb: float = float("nan")

    @property
    def ratios(self) -> list[float]:
        """Per-pair ratios build / read."""
        return [b / r for b, r in zip(self.build_s, self.read_s, strict=True)]


# ---------------------------------------------------------------------------------- the two sides
def build(inst: Any) -> Any:
    """Side A: build the joint model of ``inst`` (returns the ``JointModel``)."""
    from carbonsched.formulations.joint import build_joint_model

    return build_joint_model(inst)


def build_api(inst: Any) -> Any:
    """Build route 2: ``build_joint_model`` through PySCIPOpt's ``addVar``/``addCons`` (fast path off)."""
    from carbonsched.formulations import scip_arrays

    previous = os.environ.get(scip_arrays.FASTPATH_ENV)
    os.environ[scip_arrays.FASTPATH_ENV] = "0"
    scip_arrays.scip_c.cache_clear()
    try:
        jm = build(inst)
        if jm.am.uses_c_api:
            raise RuntimeError("the fast path was not switched off")
        return jm
    finally:
        if previous is None:
            del os.environ[scip_arrays.FASTPATH_ENV]
        else:
            os.environ[scip_arrays.FASTPATH_ENV] = previous
        scip_arrays.scip_c.cache_clear()


def _matrix_api_model_class() -> type:
    """An ``ArrayModel`` whose blocks go through PySCIPOpt's matrix API (``addMatrixVar``, ``addMatrixCons``)."""
    from carbonsched.formulations import scip_arrays

    class MatrixApiModel(scip_arrays.ArrayModel):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._c, self._scip = None, 0  # every other method takes its PySCIPOpt path
            self._columns = np.empty(0, dtype=object)

        def add_vars(self, name: str, lb: Any, ub: Any, obj: Any, vtype: str = "C") -> np.ndarray:
            lb, ub, obj = np.broadcast_arrays(np.asarray(lb, np.float64), np.asarray(ub, np.float64),
                                              np.asarray(obj, np.float64))
            shape = lb.shape
            lb = np.clip(lb, -scip_arrays.SCIP_INF, scip_arrays.SCIP_INF).ravel()
            ub = np.clip(ub, -scip_arrays.SCIP_INF, scip_arrays.SCIP_INF).ravel()
            n = lb.size
            x = self.model.addMatrixVar((n,), name=name, vtype=vtype, lb=lb, ub=ub, obj=obj.ravel().copy())
            self._var_obj_blocks.append(list(x))
            self._columns = np.concatenate([self._columns, np.asarray(x, dtype=object)])
            ids = np.arange(self.n_vars, self.n_vars + n, dtype=np.int64).reshape(shape)
            self.n_vars += n
            self._vars_cache = None
            return ids

        def add_rows(self, name: str, matrix: Any, lhs: Any, rhs: Any, *, compiled: bool | None = None) -> np.ndarray:
            import scipy.sparse as sp
            from pyscipopt.scip import MatrixVariable

            csr = sp.csr_matrix(matrix)
            csr.sum_duplicates()
            n_rows = csr.shape[0]
            lengths = np.diff(csr.indptr)
            if n_rows == 0:
                return np.zeros(0, np.int64)
            if (lengths == 0).any():
                raise ValueError(f"rows '{name}': empty rows are not supported by this benchmark route")
            lhs = np.clip(np.broadcast_to(np.asarray(lhs, np.float64), (n_rows,)), -scip_arrays.SCIP_INF, None)
            rhs = np.clip(np.broadcast_to(np.asarray(rhs, np.float64), (n_rows,)), None, scip_arrays.SCIP_INF)
            x = self._columns[csr.indices].view(MatrixVariable)
            expr = np.add.reduceat(csr.data * x, csr.indptr[:-1])
            names = np.array([f"{name}_{r}" for r in range(n_rows)], dtype=object)
            conss = self.model.addMatrixCons(lhs <= (expr <= rhs), name=names)
            self._row_obj_blocks.append(list(conss))
            ids = np.arange(self.n_rows, self.n_rows + n_rows, dtype=np.int64)
            self.n_rows += n_rows
            self.n_nonzeros += int(csr.nnz)
            return ids

    return MatrixApiModel


def build_matrix(inst: Any) -> Any:
    """Build route 3: ``build_joint_model`` with every block through PySCIPOpt's matrix API."""
    from carbonsched.formulations import joint

    original = joint.ArrayModel
    joint.ArrayModel = _matrix_api_model_class()  # type: ignore[misc]
    try:
        return build(inst)
    finally:
        joint.ArrayModel = original  # type: ignore[misc]


def read(path: str | os.PathLike[str]) -> Any:
    """Side B: a fresh SCIP model with output hidden, reading the MPS file at ``path``."""
    import pyscipopt

    model = pyscipopt.Model()
    model.hideOutput()
    model.readProblem(str(path))
    return model


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    gc.collect()
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def model_signature(model: Any) -> dict[str, Any]:
    """Stage, sense and dimensions of a PySCIPOpt model, to check both sides end in the same state.

    Parameters
    ----------
    model : pyscipopt.Model
        A model holding only linear constraints.

    Returns
    -------
    dict
        ``stage``, ``sense``, ``vars``, ``binaries``, ``integers``, ``rows`` and ``nonzeros``.
    """
    conss = model.getConss()
    return {
        "stage": model.getStageName(),
        "sense": model.getObjectiveSense(),
        "vars": model.getNVars(),
        "binaries": model.getNBinVars(),
        "integers": model.getNIntVars(),
        "rows": len(conss),
        "nonzeros": sum(len(model.getValsLinear(c)) for c in conss),
    }


# ---------------------------------------------------------------------------------- peak memory
def _proc_status_mb(key: str) -> float | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024.0  # kB
    except OSError:
        pass
    return None


def _peak_rss_mb() -> float:
    """Peak RSS of this process so far, MB.

    On Linux ``VmHWM`` of ``/proc/self/status``: unlike ``ru_maxrss`` it is not inherited from the
    parent across fork + exec (``ru_maxrss`` of a freshly exec'd child starts at the parent's RSS at
    fork time, which would hide the child's own peak), and it can be reset.
    """
    hwm = _proc_status_mb("VmHWM")
    if hwm is not None:
        return hwm
    scale = 1.0 if sys.platform == "darwin" else 1024.0  # ru_maxrss: bytes on macOS, KiB elsewhere
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def _reset_peak_rss() -> float:
    """Reset the peak-RSS mark where the OS allows it (Linux ``clear_refs`` 5); return the baseline, MB.

    After a reset the baseline is the current RSS, so transients before it (imports, instance
    generation) do not count; without one it is the peak so far.
    """
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        rss = _proc_status_mb("VmRSS")
        if rss is not None:
            return rss
    except OSError:
        pass
    return _peak_rss_mb()


def child_peak(side: str, size_json: str, mps_path: str) -> None:
    """Entry point of a memory child process: print one JSON line with the peak RSS increase.

    Parameters
    ----------
    side : {"build", "read"}
        Which side to measure.
    size_json : str
        ``SizeSpec`` fields as JSON.
    mps_path : str
        The MPS file (read side).
    """
    import pyscipopt  # noqa: F401  (same imports on both sides before the baseline)
    from carbonsched.formulations.joint import build_joint_model  # noqa: F401
    from carbonsched.formulations.scip_arrays import compile_build_kernels
    from carbonsched.instances.generator import generate

    if side == "build":
        compile_build_kernels()  # the steady state the timings measure; compiling is not model memory
    spec = SizeSpec(**json.loads(size_json))
    inst = generate(**spec.generator_kwargs()) if side == "build" else None
    gc.collect()
    base = _reset_peak_rss()
    if side == "build":
        kept = build(inst)
    elif side == "read":
        kept = read(mps_path)
    else:
        raise ValueError(f"unknown side {side!r}")
    peak = _peak_rss_mb()
    del kept
    print(json.dumps({"side": side, "baseline_mb": base, "peak_mb": peak, "increase_mb": peak - base}))


def measure_peak(side: str, spec: SizeSpec, mps_path: str) -> float:
    """Peak RSS increase (MB) of one side, in a fresh Python process."""
    args = f"{side!r}, {json.dumps(spec.__dict__)!r}, {mps_path!r}"
    code = f"from carbonsched.bench.build_speed import child_peak; child_peak({args})"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(json.loads(out.stdout.strip().splitlines()[-1])["increase_mb"])


# ---------------------------------------------------------------------------------- one size
def run_size(spec: SizeSpec, repeats: int, workdir: Path, *, memory: bool = True, verify: bool = True,
             apis: bool = False, log: Callable[[str], None] = print) -> SizeResult:
    """Measure one size: write the MPS once, then ``repeats`` interleaved build/read pairs.

    Parameters
    ----------
    spec : SizeSpec
        The instance size.
    repeats : int
        Number of (build, read) pairs.
    workdir : Path
        Directory for the MPS file.
    memory : bool
        Also measure peak memory in child processes.
    verify : bool
        Check once that the built and the read model have the same stage and dimensions.
    apis : bool
        Also time the PySCIPOpt-API and matrix-API build routes in every round.
    log : callable
        Progress printer.

    Returns
    -------
    SizeResult
    """
    from carbonsched.instances.generator import generate

    res = SizeResult(spec)
    res.gen_s, inst = _timed(lambda: generate(**spec.generator_kwargs()))
    res.n_jobs, res.n_classes = inst.n_jobs, inst.n_classes

    path = workdir / f"joint_S{spec.sites}_T{spec.periods}.mps"
    jm = build(inst)
    am = jm.am
    res.n_vars, res.n_rows, res.n_nonzeros = am.n_vars, am.n_rows, am.n_nonzeros
    log(f"[{spec.label}] S={spec.sites} T={spec.periods} J={res.n_jobs} K={res.n_classes}: "
        f"{res.n_vars} vars, {res.n_rows} rows, {res.n_nonzeros} nonzeros (generation {res.gen_s:.3f} s)")
    am.model.hideOutput()
    t0 = time.perf_counter()
    am.model.writeProblem(str(path), verbose=False)
    res.write_s = time.perf_counter() - t0
    res.mps_mb = path.stat().st_size / 2**20
    if verify:
        built_sig = model_signature(am.model)
        read_sig = model_signature(read(path))
        if built_sig != read_sig:
            raise RuntimeError(f"built and read models differ: {built_sig} vs {read_sig}")
        if built_sig["nonzeros"] != res.n_nonzeros or built_sig["vars"] != res.n_vars:
            raise RuntimeError(f"ArrayModel counts differ from SCIP's: {built_sig}")
        log(f"[{spec.label}] same state both sides: {read_sig}")
        if apis:
            for route, builder in (("PySCIPOpt API", build_api), ("matrix API", build_matrix)):
                route_sig = model_signature(builder(inst).model)
                if route_sig != built_sig:
                    raise RuntimeError(f"{route} model differs: {route_sig} vs {built_sig}")
            log(f"[{spec.label}] same state on the PySCIPOpt-API and matrix-API routes")
    del jm, am
    gc.collect()

    for q in range(repeats):
        t_build, jm = _timed(lambda: build(inst))
        del jm
        t_read, model = _timed(lambda: read(path))
        del model
        res.build_s.append(t_build)
        res.read_s.append(t_read)
        log(f"[{spec.label}] pair {q + 1}/{repeats}: build {t_build:.3f} s, read {t_read:.3f} s, "
            f"ratio {t_build / t_read:.2f}")
        if apis:
            t_api, jm = _timed(lambda: build_api(inst))
            del jm
            t_matrix, jm = _timed(lambda: build_matrix(inst))
            del jm
            res.api_s.append(t_api)
            res.matrix_s.append(t_matrix)
            log(f"[{spec.label}] round {q + 1}/{repeats}: PySCIPOpt API {t_api:.3f} s "
                f"({t_api / t_build:.1f}x ctypes), matrix API {t_matrix:.3f} s ({t_matrix / t_build:.1f}x ctypes)")
    if memory:
        res.peak_build_mb = measure_peak("build", spec, str(path))
        res.peak_read_mb = measure_peak("read", spec, str(path))
        log(f"[{spec.label}] peak RSS increase: build {res.peak_build_mb:.0f} MB, read {res.peak_read_mb:.0f} MB")
    return res


# ---------------------------------------------------------------------------------- profile
def profile_build(spec: SizeSpec) -> str:
    """Where one build's time goes: time per ``ArrayModel`` call family plus a profiler's view.

    ``ArrayModel.add_vars`` and ``add_rows`` are wrapped (in this process only) with timers, so the
    report splits the build into variable creation, row creation and the rest (numpy/scipy
    assembly, model creation). Below that comes a pyinstrument call tree if pyinstrument is
    installed, else the cProfile top 10 by cumulative time.

    Parameters
    ----------
    spec : SizeSpec
        The size to profile.

    Returns
    -------
    str
        Text report.
    """
    from carbonsched.formulations import scip_arrays
    from carbonsched.instances.generator import generate

    inst = generate(**spec.generator_kwargs())
    build(inst)  # warm
    gc.collect()

    spent: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0, 0])
    cls = scip_arrays.ArrayModel
    orig_vars, orig_rows = cls.add_vars, cls.add_rows

    def add_vars(self: Any, name: str, *args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        ids = orig_vars(self, name, *args, **kwargs)
        acc = spent[("add_vars", name)]
        acc[0] += time.perf_counter() - t0
        acc[1] += ids.size
        return ids

    def add_rows(self: Any, name: str, *args: Any, **kwargs: Any) -> Any:
        t0, nnz0 = time.perf_counter(), self.n_nonzeros
        ids = orig_rows(self, name, *args, **kwargs)
        acc = spent[("add_rows", name)]
        acc[0] += time.perf_counter() - t0
        acc[1] += ids.size
        acc[2] += self.n_nonzeros - nnz0
        return ids

    cls.add_vars, cls.add_rows = add_vars, add_rows  # type: ignore[method-assign]
    try:
        total, _ = _timed(lambda: build(inst))
    finally:
        cls.add_vars, cls.add_rows = orig_vars, orig_rows  # type: ignore[method-assign]

    lines = [f"Build profile, {spec.label} (S={spec.sites}, T={spec.periods}): one build {total:.3f} s"]
    fam: dict[str, list[float]] = defaultdict(lambda: [0.0, 0, 0])
    for (kind, _name), (t, n, nnz) in spent.items():
        f = fam[kind]
        f[0] += t
        f[1] += n
        f[2] += nnz
    tv, nv, _ = fam["add_vars"]
    tr, nr, nz = fam["add_rows"]
    rest = total - tv - tr
    lines.append(f"  add_vars  {tv:7.3f} s {100 * tv / total:5.1f} %  {int(nv):>9} vars  "
                 f"{1e6 * tv / max(nv, 1):5.2f} us/var")
    lines.append(f"  add_rows  {tr:7.3f} s {100 * tr / total:5.1f} %  {int(nr):>9} rows  "
                 f"{1e6 * tr / max(nr, 1):5.2f} us/row  ({int(nz)} nonzeros, {1e9 * tr / max(nz, 1):5.0f} ns/nonzero)")
    lines.append(f"  other     {rest:7.3f} s {100 * rest / total:5.1f} %  (numpy/scipy assembly, Model creation)")
    lines.append("  by block (top 8):")
    for (kind, name), (t, n, nnz) in sorted(spent.items(), key=lambda kv: -kv[1][0])[:8]:
        extra = f", {int(nnz)} nonzeros" if kind == "add_rows" else ""
        lines.append(f"    {kind}({name!r}): {t:.3f} s for {int(n)}{extra}")
    lines.append("")
    lines.append(_profiler_text(lambda: build(inst)))
    return "\n".join(lines)


def _profiler_text(fn: Callable[[], Any]) -> str:
    gc.collect()
    try:
        from pyinstrument import Profiler
    except ImportError:
        import cProfile
        import io
        import pstats

        prof = cProfile.Profile()
        prof.runcall(fn)
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(10)
        return "cProfile, top 10 cumulative:\n" + buf.getvalue()
    prof = Profiler(interval=0.001)
    prof.start()
    fn()
    prof.stop()
    return "pyinstrument:\n" + prof.output_text(unicode=False, color=False)


# ---------------------------------------------------------------------------------- report
def _fmt_range(values: Sequence[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}–{max(values):.2f})"


def markdown_table(results: Sequence[SizeResult]) -> str:
    """The main table (markdown), one row per size."""
    head = ("| size | S | T | J | K | vars | rows | nonzeros | build s (median) | read s (median) "
            "| ratio build/read: median (min–max) | ≤ 1.5×? | peak MB build | peak MB read |")
    rule = "|" + "---|" * 14
    rows = [head, rule]
    for r in results:
        ratio = statistics.median(r.ratios)
        rows.append(
            f"| {r.spec.label} | {r.spec.sites} | {r.spec.periods} | {r.n_jobs} | {r.n_classes} | {r.n_vars:,} "
            f"| {r.n_rows:,} | {r.n_nonzeros:,} | {statistics.median(r.build_s):.3f} "
            f"| {statistics.median(r.read_s):.3f} | {_fmt_range(r.ratios)} | {'yes' if ratio <= RATIO_GOAL else 'no'} "
            f"| {r.peak_build_mb:.0f} | {r.peak_read_mb:.0f} |"
        )
    return "\n".join(rows)


def api_table(results: Sequence[SizeResult]) -> str:
    """The build-route table (markdown): ctypes fast path, PySCIPOpt API, matrix API, with per-round ratios."""
    rows = ["| size | nonzeros | ctypes build s | PySCIPOpt API s | matrix API s | API / ctypes: median (min–max) "
            "| matrix / ctypes: median (min–max) | matrix / API |", "|" + "---|" * 8]
    for r in results:
        if not r.api_s:
            continue
        api = [a / b for a, b in zip(r.api_s, r.build_s, strict=True)]
        matrix = [m / b for m, b in zip(r.matrix_s, r.build_s, strict=True)]
        vs_api = [m / a for m, a in zip(r.matrix_s, r.api_s, strict=True)]
        rows.append(f"| {r.spec.label} | {r.n_nonzeros:,} | {statistics.median(r.build_s):.3f} "
                    f"| {statistics.median(r.api_s):.3f} | {statistics.median(r.matrix_s):.3f} | {_fmt_range(api)} "
                    f"| {_fmt_range(matrix)} | {statistics.median(vs_api):.2f} |")
    return "\n".join(rows)


def side_table(results: Sequence[SizeResult]) -> str:
    """Figures outside the comparison: generation, SCIP's MPS write, file size (markdown)."""
    rows = ["| size | instance generation s | SCIP MPS write s | MPS file MB |", "|---|---|---|---|"]
    rows += [f"| {r.spec.label} | {r.gen_s:.3f} | {r.write_s:.2f} | {r.mps_mb:.1f} |" for r in results]
    return "\n".join(rows)


def parse_size(text: str) -> SizeSpec:
    """Parse ``[label=]SxT[xJ[xK]]``, e.g. ``45x168`` or ``big=60x168x200x20``.

    Parameters
    ----------
    text : str
        The size.

    Returns
    -------
    SizeSpec
    """
    label, _, dims = text.rpartition("=")
    parts = [int(p) for p in dims.lower().split("x")]
    if not 2 <= len(parts) <= 4 or min(parts) < 0:
        raise argparse.ArgumentTypeError(f"size {text!r}: expected [label=]SxT[xJ[xK]]")
    parts += [None] * (4 - len(parts))  # type: ignore[list-item]
    s, t, j, k = parts
    return SizeSpec(label or f"{s}x{t}", sites=s, periods=t, jobs=j, classes=k)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: run the benchmark and print (optionally write) the markdown table."""
    ap = argparse.ArgumentParser(prog="python -m carbonsched.bench.build_speed", description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", type=parse_size, default=list(DEFAULT_SIZES),
                    help="sizes as [label=]SxT[xJ[xK]] (default: 20x24 110x24 45x168, ~50k/300k/1M nonzeros)")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved build/read pairs per size (default 3)")
    ap.add_argument("--out", type=Path, help="also write the markdown tables (and the profile) to this file")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory child processes")
    ap.add_argument("--no-profile", action="store_true", help="skip the build profile of the largest size")
    ap.add_argument("--no-verify", action="store_true", help="skip the same-state check of built vs read model")
    ap.add_argument("--apis", action="store_true",
                    help="also time building through PySCIPOpt's API and its matrix API (slow: ~20x the build)")
    args = ap.parse_args(argv)
    if args.repeats < 1:
        ap.error("--repeats must be >= 1")

    import pyscipopt

    print(f"python {sys.version.split()[0]}, PySCIPOpt {pyscipopt.__version__}, "
          f"SCIP {pyscipopt.Model().version()}, {os.cpu_count()} CPUs", flush=True)
    t_start = time.perf_counter()
    results = []
    from carbonsched.formulations.scip_arrays import compile_build_kernels

    t_compile = time.perf_counter()
    compiled = compile_build_kernels()
    print(f"compiled build loops: {compiled} ({time.perf_counter() - t_compile:.1f} s, once per process)", flush=True)
    with tempfile.TemporaryDirectory(prefix="carbonsched-bench-") as tmp:
        # Warm-up: pay one-time costs (lazy imports, ctypes binding, plugin code pages) outside the timings.
        warm = SizeSpec("warm-up", sites=3, periods=24)
        run_size(warm, 1, Path(tmp), memory=False, verify=False, log=lambda _msg: None)
        for spec in args.sizes:
            results.append(run_size(spec, args.repeats, Path(tmp), memory=not args.no_memory,
                                    verify=not args.no_verify, apis=args.apis, log=lambda m: print(m, flush=True)))
    table = markdown_table(results)
    if args.apis:
        table += "\n\nBuild routes, same joint model, interleaved in each round:\n\n" + api_table(results)
    sides = side_table(results)
    print()
    print(table)
    print()
    print(sides)
    profile = ""
    if not args.no_profile:
        largest = max(args.sizes, key=lambda s: next(r.n_nonzeros for r in results if r.spec == s))
        profile = profile_build(largest)
        print()
        print(profile)
    print(f"\ntotal {time.perf_counter() - t_start:.0f} s")
    if args.out is not None:
        body = [table, "", sides]
        if profile:
            body += ["", "```text", profile.rstrip(), "```"]
        args.out.write_text("\n".join(body) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
