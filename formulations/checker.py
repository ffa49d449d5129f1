"""Independent feasibility and score checker of a :class:`~formulations.solution.Solution` (numpy only).

Recomputes every constraint of MODEL.md, every objective term and the emissions from the instance
and the solution's arrays, with no solver involved and without the scoring code of the solve path
(``solution.breakdown_from_arrays``, the energy and joint models): a bug in a model or in its
scoring cannot hide behind the same bug in its verification.  Only the solution's arrays and
reported numbers and the instance's fields are read.

Each constraint family is one function ``(ctx, out) -> None`` in :data:`CHECKS`; :func:`check_solution`
runs them in order and collects their :class:`Violation` s.

Tolerances (MODEL.md): a row holds when its violation is at most ``tol·max(1, |rhs|)``, where rhs
is the right-hand side as MODEL.md writes the row, evaluated at the solution; a variable bound holds
within ``tol`` (absolute); a binary lies within ``tol`` of 0 or 1; a reported breakdown term or the
emissions equal the recomputed value within ``tol·max(1, |recomputed|)``; ``objective`` equals the sum
of the reported terms within ``tol·max(1, |objective|)``; ``gap`` equals (bound − Z)/max(1, |Z|) of
the recomputed Z within ``tol·max(1, |gap|)`` (both ``inf`` when the bound or Z is not finite).

Constraint names used in :class:`Violation` (index in brackets):

=========================  ===========  ====================================================
name                       index        MODEL.md
=========================  ===========  ====================================================
job_once                   (j,)         1: site and start both −1 or both valid, site in S
job_mandatory              (j,)         1: mandatory job scheduled
job_site_allowed           (j,)         x only for i in A_j
job_start_window           (j,)         x only for s in W_j
demand_balance             (k, t)       2
served_outside_slo         (k, i, t)    y = 0 for i outside S_k
gpu_capacity               (i, t)       3
power_balance              (i, t)       4 and 5
battery_dynamics           (i, t)       6: soc_t = soc_{t−1} + Δ(η^c ch − dis/η^d)
battery_terminal           (i,)         6: soc_{T−1} ≥ soc0
battery_charge_mode        (i, t)       6: ch ≤ B·β
battery_discharge_mode     (i, t)       6: dis ≤ B·(1 − β)
grid_import_direction      (i, t)       7: imp ≤ M^imp·γ
grid_export_direction      (i, t)       7: exp ≤ M^exp·(1 − γ)
gen_min_output             (i, t)       8: gen ≥ Gmin·on
gen_max_output             (i, t)       8: gen ≤ Gmax·on
gen_startup                (i, t)       8: su_t ≥ on_t − on_{t−1}
gen_min_up                 (i, t)       8: minimum up time
gen_min_down               (i, t)       8: minimum down time
gen_absent                 (i, t)       8: Gmax = 0 ⇒ gen = on = su = 0
carbon_budget              ()           9 (not enforced with ``carbon=False``)
bound:<array>              array index  variable bounds of MODEL.md's domain table
binary:<array>             (i, t)       γ, β, on, su within tol of {0, 1}
finite:<array>             array index  no NaN or infinity in the solution
breakdown:<term>           ()           reported term equals the recomputed one
objective                  ()           objective equals the sum of the reported terms
emissions                  ()           emissions_t equals the recomputed Em
gap                        ()           gap equals (bound − Z)/max(1, |Z|) of the recomputed Z
=========================  ===========  ====================================================
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
from carbonsched.instances.schema import Instance

from .solution import BREAKDOWN_TERMS, ENERGY_BINARY_FIELDS, ENERGY_FIELDS, Solution

log = logging.getLogger(__name__)

#: At most this many violations of one constraint are listed (all are counted).
MAX_LISTED_PER_CONSTRAINT = 50


@dataclass(frozen=True)
class Violation:
    """One violated row, bound or reported value.

    Attributes
    ----------
    constraint : str
        Constraint name (see the module docstring).
    index : tuple of int
        Position of the row, e.g. ``(i, t)`` for a site-period row, ``()`` for a global one.
    amount : float
        Size of the violation in the row's unit (MW, MWh, GPUs, $, t, ...), positive.
    message : str
        One line naming the sites, periods, jobs or classes involved.
    """

    constraint: str
    index: tuple[int, ...]
    amount: float
    message: str


@dataclass
class CheckReport:
    """Result of :func:`check_solution`.

    Attributes
    ----------
    ok : bool
        True when no violation was found.
    violations : list of Violation
        At most :data:`MAX_LISTED_PER_CONSTRAINT` per constraint, in check order.
    counts : dict of str to int
        Number of violated rows per constraint, including those not listed.
    objective : float
        Z recomputed from the arrays (the exact sum of ``terms``), $.
    emissions : float
        Em recomputed from the arrays, t CO2.
    terms : dict of str to float
        The objective terms of MODEL.md recomputed by the checker, keyed and signed as the
        ``/breakdown`` terms of SOLUTION.md (costs negative), $.
    carbon_budget_t : float
        C of the instance, t (``inf`` for none).
    carbon_excess_t : float
        max(0, Em − C), t; reported even when the budget is not enforced.
    carbon_enforced : bool
        Whether constraint 9 was checked (``carbon=True``).
    """

    ok: bool
    violations: list[Violation]
    counts: dict[str, int]
    objective: float
    emissions: float
    terms: dict[str, float] = field(default_factory=dict)
    carbon_budget_t: float = math.inf
    carbon_excess_t: float = 0.0
    carbon_enforced: bool = True

    @property
    def breakdown(self) -> dict[str, float]:
        """The recomputed objective terms, $ (the same dict as :attr:`terms`)."""
        return self.terms

    @property
    def n_violations(self) -> int:
        """Total number of violated rows (listed or not)."""
        return int(sum(self.counts.values()))

    def violated(self) -> set[str]:
        """Names of the constraints with at least one violation."""
        return set(self.counts)

    def format(self) -> str:
        """Human-readable report.

        ``OK  Z = … $  emissions = … t`` when feasible; otherwise a ``FAIL`` summary line, then one
        line per listed violation and one ``… and N more`` line per truncated constraint.
        """
        scores = f"Z = {self.objective:.2f} $  emissions = {self.emissions:.6g} t"
        carbon_note = ""
        if self.carbon_excess_t > 0 and not self.carbon_enforced:
            carbon_note = (
                f"  (carbon budget {self.carbon_budget_t:.6g} t exceeded by {self.carbon_excess_t:.6g} t; not enforced)"
            )
        if self.ok:
            return f"OK  {scores}{carbon_note}"
        lines = [f"FAIL  {self.n_violations} violation(s) in {len(self.counts)} constraint(s)  {scores}{carbon_note}"]
        listed: dict[str, int] = {}
        for v in self.violations:
            lines.append(f"{v.constraint}: {v.message}")
            listed[v.constraint] = listed.get(v.constraint, 0) + 1
        for name, count in self.counts.items():
            if count > listed.get(name, 0):
                lines.append(f"{name}: ... and {count - listed.get(name, 0)} more")
        return "\n".join(lines)


# ------------------------------------------------------------------------------------ objective terms
def recompute_terms(
    inst: Instance,
    job_site: np.ndarray,
    job_start: np.ndarray,
    served: np.ndarray,
    unserved: np.ndarray,
    energy: dict[str, np.ndarray],
) -> tuple[dict[str, float], float]:
    """Every objective term of MODEL.md and the emissions, written out here from the formulas.

    Parameters
    ----------
    inst : Instance
        The instance the arrays answer.
    job_site, job_start : (J,) int
        x as a site and a start period per job; a job is scheduled when both are ≥ 0.
    served : (K,S,T) float
        y, GPUs; routes with infinite latency carry no latency cost (they are reported by
        ``served_outside_slo`` instead).
    unserved : (K,T) float
        u, GPUs.
    energy : dict of str to (S,T) float
        The ``/energy`` arrays (MW; {0,1} for ``gen_start``).

    Returns
    -------
    terms : dict of str to float
        The :data:`~formulations.solution.BREAKDOWN_TERMS`, $, costs negative.
    emissions_t : float
        Em = Δ·Σ (κ·imp + e^gen·gen), t CO2.
    """
    s, jb, cls = inst.sites, inst.jobs, inst.inference
    dt = float(inst.period_hours)
    scheduled = ((job_site >= 0) & (job_start >= 0)).astype(np.float64)
    latency = np.asarray(cls.latency_ms, dtype=np.float64)
    latency = np.where(np.isfinite(latency), latency, 0.0)  # no route: no cost, and no 0·inf = NaN
    imp, exp, gen = energy["grid_import"], energy["grid_export"], energy["gen"]
    emissions_t = dt * (float(np.vdot(s.grid_co2, imp)) + float(np.dot(s.gen_co2, gen.sum(axis=1))))
    terms = {
        "training_value": float(np.dot(jb.value, scheduled)),
        "inference_revenue": dt * float(np.einsum("k,kst->", cls.revenue, served)),
        "latency_cost": -dt * float(np.einsum("k,ks,kst->", cls.latency_cost, latency, served)),
        "unserved_penalty": -dt * float(np.einsum("k,kt->", cls.penalty, unserved)),
        "grid_cost": -dt * float(np.vdot(s.price_buy, imp)),
        "export_revenue": dt * float(np.vdot(s.price_sell, exp)),
        "gen_cost": -dt * float(np.dot(s.gen_cost, gen.sum(axis=1))),
        "startup_cost": -float(np.dot(s.gen_startup_cost, energy["gen_start"].sum(axis=1))),
        "battery_cost": -dt * float(np.dot(s.bat_cost, (energy["charge"] + energy["discharge"]).sum(axis=1))),
        "ens_cost": -dt * float(inst.voll) * float(energy["ens"].sum()),
        "carbon_cost": -float(inst.carbon_price) * emissions_t,
    }
    return terms, emissions_t


def _exact_sum(values: list[float]) -> float:
    """fsum when every value is finite, else the IEEE sum (inf or NaN, no error)."""
    return math.fsum(values) if all(math.isfinite(v) for v in values) else float(np.sum(values))


# ------------------------------------------------------------------------------------------ machinery
class _Collector:
    """Gathers violations from boolean masks, capped per constraint."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.violations: list[Violation] = []
        self.counts: dict[str, int] = {}
        self._listed: dict[str, int] = {}

    def add(
        self,
        constraint: str,
        bad: np.ndarray | bool,
        amount: np.ndarray | float,
        describe: Callable[[tuple[int, ...]], str],
    ) -> None:
        """Record every true entry of ``bad``; ``describe(index)`` writes the message."""
        bad = np.asarray(bad, dtype=bool)
        count = int(np.count_nonzero(bad))
        if count == 0:
            return
        self.counts[constraint] = self.counts.get(constraint, 0) + count
        room = self.cap - self._listed.get(constraint, 0)
        if room <= 0:
            return
        amount = np.broadcast_to(np.asarray(amount, dtype=np.float64), bad.shape)
        for flat in np.flatnonzero(bad.ravel())[:room]:
            index = tuple(int(i) for i in np.unravel_index(flat, bad.shape))
            self.violations.append(Violation(constraint, index, abs(float(amount[index])), describe(index)))
            self._listed[constraint] = self._listed.get(constraint, 0) + 1

    def le(self, constraint: str, lhs, rhs, tol: float, describe: Callable[[tuple[int, ...]], str]) -> None:
        """Rows lhs ≤ rhs within tol·max(1, |rhs|); NaN counts as violated."""
        lhs, rhs = np.broadcast_arrays(np.asarray(lhs, np.float64), np.asarray(rhs, np.float64))
        excess = lhs - rhs
        self.add(constraint, ~(excess <= tol * np.maximum(1.0, np.abs(rhs))), excess, describe)

    def eq(self, constraint: str, lhs, rhs, tol: float, describe: Callable[[tuple[int, ...]], str]) -> None:
        """Rows lhs = rhs within tol·max(1, |rhs|); NaN counts as violated."""
        lhs, rhs = np.broadcast_arrays(np.asarray(lhs, np.float64), np.asarray(rhs, np.float64))
        residual = lhs - rhs
        self.add(constraint, ~(np.abs(residual) <= tol * np.maximum(1.0, np.abs(rhs))), residual, describe)


