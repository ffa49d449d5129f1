"""Calibration figures of an instance, and the text ``carbonsched info FILE`` prints.

Every figure is computed from the instance alone (any file, generated or not). Two reference
quantities appear throughout:

* **marginal cost of a GPU-hour** at site i in period t, $/GPU-h: the extra facility energy of one GPU
  busy rather than idle for an hour, bought from the grid and priced with its carbon,

      mc_{i,t} = (b_i − a_i) · pue_{i,t} / 1000 · (π^buy_{i,t} + τ · κ_{i,t});

  idle power is drawn whether or not work runs, so it is not part of the margin;

* **the all-grid plan**: every demanded GPU-hour served where the work is, all facility energy from
  the grid — each training job's GPU-hours spread evenly over its window [r_j, D_j) and its allowed
  sites, each inference class at its lowest-latency site. Its emissions are reported gross (all
  facility energy imported) and net of on-site renewables (import = max(0, load − R)).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .schema import Instance


def marginal_cost_per_gpu_hour(inst: Instance) -> np.ndarray:
    """(S, T) marginal energy + carbon cost of one busy GPU-hour bought from the grid, $/GPU-h."""
    s = inst.sites
    kw_per_gpu = (s.gpu_busy_kw - s.gpu_idle_kw)[:, None] * s.pue
    return kw_per_gpu / 1000.0 * (s.price_buy + inst.carbon_price * s.grid_co2)


def job_window_mask(inst: Instance) -> np.ndarray:
    """(J, T) bool: period t lies in job j's window [r_j, D_j)."""
    t = np.arange(inst.n_periods)
    jb = inst.jobs
    return (t[None, :] >= jb.release[:, None]) & (t[None, :] < jb.deadline[:, None])


def job_gpu_hours(inst: Instance) -> np.ndarray:
    """(J,) GPU-hours of each job, g_j · d_j · Δ."""
    jb = inst.jobs
    return jb.gpus * jb.duration * float(inst.period_hours)


def job_marginal_cost(inst: Instance, mc: np.ndarray | None = None) -> np.ndarray:
    """(J,) mean marginal cost per GPU-hour over job j's allowed sites and window periods, $/GPU-h."""
    if inst.n_jobs == 0:
        return np.zeros(0)
    mc = marginal_cost_per_gpu_hour(inst) if mc is None else mc
    allowed = inst.jobs.allowed.astype(float)
    site_mean = (allowed / allowed.sum(axis=1, keepdims=True)) @ mc  # (J, T)
    window = job_window_mask(inst)
    return (site_mean * window).sum(axis=1) / window.sum(axis=1)


def all_grid_busy_gpus(inst: Instance) -> np.ndarray:
    """(S, T) busy GPUs of the all-grid plan (jobs spread over window and allowed sites, inference at
    its lowest-latency site); may exceed a site's GPUs, it measures demand rather than a schedule."""
    S, T = inst.n_sites, inst.n_periods
    busy = np.zeros((S, T))
    jb, inf = inst.jobs, inst.inference
    if inst.n_jobs:
        window = job_window_mask(inst)
        rate = jb.gpus * jb.duration / window.sum(axis=1)  # GPUs busy on average over the window
        allowed = jb.allowed.astype(float)
        busy += (allowed / allowed.sum(axis=1, keepdims=True)).T @ (rate[:, None] * window)
    if inst.n_classes:
        nearest = np.argmin(inf.latency_ms, axis=1)  # first minimum: ties by index
        np.add.at(busy, nearest, inf.demand)
    return busy


def facility_mw(inst: Instance, busy_gpus: np.ndarray) -> np.ndarray:
    """(S, T) facility power, MW, for ``busy_gpus`` (S, T) busy GPUs: pue · (a·G + (b − a)·U) / 1000."""
    s = inst.sites
    it_mw = (s.gpu_idle_kw * s.gpus)[:, None] + (s.gpu_busy_kw - s.gpu_idle_kw)[:, None] * busy_gpus
    return s.pue * it_mw / 1000.0


def all_grid_emissions(inst: Instance) -> tuple[float, float]:
    """Emissions of the all-grid plan, t CO2: (gross, net of on-site renewables)."""
    load = facility_mw(inst, all_grid_busy_gpus(inst))
    dt = float(inst.period_hours)
    kappa = inst.sites.grid_co2
    gross = dt * float((kappa * load).sum())
    net = dt * float((kappa * np.maximum(load - inst.sites.renewable_mw, 0.0)).sum())
    return gross, net


