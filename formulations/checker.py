"""Independent feasibility and score checker of a :class:`~formulations.solution.Solution` (numpy only).

Recomputes every constraint of MODEL.md and every objective term from the solution's arrays, with
no solver involved, so that a bug in a model cannot hide behind the same bug in its verification.

Tolerances (MODEL.md): a row holds when its violation is at most ``tol·max(1, |rhs|)``, where rhs
is the right-hand side as MODEL.md writes the row, evaluated at the solution; a variable bound holds
within ``tol`` (absolute); a binary lies within ``tol`` of 0 or 1; a reported breakdown term or the
emissions equal the recomputed value within ``tol·max(1, |recomputed|)``; ``objective`` equals the sum
of the reported terms within ``tol·max(1, |objective|)``.

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
=========================  ===========  ====================================================
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from carbonsched.instances.schema import Instance

from .solution import (
    BREAKDOWN_TERMS,
    ENERGY_BINARY_FIELDS,
    ENERGY_FIELDS,
    Solution,
    breakdown_from_arrays,
    sum_terms,
)

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
        Z recomputed from the arrays, $.
    emissions : float
        Em recomputed from the arrays, t CO2.
    breakdown : dict of str to float
        The recomputed objective terms, $.
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
    breakdown: dict[str, float] = field(default_factory=dict)
    carbon_budget_t: float = math.inf
    carbon_excess_t: float = 0.0
    carbon_enforced: bool = True

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
        describe: Callable[[tuple[int, ...], float], str],
    ) -> None:
        """Record every true entry of ``bad``; ``describe(index, amount)`` writes the message."""
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
            value = abs(float(amount[index]))
            self.violations.append(Violation(constraint, index, value, describe(index, value)))
            self._listed[constraint] = self._listed.get(constraint, 0) + 1


def _scale(rhs: np.ndarray | float) -> np.ndarray:
    """max(1, |rhs|), the per-row tolerance scale of MODEL.md."""
    return np.maximum(1.0, np.abs(rhs))


def _le(lhs: np.ndarray, rhs: np.ndarray, tol: float) -> tuple[np.ndarray, np.ndarray]:
    """Rows lhs ≤ rhs: (violated mask, excess lhs − rhs). NaN counts as violated."""
    excess = lhs - rhs
    return ~(excess <= tol * _scale(rhs)), excess


def _eq(lhs: np.ndarray, rhs: np.ndarray, tol: float) -> tuple[np.ndarray, np.ndarray]:
    """Rows lhs = rhs: (violated mask, residual lhs − rhs). NaN counts as violated."""
    residual = lhs - rhs
    return ~(np.abs(residual) <= tol * _scale(rhs)), residual


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
    periods = np.arange(n_periods)[None, :]
    first = np.maximum(0, periods - window[:, None] + 1)
    return cumulative[:, 1:] - np.take_along_axis(cumulative, first, axis=1)


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

    Raises
    ------
    SolutionError
        An array's shape does not match the instance.
    """
    sol.check_shapes(inst.dims())
    with np.errstate(invalid="ignore", over="ignore"):  # NaN/inf entries are reported, not warned about
        return _check(inst, sol, tol, carbon)


