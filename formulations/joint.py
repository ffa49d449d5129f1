"""The joint MILP of MODEL.md (constraints 1–9, objective Z) built in SCIP from an Instance.

Variable handles are numpy id arrays indexed by meaning (job placements as parallel arrays
``x_job``, ``x_site``, ``x_start``; ``y`` as (K,S,T); ``u`` as (K,T); the busy-GPU count ``U`` as
(S,T); energy ids in :class:`~carbonsched.formulations.energy.EnergyBlock`), so any code maps a solver value
back to its meaning without parsing names. All rows are assembled as sparse index arrays.

Modelling note: the busy-GPU count U_{i,t} of constraint 3 is a variable with bounds [0, G_i]
defined by an equality row, so each job placement enters one capacity row per running period and
the power balance sees U with a single coefficient (instead of repeating every placement term).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from carbonsched.instances.schema import Instance

from .energy import EnergyBlock, add_energy_block, it_power_mw
from .plan import ComputePlan
from .scip_arrays import ArrayModel


@dataclass
class Placements:
    """All candidate placements (j, i, s) of MODEL.md's x variables, as parallel arrays."""

    job: np.ndarray
    site: np.ndarray
    start: np.ndarray

    @property
    def size(self) -> int:
        return int(self.job.size)

    def index_of(self, job: np.ndarray, site: np.ndarray, start: np.ndarray) -> np.ndarray:
        """Placement index of each (job, site, start) triple, −1 where it is not a candidate placement.

        Relies on the (job, site, start) order of :func:`enumerate_placements`.
        """
        job, site, start = (np.asarray(a, dtype=np.int64) for a in (job, site, start))
        if self.size == 0:
            return np.full(job.shape, -1, dtype=np.int64)
        n_site = int(max(self.site.max(), site.max(initial=0))) + 1
        n_start = int(max(self.start.max(), start.max(initial=0))) + 1
        keys = (self.job * n_site + self.site) * n_start + self.start
        query = (job * n_site + site) * n_start + start
        pos = np.minimum(np.searchsorted(keys, query), self.size - 1)
        return np.where((keys[pos] == query) & (start >= 0) & (site >= 0), pos, -1)


