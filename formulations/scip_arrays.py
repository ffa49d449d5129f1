"""Array-level access to a SCIP model: variable blocks and sparse row blocks, built in bulk.

PySCIPOpt's expression API costs several microseconds per nonzero in Python. Models here are
assembled as numpy index arrays (CSR rows over global variable ids) and handed to SCIP's C API
through ``ctypes`` against the very ``libscip`` PySCIPOpt has loaded, one call per variable and
one per row: the Python loop runs over rows, never over nonzeros. Solution values come back for all
variables in one ``SCIPgetSolVals`` call.

The ctypes prototypes, the ``SCIP_VARTYPE`` codes and the ``SCIP_OKAY`` return code are written by
hand for the SCIP versions in :data:`TESTED_SCIP_VERSIONS` (those the test suite passed on, with
both paths building identical models). This fast path is used only when the SCIP that PySCIPOpt
reports (read at import, :data:`SCIP_VERSION`) is one of them, the loaded ``libscip`` reports the
same version, and the environment variable ``CARBONSCHED_SCIP_FASTPATH`` is not ``0``
(``CARBONSCHED_NO_CTYPES=1`` is an older spelling of the same switch). Otherwise every method falls
back to PySCIPOpt's own API, slower but with the same features and an identical model;
:func:`fast_path_refusal` says why the fast path is off.

Ids: every variable gets a global integer id in creation order; blocks are numpy arrays of ids
(``-1`` marks "no variable here"). Rows likewise get ids, and their ``SCIP_CONS*`` are kept so
that right-hand sides can be changed in place between solves.
"""

from __future__ import annotations

import ctypes
import logging
import os
from functools import lru_cache

import numpy as np
import pyscipopt
import scipy.sparse as sp

log = logging.getLogger(__name__)

SCIP_INF = 1e20
#: SCIP_VARTYPE codes of the tested versions (scip/type_var.h: BINARY 0, INTEGER 1, CONTINUOUS 3).
_VTYPE_CODE = {"B": 0, "I": 1, "C": 3}
#: PySCIPOpt's ``Variable.vtype()`` names back to the one-letter codes of :meth:`ArrayModel.add_vars`.
_VTYPE_LETTER = {"BINARY": "B", "INTEGER": "I", "CONTINUOUS": "C", "IMPLINT": "C"}
#: SCIP_OKAY, the success code of every SCIP_RETCODE function (scip/type_retcode.h).
SCIP_OKAY = 1
_V = ctypes.c_void_p
_D = ctypes.c_double

#: SCIP versions (major, minor, technical) on which the test suite passed with the ctypes fast path,
#: both paths building identical models (tests/test_scip_arrays.py). Add a version only after running
#: that file (and the suite) on it; any other version uses PySCIPOpt's API.
TESTED_SCIP_VERSIONS: frozenset[tuple[int, int, int]] = frozenset({(10, 0, 2)})
#: Set to ``0`` to force PySCIPOpt's API even on a tested SCIP version.
FASTPATH_ENV = "CARBONSCHED_SCIP_FASTPATH"


def _pyscipopt_scip_version() -> tuple[int, int, int]:
    """(major, minor, technical) of the SCIP that PySCIPOpt is linked against."""
    model = pyscipopt.Model()
    try:
        return int(model.getMajorVersion()), int(model.getMinorVersion()), int(model.getTechVersion())
    finally:
        model.freeProb()


#: The SCIP version PySCIPOpt runs, read once at import.
SCIP_VERSION: tuple[int, int, int] = _pyscipopt_scip_version()


def fast_path_refusal() -> str | None:
    """Why the ctypes fast path is not used (one line), or None when it may be.

    Checks the environment switch and that :data:`SCIP_VERSION` is in :data:`TESTED_SCIP_VERSIONS`;
    :func:`scip_c` further checks the loaded library.
    """
    if os.environ.get(FASTPATH_ENV, "").strip() == "0" or os.environ.get("CARBONSCHED_NO_CTYPES"):
        return f"switched off by the environment ({FASTPATH_ENV}=0 or CARBONSCHED_NO_CTYPES)"
    if SCIP_VERSION not in TESTED_SCIP_VERSIONS:
        tested = ", ".join(".".join(map(str, v)) for v in sorted(TESTED_SCIP_VERSIONS))
        return f"SCIP {'.'.join(map(str, SCIP_VERSION))} is not a tested version ({tested})"
    return None


