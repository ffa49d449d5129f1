"""Build an :class:`Instance` from a few arrays, with neutral defaults for everything else.

Meant for tests with hand-derived optima, examples and users assembling instances in code: every
field of INSTANCE.md may be given as a scalar (broadcast to its shape) or an array; what is not
given takes a default that switches the corresponding feature off (no battery, no generator, no
grid export, ...).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .schema import GROUP_CLASSES, NUMPY_DTYPE, Instance, group_fields
from .validation import validate

SITE_DEFAULTS: dict[str, Any] = {
    "lat": 0.0,
    "lon": 0.0,
    "gpus": 0,
    "gpu_idle_kw": 0.0,
    "gpu_busy_kw": 1.0,
    "pue": 1.0,
    "renewable_mw": 0.0,
    "grid_import_mw": 0.0,
    "grid_export_mw": 0.0,
    "price_buy": 0.0,
    "price_sell": 0.0,
    "grid_co2": 0.0,
    "gen_max_mw": 0.0,
    "gen_min_mw": 0.0,
    "gen_cost": 0.0,
    "gen_startup_cost": 0.0,
    "gen_co2": 0.0,
    "gen_min_up": 1,
    "gen_min_down": 1,
    "bat_energy_mwh": 0.0,
    "bat_power_mw": 0.0,
    "bat_eta_charge": 1.0,
    "bat_eta_discharge": 1.0,
    "bat_soc0_mwh": 0.0,
    "bat_cost": 0.0,
}
JOB_DEFAULTS: dict[str, Any] = {"value": 0.0, "mandatory": False, "allowed": True, "release": 0}
CLASS_DEFAULTS: dict[str, Any] = {
    "demand": 0.0,
    "revenue": 0.0,
    "penalty": 0.0,
    "latency_ms": 0.0,
    "latency_slo_ms": 0.0,
    "latency_cost": 0.0,
}


def _fill(group: str, given: dict[str, Any], defaults: dict[str, Any], dims: dict[str, int], prefix: str):
    unknown = set(given) - {f.name for f in group_fields(group)}
    if unknown:
        raise TypeError(f"unknown {group} field(s): {sorted(unknown)}")
    values = {}
    for spec in group_fields(group):
        shape = tuple(dims[d] for d in spec.dims)
        if spec.name == "name":
            val = given.get("name", [f"{prefix}{i}" for i in range(shape[0])])
            values["name"] = np.array([str(v) for v in val], dtype=object).reshape(shape)
            continue
        if spec.name in given:
            val = given[spec.name]
        elif spec.name in defaults:
            val = defaults[spec.name]
        elif group == "jobs" and spec.name == "deadline":
            val = dims["T"]
        elif 0 in shape:
            val = 0  # an empty group needs no data
        else:
            raise TypeError(f"{group} field '{spec.name}' is required")
        arr = np.asarray(val, dtype=NUMPY_DTYPE[spec.kind])
        values[spec.name] = np.array(np.broadcast_to(arr, shape), copy=True)
    return GROUP_CLASSES[group](**values)


def make_instance(
    n_periods: int,
    n_sites: int,
    *,
    n_jobs: int = 0,
    n_classes: int = 0,
    period_hours: float = 1.0,
    voll: float = 10_000.0,
    carbon_budget_t: float = float("inf"),
    carbon_price: float = 0.0,
    name: str = "instance",
    sites: dict[str, Any] | None = None,
    jobs: dict[str, Any] | None = None,
    inference: dict[str, Any] | None = None,
    validate_result: bool = True,
) -> Instance:
    """Assemble an instance; scalars broadcast, unspecified fields take neutral defaults.

    Parameters
    ----------
    n_periods, n_sites, n_jobs, n_classes : int
        T, S, J, K.
    period_hours : float
        Δ in hours.
    voll : float
        Value of lost load, $/MWh.
    carbon_budget_t : float
        C in t CO2 (``inf``: no budget).
    carbon_price : float
        τ in $/t.
    sites, jobs, inference : dict, optional
        Field name -> scalar or array (shapes of INSTANCE.md). Jobs need ``gpus`` and ``duration``;
        ``deadline`` defaults to T, ``release`` to 0, ``allowed`` to every site.
    validate_result : bool
        Check the result against INSTANCE.md (default True).
    """
    dims = {"S": n_sites, "T": n_periods, "J": n_jobs, "K": n_classes}
    inst = Instance(
        name=name,
        n_periods=int(n_periods),
        period_hours=float(period_hours),
        voll=float(voll),
        carbon_budget_t=float(carbon_budget_t),
        carbon_price=float(carbon_price),
        sites=_fill("sites", sites or {}, SITE_DEFAULTS, dims, "site"),
        jobs=_fill("jobs", jobs or {}, JOB_DEFAULTS, dims, "job"),
        inference=_fill("inference", inference or {}, CLASS_DEFAULTS, dims, "class"),
    )
    return validate(inst) if validate_result else inst