def compute_arrays(inst: Instance, pl: Placements, x: np.ndarray, y: np.ndarray,
                   values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(job_site, job_start, served) of a value vector: placements with x > 0.5, routing y ≥ 0."""
    job_site = np.full(inst.n_jobs, -1, dtype=np.int64)
    job_start = np.full(inst.n_jobs, -1, dtype=np.int64)
    chosen = np.flatnonzero(values[x] > 0.5) if pl.size else np.zeros(0, np.int64)
    job_site[pl.job[chosen]] = pl.site[chosen]
    job_start[pl.job[chosen]] = pl.start[chosen]
    served = np.zeros(y.shape)
    mask = y >= 0
    served[mask] = np.maximum(values[y[mask]], 0.0)
    return job_site, job_start, served


def usable_sites(inst: Instance) -> np.ndarray:
    """(J,S) bool: the job is allowed at the site and fits in its GPUs (g_j ≤ G_i)."""
    jb = inst.jobs
    return np.asarray(jb.allowed, dtype=bool) & (jb.gpus[:, None] <= inst.sites.gpus[None, :])


def enumerate_placements(inst: Instance) -> Placements:
    """Every (job, allowed site, allowed start) triple, ordered by job, then site, then start.

    Sites with fewer GPUs than the job needs (g_j > G_i) are left out: constraint 3 forbids x = 1 there,
    but the LP relaxation would otherwise spread a large job over several small sites in fractions
    (measured at 100 sites: 17 % of the placements, and a 0.25 % looser LP bound).
    """
    jb = inst.jobs
    n_starts = np.maximum(jb.deadline - jb.duration - jb.release + 1, 0)
    usable = usable_sites(inst)
    n_sites = usable.sum(axis=1)
    count = n_sites * n_starts
    total = int(count.sum())
    job = np.repeat(np.arange(inst.n_jobs), count)
    offset = np.repeat(np.cumsum(count) - count, count)
    q = np.arange(total) - offset
    starts_of_job = n_starts[job]
    site_rank = q // np.maximum(starts_of_job, 1)
    allowed_job, allowed_site = np.nonzero(usable)
    first_allowed = np.cumsum(n_sites) - n_sites
    site = allowed_site[first_allowed[job] + site_rank]
    start = jb.release[job] + q % np.maximum(starts_of_job, 1)
    return Placements(job=job.astype(np.int64), site=site.astype(np.int64), start=start.astype(np.int64))


def running_matrix(inst: Instance, pl: Placements) -> sp.csr_matrix:
    """(S·T, P) sparse: entry g_j where placement p occupies site i in period t (row i·T + t)."""
    jb, T = inst.jobs, inst.n_periods
    dur = jb.duration[pl.job]
    col = np.repeat(np.arange(pl.size), dur)
    step = np.arange(col.size) - np.repeat(np.cumsum(dur) - dur, dur)
    row = pl.site[col] * T + pl.start[col] + step
    vals = jb.gpus[pl.job][col].astype(np.float64)
    return sp.csr_matrix((vals, (row, col)), shape=(inst.n_sites * T, pl.size))


@dataclass
class JointModel:
    """The built joint model and its id arrays.

    Attributes
    ----------
    am : ArrayModel
        The SCIP model (``am.model`` is the PySCIPOpt ``Model``).
    placements : Placements
        Candidate placements; ``x`` holds their variable ids.
    x, y, u, busy : ndarray
        Ids of x (P,), y (K,S,T) with −1 outside S_k, u (K,T), U (S,T).
    energy : EnergyBlock
        Energy-side ids.
    rows : dict
        Row ids by constraint family (``job_once``, ``demand``, ``capacity``, ``carbon``, energy rows).
    """

    inst: Instance
    am: ArrayModel
    placements: Placements
    x: np.ndarray
    y: np.ndarray
    u: np.ndarray
    busy: np.ndarray
    energy: EnergyBlock
    rows: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def model(self):
        return self.am.model

    def values_of(self, sol) -> np.ndarray:
        """Variable values (id order) of a full Solution of this instance, e.g. to seed SCIP with it."""
        inst, pl = self.inst, self.placements
        out = np.zeros(self.am.n_vars)
        chosen = (sol.job_site[pl.job] == pl.site) & (sol.job_start[pl.job] == pl.start)
        out[self.x] = chosen.astype(float)
        mask = self.y >= 0
        out[self.y[mask]] = sol.served[mask]
        out[self.u] = sol.unserved
        busy = self.busy >= 0
        out[self.busy[busy]] = ComputePlan.from_solution(sol).busy_gpus(inst)[busy]
        for name, ids in self.energy.ids.items():
            have = ids >= 0
            out[ids[have]] = np.asarray(getattr(sol, name), dtype=float)[have]
        return out

    def extract(self, values: np.ndarray) -> dict[str, np.ndarray]:
        """Solution arrays of SOLUTION.md (jobs, inference, energy) from a value vector."""
        inst = self.inst
        job_site, job_start, served = compute_arrays(inst, self.placements, self.x, self.y, values)
        unserved = np.maximum(values[self.u], 0.0) if self.u.size else np.zeros(self.u.shape)
        busy = ComputePlan(job_site=job_site, job_start=job_start, served=served).busy_gpus(inst)
        energy = self.energy.extract(inst, values, it_power_mw(inst, busy)[self.energy.sites])
        return {
            "job_site": job_site,
            "job_start": job_start,
            "served": served,
            "unserved": unserved,
            "energy": energy,
        }


def serving_value(inst: Instance) -> np.ndarray:
    """(K, S) value of one GPU serving class k at site i for one period, $: Δ·(ρ_k − ω_k·L_{k,i}).

    The objective coefficient of y in MODEL.md; sites outside a class's SLO get the revenue alone (y is
    not a variable there).
    """
    inf = inst.inference
    lat = np.where(inst.slo_mask(), inf.latency_ms, 0.0) if inst.n_classes else np.zeros((0, inst.n_sites))
    return inst.period_hours * (inf.revenue[:, None] - inf.latency_cost[:, None] * lat)


@dataclass
class ComputeBlock:
    """Ids of the compute side (constraints 1–3) for a set of sites."""

    placements: Placements
    x: np.ndarray
    y: np.ndarray
    u: np.ndarray
    busy: np.ndarray
    rows: dict[str, np.ndarray]
    #: routing slot ids (n,) and the site and period of each (ordered by site, then period), when built with slots
    slots: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    slot_site: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    slot_period: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))


def add_compute_block(am: ArrayModel, inst: Instance, sites: np.ndarray | None = None, *,
                      coupling_rows: bool = True, with_unserved: bool = True,
                      routing_slots: np.ndarray | None = None) -> ComputeBlock:
    """Add x, y, u, U and constraints 1–3 restricted to ``sites`` (default all).

    Parameters
    ----------
    am : ArrayModel
        Model to extend (maximization; objective coefficients of Z are set on x, y, u).
    inst : Instance
        The instance.
    sites : (n,) int, optional
        Sites whose placements, routing and capacity rows are modelled (busy ids are −1 elsewhere).
    coupling_rows : bool
        Add the rows that couple sites: job-once (1) and demand balance (2). A Lagrangian site
        subproblem leaves them out (they are dualized).
    with_unserved : bool
        Create the unserved-demand variables u (not needed when demand rows are dualized).
    routing_slots : (S,T) int, optional
        Instead of one y per class, site and period, this many *routing slots* per site and period: GPUs
        serving whichever class the caller assigns to the slot by setting its bound and objective in place
        (bound 0 and objective 0 until then). Every class enters constraint 3 with coefficient −1, so the
        classes of one site-period are perfect substitutes there; a site subproblem whose demand rows are
        dualized needs only the few best of them (:mod:`formulations.site_milp`). ``y`` is then all −1 and
        the demand rows cannot be built (``coupling_rows`` must be False).
    """
    S, T, K, dt = inst.n_sites, inst.n_periods, inst.n_classes, inst.period_hours
    jb, inf = inst.jobs, inst.inference
    in_block = np.zeros(S, dtype=bool)
    in_block[np.arange(S) if sites is None else np.asarray(sites, dtype=np.int64)] = True

    pl = enumerate_placements(inst)
    keep = in_block[pl.site]
    pl = Placements(job=pl.job[keep], site=pl.site[keep], start=pl.start[keep])
    x = am.add_vars("x", 0.0, 1.0, jb.value[pl.job], "B") if pl.size else np.zeros(0, np.int64)

    slo = (inst.slo_mask() if K else np.zeros((0, S), dtype=bool)) & in_block[None, :]
    y = np.full((K, S, T), -1, dtype=np.int64)
    slots = slot_site = slot_period = np.zeros(0, np.int64)
    if routing_slots is not None:
        if coupling_rows:
            raise ValueError("routing slots replace the per-class routing columns; the demand rows need those")
        count = np.where(in_block[:, None], np.asarray(routing_slots, dtype=np.int64).reshape(S, T), 0)
        slot_site, slot_period = (np.repeat(a.ravel(), count.ravel()) for a in np.indices((S, T)))
        slots = am.add_vars("yslot", 0.0, np.zeros(slot_site.size), np.zeros(slot_site.size), "C")
    elif slo.any():
        y_obj = serving_value(inst)
        y_mask = np.broadcast_to(slo[:, :, None], (K, S, T))
        ub = np.broadcast_to(inf.demand[:, None, :], (K, S, T))[y_mask]
        y[y_mask] = am.add_vars("y", 0.0, ub, np.broadcast_to(y_obj[:, :, None], (K, S, T))[y_mask], "C")
    u = (am.add_vars("u", 0.0, inf.demand, np.broadcast_to(-dt * inf.penalty[:, None], (K, T)), "C")
         if with_unserved else np.full((K, T), -1, dtype=np.int64))
    busy = np.full((S, T), -1, dtype=np.int64)
    site_t = np.broadcast_to(in_block[:, None], (S, T))
    busy[site_t] = am.add_vars("U", 0.0, np.broadcast_to(inst.sites.gpus[:, None].astype(float), (S, T))[site_t],
                               0.0, "C")

    rows: dict[str, np.ndarray] = {}
    if coupling_rows and inst.n_jobs:
        # 1. each job at most once (exactly once if mandatory)
        a = sp.csr_matrix((np.ones(pl.size), (pl.job, x)), shape=(inst.n_jobs, am.n_vars))
        rows["job_once"] = am.add_rows("job_once", a, np.where(jb.mandatory, 1.0, -np.inf), 1.0)
    if coupling_rows and K:
        # 2. inference demand: Σ_i y + u = λ
        ym = y >= 0
        kk, _, tt = np.nonzero(ym)
        r = np.concatenate([kk * T + tt, np.arange(K * T)])
        c = np.concatenate([y[ym], u.ravel()])
        a = sp.csr_matrix((np.ones(r.size), (r, c)), shape=(K * T, am.n_vars))
        rows["demand"] = am.add_rows("demand", a, inf.demand.ravel(), inf.demand.ravel())
    # 3. U_{i,t} − Σ g_j x − Σ_k y = 0, U ≤ G_i by its bound (rows numbered i·T + t over the block's sites)
    run = running_matrix(inst, pl).tocoo()
    ym = y >= 0
    _, ii, tt = np.nonzero(ym)
    ii, tt = np.concatenate([ii, slot_site]), np.concatenate([tt, slot_period])
    row_of = np.full(S * T, -1, dtype=np.int64)
    row_of[site_t.ravel()] = np.arange(int(site_t.sum()))
    r = np.concatenate([row_of[np.flatnonzero(site_t.ravel())], row_of[run.row], row_of[ii * T + tt]])
    c = np.concatenate([busy[site_t], x[run.col], y[ym], slots])
    v = np.concatenate([np.ones(int(site_t.sum())), -run.data, -np.ones(ii.size)])
    mat = sp.csr_matrix((v, (r, c)), shape=(int(site_t.sum()), am.n_vars))
    rows["capacity"] = am.add_rows("capacity", mat, 0.0, 0.0)
    return ComputeBlock(placements=pl, x=x, y=y, u=u, busy=busy, rows=rows, slots=slots, slot_site=slot_site,
                        slot_period=slot_period)


def drop_routing_columns(jm: JointModel, routing: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The joint model's columns without the routing columns that ``routing`` leaves out, renumbered.

    Parameters
    ----------
    jm : JointModel
        The model (usually recorded as arrays only).
    routing : (K,S,T) bool
        Routing columns to keep (entries where ``jm.y`` is −1 are ignored).

    Returns
    -------
    cols : (n,) int
        Kept column ids, increasing: the model without the others is ``A[:, cols]``.
    x : (P,) int
        Placement ids as positions in ``cols``.
    y : (K,S,T) int
        Routing ids as positions in ``cols``, −1 where absent or left out.
    """
    keep = np.ones(jm.am.n_vars, dtype=bool)
    exists = jm.y >= 0
    keep[jm.y[exists & ~routing]] = False
    position = np.cumsum(keep) - 1
    return np.flatnonzero(keep), position[jm.x], np.where(exists & routing, position[np.maximum(jm.y, 0)], -1)