class _ScipC:
    """ctypes prototypes of the few SCIP C functions used for bulk building."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self.lib = lib

        def fn(name, *argtypes, restype=ctypes.c_int):
            f = getattr(lib, name)
            f.argtypes = list(argtypes)
            f.restype = restype
            return f

        self.create_var = fn("SCIPcreateVarBasic", _V, _V, ctypes.c_char_p, _D, _D, _D, ctypes.c_int)
        self.add_var = fn("SCIPaddVar", _V, _V)
        self.release_var = fn("SCIPreleaseVar", _V, _V)
        self.create_linear = fn("SCIPcreateConsBasicLinear", _V, _V, ctypes.c_char_p, ctypes.c_int, _V, _V, _D, _D)
        self.add_cons = fn("SCIPaddCons", _V, _V)
        self.release_cons = fn("SCIPreleaseCons", _V, _V)
        self.get_sol_vals = fn("SCIPgetSolVals", _V, _V, ctypes.c_int, _V, _V)
        self.get_best_sol = fn("SCIPgetBestSol", _V, restype=_V)
        self.chg_rhs = fn("SCIPchgRhsLinear", _V, _V, _D)
        self.chg_lhs = fn("SCIPchgLhsLinear", _V, _V, _D)
        self.chg_obj = fn("SCIPchgVarObj", _V, _V, _D)
        self.chg_lb = fn("SCIPchgVarLb", _V, _V, _D)
        self.chg_ub = fn("SCIPchgVarUb", _V, _V, _D)
        self.chg_name = fn("SCIPchgVarName", _V, _V, ctypes.c_char_p)
        self.create_sol = fn("SCIPcreateSol", _V, _V, _V)
        self.transform_prob = fn("SCIPtransformProb", _V)
        self.set_sol_vals = fn("SCIPsetSolVals", _V, _V, ctypes.c_int, _V, _V)
        self.add_sol_free = fn("SCIPaddSolFree", _V, _V, _V)
        self.block_memory = fn("SCIPblkmem", _V, restype=_V)
        self.collect_block_memory = fn("BMSgarbagecollectBlockMemory_call", _V, ctypes.c_char_p, ctypes.c_int,
                                       restype=None)


#: Blocks at least this large are created by numba-compiled loops once those are compiled; smaller ones
#: by the plain ctypes loop, which costs ~3 µs of call overhead per variable or row (~1 µs compiled).
NUMBA_MIN_BLOCK = 64
#: Compiling the loops costs a few seconds once per process (they cannot be cached on disk), so a
#: build compiles them by itself only for a block this large; ``compile_build_kernels()`` does it
#: up front for processes that build many models (benchmarks, decomposition workers, studies).
NUMBA_COMPILE_BLOCK = 500_000
_kernels_compiled = False


def compile_build_kernels() -> bool:
    """Compile the numba build loops now (a few seconds); True when the fast path is available."""
    global _kernels_compiled
    if _numba_kernels() is None:
        return False
    am = ArrayModel("warm-up")
    am._var_ptr_blocks.append(am._build_vars_compiled("w", np.zeros(1), np.ones(1), np.zeros(1), 3))
    am.n_vars = 1
    am.add_rows("w", sp.csr_matrix(np.ones((1, 1))), -SCIP_INF, 1.0, compiled=True)
    _kernels_compiled = True
    return True


def _use_kernels(n: int) -> bool:
    return n >= NUMBA_MIN_BLOCK and (_kernels_compiled or n >= NUMBA_COMPILE_BLOCK)


@lru_cache(maxsize=1)
def _numba_kernels():
    """njit loops that call SCIP's C functions directly, or None when numba is unavailable.

    ctypes function objects are numba globals, so these kernels cannot be cached on disk; they are
    compiled lazily, the first time a large block is built.
    """
    lib_c = scip_c()
    if lib_c is None or os.environ.get("CARBONSCHED_NO_NUMBA"):
        return None
    try:
        import numba
    except (ImportError, OSError):  # numba is a dependency; OSError: llvmlite not mapped under ulimit -v
        return None
    lib = lib_c.lib

    def fn(name, *argtypes):
        f = getattr(lib, name)
        f.argtypes = list(argtypes)
        f.restype = ctypes.c_int
        return f

    create_var = fn("SCIPcreateVarBasic", _V, _V, _V, _D, _D, _D, ctypes.c_int)
    add_var = fn("SCIPaddVar", _V, _V)
    release_var = fn("SCIPreleaseVar", _V, _V)
    create_linear = fn("SCIPcreateConsBasicLinear", _V, _V, _V, ctypes.c_int, _V, _V, _D, _D)
    add_cons = fn("SCIPaddCons", _V, _V)
    release_cons = fn("SCIPreleaseCons", _V, _V)

    @numba.njit
    def _write_name(buf, p, i):
        # the decimal digits of i after the prefix (length p), NUL-terminated
        digits = np.zeros(20, dtype=np.uint8)
        n = 0
        while True:
            digits[n] = 48 + i % 10
            n += 1
            i //= 10
            if i == 0:
                break
        for k in range(n):
            buf[p + k] = digits[n - 1 - k]
        buf[p + n] = 0

    @numba.njit
    def make_vars(scip, prefix, lb, ub, obj, code, out):
        holder = np.zeros(1, dtype=np.uintp)
        name = np.zeros(prefix.size + 24, dtype=np.uint8)
        name[: prefix.size] = prefix
        for q in range(lb.size):
            _write_name(name, prefix.size, q)
            if create_var(scip, holder.ctypes.data, name.ctypes.data, lb[q], ub[q], obj[q], code) != SCIP_OKAY:
                return q
            add_var(scip, holder[0])
            out[q] = holder[0]
            release_var(scip, holder.ctypes.data)
        return -1

    @numba.njit
    def make_rows(scip, prefix, indptr, var_ptrs, vals, lhs, rhs, out):
        holder = np.zeros(1, dtype=np.uintp)
        name = np.zeros(prefix.size + 24, dtype=np.uint8)
        name[: prefix.size] = prefix
        for r in range(lhs.size):
            _write_name(name, prefix.size, r)
            a = indptr[r]
            if create_linear(scip, holder.ctypes.data, name.ctypes.data, indptr[r + 1] - a,
                             var_ptrs.ctypes.data + 8 * a, vals.ctypes.data + 8 * a, lhs[r], rhs[r]) != SCIP_OKAY:
                return r
            add_cons(scip, holder[0])
            out[r] = holder[0]
            release_cons(scip, holder.ctypes.data)
        return -1

    return make_vars, make_rows


def _library_version(lib: ctypes.CDLL) -> tuple[int, int, int]:
    """(major, minor, technical) as reported by the loaded libscip itself."""
    version = []
    for name in ("SCIPmajorVersion", "SCIPminorVersion", "SCIPtechVersion"):
        f = getattr(lib, name)
        f.argtypes = []
        f.restype = ctypes.c_int
        version.append(int(f()))
    return version[0], version[1], version[2]


@lru_cache(maxsize=1)
def scip_c() -> _ScipC | None:
    """The ctypes binding to PySCIPOpt's own libscip, or None where the fast path is off.

    None when :func:`fast_path_refusal` gives a reason, or when no loaded ``libscip`` reporting
    :data:`SCIP_VERSION` can be found; the reason is logged once (INFO).
    """
    reason = fast_path_refusal()
    if reason is not None:
        log.info("SCIP ctypes fast path off: %s; building through PySCIPOpt's API", reason)
        return None
    paths = []
    try:
        with open("/proc/self/maps") as fh:
            paths = [line.split()[-1] for line in fh if "libscip" in line and line.split()[-1].startswith("/")]
    except OSError:
        pass
    for path in dict.fromkeys(paths):
        try:
            lib = ctypes.CDLL(path)
            found = _library_version(lib)
            if found != SCIP_VERSION:
                log.info("libscip %s reports SCIP %s, PySCIPOpt %s: not used", path, found, SCIP_VERSION)
                continue
            return _ScipC(lib)
        except (OSError, AttributeError):
            continue
    log.info("SCIP ctypes fast path off: no loaded libscip of SCIP %s found; building through PySCIPOpt's API",
             SCIP_VERSION)
    return None


def _scip_pointer(model: pyscipopt.Model) -> int:
    get = ctypes.pythonapi.PyCapsule_GetPointer
    get.restype = ctypes.c_void_p
    get.argtypes = [ctypes.py_object, ctypes.c_char_p]
    return get(model.to_ptr(False), b"scip")


def _finite(a: np.ndarray) -> np.ndarray:
    return np.clip(np.asarray(a, dtype=np.float64), -SCIP_INF, SCIP_INF)


def _api_rows(model: pyscipopt.Model, variables: list, names: list[str], indptr: np.ndarray, cols: np.ndarray,
              vals: np.ndarray, lhs: np.ndarray, rhs: np.ndarray) -> list:
    """Add CSR rows ``lhs ≤ A x ≤ rhs`` through PySCIPOpt's expression API (the fallback path)."""
    from pyscipopt.scip import Expr, Term

    rows = []
    for r, name in enumerate(names):
        a, b = indptr[r], indptr[r + 1]
        expr = Expr({Term(variables[cols[q]]): float(vals[q]) for q in range(a, b)})
        lo = None if lhs[r] <= -SCIP_INF else float(lhs[r])
        hi = None if rhs[r] >= SCIP_INF else float(rhs[r])
        cons = (lo <= expr) if hi is None else (expr <= hi) if lo is None else (lo <= (expr <= hi))
        rows.append(model.addCons(cons, name=name))
    return rows


