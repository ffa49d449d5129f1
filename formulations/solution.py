"""The solution object of SOLUTION.md, its HDF5 storage, and the objective breakdown in pure numpy.

Every solve method (monolithic, Benders, Lagrangian, baselines, user heuristics) hands back a
:class:`Solution`; :meth:`Solution.save` writes the ``carbonsched-solution`` layout atomically and
:meth:`Solution.load` reads any file written to that layout by any tool.  The objective terms are
computed from the arrays alone by :func:`breakdown_from_arrays`, which the checker reuses.

Units follow MODEL.md: power MW, energy MWh, money $, CO2 t, compute in GPUs, time in periods.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from carbonsched.errors import CarbonschedError
from carbonsched.instances.schema import Instance
from carbonsched.instances.storage import (
    atomic_hdf5,
    check_dataset_storage,
    checked_node,
    checksum_problem,
    open_hdf5,
    verify_checksum,
    write_array,
)

from .fields import (
    BREAKDOWN_TERMS,
    ENERGY_BINARY_FIELDS,
    ENERGY_FIELDS,
    ENERGY_FLOAT_FIELDS,
    ROOT_ATTRS,
    SCHEMA,
    SCHEMA_VERSION,
    TRACE_FIELDS,
)

#: Binaries farther than this from {0, 1} are refused when rounding for storage.
BINARY_TOL = 1e-6


class SolutionError(CarbonschedError, ValueError):
    """A solution file or object breaks SOLUTION.md (one-line message naming the dataset or attribute)."""


class SolveStatus(str, Enum):
    """Why a solve stopped (root attribute ``status``)."""

    OPTIMAL = "optimal"
    GAP_LIMIT = "gap_limit"
    TIME_LIMIT = "time_limit"
    ITERATION_LIMIT = "iteration_limit"
    INTERRUPTED = "interrupted"

    def __str__(self) -> str:
        return self.value


def compute_gap(objective: float, bound: float) -> float:
    """Relative gap (bound − objective) / max(1, |objective|), or ``inf`` when either is not finite.

    Parameters
    ----------
    objective : float
        Z of the stored solution, $.
    bound : float
        Best proven upper bound on the optimal Z, $ (``inf`` when none is proven).

    Returns
    -------
    float
        Dimensionless gap; not clipped, so a bound below the objective gives a negative gap.
    """
    objective, bound = float(objective), float(bound)
    if not (math.isfinite(objective) and math.isfinite(bound)):
        return math.inf
    return (bound - objective) / max(1.0, abs(objective))


# --------------------------------------------------------------------------------------------- trace
@dataclass(eq=False)
class Trace:
    """Progress of a solve: one row per event, the same format for every method.

    Attributes
    ----------
    seconds : (N,) float
        Wall time since the solve began, s.
    primal : (N,) float
        Best feasible Z known then, $ (``-inf`` before the first).
    dual : (N,) float
        Best proven upper bound then, $ (``inf`` before the first).
    iteration : (N,) int
        The method's iteration or node count.
    """

    seconds: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.float64))
    primal: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.float64))
    dual: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.float64))
    iteration: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))

    def __post_init__(self) -> None:
        self.seconds = np.asarray(self.seconds, dtype=np.float64).reshape(-1)
        self.primal = np.asarray(self.primal, dtype=np.float64).reshape(-1)
        self.dual = np.asarray(self.dual, dtype=np.float64).reshape(-1)
        self.iteration = np.asarray(self.iteration, dtype=np.int64).reshape(-1)
        lengths = {name: len(getattr(self, name)) for name in TRACE_FIELDS}
        if len(set(lengths.values())) > 1:
            raise SolutionError(f"/trace: datasets must have one length, got {lengths}")

    def __len__(self) -> int:
        return int(self.seconds.shape[0])

    def append(self, seconds: float, primal: float, dual: float, iteration: int) -> None:
        """Add one event (wall time s, best Z $, best bound $, iteration or node count)."""
        self.seconds = np.append(self.seconds, np.float64(seconds))
        self.primal = np.append(self.primal, np.float64(primal))
        self.dual = np.append(self.dual, np.float64(dual))
        self.iteration = np.append(self.iteration, np.int64(iteration))

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The four datasets of ``/trace`` by name (float64, and int64 for ``iteration``)."""
        return {name: getattr(self, name) for name in TRACE_FIELDS}