def summarize(inst: Instance) -> dict[str, Any]:
    """Sizes and calibration figures of an instance.

    Returns
    -------
    dict
        Keys (units in the names): ``name``, ``S``, ``T``, ``J``, ``K``, ``period_hours``,
        ``horizon_h``, ``mandatory_jobs``, ``gpus_total``; GPU-hours ``gpu_hours_capacity``,
        ``gpu_hours_jobs``, ``gpu_hours_inference``, ``demand_ratio`` (demanded / capacity),
        ``peak_demand_ratio`` (max over periods of all-grid busy GPUs / total GPUs) and
        ``peak_period``; energy in MWh ``load_full_mwh`` (every GPU busy), ``load_idle_mwh`` (every
        GPU idle), ``load_demanded_mwh`` (the all-grid plan), ``renewable_mwh``, ``renewable_share``
        (of the demanded load); carbon in t ``emissions_all_grid_t``, ``emissions_all_grid_net_t``,
        ``carbon_budget_t``, ``budget_ratio_net`` and ``budget_ratio_gross`` (budget / emissions);
        ``carbon_price``, ``voll``; ``price_buy_range``, ``price_sell_range``, ``grid_co2_range``
        (min, mean, max) and ``negative_price_share`` (fraction of site-periods with π^buy < 0);
        ``mc_gpu_hour`` (min, median, max of the marginal cost over site-periods, $/GPU-h);
        ``job_value_gpu_hour`` (min, median, max of v_j / GPU-hours); ``value_cost_ratio`` (10th
        percentile, median, 90th percentile over jobs of value per GPU-hour / marginal cost over
        the job's allowed sites and window); ``inference_revenue_cost_ratio`` (median over classes
        of ρ_k / median marginal cost); ``slo_sites`` (min, mean over classes of |S_k|),
        ``classes_without_site``; ``sites_with_battery``, ``sites_with_generator``; ``extra``
        (root attributes such as generator, preset, seed).
    """
    s, jb, inf = inst.sites, inst.jobs, inst.inference
    dt, T = float(inst.period_hours), int(inst.n_periods)
    gpus_total = int(s.gpus.sum())
    cap = gpus_total * T * dt
    gh_jobs = float(job_gpu_hours(inst).sum())
    gh_inf = float(inf.demand.sum()) * dt
    busy = all_grid_busy_gpus(inst)
    per_period = busy.sum(axis=0) / max(gpus_total, 1)
    full = facility_mw(inst, np.broadcast_to(s.gpus[:, None].astype(float), (inst.n_sites, T)))
    idle = facility_mw(inst, np.zeros((inst.n_sites, T)))
    demanded = facility_mw(inst, busy)
    renewable_mwh = float(s.renewable_mw.sum()) * dt
    gross, net = all_grid_emissions(inst)
    budget = float(inst.carbon_budget_t)
    mc = marginal_cost_per_gpu_hour(inst)
    mc_med = float(np.median(mc))
    if inst.n_jobs:
        value_gh = jb.value / job_gpu_hours(inst)
        ratio = value_gh / job_marginal_cost(inst, mc)
        value_stats = (float(value_gh.min()), float(np.median(value_gh)), float(value_gh.max()))
        ratio_stats = tuple(float(v) for v in np.percentile(ratio, [10, 50, 90]))
    else:
        value_stats = ratio_stats = (float("nan"),) * 3
    slo = inst.slo_mask().sum(axis=1) if inst.n_classes else np.zeros(0, dtype=int)

    def rng3(a: np.ndarray) -> tuple[float, float, float]:
        return float(a.min()), float(a.mean()), float(a.max())

    return {
        "name": inst.name,
        "S": inst.n_sites,
        "T": T,
        "J": inst.n_jobs,
        "K": inst.n_classes,
        "period_hours": dt,
        "horizon_h": T * dt,
        "mandatory_jobs": int(jb.mandatory.sum()),
        "gpus_total": gpus_total,
        "gpu_hours_capacity": cap,
        "gpu_hours_jobs": gh_jobs,
        "gpu_hours_inference": gh_inf,
        "demand_ratio": (gh_jobs + gh_inf) / cap if cap else float("nan"),
        "peak_demand_ratio": float(per_period.max()),
        "peak_period": int(per_period.argmax()),
        "load_full_mwh": float(full.sum()) * dt,
        "load_idle_mwh": float(idle.sum()) * dt,
        "load_demanded_mwh": float(demanded.sum()) * dt,
        "renewable_mwh": renewable_mwh,
        "renewable_share": renewable_mwh / max(float(demanded.sum()) * dt, 1e-12),
        "emissions_all_grid_t": gross,
        "emissions_all_grid_net_t": net,
        "carbon_budget_t": budget,
        "budget_ratio_net": budget / net if net > 0 else float("inf"),
        "budget_ratio_gross": budget / gross if gross > 0 else float("inf"),
        "carbon_price": float(inst.carbon_price),
        "voll": float(inst.voll),
        "price_buy_range": rng3(s.price_buy),
        "price_sell_range": rng3(s.price_sell),
        "grid_co2_range": rng3(s.grid_co2),
        "negative_price_share": float((s.price_buy < 0).mean()),
        "mc_gpu_hour": (float(mc.min()), mc_med, float(mc.max())),
        "job_value_gpu_hour": value_stats,
        "value_cost_ratio": ratio_stats,
        "inference_revenue_cost_ratio": float(np.median(inf.revenue) / mc_med) if inst.n_classes else float("nan"),
        "slo_sites": (int(slo.min()), float(slo.mean())) if inst.n_classes else (0, float("nan")),
        "classes_without_site": int((slo == 0).sum()),
        "sites_with_battery": int((s.bat_energy_mwh > 0).sum()),
        "sites_with_generator": int((s.gen_max_mw > 0).sum()),
        "extra": {k: (v.item() if isinstance(v, np.generic) else v) for k, v in inst.extra_attrs.items()},
    }