def add_csr_rows(lp, indptr: np.ndarray, cols: np.ndarray, vals: np.ndarray, lhs: np.ndarray,
                 rhs: np.ndarray) -> None:
    """Append CSR rows to a ``pyscipopt.LP`` (infinite sides mapped to the LP's infinity)."""
    inf = lp.infinity()
    entries = [list(zip(cols[a:b].tolist(), vals[a:b].tolist(), strict=True))
               for a, b in zip(indptr[:-1].tolist(), indptr[1:].tolist(), strict=True)]
    lo = np.where(np.asarray(lhs) <= -SCIP_INF, -inf, lhs).tolist()
    hi = np.where(np.asarray(rhs) >= SCIP_INF, inf, rhs).tolist()
    if entries:
        lp.addRows(entries, lhss=lo, rhss=hi)


class ArrayModel:
    """A PySCIPOpt model built and read through numpy arrays of variable and row ids.

    Parameters
    ----------
    name : str
        Problem name.
    maximize : bool
        Objective sense.
    record : bool
        Keep the bounds, objective and rows, for :meth:`recorded_arrays` and :meth:`lp_relaxation`.
    scip : bool
        Build the SCIP model (default). ``scip=False`` (with ``record``) only records the arrays: ``model`` is
        None, and the LP relaxation and the routing LP, which need nothing else, do not hold a SCIP copy of the
        model (at 1,000 sites several GB of the main process's memory).
    """

    def __init__(self, name: str = "carbonsched", maximize: bool = True, *, record: bool = False,
                 scip: bool = True) -> None:
        if not scip and not record:
            raise ValueError("ArrayModel(scip=False) keeps nothing unless record=True")
        self.maximize = maximize
        #: with ``record``, the bounds, objective and rows are kept so that :meth:`lp_relaxation` can
        #: rebuild the model as a warm-startable LP
        self._record: dict[str, list] | None = {"lb": [], "ub": [], "obj": [], "rows": []} if record else None
        self._with_scip = scip
        self.model = pyscipopt.Model(name) if scip else None
        if scip and maximize:
            self.model.setMaximize()
        self._c = scip_c() if scip else None
        self._scip = _scip_pointer(self.model) if self._c is not None else 0
        self._var_ptr_blocks: list[np.ndarray] = []
        self._var_obj_blocks: list[list] = []  # fallback path: pyscipopt Variables
        self._row_ptr_blocks: list[np.ndarray] = []
        self._row_obj_blocks: list[list] = []
        self._row_csr_blocks: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # fallback: for rebuilds
        self._start_bypasses_maxorigsol = False  # fallback: transform() was called
        self.n_vars = 0
        self.n_rows = 0
        self.n_nonzeros = 0
        self._ptrs_cache: np.ndarray | None = None
        self._vars_cache: list | None = None

    @property
    def uses_c_api(self) -> bool:
        """True when blocks go straight to SCIP's C API (the fast path)."""
        return self._c is not None

    # ------------------------------------------------------------------ variables
    def add_vars(self, name: str, lb, ub, obj, vtype: str = "C") -> np.ndarray:
        """Create one variable per element of the broadcast shape of ``lb``, ``ub``, ``obj``.

        Returns the global ids, same shape.
        """
        lb, ub, obj = np.broadcast_arrays(
            np.asarray(lb, np.float64), np.asarray(ub, np.float64), np.asarray(obj, np.float64)
        )
        shape = lb.shape
        lb, ub, obj = _finite(lb).ravel(), _finite(ub).ravel(), np.asarray(obj, np.float64).ravel()
        n = lb.size
        ids = np.arange(self.n_vars, self.n_vars + n, dtype=np.int64).reshape(shape)
        code = _VTYPE_CODE[vtype]
        if self._record is not None:
            self._record["lb"].append(lb.copy())
            self._record["ub"].append(ub.copy())
            self._record["obj"].append(obj.copy())
        if not self._with_scip:
            pass  # arrays only: recorded above
        elif self._c is not None and _use_kernels(n) and _numba_kernels() is not None:
            self._var_ptr_blocks.append(self._build_vars_compiled(name, lb, ub, obj, code))
        elif self._c is not None:
            ptrs = np.zeros(n, dtype=np.uintp)
            holder = _V()
            ref = ctypes.byref(holder)
            c, scip = self._c, self._scip
            base = name.encode()
            for q in range(n):
                if c.create_var(scip, ref, b"%s_%d" % (base, q), lb[q], ub[q], obj[q], code) != SCIP_OKAY:
                    raise RuntimeError(f"SCIP failed to create variable {name}_{q}")
                c.add_var(scip, holder)
                ptrs[q] = holder.value
                c.release_var(scip, ref)
            self._var_ptr_blocks.append(ptrs)
        else:
            m = self.model
            ub_py = [None if u >= SCIP_INF else float(u) for u in ub]
            lb_py = [None if v <= -SCIP_INF else float(v) for v in lb]
            self._var_obj_blocks.append(
                [m.addVar(f"{name}_{q}", vtype, lb_py[q], ub_py[q], float(obj[q])) for q in range(n)]
            )
        self.n_vars += n
        self._ptrs_cache = None
        self._vars_cache = None
        return ids

    def _build_vars_compiled(self, name: str, lb: np.ndarray, ub: np.ndarray, obj: np.ndarray,
                             code: int) -> np.ndarray:
        """Create a variable block with the compiled loop; returns the SCIP_VAR* pointers."""
        global _kernels_compiled
        ptrs = np.zeros(lb.size, dtype=np.uintp)
        prefix = np.frombuffer(f"{name}_".encode(), dtype=np.uint8)
        failed = _numba_kernels()[0](self._scip, prefix, lb, ub, obj, code, ptrs)
        if failed >= 0:
            raise RuntimeError(f"SCIP failed to create variable {name}_{failed}")
        _kernels_compiled = True
        return ptrs

    def _var_ptrs(self) -> np.ndarray:
        if self._ptrs_cache is None:
            self._ptrs_cache = (
                np.concatenate(self._var_ptr_blocks) if self._var_ptr_blocks else np.zeros(0, np.uintp)
            )
        return self._ptrs_cache

    def variables(self) -> list:
        """PySCIPOpt ``Variable`` objects in id order (for user plugins such as a ``Heur``)."""
        if self._vars_cache is None:
            if self._c is None:
                self._vars_cache = [v for block in self._var_obj_blocks for v in block]
            else:
                by_ptr = {v.ptr(): v for v in self.model.getVars()}
                self._vars_cache = [by_ptr[int(p)] for p in self._var_ptrs()]
        return self._vars_cache

    # ------------------------------------------------------------------ rows
    def add_rows(self, name: str, matrix: sp.spmatrix, lhs, rhs, *, compiled: bool | None = None) -> np.ndarray:
        """Add linear rows ``lhs <= matrix @ x <= rhs``; ``matrix`` columns are global variable ids.

        Duplicate entries are summed (scipy CSR). Returns the row ids.
        """
        csr = sp.csr_matrix(matrix)
        csr.sum_duplicates()
        n_rows = csr.shape[0]
        lhs = _finite(np.broadcast_to(lhs, (n_rows,)))
        rhs = _finite(np.broadcast_to(rhs, (n_rows,)))
        indptr = csr.indptr.astype(np.int64)
        cols = csr.indices.astype(np.int64)
        vals = np.ascontiguousarray(csr.data, dtype=np.float64)
        if cols.size and cols.max() >= self.n_vars:
            raise ValueError(f"rows '{name}' reference variable id {cols.max()} >= {self.n_vars}")
        ids = np.arange(self.n_rows, self.n_rows + n_rows, dtype=np.int64)
        if self._record is not None:
            self._record["rows"].append((indptr, cols, vals.copy(), np.array(lhs), np.array(rhs)))
        if not self._with_scip:
            self.n_rows += n_rows
            self.n_nonzeros += int(vals.size)
            return ids
        if compiled is None:
            compiled = _use_kernels(n_rows)
        kernels = _numba_kernels() if self._c is not None and compiled else None
        if kernels is not None:
            var_ptrs = np.ascontiguousarray(self._var_ptrs()[cols])
            cons_ptrs = np.zeros(n_rows, dtype=np.uintp)
            prefix = np.frombuffer(f"{name}_".encode(), dtype=np.uint8)
            failed = kernels[1](self._scip, prefix, indptr, var_ptrs, vals, np.ascontiguousarray(lhs),
                                np.ascontiguousarray(rhs), cons_ptrs)
            if failed >= 0:
                raise RuntimeError(f"SCIP failed to create row {name}_{failed}")
            self._row_ptr_blocks.append(cons_ptrs)
        elif self._c is not None:
            var_ptrs = np.ascontiguousarray(self._var_ptrs()[cols])
            base_v, base_c = var_ptrs.ctypes.data, vals.ctypes.data
            cons_ptrs = np.zeros(n_rows, dtype=np.uintp)
            holder = _V()
            ref = ctypes.byref(holder)
            c, scip = self._c, self._scip
            nm = name.encode()
            for r in range(n_rows):
                a, b = int(indptr[r]), int(indptr[r + 1])
                if c.create_linear(scip, ref, b"%s_%d" % (nm, r), b - a, base_v + 8 * a, base_c + 8 * a,
                                   lhs[r], rhs[r]) != SCIP_OKAY:
                    raise RuntimeError(f"SCIP failed to create row {name}_{r}")
                c.add_cons(scip, holder)
                cons_ptrs[r] = holder.value
                c.release_cons(scip, ref)
            self._row_ptr_blocks.append(cons_ptrs)
            del var_ptrs
        else:
            names = [f"{name}_{r}" for r in range(n_rows)]
            self._row_obj_blocks.append(_api_rows(self.model, self.variables(), names, indptr, cols, vals, lhs, rhs))
            self._row_csr_blocks.append((indptr, cols, vals))
        self.n_rows += n_rows
        self.n_nonzeros += int(vals.size)
        return ids

    def recorded_arrays(self) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The recorded model as arrays ``(A, lhs, rhs, lb, ub, obj)``: rows ``lhs ≤ A x ≤ rhs``, ±inf for none.

        Columns and rows are in id order; integrality is not part of it. Requires ``record=True``.
        """
        if self._record is None:
            raise RuntimeError("recorded_arrays() needs an ArrayModel built with record=True")
        rec = self._record
        cat = lambda key: np.concatenate(rec[key]) if rec[key] else np.zeros(0)  # noqa: E731
        unbounded = lambda a: np.where(a >= SCIP_INF, np.inf, np.where(a <= -SCIP_INF, -np.inf, a))  # noqa: E731
        blocks = [sp.csr_matrix((vals, cols, indptr), shape=(indptr.size - 1, self.n_vars))
                  for indptr, cols, vals, _, _ in rec["rows"]]
        a = sp.vstack(blocks, format="csr") if blocks else sp.csr_matrix((0, self.n_vars))
        lhs = unbounded(np.concatenate([r[3] for r in rec["rows"]])) if blocks else np.zeros(0)
        rhs = unbounded(np.concatenate([r[4] for r in rec["rows"]])) if blocks else np.zeros(0)
        return a, lhs, rhs, unbounded(cat("lb")), unbounded(cat("ub")), cat("obj")

    def lp_relaxation(self):
        """The recorded model as a ``pyscipopt.LP`` (SCIP's LP interface): integrality dropped.

        Re-solving it after adding rows warm-starts from the last basis, which makes cutting-plane
        loops on the relaxation cheap. Columns are in id order. Requires ``record=True``.
        """
        if self._record is None:
            raise RuntimeError("lp_relaxation() needs an ArrayModel built with record=True")
        from pyscipopt import LP

        lp = LP(self.model.getProbName() + "-lp", sense="maximize" if self.maximize else "minimize")
        inf = lp.infinity()
        rec = self._record
        cat = lambda key: np.concatenate(rec[key]) if rec[key] else np.zeros(0)  # noqa: E731
        lb, ub, obj = cat("lb"), cat("ub"), cat("obj")
        lb = np.where(lb <= -SCIP_INF, -inf, lb)
        ub = np.where(ub >= SCIP_INF, inf, ub)
        lp.addCols([[] for _ in range(lb.size)], objs=obj.tolist(), lbs=lb.tolist(), ubs=ub.tolist())
        for indptr, cols, vals, lhs, rhs in rec["rows"]:
            add_csr_rows(lp, indptr, cols, vals, lhs, rhs)
        return lp

    # ------------------------------------------------------------------ solution values
    def values(self, solution=None) -> np.ndarray:
        """Values of every variable in id order, from ``solution`` or the best solution."""
        if self._c is not None and solution is None:
            sol = self._c.get_best_sol(self._scip)
            if not sol:
                raise RuntimeError("SCIP has no solution")
            ptrs = np.ascontiguousarray(self._var_ptrs())
            out = np.empty(self.n_vars, dtype=np.float64)
            if self.n_vars:
                self._c.get_sol_vals(self._scip, sol, self.n_vars, ptrs.ctypes.data, out.ctypes.data)
            return out
        sol = solution if solution is not None else self.model.getBestSol()
        return np.array([self.model.getSolVal(sol, v) for v in self.variables()], dtype=np.float64)

    def free_transform(self) -> None:
        """``model.freeTransform()``, then hand SCIP's unused block memory back to the C heap.

        SCIP keeps the chunks of a freed transformed problem for reuse by the same model: measured on the
        1,000-site instance, a cached site model kept 28 MB allocated of which 4 MB were in use, so a
        worker caching hundreds of them ran out of memory. The memory step is a no-op without the C fast path.
        """
        self.model.freeTransform()
        if self._c is not None:
            self._c.collect_block_memory(self._c.block_memory(self._scip), b"scip_arrays", 0)

    def transform(self) -> None:
        """Let the next start solutions bypass the storage limit ``limits/maxorigsol`` of the original problem.

        On the fast path this moves to SCIP's transformed stage (no presolving yet). PySCIPOpt cannot
        transform without presolving, so on its path the following :meth:`add_solution` calls raise
        ``limits/maxorigsol`` just enough to store their solution and restore it at once (SCIP keeps a
        stored solution when the limit drops again): the solve sees the same start either way.
        """
        if self._c is None:
            self._start_bypasses_maxorigsol = True
        elif self._c.transform_prob(self._scip) != SCIP_OKAY:
            raise RuntimeError("SCIP could not transform the problem")

    def add_solution(self, values: np.ndarray) -> bool:
        """Offer a full assignment (id order) to SCIP as a start solution; True if SCIP stored it.

        SCIP checks the solution when the solve starts; one that is infeasible for the current model is
        dropped then. Call before ``optimize`` (after ``freeTransform`` when re-solving in place).
        """
        values = np.ascontiguousarray(values, dtype=np.float64)
        if values.shape != (self.n_vars,):
            raise ValueError(f"expected {self.n_vars} values, got shape {values.shape}")
        if self._c is not None:
            sol = ctypes.c_void_p()
            if self._c.create_sol(self._scip, ctypes.byref(sol), None) != SCIP_OKAY:
                raise RuntimeError("SCIP refused to create a solution")
            ptrs = np.ascontiguousarray(self._var_ptrs())
            if self.n_vars and self._c.set_sol_vals(self._scip, sol, self.n_vars, ptrs.ctypes.data,
                                                    values.ctypes.data) != SCIP_OKAY:
                raise RuntimeError("SCIP refused the solution values")
            stored = ctypes.c_uint(0)
            if self._c.add_sol_free(self._scip, ctypes.byref(sol), ctypes.byref(stored)) != SCIP_OKAY:
                raise RuntimeError("SCIP refused the solution")
            return bool(stored.value)
        m = self.model
        sol = m.createSol()
        for v, x in zip(self.variables(), values, strict=True):
            if x != 0.0:
                m.setSolVal(sol, v, float(x))
        if not self._start_bypasses_maxorigsol:
            return bool(m.addSol(sol, free=True))
        limit = m.getParam("limits/maxorigsol")
        m.setParam("limits/maxorigsol", max(limit, m.getNSols() + 1))
        try:
            return bool(m.addSol(sol, free=True))
        finally:
            m.setParam("limits/maxorigsol", limit)

    # ------------------------------------------------------------------ in-place updates
    def _row_ptrs(self) -> np.ndarray:
        return np.concatenate(self._row_ptr_blocks) if self._row_ptr_blocks else np.zeros(0, np.uintp)

    def set_row_bounds(self, rows: np.ndarray, lhs=None, rhs=None) -> None:
        """Change row sides in place (call ``model.freeTransform()`` after a solve first)."""
        rows = np.asarray(rows, dtype=np.int64).ravel()
        if self._c is not None:
            ptrs = self._row_ptrs()[rows]
            for name, new, fn in (("lhs", lhs, self._c.chg_lhs), ("rhs", rhs, self._c.chg_rhs)):
                if new is None:
                    continue
                new = _finite(np.broadcast_to(new, rows.shape))
                for p, v in zip(ptrs, new, strict=True):
                    if fn(self._scip, int(p), float(v)) != SCIP_OKAY:
                        raise RuntimeError(f"SCIP refused to change {name} of a row")
            return
        flat = [c for block in self._row_obj_blocks for c in block]
        for new, change in ((lhs, self.model.chgLhs), (rhs, self.model.chgRhs)):
            if new is None:
                continue
            for r, v in zip(rows, _finite(np.broadcast_to(new, rows.shape)), strict=True):
                change(flat[r], float(v))

    def rename_vars(self, ids: np.ndarray, names: list[str]) -> None:
        """Give variables new names (before solving); SCIP's default Benders links variables by name."""
        ids = np.asarray(ids, dtype=np.int64).ravel()
        if len(names) != ids.size:
            raise ValueError(f"{ids.size} variables but {len(names)} names")
        if self._c is None:
            self._rename_by_rebuilding(ids, names)
            return
        for p, name in zip(self._var_ptrs()[ids], names, strict=True):
            if self._c.chg_name(self._scip, int(p), name.encode()) != SCIP_OKAY:
                raise RuntimeError(f"SCIP refused to rename a variable to {name!r}")
        self._vars_cache = None

    def set_var_data(self, ids: np.ndarray, *, obj=None, lb=None, ub=None) -> None:
        """Change objective coefficients or bounds in place (after ``freeTransform``)."""
        ids = np.asarray(ids, dtype=np.int64).ravel()
        if self._c is not None:
            ptrs = self._var_ptrs()[ids]
            for new, fn in ((obj, self._c.chg_obj), (lb, self._c.chg_lb), (ub, self._c.chg_ub)):
                if new is None:
                    continue
                new = _finite(np.broadcast_to(new, ids.shape))
                for p, v in zip(ptrs, new, strict=True):
                    if fn(self._scip, int(p), float(v)) != SCIP_OKAY:
                        raise RuntimeError("SCIP refused a variable change")
            return
        from pyscipopt.scip import Expr, Term

        vs = self.variables()
        m = self.model
        if obj is not None:  # PySCIPOpt changes objective coefficients only through setObjective
            coefficients = np.broadcast_to(np.asarray(obj, np.float64), ids.shape)
            changes = Expr({Term(vs[v]): float(c) for v, c in zip(ids, coefficients, strict=True)})
            m.setObjective(changes, sense="maximize" if self.maximize else "minimize", clear=False)
        for new, change in ((lb, m.chgVarLb), (ub, m.chgVarUb)):
            if new is None:
                continue
            for v, x in zip(ids, _finite(np.broadcast_to(new, ids.shape)), strict=True):
                change(vs[v], float(x))

    def _rename_by_rebuilding(self, ids: np.ndarray, names: list[str]) -> None:
        """PySCIPOpt cannot rename a variable: rebuild :attr:`model` with the new names.

        The new model has the same variables (type, bounds, objective), rows (coefficients, current
        sides, names), sense, problem name and parameters; ``model`` is a new object afterwards.
        """
        old = self.model
        if old.getStageName() != "PROBLEM":
            raise RuntimeError(f"variables can be renamed before solving only (stage {old.getStageName()})")
        if old.getNVars() != self.n_vars or old.getNConss() != self.n_rows:
            raise RuntimeError("the model has variables or rows not added through ArrayModel; cannot rebuild it")
        old_vars = self.variables()
        var_names = [v.name for v in old_vars]
        for q, name in zip(ids.tolist(), names, strict=True):
            var_names[q] = name
        new = pyscipopt.Model(old.getProbName())
        new.setParams(old.getParams())
        if self.maximize:
            new.setMaximize()
        new_vars = []
        for v, name in zip(old_vars, var_names, strict=True):
            lb, ub = v.getLbOriginal(), v.getUbOriginal()
            new_vars.append(new.addVar(name, _VTYPE_LETTER[v.vtype()], None if lb <= -SCIP_INF else lb,
                                       None if ub >= SCIP_INF else ub, v.getObj()))
        row_blocks = []
        for block, (indptr, cols, vals) in zip(self._row_obj_blocks, self._row_csr_blocks, strict=True):
            lhs = np.array([old.getLhs(c) for c in block], dtype=np.float64)
            rhs = np.array([old.getRhs(c) for c in block], dtype=np.float64)
            row_blocks.append(_api_rows(new, new_vars, [c.name for c in block], indptr, cols, vals, lhs, rhs))
        self.model = new
        self._var_obj_blocks = [new_vars]
        self._row_obj_blocks = row_blocks
        self._vars_cache = None
