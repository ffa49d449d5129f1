"""Compute plans: job placements and inference routing, checked against the compute constraints.

A :class:`ComputePlan` is what placement heuristics, baselines and decomposition masters produce;
:func:`formulations.evaluate` turns one into a scored Solution with optimal energy dispatch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from carbonsched.errors import CarbonschedError
from carbonsched.instances.schema import Instance

#: Absolute tolerance (GPUs) of MODEL.md's feasibility rule, scaled by max(1, |rhs|).
TOL = 1e-6


class PlanError(CarbonschedError, ValueError):
    """A compute plan breaks a compute constraint (names the job, class, site and period)."""


@dataclass
class ComputePlan:
    """Where and when each job runs and how inference is routed.

    Attributes
    ----------
    job_site : (J,) int
        Site index of job j, −1 when not scheduled.
    job_start : (J,) int
        Start period of job j, −1 when not scheduled.
    served : (K,S,T) float
        GPUs of site i serving class k in period t (y); unserved demand is λ − Σ_i y.
    """

    job_site: np.ndarray
    job_start: np.ndarray
    served: np.ndarray

    def __post_init__(self) -> None:
        self.job_site = index_array("plan.job_site", self.job_site)
        self.job_start = index_array("plan.job_start", self.job_start)
        self.served = number_array("plan.served", self.served)

    @classmethod
    def from_solution(cls, sol) -> ComputePlan:
        """The compute part of a Solution."""
        return cls(job_site=sol.job_site.copy(), job_start=sol.job_start.copy(), served=sol.served.copy())

    @classmethod
    def from_arrays(cls, inst: Instance, job_site=None, job_start=None, served=None) -> ComputePlan:
        """A plan of ``inst`` from whatever arrays are given; the rest is empty.

        Parameters
        ----------
        inst : Instance
            Gives the shapes J, K, S, T.
        job_site, job_start : (J,) int array-like, optional
            Site and start period per job (−1: not scheduled; default all −1).
        served : (K,S,T) float array-like, optional
            GPUs serving class k at site i in period t (default 0: nothing served).
        """
        empty = cls.empty(inst)
        return cls(job_site=empty.job_site if job_site is None else np.array(job_site, dtype=np.int64),
                   job_start=empty.job_start if job_start is None else np.array(job_start, dtype=np.int64),
                   served=empty.served if served is None else np.array(served, dtype=np.float64))

    def copy(self) -> ComputePlan:
        """A deep copy (the arrays are copied)."""
        return ComputePlan(self.job_site.copy(), self.job_start.copy(), self.served.copy())

    def free_gpus(self, inst: Instance) -> np.ndarray:
        """GPUs (S,T) left free at each site and period: G_i − U_{i,t}."""
        return inst.sites.gpus[:, None].astype(np.float64) - self.busy_gpus(inst)

    @classmethod
    def empty(cls, inst: Instance) -> ComputePlan:
        """No job scheduled, nothing served."""
        J, K, S, T = inst.n_jobs, inst.n_classes, inst.n_sites, inst.n_periods
        return cls(np.full(J, -1), np.full(J, -1), np.zeros((K, S, T)))

    def unserved(self, inst: Instance) -> np.ndarray:
        """u = λ − Σ_i y, (K,T) GPUs (clipped at 0 against round-off)."""
        return np.maximum(inst.inference.demand - self.served.sum(axis=1), 0.0)

    def busy_gpus(self, inst: Instance) -> np.ndarray:
        """U (S,T): GPUs busy with jobs and inference."""
        return job_gpus(inst, self.job_site, self.job_start) + self.served.sum(axis=0)

    def validate(self, inst: Instance) -> ComputePlan:
        """Raise PlanError at the first broken compute constraint; return self otherwise."""
        check_plan(inst, self)
        return self


def index_array(name: str, values) -> np.ndarray:
    """``values`` as an int64 array; PlanError naming ``name`` for non-numbers, NaN, fractions (1.7) or overflow."""
    try:
        arr = np.asarray(values)
    except (TypeError, ValueError) as exc:
        raise PlanError(f"{name}: must be an integer array ({exc})") from None
    if arr.dtype.kind == "b" or arr.dtype.kind not in "iuf":
        raise PlanError(f"{name}: must be an integer array, got dtype {arr.dtype}")
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr) | (arr != np.rint(arr))
        if bad.any():
            idx = tuple(int(i) for i in np.argwhere(bad)[0])
            raise PlanError(f"{name}{list(idx)}: must be an integer (got {arr[idx]!r})")
    limit = np.iinfo(np.int64).max
    if arr.size and (arr.max() > limit or arr.min() < -limit):
        raise PlanError(f"{name}: values must fit in a 64-bit integer")
    return arr.astype(np.int64)


def number_array(name: str, values) -> np.ndarray:
    """``values`` as a float64 array; PlanError naming ``name`` for anything that is not numbers."""
    try:
        arr = np.asarray(values)
    except (TypeError, ValueError) as exc:
        raise PlanError(f"{name}: must be a numeric array ({exc})") from None
    if arr.dtype.kind not in "biuf":
        raise PlanError(f"{name}: must be a numeric array, got dtype {arr.dtype}")
    return arr.astype(np.float64)


def job_gpus(inst: Instance, job_site: np.ndarray, job_start: np.ndarray) -> np.ndarray:
    """GPUs (S,T) occupied by scheduled jobs."""
    S, T = inst.n_sites, inst.n_periods
    jb = inst.jobs
    sched = np.flatnonzero(job_site >= 0)
    dur = jb.duration[sched]
    j = np.repeat(sched, dur)
    step = np.arange(j.size) - np.repeat(np.cumsum(dur) - dur, dur)
    t = job_start[j] + step
    ok = (t >= 0) & (t < T)
    out = np.zeros(S * T)
    np.add.at(out, job_site[j[ok]] * T + t[ok], jb.gpus[j[ok]].astype(np.float64))
    return out.reshape(S, T)


def gpus_beside_jobs(inst: Instance, job_site: np.ndarray, job_start: np.ndarray) -> np.ndarray:
    """GPUs (S,T) left for inference beside the scheduled jobs: G_i minus the jobs' GPUs."""
    return inst.sites.gpus[:, None].astype(np.float64) - job_gpus(inst, job_site, job_start)