def _num(x: float, digits: int = 0) -> str:
    if not np.isfinite(x):
        return str(x)
    return f"{x:,.{digits}f}"


def format_summary(inst: Instance) -> str:
    """A plain-text, two-column table of :func:`summarize` (what ``carbonsched info FILE`` prints)."""
    d = summarize(inst)
    ex = d["extra"]
    origin = ""
    if "generator" in ex:
        origin = f"{ex.get('generator')} v{ex.get('generator_version', '?')}, preset {ex.get('preset', '?')}, " \
                 f"seed {ex.get('seed', '?')}"
    pb, ps, co = d["price_buy_range"], d["price_sell_range"], d["grid_co2_range"]
    mc, vg, vr = d["mc_gpu_hour"], d["job_value_gpu_hour"], d["value_cost_ratio"]
    rows: list[tuple[str, str]] = [
        ("instance", d["name"]),
        *([("generated by", origin)] if origin else []),
        ("sites S / periods T / jobs J / classes K", f"{d['S']} / {d['T']} / {d['J']} / {d['K']}"),
        ("period Δ, horizon", f"{d['period_hours']:g} h, {d['horizon_h']:g} h"),
        ("mandatory jobs", str(d["mandatory_jobs"])),
        ("GPUs (all sites)", _num(d["gpus_total"])),
        ("GPU-h capacity", _num(d["gpu_hours_capacity"])),
        ("GPU-h demanded: jobs", f"{_num(d['gpu_hours_jobs'])} ({d['gpu_hours_jobs'] / d['gpu_hours_capacity']:.0%})"),
        ("GPU-h demanded: inference",
         f"{_num(d['gpu_hours_inference'])} ({d['gpu_hours_inference'] / d['gpu_hours_capacity']:.0%})"),
        ("demand / capacity: horizon", f"{d['demand_ratio']:.2f}"),
        ("demand / capacity: peak period", f"{d['peak_demand_ratio']:.2f} (t = {d['peak_period']})"),
        ("facility energy: all GPUs busy", f"{_num(d['load_full_mwh'])} MWh"),
        ("facility energy: all GPUs idle", f"{_num(d['load_idle_mwh'])} MWh"),
        ("facility energy: demanded", f"{_num(d['load_demanded_mwh'])} MWh"),
        ("on-site renewables", f"{_num(d['renewable_mwh'])} MWh ({d['renewable_share']:.0%} of demanded)"),
        ("CO2 all-grid plan: gross / net of RE", f"{_num(d['emissions_all_grid_t'])} / "
                                                 f"{_num(d['emissions_all_grid_net_t'])} t"),
        ("carbon budget C", f"{_num(d['carbon_budget_t'])} t ({d['budget_ratio_net']:.0%} of net, "
                            f"{d['budget_ratio_gross']:.0%} of gross)"),
        ("carbon price τ / VOLL", f"{d['carbon_price']:g} $/t / {_num(d['voll'])} $/MWh"),
        ("price buy min / mean / max", f"{pb[0]:.1f} / {pb[1]:.1f} / {pb[2]:.1f} $/MWh"),
        ("price sell min / mean / max", f"{ps[0]:.1f} / {ps[1]:.1f} / {ps[2]:.1f} $/MWh"),
        ("site-periods with price buy < 0", f"{d['negative_price_share']:.1%}"),
        ("grid CO2 min / mean / max", f"{co[0]:.3f} / {co[1]:.3f} / {co[2]:.3f} t/MWh"),
        ("marginal cost min / median / max", f"{mc[0]:.3f} / {mc[1]:.3f} / {mc[2]:.3f} $/GPU-h"),
        ("job value min / median / max", f"{vg[0]:.3f} / {vg[1]:.3f} / {vg[2]:.3f} $/GPU-h" if d["J"] else "n/a"),
        ("job value / marginal cost p10/p50/p90", f"{vr[0]:.2f} / {vr[1]:.2f} / {vr[2]:.2f}" if d["J"] else "n/a"),
        ("inference revenue / marginal cost", f"{d['inference_revenue_cost_ratio']:.1f}" if d["K"] else "n/a"),
        ("sites within SLO: min / mean", f"{d['slo_sites'][0]} / {d['slo_sites'][1]:.1f}"
                                         f" ({d['classes_without_site']} classes with none)" if d["K"] else "n/a"),
        ("sites with battery / generator", f"{d['sites_with_battery']} / {d['sites_with_generator']}"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)
