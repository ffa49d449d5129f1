"""The benefit–emissions frontier: the joint model and the paper's baselines at several carbon budgets.

For each budget C (t CO2) the instance is copied with ``carbon_budget_t = C`` and every strategy is
solved on that copy. The joint solves run in increasing budget order, each seeded with the previous
(tighter) budget's plan: a plan that met a tighter budget still meets a looser one, so the seed is a
feasible first incumbent and joint's Z cannot come out below its neighbour's. The baselines do not
depend on each other; with ``n_jobs > 1`` they run in joblib worker processes beside the joint chain.

The results file (HDF5) has one row per strategy and budget in the datasets ``strategy`` (str),
``budget_t`` (t), ``objective`` ($), ``bound`` ($, inf when the strategy proves none), ``emissions_t``
(t), ``status`` (str), ``gap`` and ``wall_seconds`` (s), ``checked`` (bool: the independent checker passed
the solution on the instance with that budget), and the provenance of :mod:`carbonsched.provenance` as
root attributes.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
from carbonsched.errors import InputError
from carbonsched.instances.schema import Instance
from carbonsched.instances.storage import atomic_hdf5, write_array
from carbonsched.provenance import provenance

from .baselines import STRATEGIES, run_strategy
from .checker import check_solution
from .monolithic import solve_monolithic
from .plan import ComputePlan
from .solution import Solution

log = logging.getLogger(__name__)

#: Strategies solved by default: the joint model and the paper's two baselines, plus sequential.
DEFAULT_STRATEGIES: tuple[str, ...] = ("joint", "compute-only", "energy-only", "sequential")
#: Root attribute naming a frontier results file.
SCHEMA = "carbonsched-frontier"
#: The per-row datasets of a results file, in order.
COLUMNS: tuple[str, ...] = ("strategy", "budget_t", "objective", "bound", "gap", "emissions_t", "status",
                            "wall_seconds", "checked")


@dataclass
class Frontier:
    """The solved frontier: one row per (strategy, budget), in strategy then budget order.

    Attributes
    ----------
    instance_name : str
        Name of the instance the budgets were applied to.
    rows : list of dict
        One dict per row with the keys of :data:`COLUMNS`.
    solutions : dict of (str, float) to Solution
        The solution of each (strategy, budget in t).
    """

    instance_name: str
    rows: list[dict] = field(default_factory=list)
    solutions: dict[tuple[str, float], Solution] = field(default_factory=dict)

    def columns(self) -> dict[str, np.ndarray]:
        """The rows as one array per column of :data:`COLUMNS`."""
        out = {}
        for name in COLUMNS:
            values = [row[name] for row in self.rows]
            out[name] = np.array(values, dtype=object if name in ("strategy", "status") else None)
        return out


def with_budget(inst: Instance, budget_t: float) -> Instance:
    """A copy of ``inst`` with carbon budget ``budget_t`` t (its name unchanged, so solutions match it)."""
    out = inst.copy()
    out.carbon_budget_t = float(budget_t)
    return out


def _joint_chain(inst: Instance, budgets: Sequence[float], time_limit: float | None, gap: float | None
                 ) -> list[Solution]:
    """Joint solves at increasing budgets, each seeded with the previous budget's plan."""
    out: list[Solution] = []
    plan = None
    for budget in budgets:
        sol = solve_monolithic(with_budget(inst, budget), method="joint", time_limit=time_limit, gap=gap,
                               initial=plan)
        log.info("frontier: joint at C = %g t: Z = %.2f $, %s", budget, sol.objective, sol.status.value)
        plan = ComputePlan.from_solution(sol)
        out.append(sol)
    return out


def _task(inst: Instance, strategy: str, budgets: Sequence[float], time_limit: float | None,
          gap: float | None) -> list[Solution]:
    if strategy == "joint":
        return _joint_chain(inst, budgets, time_limit, gap)
    return [run_strategy(with_budget(inst, b), strategy, time_limit=time_limit, gap=gap) for b in budgets]


