"""The scaling study's results file: its layout (one HDF5 group per run), reading it, and gap measures.

Shared by the sweep that writes the file (:mod:`carbonsched.bench.scaling`) and the report that reads
it (:mod:`carbonsched.bench.report`); it imports neither of them.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import h5py
import numpy as np

#: The methods a sweep can run, in the order the report lists them.
METHODS: tuple[str, ...] = ("monolithic", "highs", "benders", "lagrangian", "scip-benders")
#: Staging area for a run being written; moved to its final path when complete.
STAGING = "_staging"
#: The trace datasets of a run group (s, $, $, iteration count).
TRACE_FIELDS: tuple[str, ...] = ("seconds", "primal", "dual", "iteration")


def run_key(n_sites: int, n_periods: int, seed: int, method: str) -> str:
    """HDF5 group path of one run."""
    return f"S{n_sites}/T{n_periods}/seed{seed}/{method}"


def certified_gap(primal: np.ndarray, dual: np.ndarray) -> np.ndarray:
    """Gap (dual − primal)/max(1, |primal|) per trace row; inf where either is not finite."""
    primal = np.asarray(primal, dtype=np.float64)
    dual = np.asarray(dual, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        gap = (dual - primal) / np.maximum(1.0, np.abs(primal))
    return np.where(np.isfinite(gap), gap, np.inf)


def time_to_gap(seconds: np.ndarray, primal: np.ndarray, dual: np.ndarray, target: float) -> float:
    """First trace time (s) at which the certified gap is ≤ ``target``; inf if never."""
    ok = np.flatnonzero(certified_gap(primal, dual) <= target)
    return float(np.asarray(seconds)[ok[0]]) if ok.size else math.inf


def stored_runs(path: Path) -> set[str]:
    """Keys of the complete runs in a results file (empty if there is no file)."""
    if not Path(path).exists():
        return set()
    keys: set[str] = set()
    with h5py.File(path, "r") as f:
        def visit(name: str, obj: Any) -> None:
            if isinstance(obj, h5py.Group) and obj.attrs.get("complete", False) and not name.startswith(STAGING):
                keys.add(name)

        f.visititems(visit)
    return keys


def load_results(path: Path) -> list[dict[str, Any]]:
    """Every complete run of a results file: its attributes plus the trace arrays."""
    runs = []
    with h5py.File(path, "r") as f:
        for key in sorted(stored_runs(path)):
            g = f[key]
            row = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in g.attrs.items()}
            row.update({k: g[k][()] for k in TRACE_FIELDS if k in g})
            row["key"] = key
            runs.append(row)
    return runs


def to_dataframe(path: str | Path):
    """A results file as a pandas DataFrame: one row per complete run, its attributes as columns.

    The trace arrays (``seconds``, ``primal``, ``dual``, ``iteration``) are kept as one array per cell;
    ``key`` is the run's group path (``S{S}/T{T}/seed{k}/{method}``). Example::

        df = to_dataframe("my-scaling.h5")
        df.groupby(["method", "sites"])["wall_seconds"].median()
    """
    import pandas as pd

    return pd.DataFrame(load_results(Path(path)))