# ------------------------------------------------------------------------------------------ breakdown
def sum_terms(breakdown: Mapping[str, float]) -> float:
    """Z as the exactly rounded sum of the :data:`BREAKDOWN_TERMS` present in ``breakdown``, $.

    Non-finite terms give the IEEE sum (``inf``, ``-inf`` or NaN) instead of an error.
    """
    values = [float(breakdown[t]) for t in BREAKDOWN_TERMS if t in breakdown]
    if all(math.isfinite(v) for v in values):
        return math.fsum(values)
    return float(np.sum(values))


def _finite_latency(inst: Instance) -> np.ndarray:
    """(K,S) latency in ms with ``inf`` (no route) replaced by 0, so that 0·inf never makes NaN."""
    latency = np.asarray(inst.inference.latency_ms, dtype=np.float64)
    return np.where(np.isfinite(latency), latency, 0.0)


def emissions_from_arrays(inst: Instance, grid_import: np.ndarray, gen: np.ndarray) -> float:
    """Em = Δ·Σ_{i,t} (κ_{i,t}·imp_{i,t} + e^gen_i·gen_{i,t}), t CO2 (constraint 9 of MODEL.md)."""
    s = inst.sites
    grid_t = np.sum(np.asarray(s.grid_co2, dtype=np.float64) * grid_import)
    gen_t = np.sum(np.asarray(s.gen_co2, dtype=np.float64)[:, None] * gen)
    return float(inst.period_hours * (grid_t + gen_t))


def breakdown_from_arrays(
    inst: Instance,
    job_site: np.ndarray,
    job_start: np.ndarray,
    served: np.ndarray,
    unserved: np.ndarray,
    energy: Mapping[str, np.ndarray],
) -> tuple[dict[str, float], float]:
    """Every objective term of MODEL.md, signed as in SOLUTION.md, and the emissions.

    Parameters
    ----------
    inst : Instance
        The instance the arrays answer.
    job_site, job_start : (J,) int
        Site index and start period of each job, −1 when not scheduled; a job counts as scheduled
        when both are ≥ 0.
    served : (K,S,T) float
        y_{k,i,t}, GPUs.  Entries with infinite latency (no route) contribute no latency cost.
    unserved : (K,T) float
        u_{k,t}, GPUs.
    energy : mapping of str to (S,T) arrays
        At least ``grid_import``, ``grid_export``, ``charge``, ``discharge``, ``gen``, ``gen_start``
        and ``ens`` (MW, or {0,1} for ``gen_start``).

    Returns
    -------
    breakdown : dict of str to float
        The terms of :data:`BREAKDOWN_TERMS` in $, costs negative and revenues positive.
    emissions_t : float
        Em in t CO2.
    """
    dt = float(inst.period_hours)
    s, jb, inf = inst.sites, inst.jobs, inst.inference
    job_site = np.asarray(job_site)
    job_start = np.asarray(job_start)
    scheduled = (job_site >= 0) & (job_start >= 0)
    served = np.asarray(served, dtype=np.float64)
    unserved = np.asarray(unserved, dtype=np.float64)
    imp = np.asarray(energy["grid_import"], dtype=np.float64)
    exp = np.asarray(energy["grid_export"], dtype=np.float64)
    ch = np.asarray(energy["charge"], dtype=np.float64)
    dis = np.asarray(energy["discharge"], dtype=np.float64)
    gen = np.asarray(energy["gen"], dtype=np.float64)
    su = np.asarray(energy["gen_start"], dtype=np.float64)
    ens = np.asarray(energy["ens"], dtype=np.float64)

    served_gpu_periods = served.sum(axis=2)  # (K,S)
    emissions_t = emissions_from_arrays(inst, imp, gen)
    breakdown = {
        "training_value": float(np.sum(np.where(scheduled, jb.value, 0.0))),
        "inference_revenue": dt * float(np.sum(inf.revenue[:, None] * served_gpu_periods)),
        "latency_cost": -dt * float(np.sum(inf.latency_cost[:, None] * _finite_latency(inst) * served_gpu_periods)),
        "unserved_penalty": -dt * float(np.sum(inf.penalty[:, None] * unserved)),
        "grid_cost": -dt * float(np.sum(s.price_buy * imp)),
        "export_revenue": dt * float(np.sum(s.price_sell * exp)),
        "gen_cost": -dt * float(np.sum(s.gen_cost[:, None] * gen)),
        "startup_cost": -float(np.sum(s.gen_startup_cost[:, None] * su)),
        "battery_cost": -dt * float(np.sum(s.bat_cost[:, None] * (ch + dis))),
        "ens_cost": -dt * float(inst.voll) * float(np.sum(ens)),
        "carbon_cost": -float(inst.carbon_price) * emissions_t,
    }
    return breakdown, emissions_t


