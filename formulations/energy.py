"""Constraints 5–8 of MODEL.md (and the emission terms of 9) for a set of sites, as SCIP row blocks.

Shared by the joint model (load given by the busy-GPU variables U) and by the per-site energy
subproblem (load given as a fixed IT power profile whose balance right-hand sides are updated in
place). Variables exist only where the asset does: a site without battery, generator, export or
renewables gets no such columns (its solution arrays are filled with the idle values), which keeps
the model as small as the instance allows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from carbonsched.instances.schema import Instance

from .fields import ENERGY_BINARY_FIELDS as BINARY_FIELDS
from .fields import ENERGY_FIELDS
from .scip_arrays import ArrayModel


def has_battery(inst: Instance) -> np.ndarray:
    """(S,) bool: the battery can move energy (power and energy capacity both positive)."""
    s = inst.sites
    return (s.bat_power_mw > 0) & (s.bat_energy_mwh > 0)


def has_generator(inst: Instance) -> np.ndarray:
    """(S,) bool: Gmax > 0."""
    return inst.sites.gen_max_mw > 0


def it_power_mw(inst: Instance, busy_gpus: np.ndarray, sites: np.ndarray | int | None = None) -> np.ndarray:
    """IT power P^IT in MW for busy GPUs U: (a·G + (b − a)·U) / 1000.

    ``busy_gpus`` is (S,T) for all sites, (n,T) for the rows of a ``sites`` array or (T,) for one site (an int);
    the result has its shape.
    """
    s = inst.sites
    busy = np.asarray(busy_gpus, dtype=np.float64)
    if sites is None:
        idle, gpus, busy_kw = s.gpu_idle_kw[:, None], s.gpus[:, None], s.gpu_busy_kw[:, None]
    else:
        idx = np.asarray(sites, dtype=np.int64)
        idle, gpus, busy_kw = (np.asarray(a[idx], dtype=np.float64)[..., None] for a in
                               (s.gpu_idle_kw, s.gpus, s.gpu_busy_kw))
        if idx.ndim == 0:
            idle, gpus, busy_kw = idle[0], gpus[0], busy_kw[0]
    return (idle * gpus + (busy_kw - idle) * busy) / 1000.0


def balance_power(inst: Instance, energy: dict[str, np.ndarray], it_load_mw: np.ndarray,
                  sites: np.ndarray | int | None = None) -> None:
    """Make dispatch rows meet the power balance (MODEL.md 4–5) for IT load ``it_load_mw`` exactly, in place.

    SCIP meets rows and bounds within its feasibility tolerance, which is relative to their size, and the
    extraction clips values to their bounds and zeroes flows beside a binary that rounds to 0 (a charge of
    2e-6 MW with the battery in discharge mode); the plan's load and the dispatch can then disagree by a few
    µW–kW, more than the checker's absolute 1e-6·max(1, rhs). The residual is absorbed here: a deficit by
    energy not served, a surplus by less ens, then less renewable used, then less grid import, then less
    generation above its minimum. Emissions never grow.

    Parameters
    ----------
    inst : Instance
        The instance.
    energy : dict of str to ndarray
        SOLUTION.md's ``/energy`` arrays: (S, T) for all sites, (n, T) for the rows of ``sites`` (an array)
        or (T,) for one site (an int).
    it_load_mw : ndarray
        IT power P^IT of the same rows, MW.
    sites : int or (n,) int array, optional
        Which sites the rows are (default all).
    """
    s = inst.sites
    idx = np.arange(inst.n_sites) if sites is None else np.atleast_1d(np.asarray(sites, dtype=np.int64))
    T = inst.n_periods
    e = {name: np.asarray(arr).reshape(-1, T) for name, arr in energy.items()}  # views: changed in place
    pue = s.pue[idx]
    load = pue * np.asarray(it_load_mw, dtype=np.float64).reshape(-1, T)
    residual = (load + e["charge"] + e["grid_export"] - e["renewable_used"] - e["gen"] - e["discharge"]
                - e["grid_import"] - e["ens"])
    e["ens"] += np.maximum(residual, 0.0)
    surplus = np.maximum(-residual, 0.0)
    gen_floor = s.gen_min_mw[idx, None] * e["gen_on"]
    for name, floor in (("ens", 0.0), ("renewable_used", 0.0), ("grid_import", 0.0), ("gen", gen_floor)):
        take = np.minimum(surplus, np.maximum(e[name] - floor, 0.0))
        e[name] -= take
        surplus -= take
    # anything left over (not seen in practice) stays: the checker names it


def idle_energy_arrays(inst: Instance, sites: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Energy arrays (S,T) of an idle microgrid: battery holds soc0, generator off, γ by grid side."""
    S, T = inst.n_sites, inst.n_periods
    out = {f: np.zeros((S, T), dtype=np.int8 if f in BINARY_FIELDS else np.float64) for f in ENERGY_FIELDS}
    out["soc"][:] = inst.sites.bat_soc0_mwh[:, None]
    # γ = 1 (import side) unless the site can only export.
    importing = ~((inst.sites.grid_import_mw <= 0) & (inst.sites.grid_export_mw > 0))
    out["grid_importing"][:] = importing[:, None].astype(np.int8)
    return out


