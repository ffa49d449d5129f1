"""The Benders master: compute placement, commitment binaries, carbon allowances and site values θ.

Master variables: x, y, u and the busy GPUs U (constraints 1–3, as in the joint model); per site the
commitment binaries of the energy side — grid direction γ, battery mode β, generator status ``on`` and
start-up ``su`` with the start-up and minimum up/down rows, which involve binaries only; a carbon
allowance e_i ≥ 0 per site with Σ e_i ≤ C; and one value variable θ_i per site (multi-cut), bounded by
Benders cuts θ_i ≤ constant + Σ coef·(U_i, β_i, γ_i, on_i, e_i). Start-up costs stay in the master
objective (su is a master variable); every other energy term is in θ. With the binaries here the
site subproblems are LPs (:mod:`formulations.site_lp`), so the cuts are exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from carbonsched.instances.schema import Instance

from .energy import add_masked_rows, add_min_up_down_rows, has_battery, has_generator, shifted_ids
from .joint import ComputeBlock, add_compute_block, compute_arrays, serving_value
from .plan import ComputePlan
from .scip_arrays import ArrayModel
from .site_lp import MASTER_KINDS


def theta_upper_bound(inst: Instance) -> np.ndarray:
    """(S,) valid upper bound on each site's energy value φ_i, $: every term but sales and negative costs
    is ≤ 0, so φ_i ≤ Δ Σ_t (M^exp·max(π^sell, 0) + M^imp·max(−π^buy − τκ, 0) + Gmax·max(−c^gen − τe, 0))."""
    s, dt, tau = inst.sites, inst.period_hours, inst.carbon_price
    sell = s.grid_export_mw[:, None] * np.maximum(s.price_sell, 0.0)
    buy = s.grid_import_mw[:, None] * np.maximum(-(s.price_buy + tau * s.grid_co2), 0.0)
    gen = (s.gen_max_mw * np.maximum(-(s.gen_cost + tau * s.gen_co2), 0.0))[:, None]
    return dt * (sell + buy + gen).sum(axis=1) + 1.0


@dataclass
class Cut:
    """θ_site ≤ constant + Σ_kind coef[kind]·m[kind] (coef (5, T); allowance in column 0)."""

    site: int
    constant: float
    coef: np.ndarray


@dataclass
class LagrangianCut:
    """θ_i + (site i's other terms of Z) − μ·X_i − π·Y_i − λ_C·e_i ≤ bound, over the master's variables of site i.

    ``bound`` is a dual bound of the Lagrangian site subproblem (:mod:`formulations.site_milp`) at the
    multipliers (μ (J,) $ per job, π (K, T) $ per GPU-period, λ_C $/t): every configuration of site i
    that the full model admits (integral jobs and commitments, θ_i its energy value, emissions within its
    allowance e_i) scores at most ``bound`` under them, so the row holds at every feasible master point.
    Summed over the sites it gives the master the Lagrangian bound at these multipliers, which the
    energy-side Benders cuts alone cannot (their master LP is the joint LP).
    """

    site: int
    mu: np.ndarray
    pi: np.ndarray
    lam_c: float
    bound: float


@dataclass
class BendersMaster:
    """The built master and its id arrays (−1 where a site has no such variable)."""

    inst: Instance
    am: ArrayModel
    compute: ComputeBlock
    bat_charging: np.ndarray
    grid_importing: np.ndarray
    gen_on: np.ndarray
    gen_start: np.ndarray
    allowance: np.ndarray
    theta: np.ndarray
    n_cuts: int = 0

    @property
    def model(self):
        return self.am.model

    def master_ids(self, site: int) -> np.ndarray:
        """(5, T) ids of the master quantities of ``site`` in MASTER_KINDS order (−1 where absent)."""
        T = self.inst.n_periods
        ids = np.full((len(MASTER_KINDS), T), -1, dtype=np.int64)
        ids[0] = self.compute.busy[site]
        ids[1] = self.bat_charging[site]
        ids[2] = self.grid_importing[site]
        ids[3] = self.gen_on[site]
        ids[4, 0] = self.allowance[site]
        return ids

    def cut_rows(self, cuts: list[Cut]) -> tuple[sp.csr_matrix, np.ndarray]:
        """Cuts as rows θ_i − Σ coef·m ≤ constant: (matrix over master ids, right-hand sides).

        A coefficient on a quantity the master does not have (a fixed binary, no allowance) multiplies
        that quantity's fixed value, which :meth:`fixed_values` gives; it is moved to the constant.
        """
        rows, cols, vals, rhs = [], [], [], []
        fixed = self.fixed_values()
        for r, cut in enumerate(cuts):
            ids = self.master_ids(cut.site)
            present = (ids >= 0) & (cut.coef != 0)
            const = cut.constant + float((cut.coef * np.where(ids >= 0, 0.0, fixed[cut.site])).sum())
            rows.append(np.full(int(present.sum()) + 1, r))
            cols.append(np.concatenate([[self.theta[cut.site]], ids[present]]))
            vals.append(np.concatenate([[1.0], -cut.coef[present]]))
            rhs.append(const)
        if not cuts:
            return sp.csr_matrix((0, self.am.n_vars)), np.zeros(0)
        mat = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                            shape=(len(cuts), self.am.n_vars))
        return mat, np.asarray(rhs)

    def add_cuts(self, cuts: list[Cut]) -> None:
        """Add cuts to the SCIP master (which must be in problem stage)."""
        if not cuts:
            return
        mat, rhs = self.cut_rows(cuts)
        self.am.add_rows("cut", mat, -np.inf, rhs)
        self.n_cuts += len(cuts)

    def lagrangian_rows(self, cuts: list[LagrangianCut]) -> tuple[sp.csr_matrix, np.ndarray]:
        """Lagrangian cuts as rows (matrix over master ids, right-hand sides).

        A site variable's coefficient is its objective coefficient in the master (job value, inference
        revenue less latency cost, start-up cost, 1 on θ_i) less its multiplier term (a test compares
        them with the master's objective).
        """
        if not cuts:
            return sp.csr_matrix((0, self.am.n_vars)), np.zeros(0)
        inst, cb = self.inst, self.compute
        pl = cb.placements
        value = serving_value(inst)
        rows, cols, vals, rhs = [], [], [], []
        for r, cut in enumerate(cuts):
            i = cut.site
            at = np.flatnonzero(pl.site == i)
            x_ids = np.asarray(cb.x)[at]
            x_coef = inst.jobs.value[pl.job[at]] - cut.mu[pl.job[at]]
            y_site = np.asarray(cb.y)[:, i, :]
            have = y_site >= 0
            y_ids = y_site[have]
            y_coef = np.broadcast_to(value[:, i, None], y_site.shape)[have] - cut.pi[have]
            su_ids = self.gen_start[i][self.gen_start[i] >= 0]
            su_coef = np.full(su_ids.size, -float(inst.sites.gen_startup_cost[i]))
            ids = [x_ids, y_ids, su_ids, [self.theta[i]]]
            coef = [x_coef, y_coef, su_coef, [1.0]]
            if self.allowance[i] >= 0 and cut.lam_c != 0.0:
                ids.append([self.allowance[i]])
                coef.append([-cut.lam_c])
            ids_all = np.concatenate([np.asarray(a, dtype=np.int64) for a in ids])
            rows.append(np.full(ids_all.size, r))
            cols.append(ids_all)
            vals.append(np.concatenate([np.asarray(a, dtype=np.float64) for a in coef]))
            rhs.append(cut.bound)
        mat = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                            shape=(len(cuts), self.am.n_vars))
        return mat, np.asarray(rhs, dtype=np.float64)

    def add_lagrangian_cuts(self, cuts: list[LagrangianCut]) -> None:
        """Add Lagrangian cuts to the SCIP master (which must be in problem stage)."""
        if cuts:
            mat, rhs = self.lagrangian_rows(cuts)
            self.am.add_rows("lagcut", mat, -np.inf, rhs)

    def fixed_values(self) -> np.ndarray:
        """(S, 5, T) values of master quantities that are not variables (γ = 1 on import-only sites)."""
        inst = self.inst
        S, T = inst.n_sites, inst.n_periods
        out = np.zeros((S, len(MASTER_KINDS), T))
        s = inst.sites
        importing = ~((s.grid_import_mw <= 0) & (s.grid_export_mw > 0))
        out[:, 2, :] = importing[:, None]
        out[:, 4, 0] = inst.carbon_budget_t if math.isfinite(inst.carbon_budget_t) else 1e15
        return out

    def plan(self, values: np.ndarray) -> ComputePlan:
        """The compute plan (job placements, routing) of a master solution's values (id order)."""
        inst, cb = self.inst, self.compute
        job_site, job_start, served = compute_arrays(inst, cb.placements, cb.x, cb.y, values)
        # round-off must not push a class above its demand
        total = served.sum(axis=1)
        over = total > inst.inference.demand
        if over.any():
            served *= np.where(over, inst.inference.demand / np.maximum(total, 1e-300), 1.0)[:, None, :]
        return ComputePlan(job_site=job_site, job_start=job_start, served=served)

    def point(self, values: np.ndarray) -> np.ndarray:
        """(S, 5, T) master point from a value vector (fixed values where no variable)."""
        out = self.fixed_values()
        for i in range(self.inst.n_sites):
            ids = self.master_ids(i)
            have = ids >= 0
            out[i][have] = values[ids[have]]
        return out


def build_benders_master(inst: Instance, cuts: list[Cut] | None = None, *, relax: bool = False,
                         record: bool = False) -> BendersMaster:
    """Build the master problem (maximize) with the given cuts.

    Parameters
    ----------
    inst : Instance
        The instance.
    cuts : list of Cut, optional
        Cuts to start with.
    relax : bool
        Continuous relaxation of every binary in the SCIP model.
    record : bool
        Keep the model data so that ``master.am.lp_relaxation()`` gives the master LP (root cut loop).
    """
    S, T = inst.n_sites, inst.n_periods
    s = inst.sites
    am = ArrayModel(f"{inst.name}-benders-master", maximize=True, record=record)
    compute = add_compute_block(am, inst)
    site_t = np.ones((S, T), dtype=bool)
    bat = has_battery(inst)[:, None] & site_t
    gen = has_generator(inst)[:, None] & site_t
    both = ((s.grid_import_mw > 0) & (s.grid_export_mw > 0))[:, None] & site_t
    vt = "C" if relax else "B"

    def binaries(name, mask, obj=0.0):
        ids = np.full((S, T), -1, dtype=np.int64)
        if mask.any():
            ids[mask] = am.add_vars(name, 0.0, 1.0, np.broadcast_to(obj, (S, T))[mask], vt)
        return ids

    beta = binaries("beta", bat)
    gamma = binaries("gamma", both)
    on = binaries("on", gen)
    su = binaries("su", gen, -s.gen_startup_cost[:, None])
    add_masked_rows(am, "startup", [(su, 1.0), (on, -1.0), (shifted_ids(on, 1), 1.0)], gen, 0.0, np.inf)
    add_min_up_down_rows(am, inst, gen, on, su)

    allowance = np.full(S, -1, dtype=np.int64)
    if math.isfinite(inst.carbon_budget_t):
        allowance[:] = am.add_vars("e", np.zeros(S), inst.carbon_budget_t, 0.0, "C")
        am.add_rows("budget", sp.csr_matrix((np.ones(S), (np.zeros(S, np.int64), allowance)),
                                            shape=(1, am.n_vars)), -np.inf, inst.carbon_budget_t)
    theta = am.add_vars("theta", -np.inf, theta_upper_bound(inst), 1.0, "C")
    master = BendersMaster(inst=inst, am=am, compute=compute, bat_charging=beta, grid_importing=gamma,
                           gen_on=on, gen_start=su, allowance=allowance, theta=theta)
    if relax:
        m = am.model
        for v in am.variables():
            if v.vtype() != "CONTINUOUS":
                m.chgVarType(v, "C")
    master.add_cuts(cuts or [])
    return master