def build_joint_model(inst: Instance, *, name: str | None = None, record: bool = False,
                      scip: bool = True) -> JointModel:
    """Build the joint MILP of MODEL.md for ``inst`` (maximize Z).

    Ablations are applied to the instance beforehand (see :mod:`formulations.baselines`), so this
    builder is the one definition of the model.

    Parameters
    ----------
    inst : Instance
        A validated instance.
    name : str, optional
        SCIP problem name (default: the instance name).
    record : bool
        Keep the model data, so that ``jm.am.recorded_arrays()`` gives it as arrays (LP relaxation).
    scip : bool
        Build it in SCIP (default); ``scip=False`` with ``record`` only records the arrays (``jm.model`` is None).
    """
    am = ArrayModel(name or inst.name, maximize=True, record=record, scip=scip)
    cb = add_compute_block(am, inst)
    rows = dict(cb.rows)
    # 4–8. energy side of every site, load from U
    energy = add_energy_block(am, inst, np.arange(inst.n_sites), busy_gpu_ids=cb.busy)
    rows.update({f"energy_{k}": v for k, v in energy.rows.items()})
    # 9. carbon budget
    if np.isfinite(inst.carbon_budget_t):
        cid, coef = energy.emission_terms(inst)
        a = sp.csr_matrix((coef, (np.zeros(cid.size, np.int64), cid)), shape=(1, am.n_vars))
        rows["carbon"] = am.add_rows("carbon", a, -np.inf, inst.carbon_budget_t)
    return JointModel(inst=inst, am=am, placements=cb.placements, x=cb.x, y=cb.y, u=cb.u, busy=cb.busy,
                      energy=energy, rows=rows)