@dataclass
class EnergyBlock:
    """Variable ids of the energy side of the block's sites, ``-1`` where a site has no such variable.

    Only the block's own rows are stored (``site_ids``, ``site_balance``: (len(sites), T), in ``sites``
    order): a site model of a 1,000-site instance would otherwise hold thirteen (S,T) id arrays, 2.5 MB,
    and a worker caches hundreds of site models. ``ids`` and ``balance`` give the (S,T) form (−1 for
    sites outside the block), built on each access. Rows are kept by family in ``rows`` (ids into the
    ArrayModel).
    """

    sites: np.ndarray
    site_ids: dict[str, np.ndarray]
    site_balance: np.ndarray
    rows: dict[str, np.ndarray]
    n_sites: int

    def _full(self, rows: np.ndarray) -> np.ndarray:
        out = np.full((self.n_sites, rows.shape[1]), -1, dtype=np.int64)
        out[self.sites] = rows
        return out

    @property
    def ids(self) -> dict[str, np.ndarray]:
        """Variable ids (S,T) by field, −1 outside the block or where the variable does not exist."""
        return {name: self._full(rows) for name, rows in self.site_ids.items()}

    @property
    def balance(self) -> np.ndarray:
        """Power-balance row ids (S,T), −1 outside the block."""
        return self._full(self.site_balance)

    def emission_terms(self, inst: Instance) -> tuple[np.ndarray, np.ndarray]:
        """(ids, coefficients) of Em = Δ Σ (κ·imp + e^gen·gen) over this block, t CO2 per unit."""
        dt, b = inst.period_hours, self.sites
        imp, gen = self.site_ids["grid_import"], self.site_ids["gen"]
        mi, mg = imp >= 0, gen >= 0
        coef_imp = dt * inst.sites.grid_co2[b]
        coef_gen = dt * np.broadcast_to(inst.sites.gen_co2[b][:, None], gen.shape)
        return np.concatenate([imp[mi], gen[mg]]), np.concatenate([coef_imp[mi], coef_gen[mg]])

    def extract(self, inst: Instance, values: np.ndarray, it_load_mw: np.ndarray | None = None
                ) -> dict[str, np.ndarray]:
        """Solution arrays (S,T) of SOLUTION.md from variable values; idle values elsewhere.

        With ``it_load_mw``, the IT power (MW) of the block's sites as (len(sites), T) rows in ``sites`` order,
        their dispatch is made to meet the power balance exactly (:func:`balance_power`): SCIP's tolerances
        and the clipping below otherwise leave residuals the checker refuses.
        """
        out = idle_energy_arrays(inst)
        b = self.sites
        rows = {name: arr[b] for name, arr in out.items()}
        for name, ids in self.site_ids.items():
            mask = ids >= 0
            val = values[ids[mask]]
            if name in BINARY_FIELDS:
                rows[name][mask] = np.rint(val).astype(np.int8)
            else:
                rows[name][mask] = np.maximum(val, 0.0)
        # SCIP's values may sit a feasibility tolerance outside a bound, or leave a tiny flow beside a
        # binary that rounds to 0; clip both so stored solutions meet MODEL.md's absolute 1e-6 bounds.
        s = inst.sites
        upper = {
            "grid_import": s.grid_import_mw[b, None], "grid_export": s.grid_export_mw[b, None],
            "charge": s.bat_power_mw[b, None], "discharge": s.bat_power_mw[b, None],
            "soc": s.bat_energy_mwh[b, None], "gen": s.gen_max_mw[b, None], "renewable_used": s.renewable_mw[b],
        }
        for name, ub in upper.items():
            np.minimum(rows[name], ub, out=rows[name])
        has = lambda f: self.site_ids[f] >= 0  # noqa: E731
        rows["charge"][has("bat_charging") & (rows["bat_charging"] == 0)] = 0.0
        rows["discharge"][has("bat_charging") & (rows["bat_charging"] == 1)] = 0.0
        rows["grid_import"][has("grid_importing") & (rows["grid_importing"] == 0)] = 0.0
        rows["grid_export"][has("grid_importing") & (rows["grid_importing"] == 1)] = 0.0
        rows["gen"][has("gen_on") & (rows["gen_on"] == 0)] = 0.0
        if it_load_mw is not None:
            balance_power(inst, rows, it_load_mw, b)
        for name, arr in rows.items():
            out[name][b] = arr
        return out