# ------------------------------------------------------------------------------------------- solution
def _round_binary(name: str, values: np.ndarray) -> np.ndarray:
    """Round a {0,1} array to int8, refusing entries farther than BINARY_TOL from 0 or 1."""
    values = np.asarray(values)
    if values.dtype.kind in "biu":
        return values.astype(np.int8)
    rounded = np.rint(values)
    bad = ~(np.abs(values - rounded) <= BINARY_TOL) | ~((rounded == 0) | (rounded == 1))
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise SolutionError(f"/energy/{name}{list(idx)}: must be 0 or 1 (got {values[idx]!r})")
    return rounded.astype(np.int8)


@dataclass(eq=False, kw_only=True)
class Solution:
    """A solved plan with its scores: the in-memory form of a ``carbonsched-solution`` file.

    Attributes
    ----------
    instance_name : str
        Name of the instance solved.
    method : str
        ``monolithic``, ``benders``, ``lagrangian``, a baseline's or a heuristic's name.
    status : SolveStatus
        Why the solve stopped (a plain string is converted).
    objective : float
        Z of this solution, $ (the sum of ``breakdown``).
    bound : float
        Best proven upper bound on the optimal Z, $, or ``inf``.
    gap : float, optional
        (bound − objective) / max(1, |objective|), or ``inf``; computed when not given.
    certified : bool
        True only when ``bound`` is a proven valid bound for this model.
    emissions_t : float
        Em of this solution, t CO2.
    wall_seconds : float
        Wall-clock time of the solve, s.
    job_site, job_start : (J,) int
        Site index and start period of each job, −1 when not scheduled.
    served : (K,S,T) float
        GPUs serving class k at site i in period t (0 outside S_k).
    unserved : (K,T) float
        Unserved GPUs of class k in period t.
    grid_import, grid_export, charge, discharge, gen, renewable_used, ens : (S,T) float
        Power, MW.
    soc : (S,T) float
        Battery state of charge at the end of each period, MWh.
    grid_importing, bat_charging, gen_on, gen_start : (S,T) int8
        Binaries γ, β, on, su.  Float arrays are kept as given in memory (so that the checker sees
        them) and rounded when saved.
    breakdown : dict of str to float
        The terms of :data:`BREAKDOWN_TERMS`, $, signed as they enter Z.
    trace : Trace, optional
        Progress of the solve (``/trace``).
    extra : dict
        Optional root attributes, written before and read back with the required ones.
    """

    instance_name: str
    method: str
    status: SolveStatus
    objective: float
    bound: float = math.inf
    gap: float | None = None
    certified: bool = False
    emissions_t: float
    wall_seconds: float = 0.0
    job_site: np.ndarray
    job_start: np.ndarray
    served: np.ndarray
    unserved: np.ndarray
    grid_import: np.ndarray
    grid_export: np.ndarray
    grid_importing: np.ndarray
    charge: np.ndarray
    discharge: np.ndarray
    bat_charging: np.ndarray
    soc: np.ndarray
    gen: np.ndarray
    gen_on: np.ndarray
    gen_start: np.ndarray
    renewable_used: np.ndarray
    ens: np.ndarray
    breakdown: dict[str, float]
    trace: Trace | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        try:
            self.status = SolveStatus(self.status)
        except ValueError:
            allowed = ", ".join(s.value for s in SolveStatus)
            raise SolutionError(f"attribute 'status': must be one of {allowed} (got {self.status!r})") from None
        self.instance_name = str(self.instance_name)
        self.method = str(self.method)
        self.objective = float(self.objective)
        self.bound = float(self.bound)
        self.gap = compute_gap(self.objective, self.bound) if self.gap is None else float(self.gap)
        self.certified = bool(self.certified)
        self.emissions_t = float(self.emissions_t)
        self.wall_seconds = float(self.wall_seconds)
        self.job_site = np.asarray(self.job_site, dtype=np.int64)
        self.job_start = np.asarray(self.job_start, dtype=np.int64)
        self.served = np.asarray(self.served, dtype=np.float64)
        self.unserved = np.asarray(self.unserved, dtype=np.float64)
        for name in ENERGY_FLOAT_FIELDS:
            setattr(self, name, np.asarray(getattr(self, name), dtype=np.float64))
        for name in ENERGY_BINARY_FIELDS:
            values = np.asarray(getattr(self, name))
            setattr(self, name, values.astype(np.int8) if values.dtype.kind in "biu" else values.astype(np.float64))
        self.breakdown = {str(k): float(v) for k, v in self.breakdown.items()}
        self.extra = dict(self.extra)

    # -------------------------------------------------------------------------------- construction
    @classmethod
    def from_arrays(
        cls,
        inst: Instance,
        *,
        method: str,
        status: SolveStatus | str,
        job_site: np.ndarray,
        job_start: np.ndarray,
        served: np.ndarray,
        unserved: np.ndarray,
        energy: Mapping[str, np.ndarray],
        bound: float = math.inf,
        certified: bool = False,
        wall_seconds: float = 0.0,
        trace: Trace | None = None,
        extra: dict[str, Any] | None = None,
    ) -> Solution:
        """Score a plan with :func:`breakdown_from_arrays` and wrap it as a Solution.

        ``objective`` is the sum of the terms, ``emissions_t`` and ``gap`` are computed, and the
        binaries are rounded to int8 (:class:`SolutionError` if one is farther than 1e-6 from 0 or 1).

        Parameters
        ----------
        inst : Instance
            The instance solved (its name is recorded) and scored.
        energy : mapping of str to (S,T) arrays
            All of :data:`ENERGY_FIELDS` (MW, MWh for ``soc``, {0,1} for the binaries).

        The other parameters are the attributes of :class:`Solution` of the same names.
        """
        missing = [name for name in ENERGY_FIELDS if name not in energy]
        if missing:
            raise SolutionError(f"energy: missing array(s) {', '.join(missing)}")
        breakdown, emissions_t = breakdown_from_arrays(inst, job_site, job_start, served, unserved, energy)
        arrays = {name: np.asarray(energy[name], dtype=np.float64) for name in ENERGY_FLOAT_FIELDS}
        arrays.update({name: _round_binary(name, energy[name]) for name in ENERGY_BINARY_FIELDS})
        sol = cls(
            instance_name=inst.name,
            method=method,
            status=status,
            objective=sum_terms(breakdown),
            bound=bound,
            certified=certified,
            emissions_t=emissions_t,
            wall_seconds=wall_seconds,
            job_site=job_site,
            job_start=job_start,
            served=served,
            unserved=unserved,
            breakdown=breakdown,
            trace=trace,
            extra=extra or {},
            **arrays,
        )
        sol.check_shapes(inst.dims())
        return sol

    # ------------------------------------------------------------------------------------- views
    @property
    def energy(self) -> dict[str, np.ndarray]:
        """The twelve (S,T) arrays of ``/energy`` by name (views, not copies)."""
        return {name: getattr(self, name) for name in ENERGY_FIELDS}

    def dims(self) -> dict[str, int]:
        """``{"S", "T", "J", "K"}`` read off the arrays (S, T from ``grid_import``)."""
        n_sites, n_periods = self.grid_import.shape if self.grid_import.ndim == 2 else (-1, -1)
        return {
            "S": int(n_sites),
            "T": int(n_periods),
            "J": int(self.job_site.shape[0]) if self.job_site.ndim == 1 else -1,
            "K": int(self.unserved.shape[0]) if self.unserved.ndim == 2 else 0,
        }

    def check_shapes(self, dims: Mapping[str, int] | None = None) -> None:
        """Raise :class:`SolutionError` unless every array has its SOLUTION.md shape.

        Parameters
        ----------
        dims : mapping, optional
            ``{"S", "T", "J", "K"}`` of the instance (``Instance.dims()``); by default those read
            off the arrays themselves, which checks only their mutual consistency.
        """
        dims = dict(self.dims() if dims is None else dims)
        n_sites, n_periods, n_jobs, n_classes = dims["S"], dims["T"], dims["J"], dims["K"]
        expected = {
            "/jobs/site": (self.job_site, (n_jobs,), "(J,)"),
            "/jobs/start": (self.job_start, (n_jobs,), "(J,)"),
            "/inference/served": (self.served, (n_classes, n_sites, n_periods), "(K,S,T)"),
            "/inference/unserved": (self.unserved, (n_classes, n_periods), "(K,T)"),
        }
        for name in ENERGY_FIELDS:
            expected[f"/energy/{name}"] = (getattr(self, name), (n_sites, n_periods), "(S,T)")
        for where, (arr, shape, symbols) in expected.items():
            if arr.shape != shape and not (arr.size == 0 and 0 in shape):
                raise SolutionError(f"{where}: shape must be {symbols} = {shape}, got {arr.shape}")

    # ----------------------------------------------------------------------------------- storage
    def save(self, path: str | os.PathLike) -> None:
        """Write the SOLUTION.md layout to ``path`` atomically (temporary file, then rename).

        Raises
        ------
        SolutionError
            A breakdown term is missing, an array has the wrong shape or a binary is not 0/1.
        """
        missing = [t for t in BREAKDOWN_TERMS if t not in self.breakdown]
        if missing:
            raise SolutionError(f"/breakdown: missing term(s) {', '.join(missing)}")
        self.check_shapes()
        binaries = {name: _round_binary(name, getattr(self, name)) for name in ENERGY_BINARY_FIELDS}
        with atomic_hdf5(path) as f:
            for key, value in self.extra.items():
                if key not in ROOT_ATTRS:
                    f.attrs[key] = value
            f.attrs["schema"] = SCHEMA
            f.attrs["schema_version"] = np.int64(SCHEMA_VERSION)
            f.attrs["instance_name"] = self.instance_name
            f.attrs["method"] = self.method
            f.attrs["status"] = self.status.value
            f.attrs["objective"] = float(self.objective)
            f.attrs["bound"] = float(self.bound)
            f.attrs["gap"] = float(self.gap)
            f.attrs["certified"] = np.bool_(self.certified)
            f.attrs["emissions_t"] = float(self.emissions_t)
            f.attrs["wall_seconds"] = float(self.wall_seconds)
            jobs = f.create_group("jobs")
            write_array(jobs, "site", self.job_site.astype(np.int64))
            write_array(jobs, "start", self.job_start.astype(np.int64))
            inference = f.create_group("inference")
            write_array(inference, "served", self.served.astype(np.float64))
            write_array(inference, "unserved", self.unserved.astype(np.float64))
            energy = f.create_group("energy")
            for name in ENERGY_FIELDS:
                values = binaries[name] if name in binaries else getattr(self, name).astype(np.float64)
                write_array(energy, name, values)
            breakdown = f.create_group("breakdown")
            for term in BREAKDOWN_TERMS:
                breakdown.attrs[term] = float(self.breakdown[term])
            if self.trace is not None:
                trace = f.create_group("trace")
                for name, values in self.trace.to_arrays().items():
                    write_array(trace, name, values)

    @classmethod
    def load(cls, path: str | os.PathLike, instance: Instance | None = None, *,
             checksum_problems: list[str] | None = None) -> Solution:
        """Read a solution file written to SOLUTION.md by any tool.

        Shapes, presence and element kinds are validated; values (bounds, binaries in {0,1}, the
        constraints) are the checker's business.

        Parameters
        ----------
        path : path-like
            An HDF5 file in the ``carbonsched-solution`` layout.
        instance : Instance, optional
            When given, the array shapes must match its S, T, J and K.
        checksum_problems : list, optional
            When given, a dataset whose values do not match its checksum (written by this project) is
            reported here, one line each, instead of refused: ``carbonsched check`` judges such a file by
            the constraints and reports the mismatch as a finding.

        Raises
        ------
        SolutionError
            One line naming the file and the dataset or attribute at fault (also a checksum mismatch).
        """
        path = Path(path)
        try:
            sol = _load_unchecked(path, checksum_problems)
            if instance is not None:
                sol.check_shapes(instance.dims())
            return sol
        except SolutionError as exc:
            raise SolutionError(f"{path}: {exc}") from None
        except CarbonschedError:
            raise
        except (Exception, MemoryError) as exc:  # noqa: BLE001 - corrupted HDF5 structures raise many kinds
            text = " ".join(str(exc).split())[:200]
            raise SolutionError(f"{path}: cannot read HDF5 file ({type(exc).__name__}: {text})") from None