def busy_gpus(inst: Instance, job_site: np.ndarray, job_start: np.ndarray, served: np.ndarray) -> np.ndarray:
    """U_{i,t} of constraint 3: GPUs held by running jobs plus GPUs serving inference, (S,T).

    Jobs with a site outside 0..S−1 or a start outside 0..T−1 hold no GPUs; a run that would pass
    the horizon is cut at period T − 1.
    """
    n_sites, n_periods = inst.n_sites, int(inst.n_periods)
    placed = (job_site >= 0) & (job_site < n_sites) & (job_start >= 0) & (job_start < n_periods)
    sites = job_site[placed]
    starts = job_start[placed]
    ends = np.minimum(starts + inst.jobs.duration[placed], n_periods)
    gpus = inst.jobs.gpus[placed].astype(np.float64)
    delta = np.zeros((n_sites, n_periods + 1))
    np.add.at(delta, (sites, starts), gpus)
    np.add.at(delta, (sites, ends), -gpus)
    return np.cumsum(delta, axis=1)[:, :n_periods] + served.sum(axis=0)


def _window_sums(values: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Σ_{τ=max(0, t−w_i+1)}^{t} values_{i,τ} for each (i, t), with a per-row window length w_i."""
    n_rows, n_periods = values.shape
    cumulative = np.zeros((n_rows, n_periods + 1))
    np.cumsum(values, axis=1, out=cumulative[:, 1:])
    first = np.maximum(0, np.arange(n_periods)[None, :] - window[:, None] + 1)
    return cumulative[:, 1:] - np.take_along_axis(cumulative, first, axis=1)


def _previous(values: np.ndarray, first: np.ndarray | float) -> np.ndarray:
    """(S,T) array of values_{i,t−1}, with ``first`` in column 0."""
    column = np.broadcast_to(np.asarray(first, dtype=np.float64), (values.shape[0],))[:, None]
    return np.concatenate([column, values[:, :-1]], axis=1)


class _Context:
    """What every check reads: the instance, the solution's arrays as float64, and derived values."""

    def __init__(self, inst: Instance, sol: Solution, tol: float, carbon: bool) -> None:
        self.inst, self.sol, self.tol, self.carbon = inst, sol, tol, carbon
        self.dt = float(inst.period_hours)
        self.job_site = np.asarray(sol.job_site).astype(np.int64)
        self.job_start = np.asarray(sol.job_start).astype(np.int64)
        self.served = np.asarray(sol.served, dtype=np.float64)
        self.unserved = np.asarray(sol.unserved, dtype=np.float64)
        self.energy = {name: np.asarray(getattr(sol, name), dtype=np.float64) for name in ENERGY_FIELDS}
        e = self.energy
        self.grid_import, self.grid_export = e["grid_import"], e["grid_export"]
        self.grid_importing, self.bat_charging = e["grid_importing"], e["bat_charging"]
        self.charge, self.discharge, self.soc = e["charge"], e["discharge"], e["soc"]
        self.gen, self.gen_on, self.gen_start = e["gen"], e["gen_on"], e["gen_start"]
        self.renewable_used, self.ens = e["renewable_used"], e["ens"]

    @cached_property
    def busy(self) -> np.ndarray:
        return busy_gpus(self.inst, self.job_site, self.job_start, self.served)

    @cached_property
    def facility_load(self) -> np.ndarray:
        """pue·P^IT, MW (constraint 4)."""
        s = self.inst.sites
        it_kw = (s.gpu_idle_kw * s.gpus)[:, None] + (s.gpu_busy_kw - s.gpu_idle_kw)[:, None] * self.busy
        return s.pue * it_kw / 1000.0

    @cached_property
    def scores(self) -> tuple[dict[str, float], float]:
        return recompute_terms(self.inst, self.job_site, self.job_start, self.served, self.unserved, self.energy)

    def at(self, index: tuple[int, ...]) -> str:
        return f"site {self.inst.sites.name[index[0]]!r} period {index[1]}"

    def job(self, index: tuple[int, ...]) -> str:
        return f"job {self.inst.jobs.name[index[0]]!r}"

    def locate(self, array_name: str, index: tuple[int, ...]) -> str:
        """Name the entry ``index`` of a solution array by its class, site and period."""
        classes, sites = self.inst.inference.name, self.inst.sites.name
        if array_name == "served":
            return f"class {classes[index[0]]!r} site {sites[index[1]]!r} period {index[2]}"
        if array_name == "unserved":
            return f"class {classes[index[0]]!r} period {index[1]}"
        return self.at(index)


# ------------------------------------------------------------------------------ the checks, in order
def _check_finite(ctx: _Context, out: _Collector) -> None:
    """No NaN or infinity in any float array of the solution."""
    for name, values in {"served": ctx.served, "unserved": ctx.unserved, **ctx.energy}.items():
        bad = ~np.isfinite(values)
        out.add(f"finite:{name}", bad, np.where(bad, np.inf, 0.0),
                lambda ix, name=name, values=values: f"{ctx.locate(name, ix)}: {name} = {values[ix]} is not finite")


def _check_jobs(ctx: _Context, out: _Collector) -> None:
    """1: each job unscheduled, or at one allowed site with a start in its window (mandatory: scheduled)."""
    jb, site, start, n_sites = ctx.inst.jobs, ctx.job_site, ctx.job_start, ctx.inst.n_sites
    unscheduled = (site == -1) & (start == -1)
    placed = (site >= 0) & (site < n_sites) & (start >= 0)
    out.add("job_once", ~unscheduled & ~placed, 1.0,
            lambda ix: f"{ctx.job(ix)}: site {site[ix]} and start {start[ix]} must both be -1 "
                       f"or a site in 0..{n_sites - 1} and a start >= 0")
    out.add("job_mandatory", jb.mandatory & ~placed, 1.0, lambda ix: f"{ctx.job(ix)}: mandatory but not scheduled")
    allowed = np.zeros(site.size, dtype=bool)
    allowed[placed] = jb.allowed[np.flatnonzero(placed), site[placed]]
    out.add("job_site_allowed", placed & ~allowed, 1.0,
            lambda ix: f"{ctx.job(ix)}: runs at site {ctx.inst.sites.name[site[ix]]!r}, not in its allowed sites")
    last = jb.deadline - jb.duration
    out.add("job_start_window", placed & ((start < jb.release) | (start > last)),
            np.maximum(jb.release - start, start - last),
            lambda ix: f"{ctx.job(ix)}: starts in period {start[ix]}, outside its window {jb.release[ix]}..{last[ix]}")


def _check_demand(ctx: _Context, out: _Collector) -> None:
    """2: Σ_{i∈S_k} y + u = λ, and y = 0 outside S_k."""
    inf, names = ctx.inst.inference, ctx.inst.inference.name
    in_slo = ctx.inst.slo_mask()  # (K,S)
    covered = np.einsum("kst,ks->kt", ctx.served, in_slo.astype(np.float64)) + ctx.unserved
    out.eq("demand_balance", covered, inf.demand, ctx.tol,
           lambda ix: f"class {names[ix[0]]!r} period {ix[1]}: served + unserved = {covered[ix]:.6g} GPUs, "
                      f"demand {inf.demand[ix]:.6g}")
    out.add("served_outside_slo", ~in_slo[:, :, None] & ~(np.abs(ctx.served) <= ctx.tol), ctx.served,
            lambda ix: f"{ctx.locate('served', ix)}: {ctx.served[ix]:.6g} GPUs served outside the latency SLO")


def _check_gpu_capacity(ctx: _Context, out: _Collector) -> None:
    """3: U ≤ G."""
    capacity = ctx.inst.sites.gpus[:, None].astype(np.float64)
    out.le("gpu_capacity", ctx.busy, capacity, ctx.tol,
           lambda ix: f"{ctx.at(ix)}: {ctx.busy[ix]:.6g} GPUs busy, capacity {capacity[ix[0], 0]:g}")


def _check_power_balance(ctx: _Context, out: _Collector) -> None:
    """4–5: pue·P^IT + ch + exp = w + gen + dis + imp + ens."""
    uses = ctx.facility_load + ctx.charge + ctx.grid_export
    sources = ctx.renewable_used + ctx.gen + ctx.discharge + ctx.grid_import + ctx.ens
    out.eq("power_balance", uses, sources, ctx.tol,
           lambda ix: f"{ctx.at(ix)}: load {ctx.facility_load[ix]:.6g} + charge {ctx.charge[ix]:.6g} + export "
                      f"{ctx.grid_export[ix]:.6g} = {uses[ix]:.6g} MW, but renewable + gen + discharge + import + "
                      f"ens = {sources[ix]:.6g} MW")


def _check_battery(ctx: _Context, out: _Collector) -> None:
    """6: dynamics, terminal level, and the charge/discharge mode."""
    s, soc, beta = ctx.inst.sites, ctx.soc, ctx.bat_charging
    flow = ctx.dt * (s.bat_eta_charge[:, None] * ctx.charge - ctx.discharge / s.bat_eta_discharge[:, None])
    expected = _previous(soc, s.bat_soc0_mwh) + flow
    out.eq("battery_dynamics", soc, expected, ctx.tol,
           lambda ix: f"{ctx.at(ix)}: soc {soc[ix]:.6g} MWh, dynamics give {expected[ix]:.6g}")
    out.le("battery_terminal", s.bat_soc0_mwh, soc[:, -1], ctx.tol,
           lambda ix: f"site {s.name[ix[0]]!r}: final soc {soc[ix[0], -1]:.6g} MWh below soc0 "
                      f"{s.bat_soc0_mwh[ix]:.6g}")
    power = s.bat_power_mw[:, None]
    out.le("battery_charge_mode", ctx.charge, power * beta, ctx.tol,
           lambda ix: f"{ctx.at(ix)}: charge {ctx.charge[ix]:.6g} MW with bat_charging = {beta[ix]:g}")
    out.le("battery_discharge_mode", ctx.discharge, power * (1.0 - beta), ctx.tol,
           lambda ix: f"{ctx.at(ix)}: discharge {ctx.discharge[ix]:.6g} MW with bat_charging = {beta[ix]:g}")


def _check_grid_direction(ctx: _Context, out: _Collector) -> None:
    """7: imp ≤ M^imp·γ, exp ≤ M^exp·(1 − γ)."""
    s, gamma = ctx.inst.sites, ctx.grid_importing
    out.le("grid_import_direction", ctx.grid_import, s.grid_import_mw[:, None] * gamma, ctx.tol,
           lambda ix: f"{ctx.at(ix)}: import {ctx.grid_import[ix]:.6g} MW with grid_importing = {gamma[ix]:g}")
    out.le("grid_export_direction", ctx.grid_export, s.grid_export_mw[:, None] * (1.0 - gamma), ctx.tol,
           lambda ix: f"{ctx.at(ix)}: export {ctx.grid_export[ix]:.6g} MW with grid_importing = {gamma[ix]:g}")


def _check_gen_output(ctx: _Context, out: _Collector) -> None:
    """8: Gmin·on ≤ gen ≤ Gmax·on."""
    s, gen, on = ctx.inst.sites, ctx.gen, ctx.gen_on
    floor, ceiling = s.gen_min_mw[:, None] * on, s.gen_max_mw[:, None] * on
    out.le("gen_min_output", floor, gen, ctx.tol,
           lambda ix: f"{ctx.at(ix)}: gen {gen[ix]:.6g} MW below Gmin·on = {floor[ix]:.6g}")
    out.le("gen_max_output", gen, ceiling, ctx.tol,
           lambda ix: f"{ctx.at(ix)}: gen {gen[ix]:.6g} MW above Gmax·on = {ceiling[ix]:.6g}")


def _check_gen_startup(ctx: _Context, out: _Collector) -> None:
    """8: su_t ≥ on_t − on_{t−1}, on_{−1} = 0."""
    out.le("gen_startup", ctx.gen_on - _previous(ctx.gen_on, 0.0), ctx.gen_start, ctx.tol,
           lambda ix: f"{ctx.at(ix)}: generator switched on without gen_start = 1")


def _check_gen_min_up_down(ctx: _Context, out: _Collector) -> None:
    """8: Σ_{window UT} su ≤ on_t and Σ_{window DT} su ≤ 1 − on_{t−DT}."""
    s, on, su = ctx.inst.sites, ctx.gen_on, ctx.gen_start
    out.le("gen_min_up", _window_sums(su, s.gen_min_up), on, ctx.tol,
           lambda ix: f"{ctx.at(ix)}: off (on = {on[ix]:g}) within min up time {s.gen_min_up[ix[0]]} of a start-up")
    reference = np.arange(on.shape[1])[None, :] - s.gen_min_down[:, None]
    on_then = np.where(reference >= 0, np.take_along_axis(on, np.maximum(reference, 0), axis=1), 0.0)
    out.le("gen_min_down", _window_sums(su, s.gen_min_down), 1.0 - on_then, ctx.tol,
           lambda ix: f"{ctx.at(ix)}: start-up within min down time {s.gen_min_down[ix[0]]} of a shut-down")


def _check_gen_absent(ctx: _Context, out: _Collector) -> None:
    """8: a site with Gmax = 0 has gen = on = su = 0."""
    gen, on, su = ctx.gen, ctx.gen_on, ctx.gen_start
    activity = np.maximum(np.abs(gen), np.maximum(np.abs(on), np.abs(su)))
    out.add("gen_absent", (ctx.inst.sites.gen_max_mw == 0)[:, None] & ~(activity <= ctx.tol), activity,
            lambda ix: f"{ctx.at(ix)}: site has no generator but gen = {gen[ix]:.6g}, gen_on = {on[ix]:g}, "
                       f"gen_start = {su[ix]:g}")


def _check_carbon_budget(ctx: _Context, out: _Collector) -> None:
    """9: Em ≤ C (skipped with ``carbon=False`` or C = inf)."""
    budget = float(ctx.inst.carbon_budget_t)
    emissions_t = ctx.scores[1]
    if ctx.carbon and math.isfinite(budget):
        out.le("carbon_budget", emissions_t, budget, ctx.tol,
               lambda ix: f"emissions {emissions_t:.6g} t exceed the budget {budget:.6g} t by "
                          f"{emissions_t - budget:.6g} t")


def _check_bounds(ctx: _Context, out: _Collector) -> None:
    """The variable domains of MODEL.md, each within tol (absolute)."""
    s = ctx.inst.sites
    domains = {
        "served": (ctx.served, 0.0, np.inf),
        "unserved": (ctx.unserved, 0.0, np.inf),
        "grid_import": (ctx.grid_import, 0.0, s.grid_import_mw[:, None]),
        "grid_export": (ctx.grid_export, 0.0, s.grid_export_mw[:, None]),
        "charge": (ctx.charge, 0.0, s.bat_power_mw[:, None]),
        "discharge": (ctx.discharge, 0.0, s.bat_power_mw[:, None]),
        "soc": (ctx.soc, 0.0, s.bat_energy_mwh[:, None]),
        "gen": (ctx.gen, 0.0, s.gen_max_mw[:, None]),
        "renewable_used": (ctx.renewable_used, 0.0, s.renewable_mw),
        "ens": (ctx.ens, 0.0, np.inf),
    }
    for name, (values, lower, upper) in domains.items():
        lo, hi = np.broadcast_to(lower, values.shape), np.broadcast_to(upper, values.shape)
        out.add(f"bound:{name}", ~((values >= lo - ctx.tol) & (values <= hi + ctx.tol)),
                np.maximum(lo - values, values - hi),
                lambda ix, name=name, values=values, lo=lo, hi=hi: (
                    f"{ctx.locate(name, ix)}: {name} = {values[ix]:.6g} outside [{lo[ix]:g}, {hi[ix]:g}]"))


def _check_binaries(ctx: _Context, out: _Collector) -> None:
    """γ, β, on, su within tol of 0 or 1."""
    for name in ENERGY_BINARY_FIELDS:
        values = ctx.energy[name]
        distance = np.minimum(np.abs(values), np.abs(values - 1.0))
        out.add(f"binary:{name}", ~(distance <= ctx.tol), distance,
                lambda ix, name=name, values=values: f"{ctx.at(ix)}: {name} = {values[ix]:.6g} not in {{0, 1}}")


def _check_reported_terms(ctx: _Context, out: _Collector) -> None:
    """Each reported ``/breakdown`` term equals the recomputed one."""
    terms = ctx.scores[0]
    for term in BREAKDOWN_TERMS:
        recomputed = terms[term]
        if term not in ctx.sol.breakdown:
            out.add(f"breakdown:{term}", True, math.inf, lambda ix, term=term: f"term {term} not reported")
            continue
        reported = ctx.sol.breakdown[term]
        out.eq(f"breakdown:{term}", reported, recomputed, ctx.tol,
               lambda ix, term=term, reported=reported, recomputed=recomputed: (
                   f"reported {term} = {reported:.10g} $, recomputed {recomputed:.10g} $"))


def _check_reported_objective(ctx: _Context, out: _Collector) -> None:
    """The reported Z equals the sum of the reported terms."""
    objective = ctx.sol.objective
    reported_sum = _exact_sum([float(ctx.sol.breakdown[t]) for t in BREAKDOWN_TERMS if t in ctx.sol.breakdown])
    residual = objective - reported_sum
    out.add("objective", not abs(residual) <= ctx.tol * max(1.0, abs(objective)), residual,
            lambda ix: f"reported objective {objective:.10g} $ differs from the sum of its terms {reported_sum:.10g} $")


def _check_reported_emissions(ctx: _Context, out: _Collector) -> None:
    """The reported emissions equal the recomputed Em."""
    emissions_t, reported = ctx.scores[1], ctx.sol.emissions_t
    out.eq("emissions", reported, emissions_t, ctx.tol,
           lambda ix: f"reported emissions {reported:.10g} t, recomputed {emissions_t:.10g} t")


def _check_reported_gap(ctx: _Context, out: _Collector) -> None:
    """The reported gap is (bound − Z)/max(1, |Z|) of the recomputed Z (``inf`` when either is not finite)."""
    objective = _exact_sum(list(ctx.scores[0].values()))
    bound, reported = float(ctx.sol.bound), float(ctx.sol.gap)
    expected = (bound - objective) / max(1.0, abs(objective)) if math.isfinite(bound + objective) else math.inf
    if math.isinf(expected):
        bad = reported != expected
    else:
        bad = not abs(reported - expected) <= ctx.tol * max(1.0, abs(expected))
    out.add("gap", bad, reported - expected if math.isfinite(reported - expected) else math.inf,
            lambda ix: f"reported gap {reported:.10g}, but bound {bound:.10g} $ and Z {objective:.10g} $ give "
                       f"{expected:.10g}")


#: Every check, in report order: one function per constraint family of MODEL.md and per reported number.
CHECKS: tuple[Callable[[_Context, _Collector], None], ...] = (
    _check_finite,
    _check_jobs,
    _check_demand,
    _check_gpu_capacity,
    _check_power_balance,
    _check_battery,
    _check_grid_direction,
    _check_gen_output,
    _check_gen_startup,
    _check_gen_min_up_down,
    _check_gen_absent,
    _check_bounds,
    _check_binaries,
    _check_carbon_budget,
    _check_reported_terms,
    _check_reported_objective,
    _check_reported_emissions,
    _check_reported_gap,
)


def check_solution(inst: Instance, sol: Solution, *, tol: float = 1e-6, carbon: bool = True) -> CheckReport:
    """Check ``sol`` against every constraint of MODEL.md and its reported scores.

    Parameters
    ----------
    inst : Instance
        The original instance (ablations are checked against it, not their modified copies).
    sol : Solution
        The solution to check; arrays are used as stored (binaries need not be rounded).
    tol : float
        Feasibility tolerance, 1e-6 per MODEL.md (see the module docstring for how it scales).
    carbon : bool
        Enforce the carbon budget (constraint 9).  ``False`` for the no-carbon strategy: the excess
        is still computed and shown by :meth:`CheckReport.format`.

    Returns
    -------
    CheckReport
        With the recomputed terms ($), Z ($) and emissions (t).

    Raises
    ------
    SolutionError
        An array's shape does not match the instance.
    """
    sol.check_shapes(inst.dims())
    out = _Collector(MAX_LISTED_PER_CONSTRAINT)
    with np.errstate(invalid="ignore", over="ignore"):  # NaN/inf entries are reported, not warned about
        ctx = _Context(inst, sol, tol, carbon)
        for check in CHECKS:
            check(ctx, out)
        terms, emissions_t = ctx.scores
        objective = _exact_sum(list(terms.values()))
    budget = float(inst.carbon_budget_t)
    if out.counts:
        log.debug("solution %s/%s: %d violation(s)", sol.instance_name, sol.method, sum(out.counts.values()))
    return CheckReport(
        ok=not out.counts,
        violations=out.violations,
        counts=out.counts,
        objective=objective,
        emissions=emissions_t,
        terms=terms,
        carbon_budget_t=budget,
        carbon_excess_t=max(0.0, emissions_t - budget) if math.isfinite(budget) else 0.0,
        carbon_enforced=carbon,
    )