def _ids_where(am: ArrayModel, name: str, mask: np.ndarray, lb, ub, obj, vtype: str) -> np.ndarray:
    """Variables at the true entries of ``mask`` (S,T); returns (S,T) ids with −1 elsewhere."""
    ids = np.full(mask.shape, -1, dtype=np.int64)
    if mask.any():
        b = lambda a: np.broadcast_to(np.asarray(a, np.float64), mask.shape)[mask]  # noqa: E731
        ids[mask] = am.add_vars(name, b(lb), b(ub), b(obj), vtype)
    return ids


def add_masked_rows(am: ArrayModel, name: str, terms: list[tuple[np.ndarray, np.ndarray]], mask: np.ndarray,
                    lhs, rhs) -> np.ndarray:
    """One row ``lhs ≤ Σ coef·var ≤ rhs`` per true entry of ``mask`` (S,T), vectorized.

    Entries whose id is −1 are dropped, so absent variables simply vanish from a row.

    Parameters
    ----------
    am : ArrayModel
        The model the rows are added to.
    name : str
        Row family name (unique per model).
    terms : list of (ids, coefficient)
        Variable ids and coefficients, each broadcastable to ``mask.shape``.
    mask : np.ndarray
        (S,T) bool, where a row exists.
    lhs, rhs : float or np.ndarray
        Row bounds broadcastable to ``mask.shape`` (units of the row's terms).

    Returns
    -------
    np.ndarray
        Row ids (int64) in the order of ``mask``'s true entries.
    """
    n = int(mask.sum())
    if n == 0:
        return np.zeros(0, np.int64)
    row_of = np.full(mask.shape, -1, dtype=np.int64)
    row_of[mask] = np.arange(n)
    r_parts, c_parts, v_parts = [], [], []
    for ids, coef in terms:
        ids = np.broadcast_to(ids, mask.shape)
        coef = np.broadcast_to(np.asarray(coef, np.float64), mask.shape)
        keep = mask & (ids >= 0) & (coef != 0)
        r_parts.append(row_of[keep])
        c_parts.append(ids[keep])
        v_parts.append(coef[keep])
    mat = sp.coo_matrix(
        (np.concatenate(v_parts), (np.concatenate(r_parts), np.concatenate(c_parts))), shape=(n, am.n_vars)
    )
    lhs = np.broadcast_to(np.asarray(lhs, np.float64), mask.shape)[mask]
    rhs = np.broadcast_to(np.asarray(rhs, np.float64), mask.shape)[mask]
    return am.add_rows(name, mat, lhs, rhs)


def shifted_ids(ids: np.ndarray, k: int) -> np.ndarray:
    """(S,T) variable ids ``k`` periods earlier: ``ids[:, t − k]``, −1 where ``t − k < 0``."""
    out = np.full_like(ids, -1)
    if k < ids.shape[1]:
        out[:, k:] = ids[:, : ids.shape[1] - k]
    return out