# ------------------------------------------------------------------------------------------- reading
def _attr_value(value: Any) -> Any:
    """Normalize an HDF5 attribute to a Python scalar or str."""
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value[()]
    if isinstance(value, (bytes, np.bytes_)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SolutionError(f"an attribute is not valid UTF-8 ({exc.reason})") from None
    if isinstance(value, np.str_):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    return value


def _number_attr(where: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SolutionError(f"{where}: must be a number, got {type(value).__name__}")
    return float(value)


def _read_array(group: h5py.Group, group_name: str, name: str, kind: str, ndim: int,
                mismatches: list[str] | None = None) -> np.ndarray:
    """Read one dataset of kind ``float``, ``int`` or ``binary``, any width; check rank and kind."""
    where = f"/{group_name}/{name}"
    node = checked_node(group, name, where, SolutionError)
    if node is None:
        raise SolutionError(f"{where}: missing dataset")
    if not isinstance(node, h5py.Dataset):
        raise SolutionError(f"{where}: must be a dataset")
    dtype = node.dtype
    if dtype.kind not in "biuf":
        raise SolutionError(f"{where}: must be numeric, got dtype {dtype}")
    check_dataset_storage(where, node, SolutionError)
    data = np.asarray(node[()])
    if data.size:
        if mismatches is None:
            verify_checksum(where, node, data, SolutionError)
        elif (problem := checksum_problem(where, node, data)) is not None:
            mismatches.append(problem)
    if data.ndim != ndim and data.size:
        raise SolutionError(f"{where}: must have {ndim} dimension(s), got shape {data.shape}")
    if kind == "float":
        return data.astype(np.float64)
    if dtype.kind == "f":
        integral = np.isfinite(data) & (data == np.rint(data))
        if not integral.all():
            idx = [int(i) for i in np.argwhere(~integral)[0]]
            raise SolutionError(f"{where}{idx}: must be an integer (got {data[tuple(idx)]!r})")
        data = np.rint(data)
    return data.astype(np.int8 if kind == "binary" else np.int64)


def _load_unchecked(path: Path, mismatches: list[str] | None = None) -> Solution:
    with open_hdf5(path, SolutionError) as f:
        attrs = {key: _attr_value(value) for key, value in f.attrs.items()}
        for key in ROOT_ATTRS:
            if key not in attrs:
                raise SolutionError(f"attribute '{key}': missing root attribute")
        if attrs["schema"] != SCHEMA:
            raise SolutionError(f"attribute 'schema': must be '{SCHEMA}' (got {attrs['schema']!r})")
        version = attrs["schema_version"]
        if isinstance(version, bool) or not isinstance(version, int) or version != SCHEMA_VERSION:
            raise SolutionError(
                f"attribute 'schema_version': unknown schema_version {version!r} (this reader knows {SCHEMA_VERSION})"
            )
        for key in ("instance_name", "method", "status"):
            if not isinstance(attrs[key], str):
                raise SolutionError(f"attribute '{key}': must be a string")
        numbers = {
            key: _number_attr(f"attribute '{key}'", attrs[key])
            for key in ("objective", "bound", "gap", "emissions_t", "wall_seconds")
        }
        certified = attrs["certified"]
        if not isinstance(certified, (bool, int)) or certified not in (0, 1):
            raise SolutionError(f"attribute 'certified': must be a boolean (got {certified!r})")

        groups = {}
        for name in ("jobs", "inference", "energy", "breakdown"):
            if not isinstance(checked_node(f, name, f"/{name}", SolutionError), h5py.Group):
                raise SolutionError(f"/{name}: missing group")
            groups[name] = f[name]
        arrays = {
            "job_site": _read_array(groups["jobs"], "jobs", "site", "int", 1, mismatches),
            "job_start": _read_array(groups["jobs"], "jobs", "start", "int", 1, mismatches),
            "served": _read_array(groups["inference"], "inference", "served", "float", 3, mismatches),
            "unserved": _read_array(groups["inference"], "inference", "unserved", "float", 2, mismatches),
        }
        for name in ENERGY_FIELDS:
            kind = "binary" if name in ENERGY_BINARY_FIELDS else "float"
            arrays[name] = _read_array(groups["energy"], "energy", name, kind, 2, mismatches)
        if arrays["grid_import"].ndim != 2:
            raise SolutionError(f"/energy/grid_import: must be (S,T), got shape {arrays['grid_import'].shape}")
        n_sites, n_periods = arrays["grid_import"].shape
        n_jobs = arrays["job_site"].size
        n_classes = arrays["unserved"].shape[0] if arrays["unserved"].ndim == 2 else 0
        # An empty dataset written by another tool may lose trailing dimensions: give it its shape.
        for key, shape in (
            ("job_site", (n_jobs,)),
            ("job_start", (n_jobs,)),
            ("served", (n_classes, n_sites, n_periods)),
            ("unserved", (n_classes, n_periods)),
        ):
            if arrays[key].size == 0 and 0 in shape:
                arrays[key] = arrays[key].reshape(shape)

        breakdown_attrs = {key: _attr_value(value) for key, value in groups["breakdown"].attrs.items()}
        breakdown = {}
        for term in BREAKDOWN_TERMS:
            if term not in breakdown_attrs:
                raise SolutionError(f"/breakdown: missing attribute '{term}'")
            breakdown[term] = _number_attr(f"/breakdown attribute '{term}'", breakdown_attrs[term])

        trace = None
        if "trace" in f:
            if not isinstance(f["trace"], h5py.Group):
                raise SolutionError("/trace: must be a group")
            columns = {
                name: _read_array(f["trace"], "trace", name, "int" if name == "iteration" else "float", 1, mismatches)
                for name in TRACE_FIELDS
            }
            lengths = {name: values.size for name, values in columns.items()}
            if len(set(lengths.values())) > 1:
                raise SolutionError(f"/trace: datasets must have one length, got {lengths}")
            trace = Trace(**{name: values.reshape(-1) for name, values in columns.items()})

        sol = Solution(
            instance_name=attrs["instance_name"],
            method=attrs["method"],
            status=attrs["status"],
            certified=bool(certified),
            breakdown=breakdown,
            trace=trace,
            extra={key: value for key, value in attrs.items() if key not in ROOT_ATTRS},
            **numbers,
            **arrays,
        )
    sol.check_shapes({"S": n_sites, "T": n_periods, "J": n_jobs, "K": n_classes})
    return sol
