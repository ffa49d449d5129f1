"""The per-site energy LP of the Benders split: dispatch of one site for fixed compute and commitment.

Given the busy GPUs U_{i,t}, the commitment binaries (γ grid direction, β battery mode, ``on``
generator status) and the site's carbon allowance e_i, what remains of constraints 5–8 and the site's
share of 9 is a linear program in imp, exp, ch, dis, soc, gen, w, ens. Its right-hand sides are affine
in those master quantities, one master quantity per row, so a dual solution y gives the cut

    θ_i ≤ φ_i(m̄) + Σ_r y_r · coef_r · (m_{v(r)} − m̄_{v(r)}),

valid for every master point m because the LP value function is concave in its right-hand sides and
y stays dual feasible when only right-hand sides change (classical Benders; finite and exact once the
binaries are integral). Two penalized slacks keep the LP feasible for every master point: ``dump``
(surplus energy when committed generation exceeds what the site can absorb) and ``carbon_slack``
(emissions above the allowance when committed minimum generation forces them). Their penalty is
larger than any gain they could buy, so at a master point that the full model admits they are zero,
and the cuts remain valid upper bounds everywhere (a penalized LP is a relaxation of the true
subproblem wherever the latter is feasible, and anything bounds an infeasible point).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from carbonsched.instances.schema import Instance
from pyscipopt import LP, SCIP_LPPARAM

from .energy import has_battery, has_generator

#: Column blocks of the LP, each of length T, in this order; ``carbon_slack`` is one last column.
COLUMNS = ("grid_import", "grid_export", "charge", "discharge", "soc", "gen", "renewable_used", "ens", "dump")
#: Master quantities a row side can depend on: U (busy GPUs), β, γ, on (per period), e (allowance).
MASTER_KINDS = ("busy", "bat_charging", "grid_importing", "gen_on", "allowance")


def dump_penalty(inst: Instance) -> tuple[float, float]:
    """Penalties on dumped energy ($/MWh) and carbon slack ($/t).

    A dumped MWh can be worth at most the dearest use of energy on the site (VOLL, prices, fuel,
    carbon), and a tonne of allowance at most that per MWh divided by the cleanest positive emission
    intensity; twice those figures make both slacks unprofitable wherever the full model is feasible.
    They stay as small as that allows: larger penalties only make the cut coefficients badly scaled.
    """
    s = inst.sites
    dirtiest = float(max(s.grid_co2.max(), s.gen_co2.max()))
    per_mwh = 2.0 * (inst.voll + float(np.abs(s.price_buy).max()) + float(np.abs(s.price_sell).max())
                     + float(np.abs(s.gen_cost).max()) + inst.carbon_price * dirtiest)
    intensities = np.concatenate([s.grid_co2.ravel(), s.gen_co2])
    cleanest = float(intensities[intensities > 0].min()) if (intensities > 0).any() else 1.0
    return per_mwh, per_mwh / cleanest


@dataclass
class SiteLPResult:
    """Outcome of one site LP solve.

    Attributes
    ----------
    value : float
        φ_i at the master point, $ (energy terms of Z incl. carbon price, minus penalties).
    coef : dict of str to ndarray
        Cut coefficients on the master quantities (``busy``, ``bat_charging``, ``grid_importing``,
        ``gen_on``: (T,); ``allowance``: (1,)).
    constant : float
        Cut constant: θ_i ≤ constant + Σ coef·m.
    primal : dict of str to ndarray
        Dispatch (T,) by column name; ``dump`` and ``carbon_slack`` > 0 flag a master point the full
        model does not admit.
    """

    value: float
    coef: dict[str, np.ndarray]
    constant: float
    primal: dict[str, np.ndarray]
    slack: float


class SiteEnergyLP:
    """The energy LP of one site, built once and re-solved for new master points (sides changed in place).

    Parameters
    ----------
    inst : Instance
        The instance.
    site : int
        Site index.
    carbon_price : float, optional
        τ in $/t on emissions in the objective (default the instance's).
    with_allowance : bool
        Add the allowance row Σ Δ(κ imp + e^gen gen) − slack ≤ e_i (needed when C is finite).
    warm_start : bool
        Re-solve from the previous basis (faster) instead of from scratch (deterministic whatever
        the call history, which the parallel layer relies on for identical results on 1 or N workers).
    """

    def __init__(self, inst: Instance, site: int, *, carbon_price: float | None = None,
                 with_allowance: bool | None = None, warm_start: bool = False) -> None:
        self.inst, self.site = inst, int(site)
        s, T, dt = inst.sites, inst.n_periods, inst.period_hours
        i = self.site
        tau = inst.carbon_price if carbon_price is None else carbon_price
        self.T = T
        self.penalty, self.carbon_penalty = dump_penalty(inst)
        self.with_allowance = math.isfinite(inst.carbon_budget_t) if with_allowance is None else with_allowance
        self.has_bat = bool(has_battery(inst)[i])
        self.has_gen = bool(has_generator(inst)[i])
        self.has_gamma = bool(s.grid_import_mw[i] > 0 and s.grid_export_mw[i] > 0)
        lp = LP(f"site{i}", sense="maximize")
        if not warm_start:
            lp.setIntParam(SCIP_LPPARAM.FROMSCRATCH, 1)
        self.lp = lp
        inf = lp.infinity()
        col = {name: np.arange(q * T, (q + 1) * T) for q, name in enumerate(COLUMNS)}
        self.col = col
        self.col_slack = len(COLUMNS) * T
        zeros = np.zeros(T)
        ub = {
            "grid_import": np.full(T, s.grid_import_mw[i]),
            "grid_export": np.full(T, s.grid_export_mw[i]),
            "charge": np.full(T, s.bat_power_mw[i] if self.has_bat else 0.0),
            "discharge": np.full(T, s.bat_power_mw[i] if self.has_bat else 0.0),
            "soc": np.full(T, s.bat_energy_mwh[i] if self.has_bat else 0.0),
            "gen": np.full(T, s.gen_max_mw[i] if self.has_gen else 0.0),
            "renewable_used": s.renewable_mw[i].astype(float),
            "ens": np.full(T, inf),
            "dump": np.full(T, inf),
        }
        lb = {name: zeros.copy() for name in COLUMNS}
        if self.has_bat:
            lb["soc"][-1] = s.bat_soc0_mwh[i]  # terminal soc ≥ soc0
        obj = {
            "grid_import": -dt * (s.price_buy[i] + tau * s.grid_co2[i]),
            "grid_export": dt * s.price_sell[i],
            "charge": np.full(T, -dt * s.bat_cost[i]),
            "discharge": np.full(T, -dt * s.bat_cost[i]),
            "soc": zeros,
            "gen": np.full(T, -dt * (s.gen_cost[i] + tau * s.gen_co2[i])),
            "renewable_used": zeros,
            "ens": np.full(T, -dt * inst.voll),
            "dump": np.full(T, -dt * self.penalty),
        }
        objs = np.concatenate([obj[n] for n in COLUMNS] + [[-self.carbon_penalty]])
        lbs = np.concatenate([lb[n] for n in COLUMNS] + [[0.0]])
        ubs = np.concatenate([ub[n] for n in COLUMNS] + [[inf]])
        lp.addCols([[] for _ in range(objs.size)], objs=objs.tolist(), lbs=lbs.tolist(), ubs=ubs.tolist())

        rows: list[list[tuple[int, float]]] = []
        lhs: list[float] = []
        rhs: list[float] = []
        # dependent rows: (row index, which side(s), master kind, period, constant, coefficient)
        dep: dict[str, list] = {"row": [], "kind": [], "t": [], "const": [], "coef": [], "side": []}

        def add(entries, lo, hi, kind=None, t=0, const=0.0, coef=0.0, side="both"):
            rows.append(entries)
            lhs.append(lo)
            rhs.append(hi)
            if kind is not None:
                for key, val in (("row", len(rows) - 1), ("kind", MASTER_KINDS.index(kind)), ("t", t),
                                 ("const", const), ("coef", coef), ("side", side)):
                    dep[key].append(val)

        pue = s.pue[i]
        r0 = -pue * s.gpu_idle_kw[i] * s.gpus[i] / 1000.0
        r1 = -pue * (s.gpu_busy_kw[i] - s.gpu_idle_kw[i]) / 1000.0
        def c(name: str, t: int) -> int:
            return int(col[name][t])

        for t in range(T):
            # 5. load + ch + exp + dump = w + gen + dis + imp + ens, load = −(r0 + r1·U)
            add([(c("charge", t), 1.0), (c("grid_export", t), 1.0), (c("dump", t), 1.0),
                 (c("renewable_used", t), -1.0), (c("gen", t), -1.0), (c("discharge", t), -1.0),
                 (c("grid_import", t), -1.0), (c("ens", t), -1.0)],
                0.0, 0.0, "busy", t, float(r0[t]), float(r1[t]), "both")
        if self.has_bat:
            B = float(s.bat_power_mw[i])
            for t in range(T):
                entries = [(c("soc", t), 1.0), (c("charge", t), -dt * s.bat_eta_charge[i]),
                           (c("discharge", t), dt / s.bat_eta_discharge[i])]
                if t > 0:
                    entries.append((int(col["soc"][t - 1]), -1.0))
                v = float(s.bat_soc0_mwh[i]) if t == 0 else 0.0
                add(entries, v, v)
                add([(c("charge", t), 1.0)], -inf, 0.0, "bat_charging", t, 0.0, B, "rhs")
                add([(c("discharge", t), 1.0)], -inf, 0.0, "bat_charging", t, B, -B, "rhs")
        if self.has_gamma:
            Mi, Me = float(s.grid_import_mw[i]), float(s.grid_export_mw[i])
            for t in range(T):
                add([(int(col["grid_import"][t]), 1.0)], -inf, 0.0, "grid_importing", t, 0.0, Mi, "rhs")
                add([(int(col["grid_export"][t]), 1.0)], -inf, 0.0, "grid_importing", t, Me, -Me, "rhs")
        if self.has_gen:
            Gx, Gn = float(s.gen_max_mw[i]), float(s.gen_min_mw[i])
            for t in range(T):
                add([(int(col["gen"][t]), 1.0)], -inf, 0.0, "gen_on", t, 0.0, Gx, "rhs")
                if Gn > 0:
                    add([(int(col["gen"][t]), 1.0)], 0.0, inf, "gen_on", t, 0.0, Gn, "lhs")
        if self.with_allowance:
            entries = [(int(col["grid_import"][t]), dt * float(s.grid_co2[i, t])) for t in range(T)]
            entries += [(int(col["gen"][t]), dt * float(s.gen_co2[i])) for t in range(T)]
            entries.append((self.col_slack, -1.0))
            add(entries, -inf, 0.0, "allowance", 0, 0.0, 1.0, "rhs")
        lp.addRows(rows, lhss=lhs, rhss=rhs)
        self._inf = inf
        self._dep_row = np.asarray(dep["row"], dtype=np.int64)
        self._dep_kind = np.asarray(dep["kind"], dtype=np.int64)
        self._dep_t = np.asarray(dep["t"], dtype=np.int64)
        self._dep_const = np.asarray(dep["const"], dtype=np.float64)
        self._dep_coef = np.asarray(dep["coef"], dtype=np.float64)
        self._dep_both = np.array([sd == "both" for sd in dep["side"]], dtype=bool)
        self._dep_lhs = np.array([sd == "lhs" for sd in dep["side"]], dtype=bool)
        self._last_sides: np.ndarray | None = None

    def master_values(self, busy, bat_charging=None, grid_importing=None, gen_on=None,
                      allowance: float = math.inf) -> np.ndarray:
        """(5, T) array of the master quantities in MASTER_KINDS order (allowance in column 0)."""
        T = self.T
        m = np.zeros((len(MASTER_KINDS), T))
        m[0] = busy
        for q, v in ((1, bat_charging), (2, grid_importing), (3, gen_on)):
            if v is not None:
                m[q] = v
        m[4, 0] = min(allowance, 1e15)
        return m

    def solve(self, master: np.ndarray) -> SiteLPResult:
        """Solve for a master point (the (5, T) array of :meth:`master_values`).

        The point is first clipped to the master's bounds (busy GPUs and allowance ≥ 0, binaries in
        [0, 1]): an LP master returns values a feasibility tolerance outside them, and γ = −4e-7 makes
        ``imp ≤ M·γ`` infeasible against ``imp ≥ 0``. The cut is taken at the clipped point; it stays
        valid everywhere because a supergradient of the concave value function is global.
        """
        master = np.clip(master, _MASTER_LOWER, _MASTER_UPPER)
        sides = self._dep_const + self._dep_coef * master[self._dep_kind, self._dep_t]
        if self._last_sides is None:
            changed = np.arange(sides.size)
        else:
            changed = np.flatnonzero(sides != self._last_sides)
        inf = self._inf
        for q in changed:
            r, v = int(self._dep_row[q]), float(sides[q])
            if self._dep_both[q]:
                self.lp.chgSide(r, v, v)
            elif self._dep_lhs[q]:
                self.lp.chgSide(r, v, inf)
            else:
                self.lp.chgSide(r, -inf, v)
        self._last_sides = sides
        value = float(self.lp.solve())
        if not self.lp.isOptimal():
            raise RuntimeError(f"site {self.site}: energy LP not solved to optimality")
        duals = np.asarray(self.lp.getDual(), dtype=np.float64)
        primal = np.asarray(self.lp.getPrimal(), dtype=np.float64)
        y = duals[self._dep_row] * self._dep_coef
        coef = np.zeros((len(MASTER_KINDS), self.T))
        np.add.at(coef, (self._dep_kind, self._dep_t), y)
        m_dep = master[self._dep_kind, self._dep_t]
        constant = value - float(np.dot(y, m_dep))
        prim = {n: primal[self.col[n]] for n in COLUMNS}
        prim["carbon_slack"] = primal[self.col_slack:self.col_slack + 1]
        slack = float(prim["dump"].sum() + prim["carbon_slack"].sum())
        return SiteLPResult(value=value, coef={k: coef[q] for q, k in enumerate(MASTER_KINDS)},
                            constant=constant, primal=prim, slack=slack)


#: Bounds of the master quantities by kind (rows in MASTER_KINDS order).
_MASTER_LOWER = np.zeros((len(MASTER_KINDS), 1))
_MASTER_UPPER = np.array([[np.inf], [1.0], [1.0], [1.0], [np.inf]])


def make_site_lp(inst: Instance, site: int, **options) -> SiteEnergyLP:
    """Factory for the parallel layer (module level, so it pickles)."""
    return SiteEnergyLP(inst, site, **options)