def add_energy_block(
    am: ArrayModel,
    inst: Instance,
    sites: np.ndarray,
    *,
    busy_gpu_ids: np.ndarray | None = None,
    it_load_mw: np.ndarray | None = None,
    carbon_price: float | None = None,
) -> EnergyBlock:
    """Add the energy variables and constraints 5–8 of ``sites`` to ``am``.

    Parameters
    ----------
    am : ArrayModel
        Model (maximization) to extend.
    inst : Instance
        Source of all site data.
    sites : (n,) int array
        Site indices modelled here.
    busy_gpu_ids : (S,T) int array, optional
        Ids of the busy-GPU variables U; the facility load is then pue·(a·G + (b−a)·U)/1000.
    it_load_mw : (S,T) float array, optional
        Fixed IT power P^IT in MW instead (exactly one of the two must be given).
    carbon_price : float, optional
        τ in $/t put on emissions in the objective (default: the instance's).

    Returns
    -------
    EnergyBlock
    """
    if (busy_gpu_ids is None) == (it_load_mw is None):
        raise ValueError("give exactly one of busy_gpu_ids and it_load_mw")
    s = inst.sites
    S, T, dt = inst.n_sites, inst.n_periods, inst.period_hours
    tau = inst.carbon_price if carbon_price is None else carbon_price
    in_block = np.zeros(S, dtype=bool)
    in_block[np.asarray(sites, dtype=np.int64)] = True
    site_t = np.broadcast_to(in_block[:, None], (S, T))
    col = lambda a: np.asarray(a, np.float64)[:, None]  # noqa: E731  (per-site column, broadcast over t)

    bat = has_battery(inst)[:, None] & site_t
    gen_site = has_generator(inst)[:, None] & site_t
    can_imp = (s.grid_import_mw > 0)[:, None] & site_t
    can_exp = (s.grid_export_mw > 0)[:, None] & site_t
    ids: dict[str, np.ndarray] = {}
    ids["grid_import"] = _ids_where(am, "imp", can_imp, 0, col(s.grid_import_mw),
                                    -dt * (s.price_buy + tau * s.grid_co2), "C")
    ids["grid_export"] = _ids_where(am, "exp", can_exp, 0, col(s.grid_export_mw), dt * s.price_sell, "C")
    ids["grid_importing"] = _ids_where(am, "gamma", can_imp & can_exp, 0, 1, 0, "B")
    ids["charge"] = _ids_where(am, "ch", bat, 0, col(s.bat_power_mw), -dt * col(s.bat_cost), "C")
    ids["discharge"] = _ids_where(am, "dis", bat, 0, col(s.bat_power_mw), -dt * col(s.bat_cost), "C")
    ids["bat_charging"] = _ids_where(am, "beta", bat, 0, 1, 0, "B")
    soc_lb = np.zeros((S, T))
    soc_lb[:, -1] = s.bat_soc0_mwh  # terminal condition soc_{T−1} ≥ soc0 as a bound
    ids["soc"] = _ids_where(am, "soc", bat, soc_lb, col(s.bat_energy_mwh), 0, "C")
    ids["gen"] = _ids_where(am, "gen", gen_site, 0, col(s.gen_max_mw), -dt * col(s.gen_cost + tau * s.gen_co2), "C")
    ids["gen_on"] = _ids_where(am, "on", gen_site, 0, 1, 0, "B")
    ids["gen_start"] = _ids_where(am, "su", gen_site, 0, 1, -col(s.gen_startup_cost), "B")
    ids["renewable_used"] = _ids_where(am, "w", (s.renewable_mw > 0) & site_t, 0, s.renewable_mw, 0, "C")
    ids["ens"] = _ids_where(am, "ens", site_t, 0, np.inf, -dt * inst.voll, "C")

    rows: dict[str, np.ndarray] = {}
    # 5. power balance: pue·P^IT + ch + exp − w − gen − dis − imp − ens = 0
    terms = [
        (ids["charge"], 1.0), (ids["grid_export"], 1.0), (ids["renewable_used"], -1.0), (ids["gen"], -1.0),
        (ids["discharge"], -1.0), (ids["grid_import"], -1.0), (ids["ens"], -1.0),
    ]
    if busy_gpu_ids is not None:
        terms.append((busy_gpu_ids, s.pue * col(s.gpu_busy_kw - s.gpu_idle_kw) / 1000.0))
        rhs = -s.pue * col(s.gpu_idle_kw * s.gpus) / 1000.0
    else:
        rhs = -s.pue * np.asarray(it_load_mw, np.float64)
    balance_rows = add_masked_rows(am, "balance", terms, site_t, rhs, rhs)
    balance = np.full((S, T), -1, dtype=np.int64)
    balance[site_t] = balance_rows
    rows["balance"] = balance_rows

    # 6. battery: soc_t − soc_{t−1} − Δ·η^c·ch + Δ/η^d·dis = soc0 at t = 0, else 0
    soc_prev = shifted_ids(ids["soc"], 1)
    rhs0 = np.zeros((S, T))
    rhs0[:, 0] = s.bat_soc0_mwh
    rows["soc"] = add_masked_rows(am, "socdyn", [(ids["soc"], 1.0), (soc_prev, -1.0),
                                                 (ids["charge"], -dt * col(s.bat_eta_charge)),
                                                 (ids["discharge"], dt / col(s.bat_eta_discharge))], bat, rhs0, rhs0)
    rows["charge_mode"] = add_masked_rows(am, "chmode", [(ids["charge"], 1.0),
                                                         (ids["bat_charging"], -col(s.bat_power_mw))],
                                          bat, -np.inf, 0.0)
    rows["discharge_mode"] = add_masked_rows(am, "dismode", [(ids["discharge"], 1.0),
                                                             (ids["bat_charging"], col(s.bat_power_mw))],
                                             bat, -np.inf, col(s.bat_power_mw))
    # 7. grid direction (only where both directions exist)
    both = can_imp & can_exp
    rows["import_mode"] = add_masked_rows(am, "impmode", [(ids["grid_import"], 1.0),
                                                          (ids["grid_importing"], -col(s.grid_import_mw))],
                                          both, -np.inf, 0.0)
    rows["export_mode"] = add_masked_rows(am, "expmode", [(ids["grid_export"], 1.0),
                                                          (ids["grid_importing"], col(s.grid_export_mw))],
                                          both, -np.inf, col(s.grid_export_mw))
    # 8. unit commitment
    rows["gen_max"] = add_masked_rows(am, "genmax", [(ids["gen"], 1.0), (ids["gen_on"], -col(s.gen_max_mw))],
                                      gen_site, -np.inf, 0.0)
    if (s.gen_min_mw[gen_site.any(axis=1)] > 0).any():
        rows["gen_min"] = add_masked_rows(am, "genmin", [(ids["gen"], 1.0), (ids["gen_on"], -col(s.gen_min_mw))],
                                          gen_site & (s.gen_min_mw > 0)[:, None], 0.0, np.inf)
    on, su = ids["gen_on"], ids["gen_start"]
    rows["startup"] = add_masked_rows(am, "startup", [(su, 1.0), (on, -1.0), (shifted_ids(on, 1), 1.0)],
                                      gen_site, 0.0, np.inf)
    rows.update(add_min_up_down_rows(am, inst, gen_site, on, su))
    block = np.flatnonzero(in_block)
    return EnergyBlock(sites=block, site_ids={name: arr[block] for name, arr in ids.items()},
                       site_balance=balance[block], rows=rows, n_sites=S)