def _check(inst: Instance, sol: Solution, tol: float, carbon: bool) -> CheckReport:
    s, jb, inf = inst.sites, inst.jobs, inst.inference
    n_sites, n_periods = inst.n_sites, int(inst.n_periods)
    dt = float(inst.period_hours)
    out = _Collector(MAX_LISTED_PER_CONSTRAINT)

    site_names, job_names, class_names = s.name, jb.name, inf.name

    def at_site_period(index: tuple[int, ...]) -> str:
        return f"site {site_names[index[0]]!r} period {index[1]}"

    def at_job(index: tuple[int, ...]) -> str:
        return f"job {job_names[index[0]]!r}"

    def locate(array_name: str, index: tuple[int, ...]) -> str:
        """Name the entry ``index`` of a solution array by its class, site and period."""
        if array_name == "served":
            k, i, t = index
            return f"class {class_names[k]!r} site {site_names[i]!r} period {t}"
        if array_name == "unserved":
            return f"class {class_names[index[0]]!r} period {index[1]}"
        return at_site_period(index)

    job_site = sol.job_site.astype(np.int64)
    job_start = sol.job_start.astype(np.int64)
    served = sol.served.astype(np.float64)
    unserved = sol.unserved.astype(np.float64)
    energy = {name: np.asarray(getattr(sol, name), dtype=np.float64) for name in ENERGY_FIELDS}
    imp, exp = energy["grid_import"], energy["grid_export"]
    gamma = energy["grid_importing"]
    ch, dis, beta, soc = energy["charge"], energy["discharge"], energy["bat_charging"], energy["soc"]
    gen, on, su = energy["gen"], energy["gen_on"], energy["gen_start"]
    renewable, ens = energy["renewable_used"], energy["ens"]

    # ------------------------------------------------------------------ finite values
    finite_arrays = {"served": served, "unserved": unserved, **energy}
    for name, values in finite_arrays.items():
        out.add(
            f"finite:{name}",
            ~np.isfinite(values),
            np.where(np.isfinite(values), 0.0, np.inf),
            lambda index, _a, name=name, values=values: (
                f"{locate(name, index)}: {name} = {values[index]} is not finite"
            ),
        )

    # ------------------------------------------------------------------ 1. jobs
    unscheduled = (job_site == -1) & (job_start == -1)
    placed = (job_site >= 0) & (job_site < n_sites) & (job_start >= 0)
    out.add(
        "job_once",
        ~unscheduled & ~placed,
        1.0,
        lambda index, _a: (
            f"{at_job(index)}: site {job_site[index]} and start {job_start[index]} must both be -1 "
            f"or a site in 0..{n_sites - 1} and a start >= 0"
        ),
    )
    out.add(
        "job_mandatory",
        jb.mandatory & ~placed,
        1.0,
        lambda index, _a: f"{at_job(index)}: mandatory but not scheduled",
    )
    allowed_here = np.zeros(len(job_site), dtype=bool)
    allowed_here[placed] = jb.allowed[np.flatnonzero(placed), job_site[placed]]
    out.add(
        "job_site_allowed",
        placed & ~allowed_here,
        1.0,
        lambda index, _a: f"{at_job(index)}: runs at site {site_names[job_site[index]]!r}, not in its allowed sites",
    )
    last_start = jb.deadline - jb.duration
    outside_window = placed & ((job_start < jb.release) | (job_start > last_start))
    out.add(
        "job_start_window",
        outside_window,
        np.maximum(jb.release - job_start, job_start - last_start),
        lambda index, _a: (
            f"{at_job(index)}: starts in period {job_start[index]}, outside its window "
            f"{jb.release[index]}..{last_start[index]}"
        ),
    )

    # ------------------------------------------------------------------ 2. inference demand
    in_slo = inst.slo_mask()  # (K,S)
    served_in_slo = np.einsum("kst,ks->kt", served, in_slo.astype(np.float64))
    bad, residual = _eq(served_in_slo + unserved, inf.demand, tol)
    out.add(
        "demand_balance",
        bad,
        residual,
        lambda index, amount: (
            f"class {class_names[index[0]]!r} period {index[1]}: served + unserved = "
            f"{served_in_slo[index] + unserved[index]:.6g} GPUs, demand {inf.demand[index]:.6g}"
        ),
    )
    out.add(
        "served_outside_slo",
        ~in_slo[:, :, None] & ~(np.abs(served) <= tol),
        served,
        lambda index, amount: (
            f"class {class_names[index[0]]!r} site {site_names[index[1]]!r} period {index[2]}: "
            f"{amount:.6g} GPUs served outside the latency SLO"
        ),
    )

    # ------------------------------------------------------------------ 3. GPU capacity
    busy = busy_gpus(inst, job_site, job_start, served)
    capacity = np.broadcast_to(s.gpus[:, None].astype(np.float64), busy.shape)
    bad, excess = _le(busy, capacity, tol)
    out.add(
        "gpu_capacity",
        bad,
        excess,
        lambda index, amount: f"{at_site_period(index)}: {busy[index]:.6g} GPUs busy, capacity {capacity[index]:g}",
    )

    # ------------------------------------------------------------------ 4-5. power balance
    it_power = (s.gpu_idle_kw * s.gpus)[:, None] + (s.gpu_busy_kw - s.gpu_idle_kw)[:, None] * busy
    facility_load = s.pue * it_power / 1000.0
    demand_side = facility_load + ch + exp
    supply_side = renewable + gen + dis + imp + ens
    bad, residual = _eq(demand_side, supply_side, tol)
    out.add(
        "power_balance",
        bad,
        residual,
        lambda index, _a: (
            f"{at_site_period(index)}: load {facility_load[index]:.6g} + charge {ch[index]:.6g} + export "
            f"{exp[index]:.6g} = {demand_side[index]:.6g} MW, but renewable + gen + discharge + import + ens = "
            f"{supply_side[index]:.6g} MW"
        ),
    )

    # ------------------------------------------------------------------ 6. battery
    soc0 = s.bat_soc0_mwh
    soc_before = np.concatenate([soc0[:, None], soc[:, :-1]], axis=1)
    soc_expected = soc_before + dt * (s.bat_eta_charge[:, None] * ch - dis / s.bat_eta_discharge[:, None])
    bad, residual = _eq(soc, soc_expected, tol)
    out.add(
        "battery_dynamics",
        bad,
        residual,
        lambda index, _a: f"{at_site_period(index)}: soc {soc[index]:.6g} MWh, dynamics give {soc_expected[index]:.6g}",
    )
    terminal_deficit = soc0 - soc[:, -1]
    out.add(
        "battery_terminal",
        ~(terminal_deficit <= tol * _scale(soc0)),
        terminal_deficit,
        lambda index, _a: (
            f"site {site_names[index[0]]!r}: final soc {soc[index[0], -1]:.6g} MWh below soc0 {soc0[index]:.6g}"
        ),
    )
    power = s.bat_power_mw[:, None]
    bad, excess = _le(ch, power * beta, tol)
    out.add(
        "battery_charge_mode",
        bad,
        excess,
        lambda index, _a: f"{at_site_period(index)}: charge {ch[index]:.6g} MW with bat_charging = {beta[index]:g}",
    )
    bad, excess = _le(dis, power * (1.0 - beta), tol)
    out.add(
        "battery_discharge_mode",
        bad,
        excess,
        lambda index, _a: f"{at_site_period(index)}: discharge {dis[index]:.6g} MW with bat_charging = {beta[index]:g}",
    )

    # ------------------------------------------------------------------ 7. grid direction
    bad, excess = _le(imp, s.grid_import_mw[:, None] * gamma, tol)
    out.add(
        "grid_import_direction",
        bad,
        excess,
        lambda index, _a: f"{at_site_period(index)}: import {imp[index]:.6g} MW with grid_importing = {gamma[index]:g}",
    )
    bad, excess = _le(exp, s.grid_export_mw[:, None] * (1.0 - gamma), tol)
    out.add(
        "grid_export_direction",
        bad,
        excess,
        lambda index, _a: f"{at_site_period(index)}: export {exp[index]:.6g} MW with grid_importing = {gamma[index]:g}",
    )

    # ------------------------------------------------------------------ 8. generator
    gen_floor = s.gen_min_mw[:, None] * on
    bad, deficit = _le(gen_floor, gen, tol)
    out.add(
        "gen_min_output",
        bad,
        deficit,
        lambda index, _a: f"{at_site_period(index)}: gen {gen[index]:.6g} MW below Gmin·on = {gen_floor[index]:.6g}",
    )
    gen_ceiling = s.gen_max_mw[:, None] * on
    bad, excess = _le(gen, gen_ceiling, tol)
    out.add(
        "gen_max_output",
        bad,
        excess,
        lambda index, _a: f"{at_site_period(index)}: gen {gen[index]:.6g} MW above Gmax·on = {gen_ceiling[index]:.6g}",
    )
    on_before = np.concatenate([np.zeros((n_sites, 1)), on[:, :-1]], axis=1)
    switched_on = on - on_before
    bad, deficit = _le(switched_on, su, tol)
    out.add(
        "gen_startup",
        bad,
        deficit,
        lambda index, _a: f"{at_site_period(index)}: generator switched on without gen_start = 1",
    )
    starts_in_up_window = _window_sums(su, s.gen_min_up)
    bad, excess = _le(starts_in_up_window, on, tol)
    out.add(
        "gen_min_up",
        bad,
        excess,
        lambda index, _a: (
            f"{at_site_period(index)}: off (on = {on[index]:g}) within min up time "
            f"{s.gen_min_up[index[0]]} of a start-up"
        ),
    )
    starts_in_down_window = _window_sums(su, s.gen_min_down)
    periods = np.arange(n_periods)[None, :]
    down_reference = periods - s.gen_min_down[:, None]
    on_at_reference = np.where(down_reference >= 0, np.take_along_axis(on, np.maximum(down_reference, 0), axis=1), 0.0)
    bad, excess = _le(starts_in_down_window, 1.0 - on_at_reference, tol)
    out.add(
        "gen_min_down",
        bad,
        excess,
        lambda index, _a: (
            f"{at_site_period(index)}: start-up within min down time {s.gen_min_down[index[0]]} of a shut-down"
        ),
    )
    no_generator = (s.gen_max_mw == 0)[:, None]
    generator_activity = np.maximum(np.abs(gen), np.maximum(np.abs(on), np.abs(su)))
    out.add(
        "gen_absent",
        no_generator & ~(generator_activity <= tol),
        generator_activity,
        lambda index, _a: (
            f"{at_site_period(index)}: site has no generator but gen = {gen[index]:.6g}, "
            f"gen_on = {on[index]:g}, gen_start = {su[index]:g}"
        ),
    )

    # ------------------------------------------------------------------ variable bounds
    def check_bounds(name: str, values: np.ndarray, lower: np.ndarray | float, upper: np.ndarray | float) -> None:
        lower_b = np.broadcast_to(lower, values.shape)
        upper_b = np.broadcast_to(upper, values.shape)
        within = (values >= lower_b - tol) & (values <= upper_b + tol)
        amount = np.maximum(lower_b - values, values - upper_b)
        out.add(
            f"bound:{name}",
            ~within,
            amount,
            lambda index, _a: (
                f"{locate(name, index)}: {name} = {values[index]:.6g} outside [{lower_b[index]:g}, {upper_b[index]:g}]"
            ),
        )

    check_bounds("served", served, 0.0, np.inf)
    check_bounds("unserved", unserved, 0.0, np.inf)
    check_bounds("grid_import", imp, 0.0, s.grid_import_mw[:, None])
    check_bounds("grid_export", exp, 0.0, s.grid_export_mw[:, None])
    check_bounds("charge", ch, 0.0, s.bat_power_mw[:, None])
    check_bounds("discharge", dis, 0.0, s.bat_power_mw[:, None])
    check_bounds("soc", soc, 0.0, s.bat_energy_mwh[:, None])
    check_bounds("gen", gen, 0.0, s.gen_max_mw[:, None])
    check_bounds("renewable_used", renewable, 0.0, s.renewable_mw)
    check_bounds("ens", ens, 0.0, np.inf)

    for name in ENERGY_BINARY_FIELDS:
        values = energy[name]
        distance = np.minimum(np.abs(values), np.abs(values - 1.0))
        out.add(
            f"binary:{name}",
            ~(distance <= tol),
            distance,
            lambda index, _a, name=name, values=values: (
                f"{at_site_period(index)}: {name} = {values[index]:.6g} not in {{0, 1}}"
            ),
        )

    # ------------------------------------------------------------------ 9. carbon, scores
    breakdown, emissions_t = breakdown_from_arrays(inst, job_site, job_start, served, unserved, energy)
    budget = float(inst.carbon_budget_t)
    carbon_excess = max(0.0, emissions_t - budget) if math.isfinite(budget) else 0.0
    if carbon and math.isfinite(budget):
        bad, excess = _le(np.float64(emissions_t), np.float64(budget), tol)
        out.add(
            "carbon_budget",
            bad,
            excess,
            lambda _i, amount: f"emissions {emissions_t:.6g} t exceed the budget {budget:.6g} t by {amount:.6g} t",
        )

    for term in BREAKDOWN_TERMS:
        recomputed = breakdown[term]
        if term not in sol.breakdown:
            out.add(f"breakdown:{term}", True, math.inf, lambda _i, _a, term=term: f"term {term} not reported")
            continue
        reported = sol.breakdown[term]
        bad, residual = _eq(np.float64(reported), np.float64(recomputed), tol)
        out.add(
            f"breakdown:{term}",
            bad,
            residual,
            lambda _i, _a, term=term, reported=reported, recomputed=recomputed: (
                f"reported {term} = {reported:.10g} $, recomputed {recomputed:.10g} $"
            ),
        )
    reported_sum = sum_terms(sol.breakdown)
    bad = not abs(sol.objective - reported_sum) <= tol * max(1.0, abs(sol.objective))
    out.add(
        "objective",
        bad,
        sol.objective - reported_sum,
        lambda _i, _a: (
            f"reported objective {sol.objective:.10g} $ differs from the sum of its terms {reported_sum:.10g} $"
        ),
    )
    bad, residual = _eq(np.float64(sol.emissions_t), np.float64(emissions_t), tol)
    out.add(
        "emissions",
        bad,
        residual,
        lambda _i, _a: f"reported emissions {sol.emissions_t:.10g} t, recomputed {emissions_t:.10g} t",
    )

    return CheckReport(
        ok=not out.counts,
        violations=out.violations,
        counts=out.counts,
        objective=sum_terms(breakdown),
        emissions=emissions_t,
        breakdown=breakdown,
        carbon_budget_t=budget,
        carbon_excess_t=carbon_excess,
        carbon_enforced=carbon,
    )