def check_plan(inst: Instance, plan: ComputePlan) -> None:
    """Check constraints 1–3 of MODEL.md for ``plan``; raise PlanError naming what breaks."""
    if not isinstance(plan, ComputePlan):
        raise PlanError(f"plan: must be a ComputePlan (got {type(plan).__name__})")
    J, K, S, T = inst.n_jobs, inst.n_classes, inst.n_sites, inst.n_periods
    jb, inf = inst.jobs, inst.inference
    for name, arr, shape in (("job_site", plan.job_site, (J,)), ("job_start", plan.job_start, (J,)),
                             ("served", plan.served, (K, S, T))):
        if arr.shape != shape:
            raise PlanError(f"plan.{name}: shape must be {shape}, got {arr.shape}")
    if not np.isfinite(plan.served).all():
        k, i, t = np.argwhere(~np.isfinite(plan.served))[0]
        raise PlanError(f"plan.served[{k}, {i}, {t}]: must be finite (class {inf.name[k]}, site {inst.sites.name[i]})")
    names = jb.name
    for name, arr in (("job_site", plan.job_site), ("job_start", plan.job_start)):
        below = np.flatnonzero(arr < -1)
        if below.size:
            j = int(below[0])
            raise PlanError(f"plan.{name}[{j}]: must be >= -1 (-1: not scheduled), got {arr[j]} (job {names[j]})")
    for j in range(J):
        i, s = int(plan.job_site[j]), int(plan.job_start[j])
        if (i < 0) != (s < 0):
            raise PlanError(f"job {names[j]} (index {j}): site and start must both be −1 or both be set")
        if i < 0:
            if jb.mandatory[j]:
                raise PlanError(f"job {names[j]} (index {j}): mandatory job is not scheduled")
            continue
        if i >= S:
            raise PlanError(f"job {names[j]} (index {j}): site index {i} out of range (S = {S})")
        if not jb.allowed[j, i]:
            raise PlanError(f"job {names[j]} (index {j}): site {inst.sites.name[i]} is not among its allowed sites")
        if s < jb.release[j] or s + jb.duration[j] > jb.deadline[j]:
            raise PlanError(
                f"job {names[j]} (index {j}): start {s} outside its window "
                f"{jb.release[j]}..{jb.deadline[j] - jb.duration[j]}"
            )
    if K:
        slo = inst.slo_mask()
        neg = plan.served < -TOL
        if neg.any():
            k, i, t = np.argwhere(neg)[0]
            raise PlanError(f"class {inf.name[k]}, site {inst.sites.name[i]}, period {t}: served must be >= 0")
        outside = (~slo[:, :, None]) & (plan.served > TOL)
        if outside.any():
            k, i, t = np.argwhere(outside)[0]
            raise PlanError(
                f"class {inf.name[k]}, site {inst.sites.name[i]}, period {t}: routed outside the latency SLO "
                f"({inf.latency_ms[k, i]:g} ms > {inf.latency_slo_ms[k]:g} ms)"
            )
        total = plan.served.sum(axis=1)
        over = total > inf.demand + TOL * np.maximum(1.0, inf.demand)
        if over.any():
            k, t = np.argwhere(over)[0]
            raise PlanError(
                f"class {inf.name[k]}, period {t}: serves {total[k, t]:g} GPUs, more than its demand "
                f"{inf.demand[k, t]:g}"
            )
    busy = plan.busy_gpus(inst)
    cap = inst.sites.gpus[:, None].astype(np.float64)
    over = busy > cap + TOL * np.maximum(1.0, cap)
    if over.any():
        i, t = np.argwhere(over)[0]
        raise PlanError(
            f"site {inst.sites.name[i]}, period {t}: GPU capacity exceeded ({busy[i, t]:g} busy > {cap[i, 0]:g})"
        )
