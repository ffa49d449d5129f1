"""Pictures of a solution, of a comparison and of a frontier (matplotlib, written as PNG files).

Figures are drawn on :class:`matplotlib.figure.Figure` objects, never through ``pyplot``, so nothing
here touches a display or the global backend: every file is rendered by Agg.

``plot_solution`` writes one PNG per figure:

* ``gantt.png`` — each training job as a bar from its start to its end, one row per job, grouped and
  coloured by site;
* ``dispatch.png`` — for each of the sites with the largest IT energy (at most ``max_sites``, plus one panel
  adding up all the others), the supply stacked per period (renewables used, battery discharge,
  generator, grid import, load shed) against the facility load, with charging and export drawn below zero
  and curtailed renewables hatched;
* ``soc.png`` — the state of charge of every battery against its capacity;
* ``emissions.png`` — emissions per period by site and cumulative emissions against the carbon budget;
* ``trace.png`` — the best plan's Z and the proven bound over the solve's wall time (when the
  solution has a trace).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from carbonsched.instances.schema import Instance

from .solution import Solution
from .tables import it_load_mw

log = logging.getLogger(__name__)

#: Figure names :func:`plot_solution` can write, in order.
SOLUTION_FIGURES: tuple[str, ...] = ("gantt", "dispatch", "soc", "emissions", "trace")
_DPI = 110


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=_DPI, layout="constrained")


def _save(fig, path: Path) -> Path:
    fig.savefig(path)
    log.info("wrote %s", path)
    return path


def _colors(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def plot_gantt(inst: Instance, sol: Solution, path: Path) -> Path:
    """Training jobs as bars over the periods, grouped and coloured by site (``path``, PNG)."""
    jb = inst.jobs
    hours = float(inst.period_hours)
    placed = np.flatnonzero((sol.job_site >= 0) & (sol.job_start >= 0))
    order = placed[np.lexsort((sol.job_start[placed], sol.job_site[placed]))]
    colors = _colors(inst.n_sites)
    fig = _figure(10, 1.2 + 0.28 * max(len(order), 1))
    ax = fig.add_subplot()
    for row, j in enumerate(order):
        i = int(sol.job_site[j])
        ax.barh(row, jb.duration[j] * hours, left=sol.job_start[j] * hours, color=colors[i], edgecolor="black",
                linewidth=0.4)
        ax.text(sol.job_start[j] * hours + 0.1, row, f"{jb.gpus[j]:,} GPUs", va="center", fontsize=7)
    ax.set_yticks(range(len(order)), [f"{jb.name[j]} @ {inst.sites.name[sol.job_site[j]]}" for j in order],
                  fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, inst.n_periods * hours)
    ax.set_xlabel(f"hours since the start of period 0 (period = {hours:g} h)")
    skipped = inst.n_jobs - len(placed)
    ax.set_title(f"{inst.name}, {sol.method}: {len(placed)} of {inst.n_jobs} training jobs scheduled"
                 + (f" ({skipped} not run)" if skipped else ""))
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


def _site_panels(inst: Instance, sol: Solution, max_sites: int) -> list[tuple[str, np.ndarray]]:
    """The sites drawn one by one (largest IT energy first) and, if any are left, one aggregate panel."""
    energy = it_load_mw(inst, sol).sum(axis=1)
    order = np.argsort(-energy, kind="stable")
    shown = order[:max_sites]
    panels = [(str(inst.sites.name[i]), np.array([i])) for i in shown]
    rest = order[max_sites:]
    if rest.size:
        panels.append((f"{rest.size} other sites (sum)", rest))
    return panels


def plot_dispatch(inst: Instance, sol: Solution, path: Path, max_sites: int = 4) -> Path:
    """Each site's energy supply stacked against its facility load, per period (``path``, PNG)."""
    s = inst.sites
    hours = float(inst.period_hours)
    t = np.arange(inst.n_periods + 1) * hours  # step plots need the end of the last period too
    load = s.pue * it_load_mw(inst, sol)
    ext = lambda a: np.append(a, a[-1:])  # noqa: E731
    panels = _site_panels(inst, sol, max_sites)
    fig = _figure(10, 2.3 * len(panels) + 0.6)
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    supply = [("renewables used", sol.renewable_used, "#4daf4a"), ("battery discharge", sol.discharge, "#984ea3"),
              ("generator", sol.gen, "#ff7f00"), ("grid import", sol.grid_import, "#377eb8"),
              ("load shed", sol.ens, "#e41a1c")]
    sinks = [("battery charge", sol.charge, "#c2a5cf"), ("grid export", sol.grid_export, "#a6cee3")]
    for ax, (title, idx) in zip(axes, panels, strict=True):
        ys = [ext(arr[idx].sum(axis=0)) for _, arr, _ in supply]
        ax.stackplot(t, *ys, labels=[n for n, _, _ in supply], colors=[c for _, _, c in supply], step="post")
        curtailed = ext((s.renewable_mw[idx] - sol.renewable_used[idx]).sum(axis=0))
        top = np.sum(ys, axis=0)
        ax.fill_between(t, top, top + curtailed, step="post", facecolor="none", edgecolor="#4daf4a", hatch="///",
                        linewidth=0, label="renewables curtailed")
        down = [-ext(arr[idx].sum(axis=0)) for _, arr, _ in sinks]
        ax.stackplot(t, *down, labels=[n for n, _, _ in sinks], colors=[c for _, _, c in sinks], step="post")
        ax.step(t, ext(load[idx].sum(axis=0)), where="post", color="black", linewidth=1.5,
                label="facility load (pue·IT)")
        ax.axhline(0, color="grey", linewidth=0.5)
        ax.set_ylabel("MW")
        ax.set_title(title, fontsize=9, loc="left")
        ax.grid(alpha=0.3)
    axes[0].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7)
    axes[-1].set_xlabel(f"hours since the start of period 0 (period = {hours:g} h)")
    fig.suptitle(f"{inst.name}, {sol.method}: energy dispatch against facility load")
    return _save(fig, path)