def solve_frontier(inst: Instance, budgets: Sequence[float], *, strategies: Sequence[str] = DEFAULT_STRATEGIES,
                   time_limit: float | None = None, gap: float | None = 1e-6, n_jobs: int = 1) -> Frontier:
    """Solve every strategy at every carbon budget and check every solution.

    Parameters
    ----------
    inst : Instance
        The instance; only its carbon budget changes between solves.
    budgets : sequence of float
        Carbon budgets C in t CO2 (≥ 0; ``inf`` allowed); solved in increasing order.
    strategies : sequence of str
        Names from :data:`~carbonsched.formulations.baselines.STRATEGIES` (default :data:`DEFAULT_STRATEGIES`).
    time_limit : float, optional
        Seconds per MILP solve.
    gap : float, optional
        Relative gap per MILP solve.
    n_jobs : int
        Worker processes (joblib, loky): the joint chain and each baseline run as separate tasks.

    Returns
    -------
    Frontier
        Rows and solutions; ``checked`` is the checker's verdict (constraint 9 included: every strategy
        here is held to the budget it was solved at, except ``no-carbon``).
    """
    budgets = sorted(float(b) for b in budgets)
    if not budgets:
        raise InputError("frontier: give at least one budget")
    bad = [b for b in budgets if math.isnan(b) or b < 0]
    if bad:
        raise InputError(f"frontier: budgets must be >= 0 t, got {bad[0]:g}")
    if len(set(budgets)) != len(budgets):
        raise InputError("frontier: budgets must be distinct")
    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown:
        raise InputError(f"frontier: unknown strategy '{unknown[0]}'; choose from {', '.join(STRATEGIES)}")
    strategies = list(dict.fromkeys(strategies))
    if n_jobs > 1 and len(strategies) > 1:
        from joblib import Parallel, delayed

        results = Parallel(n_jobs=min(n_jobs, len(strategies)), backend="loky")(
            delayed(_task)(inst, s, budgets, time_limit, gap) for s in strategies)
    else:
        results = [_task(inst, s, budgets, time_limit, gap) for s in strategies]
    front = Frontier(instance_name=inst.name)
    for strategy, sols in zip(strategies, results, strict=True):
        for budget, sol in zip(budgets, sols, strict=True):
            report = check_solution(with_budget(inst, budget), sol, carbon=(strategy != "no-carbon"))
            if not report.ok:
                log.warning("frontier: %s at C = %g t fails the checker: %s", strategy, budget, report.format())
            front.solutions[(strategy, budget)] = sol
            front.rows.append({"strategy": strategy, "budget_t": budget, "objective": sol.objective,
                               "bound": sol.bound, "gap": sol.gap, "emissions_t": sol.emissions_t,
                               "status": sol.status.value, "wall_seconds": sol.wall_seconds,
                               "checked": bool(report.ok)})
    return front


def save_frontier(front: Frontier, path: str | os.PathLike, **attrs) -> Path:
    """Write the frontier's rows to an HDF5 results file (atomically), with provenance and ``attrs``."""
    path = Path(path)
    cols = front.columns()
    with atomic_hdf5(path) as f:
        for key, value in {**provenance(), **attrs}.items():
            f.attrs[key] = value
        f.attrs["schema"] = SCHEMA
        f.attrs["instance_name"] = front.instance_name
        for name in COLUMNS:
            values = cols[name]
            if name in ("strategy", "status"):
                write_array(f, name, values.astype(object))
            elif name == "checked":
                write_array(f, name, values.astype(bool))
            else:
                write_array(f, name, values.astype(np.float64))
    return path


def load_frontier(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict]:
    """The columns and the root attributes of a frontier results file."""
    with h5py.File(path, "r") as f:
        if f.attrs.get("schema") != SCHEMA:
            raise InputError(f"{path}: not a frontier results file (root attribute schema is not '{SCHEMA}')")
        cols = {}
        for name in COLUMNS:
            values = f[name][()]
            cols[name] = np.array([v.decode() if isinstance(v, bytes) else v for v in values], dtype=object) \
                if values.dtype.kind in "OS" else values
        attrs = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in f.attrs.items()}
    return cols, attrs


def to_dataframe(path: str | os.PathLike):
    """A frontier results file as a pandas DataFrame, one row per strategy and budget."""
    import pandas as pd

    return pd.DataFrame(load_frontier(path)[0])