def add_min_up_down_rows(am: ArrayModel, inst: Instance, gen_site: np.ndarray, on: np.ndarray,
                         su: np.ndarray) -> dict[str, np.ndarray]:
    """Minimum up/down rows: Σ_{τ=t−UT+1..t} su_τ ≤ on_t and Σ_{τ=t−DT+1..t} su_τ ≤ 1 − on_{t−DT}.

    Sites are grouped by their UT (DT) value so each group is one vectorized block. With UT = 1 the
    up row reads su_t ≤ on_t, which the start-up row already implies only together with on_{t−1};
    it is kept because MODEL.md states it for every t.

    Returns
    -------
    dict
        ``{"min_up": row ids, "min_down": row ids}``.
    """
    s = inst.sites
    rows: dict[str, list[np.ndarray]] = {"min_up": [], "min_down": []}
    for key, durations in (("min_up", s.gen_min_up), ("min_down", s.gen_min_down)):
        for length in np.unique(durations[gen_site.any(axis=1)]):
            mask = gen_site & (durations == length)[:, None]
            terms = [(shifted_ids(su, k), 1.0) for k in range(int(length))]
            if key == "min_up":
                terms.append((on, -1.0))
                rhs = 0.0
            else:
                terms.append((shifted_ids(on, int(length)), 1.0))
                rhs = 1.0
            rows[key].append(add_masked_rows(am, f"{key}{int(length)}", terms, mask, -np.inf, rhs))  # unique row names
    return {k: np.concatenate(v) if v else np.zeros(0, np.int64) for k, v in rows.items()}