def plot_soc(inst: Instance, sol: Solution, path: Path, max_sites: int = 10) -> Path:
    """State of charge of each battery (the largest ``max_sites``) against its capacity (``path``, PNG)."""
    s = inst.sites
    hours = float(inst.period_hours)
    has = np.flatnonzero((s.bat_energy_mwh > 0) & (s.bat_power_mw > 0))
    has = has[np.argsort(-s.bat_energy_mwh[has], kind="stable")][:max_sites]
    fig = _figure(10, 4)
    ax = fig.add_subplot()
    colors = _colors(max(len(has), 1))
    t_end = (np.arange(inst.n_periods) + 1) * hours
    for c, i in zip(colors, has, strict=False):
        ax.plot(np.r_[0.0, t_end], np.r_[s.bat_soc0_mwh[i], sol.soc[i]], color=c, marker=".",
                label=f"{s.name[i]} ({s.bat_energy_mwh[i]:,.0f} MWh)")
        ax.axhline(s.bat_energy_mwh[i], color=c, linestyle="--", linewidth=0.8)
    if not len(has):
        ax.text(0.5, 0.5, "no site has a battery", transform=ax.transAxes, ha="center")
    else:
        ax.legend(fontsize=8)
    ax.set_xlabel("hours since the start of period 0 (end of each period)")
    ax.set_ylabel("state of charge, MWh (dashed: capacity)")
    ax.set_title(f"{inst.name}, {sol.method}: battery state of charge")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_emissions(inst: Instance, sol: Solution, path: Path, max_sites: int = 8) -> Path:
    """Emissions per period stacked by site and cumulative emissions against the budget (``path``, PNG)."""
    s = inst.sites
    hours = float(inst.period_hours)
    t = np.arange(inst.n_periods) * hours
    per = hours * (s.grid_co2 * sol.grid_import + s.gen_co2[:, None] * sol.gen)  # (S,T) t
    order = np.argsort(-per.sum(axis=1), kind="stable")
    fig = _figure(10, 4.5)
    ax, ax2 = fig.subplots(1, 2)
    bottom = np.zeros(inst.n_periods)
    colors = _colors(min(inst.n_sites, max_sites) + 1)
    groups = [(str(s.name[i]), [i]) for i in order[:max_sites]]
    if inst.n_sites > max_sites:
        groups.append((f"{inst.n_sites - max_sites} other sites", list(order[max_sites:])))
    for c, (label, idx) in zip(colors, groups, strict=False):
        vals = per[idx].sum(axis=0)
        ax.bar(t, vals, width=hours, bottom=bottom, align="edge", color=c, label=label)
        bottom += vals
    ax.set_xlabel("hours since the start of period 0")
    ax.set_ylabel("t CO2 per period")
    ax.set_title("emissions per period, by site", fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    cum = np.r_[0.0, np.cumsum(per.sum(axis=0))]
    ax2.plot(np.r_[t, inst.n_periods * hours], cum, color="black", label=f"cumulative ({cum[-1]:,.1f} t)")
    if math.isfinite(inst.carbon_budget_t):
        ax2.axhline(inst.carbon_budget_t, color="red", linestyle="--",
                    label=f"budget C = {inst.carbon_budget_t:,.1f} t")
    ax2.set_xlabel("hours since the start of period 0")
    ax2.set_ylabel("t CO2")
    ax2.set_title("cumulative emissions against the budget", fontsize=10)
    ax2.legend(fontsize=8)
    ax2.grid(alpha=0.3)
    fig.suptitle(f"{inst.name}, {sol.method}: emissions {sol.emissions_t:,.1f} t")
    return _save(fig, path)


def plot_trace(sol: Solution, path: Path) -> Path | None:
    """Z of the best plan and the proven bound over wall time, from ``sol.trace`` (None without a trace)."""
    tr = sol.trace
    if tr is None or len(tr) == 0:
        log.info("%s: no trace, no trace figure", sol.method)
        return None
    fig = _figure(8, 4)
    ax = fig.add_subplot()
    primal = np.where(np.isfinite(tr.primal), tr.primal, np.nan)
    dual = np.where(np.isfinite(tr.dual), tr.dual, np.nan)
    ax.step(tr.seconds, primal, where="post", label="best plan Z (primal)", color="tab:blue")
    ax.step(tr.seconds, dual, where="post", label="proven bound (dual)", color="tab:red")
    finite = np.r_[primal[np.isfinite(primal)], dual[np.isfinite(dual)]]
    if finite.size:
        # the first bounds are often far above the optimum; keep the end game readable
        lo, hi = np.nanmin(primal) if np.isfinite(primal).any() else finite.min(), sol.objective
        span = max(abs(hi - lo), abs(sol.bound - sol.objective) if math.isfinite(sol.bound) else 0, 1.0)
        ax.set_ylim(lo - 0.1 * span, hi + 0.6 * span)
    ax.set_xlabel("wall time, s")
    ax.set_ylabel("Z, $")
    gap = f", gap {100 * sol.gap:.3f}%" if math.isfinite(sol.gap) else ""
    ax.set_title(f"{sol.instance_name}, {sol.method}: {sol.status.value}{gap}")
    ax.legend()
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_solution(inst: Instance, sol: Solution, out_dir: str | os.PathLike, *,
                  figures: Sequence[str] = SOLUTION_FIGURES, max_sites: int = 4) -> list[Path]:
    """Write the figures of the module docstring as ``out_dir/NAME.png``; returns the files written.

    Parameters
    ----------
    inst : Instance
        The instance ``sol`` answers.
    sol : Solution
        The solution to draw.
    out_dir : path
        Folder for the PNGs (created if needed).
    figures : sequence of str
        Which of :data:`SOLUTION_FIGURES` to draw (``trace`` is skipped when the solution has none).
    max_sites : int
        Dispatch panels drawn site by site; the other sites are summed into one panel.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sol.check_shapes(inst.dims())
    written = []
    for name in figures:
        if name == "gantt":
            written.append(plot_gantt(inst, sol, out / "gantt.png"))
        elif name == "dispatch":
            written.append(plot_dispatch(inst, sol, out / "dispatch.png", max_sites=max_sites))
        elif name == "soc":
            written.append(plot_soc(inst, sol, out / "soc.png"))
        elif name == "emissions":
            written.append(plot_emissions(inst, sol, out / "emissions.png"))
        elif name == "trace":
            path = plot_trace(sol, out / "trace.png")
            if path is not None:
                written.append(path)
        else:
            raise ValueError(f"unknown figure {name!r}; choose from {', '.join(SOLUTION_FIGURES)}")
    return written


def plot_comparison(inst: Instance, results: dict[str, Solution], path: str | os.PathLike,
                    unproven: dict[str, bool] | None = None) -> Path:
    """The comparison table as a chart: Z per strategy and emissions against the budget (``path``, PNG).

    Strategies in ``unproven`` (True) are hatched: a limit stopped a solve behind their difference to joint.
    """
    names = list(results)
    unproven = unproven or {}
    z = np.array([results[n].objective for n in names])
    em = np.array([results[n].emissions_t for n in names])
    fig = _figure(11, 0.5 + 0.45 * len(names))
    ax, ax2 = fig.subplots(1, 2, sharey=True)
    y = np.arange(len(names))
    hatch = ["//" if unproven.get(n) else "" for n in names]
    # a baseline that sheds load can lose millions; clip its bar so the others stay readable
    lo = min(0.0, np.percentile(z, 25) - 0.5 * (np.max(z) - np.percentile(z, 25) + 1.0))
    bars = ax.barh(y, np.maximum(z, lo), color=["tab:green" if n == "joint" else "tab:grey" for n in names],
                   hatch=hatch, edgecolor="black", linewidth=0.4)
    for bar, value in zip(bars, z, strict=True):
        label = f" {value:,.0f}" + (" (off scale)" if value < lo else "")
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, label, va="center", fontsize=7)
    joint = results.get("joint")
    if joint is not None and math.isfinite(joint.bound):
        ax.axvline(joint.bound, color="red", linestyle=":", label=f"joint's bound {joint.bound:,.0f} $")
        ax.legend(fontsize=7, loc="lower left")
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.set_xlim(left=lo)
    ax.set_xlabel("total benefit Z, $" + (" (bars clipped on the left)" if z.min() < lo else ""))
    ax.grid(axis="x", alpha=0.3)
    ax2.barh(y, em, color="tab:brown", hatch=hatch, edgecolor="black", linewidth=0.4)
    if math.isfinite(inst.carbon_budget_t):
        ax2.axvline(inst.carbon_budget_t, color="red", linestyle="--", label=f"budget {inst.carbon_budget_t:,.1f} t")
        ax2.legend(fontsize=7)
    ax2.set_xlabel("emissions, t CO2")
    ax2.grid(axis="x", alpha=0.3)
    title = f"{inst.name}: strategies compared"
    if any(unproven.values()):
        title += " (hatched: a time limit leaves the difference to joint unproven)"
    fig.suptitle(title, fontsize=10)
    return _save(fig, Path(path))


def plot_frontier(rows: dict[str, np.ndarray], path: str | os.PathLike, title: str = "") -> Path:
    """Benefit Z against emissions, one line per strategy through its budgets (``path``, PNG).

    Parameters
    ----------
    rows : dict of str to array
        The columns of a frontier results file: ``strategy``, ``budget_t``, ``objective``, ``bound``,
        ``emissions_t``, ``status``.
    """
    fig = _figure(8, 5)
    ax = fig.add_subplot()
    strategies = list(dict.fromkeys(str(s) for s in rows["strategy"]))
    markers = dict(zip(strategies, "osD^v<>", strict=False))
    for c, name in zip(_colors(len(strategies)), strategies, strict=False):
        sel = np.flatnonzero(np.asarray(rows["strategy"]).astype(str) == name)
        sel = sel[np.argsort(rows["budget_t"][sel])]
        ok = np.array([str(rows["status"][k]) in ("optimal", "gap_limit") for k in sel])
        ax.plot(rows["emissions_t"][sel], rows["objective"][sel], color=c, marker=markers.get(name, "o"), label=name)
        if (~ok).any():
            ax.scatter(rows["emissions_t"][sel][~ok], rows["objective"][sel][~ok], s=90, facecolors="none",
                       edgecolors="red", zorder=3)
        if name == "joint":
            for k in sel:
                ax.annotate(f"C={rows['budget_t'][k]:g}", (rows["emissions_t"][k], rows["objective"][k]),
                            textcoords="offset points", xytext=(4, -10), fontsize=7)
    z = np.asarray(rows["objective"], dtype=float)
    good = z[np.isfinite(z)]
    if good.size and np.median(good) - good.min() > 5 * (good.max() - np.median(good) + 1.0):
        # a strategy that sheds load at VOLL would flatten every other line
        span = good.max() - np.median(good) + 1.0
        ax.set_ylim(np.median(good) - 4 * span, good.max() + 0.5 * span)
        ax.text(0.01, 0.01, "points below the axis are cut off", transform=ax.transAxes, fontsize=7)
    ax.set_xlabel("emissions, t CO2")
    ax.set_ylabel("total benefit Z, $")
    ax.set_title(title or "benefit–emissions frontier (red ring: solve stopped at a limit)", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, Path(path))
