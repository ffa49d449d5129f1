"""Build an :class:`Instance` from a few arrays, with neutral defaults for everything else.

Meant for tests with hand-derived optima, examples and users assembling instances in code: every
field of the instance format (docs/file-formats.md) may be given as a scalar (broadcast to its shape)
or an array; what is not given takes a default that switches the corresponding feature off (no
battery, no generator, no grid export, ...).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from carbonsched.errors import InputError

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
        try:
            arr = np.asarray(val, dtype=NUMPY_DTYPE[spec.kind])
        except (TypeError, ValueError) as exc:
            raise InputError(f"{group} field '{spec.name}': expected {spec.kind} values ({exc})") from None
        if arr.ndim > len(shape) or (arr.ndim == len(shape) and arr.shape != shape):
            symbols = "(" + ",".join(spec.dims) + ")"
            hint = " — it looks transposed" if arr.ndim == 2 and arr.shape == shape[::-1] else ""
            raise InputError(f"{group} field '{spec.name}': expected shape {symbols} = {shape} "
                             f"({spec.unit or 'no unit'}) or a scalar, got {arr.shape}{hint}")
        try:
            values[spec.name] = np.array(np.broadcast_to(arr, shape), copy=True)
        except ValueError:
            symbols = "(" + ",".join(spec.dims) + ")"
            raise InputError(f"{group} field '{spec.name}': expected shape {symbols} = {shape} or a scalar, "
                             f"got {arr.shape}") from None
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
        Field name -> scalar or array (shapes of docs/file-formats.md). Jobs need ``gpus`` and ``duration``;
        ``deadline`` defaults to T, ``release`` to 0, ``allowed`` to every site.
    validate_result : bool
        Check the result against the instance rules of docs/file-formats.md (default True).

    Raises
    ------
    InputError
        A field has a shape that neither equals its shape in docs/file-formats.md nor broadcasts to it
        (a (T,S) series where (S,T) is expected is called transposed), or values of the wrong kind.
    TypeError
        An unknown field name, or a required field (jobs' ``gpus`` and ``duration``) is missing.
    InstanceError
        The result breaks a rule of the instance format (with ``validate_result``).

    Examples
    --------
    Two sites, 24 hourly periods, prices per site and period ((S,T)), one mandatory job:

    >>> import numpy as np
    >>> inst = make_instance(24, 2, n_jobs=1, carbon_budget_t=50.0, carbon_price=40.0,
    ...                      sites={"name": ["a", "b"], "gpus": [1000, 500], "gpu_busy_kw": 0.7,
    ...                             "gpu_idle_kw": 0.1, "grid_import_mw": 5.0,
    ...                             "price_buy": np.full((2, 24), 60.0), "price_sell": 40.0,
    ...                             "grid_co2": np.full((2, 24), 0.3)},
    ...                      jobs={"gpus": [800], "duration": [6], "value": [900.0], "mandatory": [True]})
    >>> inst.sites.price_buy.shape
    (2, 24)
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
