"""Solutions as labelled tables (pandas, long format) and as an xarray Dataset.

A solution file holds unlabelled arrays indexed like its instance; these functions attach the site,
job and class names and the period index with its hour (and time stamp when the instance records a
``start_time``), so that a schedule can be filtered, grouped, plotted or written to CSV / netCDF.

Derived columns of the ``energy`` table (MW): ``it_load_mw`` = P^IT (constraint 4), ``facility_load_mw`` =
pue·P^IT, ``renewable_available_mw`` = R and ``renewable_curtailed_mw`` = R − w.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from carbonsched.errors import InputError
from carbonsched.instances.schema import Instance
from carbonsched.instances.tables import instance_to_xarray, period_index

from .fields import BREAKDOWN_TERMS, ENERGY_FIELDS
from .solution import Solution

log = logging.getLogger(__name__)

#: The tables of :func:`solution_tables`, in the order they are written.
SOLUTION_TABLES: tuple[str, ...] = ("summary", "jobs", "inference", "unserved", "energy", "trace")


def busy_gpus(inst: Instance, sol: Solution) -> np.ndarray:
    """U_{i,t}: GPUs busy at each site and period (training jobs running plus inference served), (S,T)."""
    S, T = inst.n_sites, int(inst.n_periods)
    busy = sol.served.sum(axis=0) if inst.n_classes else np.zeros((S, T))
    busy = np.array(busy, dtype=np.float64, copy=True)
    for j in np.flatnonzero((sol.job_site >= 0) & (sol.job_start >= 0)):
        s0 = int(sol.job_start[j])
        busy[int(sol.job_site[j]), s0:s0 + int(inst.jobs.duration[j])] += float(inst.jobs.gpus[j])
    return busy


def it_load_mw(inst: Instance, sol: Solution) -> np.ndarray:
    """P^IT_{i,t} = (a_i·G_i + (b_i − a_i)·U_{i,t}) / 1000 in MW (constraint 4), (S,T)."""
    s = inst.sites
    idle = s.gpu_idle_kw * s.gpus
    return (idle[:, None] + (s.gpu_busy_kw - s.gpu_idle_kw)[:, None] * busy_gpus(inst, sol)) / 1000.0


def _long(values: np.ndarray, labels: dict[str, np.ndarray], name: str) -> pd.DataFrame:
    """A long table of ``values`` with one label column per axis (in order) and the values as ``name``."""
    grids = np.meshgrid(*labels.values(), indexing="ij")
    frame = {key: grid.ravel() for key, grid in zip(labels, grids, strict=True)}
    frame[name] = np.asarray(values).ravel()
    return pd.DataFrame(frame)


def solution_tables(inst: Instance, sol: Solution) -> dict[str, pd.DataFrame]:
    """The solution as long tables with names, by table name (:data:`SOLUTION_TABLES`).

    Parameters
    ----------
    inst : Instance
        The instance ``sol`` answers (its names label the rows).
    sol : Solution
        The solution.

    Returns
    -------
    dict of str to DataFrame
        ``summary`` (one row: the root attributes and every breakdown term, $); ``jobs`` (one row per job:
        site name or empty, start and end period, start hour, GPUs, value $, scheduled); ``inference``
        (class, site, period, hour, served_gpus); ``unserved`` (class, period, hour, unserved_gpus); ``energy``
        (site, period, hour, every ``/energy`` dataset and the derived loads of the module docstring);
        ``trace`` (seconds, primal, dual, iteration; empty when the solution has none).
    """
    if sol.instance_name != inst.name:
        raise InputError(f"solution is for instance '{sol.instance_name}', not '{inst.name}'")
    sol.check_shapes(inst.dims())
    sites = np.array([str(n) for n in inst.sites.name], dtype=object)
    classes = np.array([str(n) for n in inst.inference.name], dtype=object)
    index = period_index(inst)
    periods, hours = index["period"].to_numpy(), index["hour"].to_numpy()
    stamp = "timestamp" in index

    summary = {"instance": sol.instance_name, "method": sol.method, "status": sol.status.value,
               "objective": sol.objective, "bound": sol.bound, "gap": sol.gap, "certified": sol.certified,
               "emissions_t": sol.emissions_t, "carbon_budget_t": float(inst.carbon_budget_t),
               "wall_seconds": sol.wall_seconds} | {t: sol.breakdown[t] for t in BREAKDOWN_TERMS}
    tables: dict[str, pd.DataFrame] = {"summary": pd.DataFrame([summary])}

    jb = inst.jobs
    scheduled = (sol.job_site >= 0) & (sol.job_start >= 0)
    tables["jobs"] = pd.DataFrame({
        "job": [str(n) for n in jb.name],
        "site": np.where(scheduled, sites[np.clip(sol.job_site, 0, None)] if len(sites) else "", ""),
        "scheduled": scheduled,
        "start_period": sol.job_start,
        "end_period": np.where(scheduled, sol.job_start + jb.duration, -1),
        "start_hour": np.where(scheduled, sol.job_start * float(inst.period_hours), np.nan),
        "gpus": jb.gpus, "duration": jb.duration, "value": jb.value, "mandatory": jb.mandatory,
    })

    served = _long(sol.served, {"class": classes, "site": sites, "period": periods}, "served_gpus")
    served.insert(3, "hour", np.tile(hours, len(classes) * len(sites)))
    tables["inference"] = served
    unserved = _long(sol.unserved, {"class": classes, "period": periods}, "unserved_gpus")
    unserved.insert(2, "hour", np.tile(hours, len(classes)))
    tables["unserved"] = unserved

    energy = _long(np.zeros((len(sites), len(periods))), {"site": sites, "period": periods}, "_")
    energy = energy.drop(columns="_")
    energy["hour"] = np.tile(hours, len(sites))
    if stamp:
        energy["timestamp"] = np.tile(index["timestamp"].to_numpy(), len(sites))
        served.insert(4, "timestamp", np.tile(index["timestamp"].to_numpy(), len(classes) * len(sites)))
    for name in ENERGY_FIELDS:
        energy[name] = getattr(sol, name).ravel()
    p_it = it_load_mw(inst, sol)
    energy["busy_gpus"] = busy_gpus(inst, sol).ravel()
    energy["it_load_mw"] = p_it.ravel()
    energy["facility_load_mw"] = (inst.sites.pue * p_it).ravel()
    energy["renewable_available_mw"] = inst.sites.renewable_mw.ravel()
    energy["renewable_curtailed_mw"] = (inst.sites.renewable_mw - sol.renewable_used).ravel()
    energy["emissions_t"] = (inst.period_hours * (inst.sites.grid_co2 * sol.grid_import
                                                  + inst.sites.gen_co2[:, None] * sol.gen)).ravel()
    tables["energy"] = energy
    trace = sol.trace.to_arrays() if sol.trace is not None else {k: np.empty(0) for k in
                                                                  ("seconds", "primal", "dual", "iteration")}
    tables["trace"] = pd.DataFrame(trace)
    return tables


def _netcdf_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    """Attributes netCDF-3 can store: bools as 0/1 ints, numpy scalars as Python numbers."""
    out = {}
    for key, value in attrs.items():
        if isinstance(value, (bool, np.bool_)):
            out[key] = int(value)
        elif isinstance(value, np.generic):
            out[key] = value.item()
        else:
            out[key] = value
    return out


def solution_to_xarray(inst: Instance, sol: Solution):
    """The solution as an ``xarray.Dataset`` with dims ``site``, ``period``, ``job``, ``class``.

    Data variables: every ``/energy`` dataset (site, period) plus ``busy_gpus`` and ``it_load_mw``;
    ``served`` (class, site, period); ``unserved`` (class, period); ``job_site`` (job; the site name, empty
    when not scheduled) and ``job_start`` (job; −1 when not scheduled). Root attributes and the breakdown
    terms become dataset attributes (``breakdown_<term>``).
    """
    import xarray as xr

    tables = solution_tables(inst, sol)
    coords = instance_to_xarray(inst).coords
    data = {name: (("site", "period"), getattr(sol, name)) for name in ENERGY_FIELDS}
    data["busy_gpus"] = (("site", "period"), busy_gpus(inst, sol))
    data["it_load_mw"] = (("site", "period"), it_load_mw(inst, sol))
    data["served"] = (("class", "site", "period"), sol.served)
    data["unserved"] = (("class", "period"), sol.unserved)
    data["job_site"] = (("job",), tables["jobs"]["site"].astype(str).to_numpy())
    data["job_start"] = (("job",), sol.job_start)
    attrs = {"schema": "carbonsched-solution", "instance_name": sol.instance_name, "method": sol.method,
             "status": sol.status.value, "objective": sol.objective, "bound": sol.bound, "gap": sol.gap,
             "certified": sol.certified, "emissions_t": sol.emissions_t, "wall_seconds": sol.wall_seconds}
    attrs |= {f"breakdown_{t}": sol.breakdown[t] for t in BREAKDOWN_TERMS}
    return xr.Dataset(data, coords=coords, attrs=_netcdf_attrs(attrs))


def write_netcdf(dataset, path: str | os.PathLike) -> Path:
    """Write an xarray Dataset as netCDF-3 with xarray's ``scipy`` engine (no netCDF4 library needed).

    Booleans are stored as int8 and strings as character arrays (xarray's own encoding); attributes
    that netCDF-3 cannot hold (bools) are written as 0/1.
    """
    path = Path(path)
    dataset = dataset.copy()
    dataset.attrs = _netcdf_attrs(dataset.attrs)
    for name in list(dataset.data_vars):
        if dataset[name].dtype == bool:
            dataset[name] = dataset[name].astype(np.int8)
    dataset.to_netcdf(path, engine="scipy")
    return path


def write_solution_csv(inst: Instance, sol: Solution, folder: str | os.PathLike) -> list[Path]:
    """Write the tables of :func:`solution_tables` as ``folder/TABLE.csv``; returns the files written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, frame in solution_tables(inst, sol).items():
        path = folder / f"{name}.csv"
        frame.to_csv(path, index=False)
        paths.append(path)
    log.info("wrote %d tables to %s", len(paths), folder)
    return paths
