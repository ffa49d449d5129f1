"""The instance data model: the arrays of INSTANCE.md with their names, shapes and units.

One declarative table (`FIELDS`) drives storage, validation and documentation, so that the
HDF5 layout, the Python object and the rules checked on load cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

SCHEMA = "carbonsched-instance"
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class FieldSpec:
    """One dataset of an instance file.

    Attributes
    ----------
    group : {"sites", "jobs", "inference"}
        HDF5 group holding the dataset.
    name : str
        Dataset name (also the attribute name on the group's Python object).
    dims : tuple of str
        Symbolic shape, letters from ``S T J K``.
    kind : {"float", "int", "bool", "str"}
        Element kind; readers accept any width of that kind (ints also for floats).
    unit : str
        Physical unit, for documentation and ``info``.
    rule : str
        Element-wise range rule: ``""`` (finite), ``"ge0"``, ``"ge1"``, ``"unit"`` (in (0, 1]),
        ``"unique"`` (strings), ``"latency"`` (≥ 0, +inf allowed: no route).
    """

    group: str
    name: str
    dims: tuple[str, ...]
    kind: str
    unit: str = ""
    rule: str = ""


def _f(group: str, name: str, dims: str, kind: str, unit: str = "", rule: str = "") -> FieldSpec:
    return FieldSpec(group, name, tuple(dims), kind, unit, rule)


FIELDS: tuple[FieldSpec, ...] = (
    _f("sites", "name", "S", "str", "", "unique"),
    _f("sites", "lat", "S", "float", "deg"),
    _f("sites", "lon", "S", "float", "deg"),
    _f("sites", "gpus", "S", "int", "GPUs", "ge0"),
    _f("sites", "gpu_idle_kw", "S", "float", "kW/GPU", "ge0"),
    _f("sites", "gpu_busy_kw", "S", "float", "kW/GPU", "ge0"),
    _f("sites", "pue", "ST", "float", "-", "ge1"),
    _f("sites", "renewable_mw", "ST", "float", "MW", "ge0"),
    _f("sites", "grid_import_mw", "S", "float", "MW", "ge0"),
    _f("sites", "grid_export_mw", "S", "float", "MW", "ge0"),
    _f("sites", "price_buy", "ST", "float", "$/MWh"),
    _f("sites", "price_sell", "ST", "float", "$/MWh"),
    _f("sites", "grid_co2", "ST", "float", "t/MWh", "ge0"),
    _f("sites", "gen_max_mw", "S", "float", "MW", "ge0"),
    _f("sites", "gen_min_mw", "S", "float", "MW", "ge0"),
    _f("sites", "gen_cost", "S", "float", "$/MWh"),
    _f("sites", "gen_startup_cost", "S", "float", "$/start", "ge0"),
    _f("sites", "gen_co2", "S", "float", "t/MWh", "ge0"),
    _f("sites", "gen_min_up", "S", "int", "periods", "ge1"),
    _f("sites", "gen_min_down", "S", "int", "periods", "ge1"),
    _f("sites", "bat_energy_mwh", "S", "float", "MWh", "ge0"),
    _f("sites", "bat_power_mw", "S", "float", "MW", "ge0"),
    _f("sites", "bat_eta_charge", "S", "float", "-", "unit"),
    _f("sites", "bat_eta_discharge", "S", "float", "-", "unit"),
    _f("sites", "bat_soc0_mwh", "S", "float", "MWh", "ge0"),
    _f("sites", "bat_cost", "S", "float", "$/MWh", "ge0"),
    _f("jobs", "name", "J", "str", "", "unique"),
    _f("jobs", "gpus", "J", "int", "GPUs", "ge1"),
    _f("jobs", "duration", "J", "int", "periods", "ge1"),
    _f("jobs", "release", "J", "int", "period", "ge0"),
    _f("jobs", "deadline", "J", "int", "period", "ge0"),
    _f("jobs", "value", "J", "float", "$"),
    _f("jobs", "mandatory", "J", "bool"),
    _f("jobs", "allowed", "JS", "bool"),
    _f("inference", "name", "K", "str", "", "unique"),
    _f("inference", "demand", "KT", "float", "GPUs", "ge0"),
    _f("inference", "revenue", "K", "float", "$/GPU-h"),
    _f("inference", "penalty", "K", "float", "$/GPU-h", "ge0"),
    _f("inference", "latency_ms", "KS", "float", "ms", "latency"),
    _f("inference", "latency_slo_ms", "K", "float", "ms", "ge0"),
    _f("inference", "latency_cost", "K", "float", "$/GPU-h/ms", "ge0"),
)

#: Root attributes: name -> (kind, rule).  ``carbon_budget_t`` alone may be +inf.
ROOT_ATTRS: dict[str, tuple[str, str]] = {
    "schema": ("str", ""),
    "schema_version": ("int", ""),
    "name": ("str", ""),
    "n_periods": ("int", "ge1"),
    "period_hours": ("float", "gt0"),
    "voll": ("float", "gt0"),
    "carbon_budget_t": ("float", "ge0_or_inf"),
    "carbon_price": ("float", "ge0"),
}

GROUPS = ("sites", "jobs", "inference")
NUMPY_DTYPE = {"float": np.float64, "int": np.int64, "bool": np.bool_, "str": object}


def group_fields(group: str) -> tuple[FieldSpec, ...]:
    """The field specs of one group, in file order."""
    return tuple(f for f in FIELDS if f.group == group)


@dataclass(eq=False)
class Sites:
    """Per-site data (first dimension S). Units as in INSTANCE.md: MW, MWh, $, t, kW per GPU."""

    name: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    gpus: np.ndarray
    gpu_idle_kw: np.ndarray
    gpu_busy_kw: np.ndarray
    pue: np.ndarray
    renewable_mw: np.ndarray
    grid_import_mw: np.ndarray
    grid_export_mw: np.ndarray
    price_buy: np.ndarray
    price_sell: np.ndarray
    grid_co2: np.ndarray
    gen_max_mw: np.ndarray
    gen_min_mw: np.ndarray
    gen_cost: np.ndarray
    gen_startup_cost: np.ndarray
    gen_co2: np.ndarray
    gen_min_up: np.ndarray
    gen_min_down: np.ndarray
    bat_energy_mwh: np.ndarray
    bat_power_mw: np.ndarray
    bat_eta_charge: np.ndarray
    bat_eta_discharge: np.ndarray
    bat_soc0_mwh: np.ndarray
    bat_cost: np.ndarray


@dataclass(eq=False)
class Jobs:
    """Rigid training jobs (first dimension J, may be 0). Times in periods, value in $."""

    name: np.ndarray
    gpus: np.ndarray
    duration: np.ndarray
    release: np.ndarray
    deadline: np.ndarray
    value: np.ndarray
    mandatory: np.ndarray
    allowed: np.ndarray


@dataclass(eq=False)
class Inference:
    """Elastic inference classes (first dimension K, may be 0). Demand in GPUs, money per GPU-hour."""

    name: np.ndarray
    demand: np.ndarray
    revenue: np.ndarray
    penalty: np.ndarray
    latency_ms: np.ndarray
    latency_slo_ms: np.ndarray
    latency_cost: np.ndarray


@dataclass(eq=False)
class Instance:
    """A carbonsched instance: the sets and parameters of MODEL.md.

    Arrays are plain numpy (float64, int64, bool, or object arrays of ``str``); use
    :func:`instances.validate` (done by :func:`instances.load`) before building models.

    Attributes
    ----------
    name : str
        Instance name.
    n_periods : int
        T, number of periods.
    period_hours : float
        Δ, length of a period in hours.
    voll : float
        Value of lost load, $/MWh.
    carbon_budget_t : float
        C, global carbon budget in t CO2 (``inf`` for none).
    carbon_price : float
        τ, $/t CO2.
    sites, jobs, inference : Sites, Jobs, Inference
        The three groups of INSTANCE.md.
    extra_attrs : dict
        Optional root attributes (``description``, ``seed``, ``generator``, ...), kept on round trip.
    """

    name: str
    n_periods: int
    period_hours: float
    voll: float
    carbon_budget_t: float
    carbon_price: float
    sites: Sites
    jobs: Jobs
    inference: Inference
    extra_attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def n_sites(self) -> int:
        return int(len(self.sites.name))

    @property
    def n_jobs(self) -> int:
        return int(len(self.jobs.name))

    @property
    def n_classes(self) -> int:
        return int(len(self.inference.name))

    def dims(self) -> dict[str, int]:
        """Symbolic dimension sizes ``{"S": S, "T": T, "J": J, "K": K}``."""
        return {"S": self.n_sites, "T": int(self.n_periods), "J": self.n_jobs, "K": self.n_classes}

    def group(self, name: str) -> Sites | Jobs | Inference:
        return getattr(self, name)

    # ------------------------------------------------------------------ derived sets
    def slo_mask(self) -> np.ndarray:
        """(K, S) bool: site i is in S_k (L_ki ≤ ℓ_k)."""
        inf = self.inference
        return inf.latency_ms <= inf.latency_slo_ms[:, None]

    def start_window(self, j: int) -> np.ndarray:
        """Allowed start periods W_j = r_j .. D_j − d_j of job ``j``."""
        jb = self.jobs
        return np.arange(jb.release[j], jb.deadline[j] - jb.duration[j] + 1)

    def copy(self) -> Instance:
        """A deep copy (arrays copied), for ablations that change parameters."""

        def cp(obj):
            return type(obj)(**{f.name: np.array(getattr(obj, f.name), copy=True) for f in fields(obj)})

        return Instance(
            name=self.name,
            n_periods=int(self.n_periods),
            period_hours=float(self.period_hours),
            voll=float(self.voll),
            carbon_budget_t=float(self.carbon_budget_t),
            carbon_price=float(self.carbon_price),
            sites=cp(self.sites),
            jobs=cp(self.jobs),
            inference=cp(self.inference),
            extra_attrs=dict(self.extra_attrs),
        )


GROUP_CLASSES = {"sites": Sites, "jobs": Jobs, "inference": Inference}
