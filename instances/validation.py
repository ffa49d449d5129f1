"""Every rule of INSTANCE.md, checked on an in-memory :class:`~carbonsched.instances.schema.Instance`.

The checks run in file order and stop at the first broken rule, raising :class:`InstanceError`
with a one-line message: the dataset or attribute, the rule, and for arrays the first offending
index (row-major order) with its value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from carbonsched.errors import InstanceError

from .schema import FIELDS, ROOT_ATTRS, SCHEMA, SCHEMA_VERSION, FieldSpec, Instance

#: Largest magnitude of any finite number of an instance (prices $, quantities GPUs/MW/MWh, ...). SCIP treats
#: 1e20 as infinity: with every coefficient and bound at most 1e9, a product of two (a price times an energy
#: in one period) stays at most 1e18, below SCIP's infinity, and SCIP's 1e-6 relative tolerances remain
#: meaningful in double precision. Real data are below 1e6.
MAX_MAGNITUDE = 1e9
#: Largest number of periods T (the arrays of T entries are allocated before their values are read).
MAX_PERIODS = 1_000_000
_MAGNITUDE_RULE = f"magnitude must be <= {MAX_MAGNITUDE:g} (the solver's limit, docs/reliability.md)"

_RULE_TEXT = {
    "ge0": "must be >= 0",
    "ge1": "must be >= 1",
    "gt0": "must be > 0",
    "unit": "must be in (0, 1]",
    "latency": "must be >= 0",
    "ge0_or_inf": "must be >= 0 (or inf)",
}


def _index_text(idx: Sequence[int] | int) -> str:
    if isinstance(idx, (int, np.integer)):
        return f"[{int(idx)}]"
    return "[" + ", ".join(str(int(i)) for i in idx) + "]"


def _fail(where: str, rule: str, idx=None, value=None) -> None:
    loc = where if idx is None else f"{where}{_index_text(idx)}"
    got = "" if value is None else f" (got {value!r})" if isinstance(value, str) else f" (got {value:g})"
    raise InstanceError(f"{loc}: {rule}{got}")


def _string_problem(s: str) -> str | None:
    """Why ``s`` cannot be stored as an HDF5 variable-length UTF-8 string, or None."""
    if "\x00" in s:
        return "strings must not contain NUL characters"
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return "strings must be valid UTF-8 (lone surrogate)"
    return None


def first_index(mask: np.ndarray) -> tuple[int, ...] | None:
    """Row-major index of the first true entry of ``mask``, or None."""
    flat = np.flatnonzero(np.asarray(mask).ravel())
    if flat.size == 0:
        return None
    return tuple(int(i) for i in np.unravel_index(flat[0], np.shape(mask)))


def check_mask(where: str, bad: np.ndarray, rule: str, values: np.ndarray | None = None) -> None:
    """Raise for the first true entry of ``bad`` (same shape as the dataset ``where``)."""
    idx = first_index(bad)
    if idx is not None:
        val = None if values is None else values[idx]
        if isinstance(val, np.generic):
            val = val.item()
        if isinstance(val, bool):
            val = None
        _fail(where, rule, idx if len(idx) > 1 else idx[0], val)


def validate_root(attrs: dict) -> None:
    """Check the root attributes (types, schema, version, ranges)."""
    for key, (kind, rule) in ROOT_ATTRS.items():
        where = f"attribute '{key}'"
        if key not in attrs:
            _fail(where, "missing root attribute")
        val = attrs[key]
        if kind == "str":
            if not isinstance(val, str):
                _fail(where, "must be a string")
            if (problem := _string_problem(val)) is not None:
                _fail(where, problem)
        elif kind == "int":
            if isinstance(val, (bool, np.bool_)) or not isinstance(val, (int, np.integer)):
                _fail(where, f"must be an integer, got {type(val).__name__}")
        elif kind == "float":
            if isinstance(val, (bool, np.bool_)) or not isinstance(val, (int, float, np.integer, np.floating)):
                _fail(where, f"must be a number, got {type(val).__name__}")
            val = float(val)
            if math.isnan(val):
                _fail(where, "must not be NaN")
            if math.isinf(val) and not (rule == "ge0_or_inf" and val > 0):
                _fail(where, "must be finite", value=val)
        if rule == "ge1" and val < 1 or rule == "gt0" and not val > 0 or rule.startswith("ge0") and val < 0:
            _fail(where, _RULE_TEXT[rule], value=float(val))
        if kind in ("int", "float") and math.isfinite(float(val)) and abs(float(val)) > MAX_MAGNITUDE:
            _fail(where, _MAGNITUDE_RULE, value=float(val))
    if attrs["schema"] != SCHEMA:
        _fail("attribute 'schema'", f"must be '{SCHEMA}'", value=attrs["schema"])
    if int(attrs["n_periods"]) > MAX_PERIODS:
        _fail("attribute 'n_periods'", f"must be <= {MAX_PERIODS}", value=float(attrs["n_periods"]))
    if int(attrs["schema_version"]) != SCHEMA_VERSION:
        _fail(
            "attribute 'schema_version'",
            f"unknown schema_version {int(attrs['schema_version'])} (this reader knows {SCHEMA_VERSION})",
        )


def _check_field(spec: FieldSpec, arr: np.ndarray, dims: dict[str, int]) -> None:
    where = f"/{spec.group}/{spec.name}"
    shape = tuple(dims[d] for d in spec.dims)
    if arr.shape != shape:
        sym = "(" + ",".join(spec.dims) + ")"
        _fail(where, f"shape must be {sym} = {shape}, got {arr.shape}")
    if spec.kind == "str":
        for i, s in enumerate(arr.ravel()):
            if not isinstance(s, str):
                _fail(where, "must hold strings", i)
            if (problem := _string_problem(s)) is not None:
                _fail(where, problem, i)
        if spec.rule == "unique":
            seen: dict[str, int] = {}
            for i, s in enumerate(arr):
                if s in seen:
                    _fail(where, f"names must be unique: {s!r} repeats entry {seen[s]}", i)
                seen[s] = i
        return
    if spec.kind == "bool":
        if arr.dtype != np.bool_:
            _fail(where, f"must be boolean, got dtype {arr.dtype}")
        return
    want = np.integer if spec.kind == "int" else np.floating
    if not np.issubdtype(arr.dtype, want):
        _fail(where, f"must be {spec.kind}, got dtype {arr.dtype}")
    if spec.kind == "float":
        check_mask(where, np.isnan(arr), "must not be NaN")
        inf_ok = spec.rule == "latency"
        check_mask(where, np.isinf(arr) & ~(inf_ok & (arr > 0)), "must be finite", arr)
    check_mask(where, np.isfinite(arr) & (np.abs(arr) > MAX_MAGNITUDE), _MAGNITUDE_RULE, arr)
    rule = spec.rule
    if rule in ("ge0", "latency"):
        check_mask(where, arr < 0, _RULE_TEXT[rule], arr)
    elif rule == "ge1":
        check_mask(where, arr < 1, _RULE_TEXT[rule], arr)
    elif rule == "unit":
        check_mask(where, (arr <= 0) | (arr > 1), _RULE_TEXT[rule], arr)


def validate(inst: Instance) -> Instance:
    """Check every rule of INSTANCE.md on ``inst``; return it unchanged or raise InstanceError.

    Parameters
    ----------
    inst : Instance
        The instance to check (arrays already converted to numpy).

    Raises
    ------
    InstanceError
        One-line message naming the dataset or attribute, the rule and the first offending index.
    """
    validate_root(
        {
            "schema": SCHEMA,
            "schema_version": SCHEMA_VERSION,
            "name": inst.name,
            "n_periods": inst.n_periods,
            "period_hours": inst.period_hours,
            "voll": inst.voll,
            "carbon_budget_t": inst.carbon_budget_t,
            "carbon_price": inst.carbon_price,
        }
    )
    for g in ("sites", "jobs", "inference"):
        name = getattr(inst, g).name
        if np.ndim(name) != 1:
            _fail(f"/{g}/name", "must be one-dimensional")
    if inst.n_sites < 1:
        _fail("/sites/name", "at least one site is required (S >= 1)")
    dims = inst.dims()
    for spec in FIELDS:
        _check_field(spec, np.asarray(getattr(inst.group(spec.group), spec.name)), dims)

    s, jb, inf = inst.sites, inst.jobs, inst.inference
    check_mask("/sites/gpu_idle_kw", s.gpu_idle_kw > s.gpu_busy_kw, "must be <= gpu_busy_kw", s.gpu_idle_kw)
    check_mask("/sites/price_sell", s.price_sell > s.price_buy, "must be <= price_buy", s.price_sell)
    check_mask("/sites/gen_min_mw", s.gen_min_mw > s.gen_max_mw, "must be <= gen_max_mw", s.gen_min_mw)
    check_mask("/sites/bat_soc0_mwh", s.bat_soc0_mwh > s.bat_energy_mwh, "must be <= bat_energy_mwh", s.bat_soc0_mwh)
    check_mask(
        "/jobs/deadline",
        jb.deadline < jb.release + jb.duration,
        "must be >= release + duration",
        jb.deadline,
    )
    check_mask("/jobs/deadline", jb.deadline > inst.n_periods, f"must be <= n_periods = {inst.n_periods}", jb.deadline)
    if inst.n_jobs:
        check_mask("/jobs/allowed", ~jb.allowed.any(axis=1), "job has no allowed site (at least one must be true)")
    check_mask(
        "/inference/latency_slo_ms", np.isinf(inf.latency_slo_ms), "must be finite", inf.latency_slo_ms
    )
    return inst
