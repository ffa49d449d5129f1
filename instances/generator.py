"""Seeded generator of realistic instances: sites in real data-center regions, weather-driven
renewables, diurnal grid markets, microgrid assets, training jobs and latency-bound inference.

``generate(preset, seed=...)`` is a pure function of its arguments: every random draw comes from
numpy ``default_rng`` streams seeded with ``[seed, stream]`` (one stream per part: sites, weather,
market, assets, inference, jobs, policy), there is no global state, and physical arrays are
rounded to fixed decimals (MW to 0.1 kW, prices to cents, ...), which keeps files readable and makes
last-ulp differences of transcendental functions between platforms vanish. ``docs/instances.md``
lists every figure with its source.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from carbonsched.errors import InputError

from .build import SITE_DEFAULTS
from .network import build_network, great_circle_km, latency_matrix, site_node, user_node
from .regions import MODELS, REGIONS, region_index, region_table, user_region_index, user_region_table
from .schema import Inference, Instance, Jobs, Sites
from .summary import all_grid_emissions, job_marginal_cost, marginal_cost_per_gpu_hour
from .validation import validate

GENERATOR_NAME = "carbonsched.instances.generator"
GENERATOR_VERSION = 1

# ---------------------------------------------------------------------------------- calibration
#: Share of GPU-hour capacity demanded by training jobs and by inference (mean over the horizon);
#: together ~0.85, and with inference's diurnal peak the busiest period asks for ~100 % of the GPUs.
JOB_SHARE = 0.45
INFERENCE_SHARE = 0.40
#: Training jobs per site and inference classes per site for the scaled presets.
JOBS_PER_SITE = 3
SITES_PER_CLASS = 3
#: Job value = GPU-hours × marginal energy+carbon cost × a factor log-uniform in this range.
VALUE_FACTOR = (1.0, 3.0)
#: Inference margin ρ_k = mean marginal cost over the class's SLO sites × model price index × a factor
#: log-uniform in this range: ρ is read as the margin of a served GPU-hour over its non-energy costs,
#: so that energy and carbon compete with inference as they do with training at the margin.
INFERENCE_MARGIN_FACTOR = (1.5, 4.0)
#: Carbon budget = this fraction (uniform) of the all-grid plan's emissions net of renewables.
BUDGET_FRACTION = (0.60, 0.75)
CARBON_PRICE = 50.0  # $/t CO2, mid-range of EU ETS 2023-2025 prices
VOLL = 10_000.0  # $/MWh, typical of reliability-standard VOLL estimates (e.g. ERCOT cap 5,000, UK ~17,000 £)
#: Access latency of the metro network, outside the fiber graph, ms round trip.
ACCESS_RTT_MS = 2.0

# ---------------------------------------------------------------------------------- hardware
#: GPU generations (busy kW per GPU = board power: A100 SXM 400 W, H100 SXM 700 W, B200 1000 W) and
#: their shares; idle draw is 10-15 % of busy.
GPU_BUSY_KW = np.array([0.4, 0.7, 1.0])
GPU_MIX = np.array([0.2, 0.6, 0.2])
GPU_IDLE_FRACTION = (0.10, 0.15)
SITE_GPUS = (4_000, 32_000)  # log-uniform, rounded to 8-GPU servers
PUE_RANGE = (1.10, 1.40)
PUE_BASE = (1.10, 1.20)  # annual-best PUE of a modern hyperscale hall
PUE_PER_DEGREE = (0.004, 0.008)  # PUE rise per °C of ambient above the free-cooling threshold
FREE_COOLING_C = 15.0

# ---------------------------------------------------------------------------------- gas
CO2_T_PER_MMBTU = 0.05306  # natural gas, EPA emission factor 53.06 kg CO2 / MMBtu
MWH_PER_MMBTU = 0.29307  # 1 MMBtu = 0.29307 MWh (heat rate 3.412 MMBtu/MWh at 100 % efficiency)


@dataclass(frozen=True)
class Preset:
    """A named instance size.

    Attributes
    ----------
    sites, periods : int
        S and T.
    jobs, classes : int or None
        J and K; None scales with ``sites`` (JOBS_PER_SITE per site, one class per SITES_PER_CLASS sites,
        at least 3).
    period_hours : float
        Δ, hours.
    day_of_year : int or None
        Fixed day of the year (1-365) of the horizon's first period, or None to draw it from the seed.
    regions : tuple of str or None
        Fixed site regions (used when ``sites`` equals their number), else sampled.
    classes_fixed : tuple of (metro, model) or None
        Fixed inference classes (used when ``classes`` equals their number), else sampled.
    """

    sites: int
    periods: int = 24
    jobs: int | None = None
    classes: int | None = None
    period_hours: float = 1.0
    day_of_year: int | None = None
    regions: tuple[str, ...] | None = None
    classes_fixed: tuple[tuple[str, str], ...] | None = None


PRESETS: dict[str, Preset] = {
    # The paper's setting: three sites on two continents (PJM grid, solar-rich ERCOT, nuclear France),
    # six training jobs and three inference classes, one summer day in hourly periods.
    "paper": Preset(
        sites=3,
        jobs=6,
        classes=3,
        day_of_year=196,
        regions=("us-east-va", "us-south-tx", "eu-west-fr"),
        classes_fixed=(("new-york", "chat-70b"), ("dallas", "code-8b"), ("london", "reasoning-400b")),
    ),
    "small": Preset(sites=10),
    "medium": Preset(sites=50),
    "large": Preset(sites=200),
    "xl": Preset(sites=1000),
}

_STREAMS = {"sites": 1, "weather": 2, "market": 3, "assets": 4, "inference": 5, "jobs": 6, "policy": 7}


def _stream(seed: int, part: str) -> np.random.Generator:
    """Independent generator per part, so that e.g. more jobs leave the sites' weather unchanged."""
    return np.random.default_rng([seed, _STREAMS[part]])


def _log_uniform(rng: np.random.Generator, low: float, high: float, size) -> np.ndarray:
    return np.exp(rng.uniform(math.log(low), math.log(high), size))


def _ar1(rng: np.random.Generator, n_series: int, n_steps: int, phi: float) -> np.ndarray:
    """(n_series, n_steps) stationary AR(1) with unit variance and lag-one correlation ``phi``."""
    eps = rng.standard_normal((n_series, n_steps))
    out = np.empty_like(eps)
    out[:, 0] = eps[:, 0]  # start in the stationary distribution
    innovation = math.sqrt(1.0 - phi * phi)
    # The recursion runs over time only, each step vectorized over all series.
    for t in range(1, n_steps):
        out[:, t] = phi * out[:, t - 1] + innovation * eps[:, t]
    return out


def _circular_bump(hour: np.ndarray, center: float, width: float) -> np.ndarray:
    """Gaussian bump on the 24-h clock centred at ``center`` h with std ``width`` h."""
    d = (hour - center + 12.0) % 24.0 - 12.0
    return np.exp(-0.5 * (d / width) ** 2)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _logit(p: np.ndarray) -> np.ndarray:
    return np.log(p / (1.0 - p))


def _q(x: np.ndarray, decimals: int) -> np.ndarray:
    """Round to fixed decimals (and turn −0.0 into 0.0)."""
    return np.round(np.asarray(x, dtype=float), decimals) + 0.0


def _unique_names(base: list[str], always_number: bool) -> np.ndarray:
    """``base`` names made unique by a per-name counter suffix (``-001``, ``-002``, ...)."""
    total: dict[str, int] = {}
    for b in base:
        total[b] = total.get(b, 0) + 1
    seen: dict[str, int] = {}
    out = []
    for b in base:
        seen[b] = seen.get(b, 0) + 1
        out.append(f"{b}-{seen[b]:03d}" if always_number or total[b] > 1 else b)
    return np.array(out, dtype=object)


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InputError(f"{name} must be an integer >= {minimum} (got {value!r})")
    return int(value)


def generate(
    preset: str | None = None,
    *,
    sites: int | None = None,
    periods: int | None = None,
    jobs: int | None = None,
    classes: int | None = None,
    period_hours: float | None = None,
    seed: int = 0,
    name: str | None = None,
    day_of_year: int | None = None,
    job_sites: int = 10,
) -> Instance:
    """Generate a realistic instance, deterministically for a seed.

    Parameters
    ----------
    preset : {"paper", "small", "medium", "large", "xl"} or None
        Named size (:data:`PRESETS`); None builds by size from ``sites`` (required then).
    sites, periods, jobs, classes : int, optional
        Override S, T (default 24), J and K. Unset J and K scale with S (3 jobs per site, one class per
        3 sites, at least 3).
    period_hours : float, optional
        Δ in hours (default 1.0; 0.5 gives half-hour periods, the horizon is T·Δ hours).
    seed : int
        Seed (≥ 0) of every random draw.
    name : str, optional
        Instance name (default ``"<preset>-seed<seed>"``).
    day_of_year : int, optional
        Day (1-365) of the first period, which sets the sun's path and the season's temperatures;
        default the preset's (paper: 196, mid-July) or drawn from the seed.
    job_sites : int
        At most this many allowed sites per job (default 10; mandatory jobs get exactly min(S, job_sites),
        the others between half and all of it). The default keeps every shipped and documented draw;
        a larger value gives instances where jobs can run at most sites.

    Returns
    -------
    Instance
        Validated. Root attributes ``generator``, ``generator_version``, ``preset``, ``seed``,
        ``day_of_year`` and ``description`` are set in ``extra_attrs``.

    Raises
    ------
    InputError
        Unknown preset or a parameter out of range (names the parameter).
    """
    if preset is not None and preset not in PRESETS:
        raise InputError(f"unknown preset {preset!r} (choose from {', '.join(PRESETS)})")
    if preset is None and sites is None:
        raise InputError("sites is required when no preset is given")
    base = PRESETS[preset] if preset is not None else Preset(sites=int(sites))  # type: ignore[arg-type]
    seed = _check_int("seed", seed, 0)
    S = _check_int("sites", base.sites if sites is None else sites, 1)
    T = _check_int("periods", base.periods if periods is None else periods, 1)
    same_size = S == base.sites
    default_jobs = base.jobs if same_size and base.jobs is not None else JOBS_PER_SITE * S
    default_classes = base.classes if same_size and base.classes is not None else max(3, -(-S // SITES_PER_CLASS))
    J = _check_int("jobs", default_jobs if jobs is None else jobs, 0)
    K = _check_int("classes", default_classes if classes is None else classes, 0)
    dt = float(base.period_hours if period_hours is None else period_hours)
    if not (math.isfinite(dt) and dt > 0):
        raise InputError(f"period_hours must be > 0 (got {period_hours!r})")
    if day_of_year is None:
        day_of_year = base.day_of_year
    if day_of_year is None:
        day_of_year = int(_stream(seed, "weather").integers(1, 366))
    doy = _check_int("day_of_year", day_of_year, 1)
    if doy > 365:
        raise InputError(f"day_of_year must be in 1..365 (got {doy})")

    fixed_regions = base.regions if base.regions is not None and len(base.regions) == S else None
    fixed_classes = base.classes_fixed if base.classes_fixed is not None and len(base.classes_fixed) == K else None

    site = _sample_sites(seed, S, fixed_regions)
    weather = _weather(seed, site, T, dt, doy)
    market = _market(seed, site, weather, T)
    assets = _assets(seed, site, weather, dt)
    sites_obj = Sites(
        name=site["name"],
        lat=site["lat"],
        lon=site["lon"],
        gpus=site["gpus"],
        gpu_idle_kw=site["gpu_idle_kw"],
        gpu_busy_kw=site["gpu_busy_kw"],
        pue=weather["pue"],
        price_buy=market["price_buy"],
        price_sell=market["price_sell"],
        grid_co2=market["grid_co2"],
        **assets,
    )
    inference = _inference(seed, site, K, T, dt, fixed_classes)
    job_data = _jobs(seed, site, J, T, dt, job_sites)

    label = preset if preset is not None else "custom"
    inst = Instance(
        name=name if name is not None else f"{label}-seed{seed}",
        n_periods=T,
        period_hours=dt,
        voll=VOLL,
        carbon_budget_t=float("inf"),
        carbon_price=CARBON_PRICE,
        sites=sites_obj,
        jobs=job_data,
        inference=inference,
    )
    # Values and the budget are calibrated against the instance's own prices and emissions.
    policy = _stream(seed, "policy")
    factor = _log_uniform(policy, *VALUE_FACTOR, J)
    cost_ref = np.maximum(job_marginal_cost(inst, marginal_cost_per_gpu_hour(inst)), 0.01)
    inst.jobs.value = _q(inst.jobs.gpus * inst.jobs.duration * dt * cost_ref * factor, 2)
    if K:
        mc = marginal_cost_per_gpu_hour(inst)
        slo = inst.slo_mask()
        class_cost = np.where(slo, mc.mean(axis=1)[None, :], 0.0).sum(axis=1) / np.maximum(slo.sum(axis=1), 1)
        class_cost = np.maximum(class_cost, 0.01)
        price_index = inst.inference.revenue / np.mean([m.revenue for m in MODELS])
        margin = _q(class_cost * price_index * _log_uniform(policy, *INFERENCE_MARGIN_FACTOR, K), 4)
        scale = margin / np.maximum(inst.inference.revenue, 1e-12)
        inst.inference.penalty = _q(inst.inference.penalty * scale, 4)
        inst.inference.latency_cost = _q(inst.inference.latency_cost * scale, 7)
        inst.inference.revenue = margin
    _, net = all_grid_emissions(inst)
    inst.carbon_budget_t = float(_q(policy.uniform(*BUDGET_FRACTION) * net, 1))
    inst.extra_attrs = {
        "generator": GENERATOR_NAME,
        "generator_version": GENERATOR_VERSION,
        "preset": label,
        "seed": seed,
        "day_of_year": doy,
        "description": (
            f"Synthetic carbonsched instance, preset {label}: {S} sites, {T} periods of {dt:g} h, {J} training jobs, "
            f"{K} inference classes; day {doy} of the year; {GENERATOR_NAME} v{GENERATOR_VERSION}, seed {seed}."
        ),
    }
    return validate(inst)


# ======================================================================================= parts
def _sample_sites(seed: int, S: int, fixed: tuple[str, ...] | None) -> dict[str, np.ndarray]:
    """Regions, coordinates, GPU fleets and per-site constants."""
    rng = _stream(seed, "sites")
    table = region_table()
    n_regions = len(REGIONS)
    weight = table["weight"] / table["weight"].sum()
    if fixed is not None:
        idx = np.array([region_index(r) for r in fixed])
    elif S <= n_regions:
        idx = np.sort(rng.choice(n_regions, S, replace=False, p=weight))
    else:
        # Every region once, the rest with replacement by installed-capacity weight.
        idx = np.sort(np.concatenate([np.arange(n_regions), rng.choice(n_regions, S - n_regions, p=weight)]))
    repeated = S > n_regions
    lat, lon = table["lat"][idx].astype(float), table["lon"][idx].astype(float)
    if repeated:
        # Campuses of one region spread over its metro area: a few tenths of a degree.
        lat = lat + np.clip(rng.normal(0.0, 0.25, S), -0.6, 0.6)
        lon = lon + np.clip(rng.normal(0.0, 0.25, S), -0.6, 0.6)
    gpus = (np.round(_log_uniform(rng, *SITE_GPUS, S) / 8) * 8).astype(np.int64)
    busy_kw = GPU_BUSY_KW[rng.choice(len(GPU_BUSY_KW), S, p=GPU_MIX)]
    idle_kw = busy_kw * rng.uniform(*GPU_IDLE_FRACTION, S)
    out = {c: table[c][idx] for c in table}
    out.update(
        name=_unique_names([str(n) for n in table["name"][idx]], always_number=repeated),
        lat=_q(lat, 4),
        lon=_q(lon, 4),
        gpus=gpus,
        gpu_busy_kw=_q(busy_kw, 4),
        gpu_idle_kw=_q(idle_kw, 4),
        utc_offset=table["utc_offset"][idx].astype(float),
        solar_rich=table["solar_rich"][idx].astype(bool),
        pue_base=rng.uniform(*PUE_BASE, S),
        pue_slope=rng.uniform(*PUE_PER_DEGREE, S),
    )
    return out


def clear_sky_solar_cf(lat: np.ndarray, lon: np.ndarray, day_of_year: int, n_periods: int,
                       period_hours: float) -> np.ndarray:
    """Clear-sky PV capacity factor (AC MW per MW installed), averaged over each period.

    Parameters
    ----------
    lat, lon : numpy.ndarray
        (S,) site coordinates, degrees.
    day_of_year : int
        Day (1-365) of period 0, which starts at 00:00 UTC.
    n_periods : int
        T.
    period_hours : float
        Δ, hours.

    Returns
    -------
    numpy.ndarray
        (S, T) in [0, 0.9]: 0.9 · sin(elevation)^0.7 (a single-axis-tracking-like broad profile with a
        10 % derate), 0 while the sun is below the horizon. Solar position from the declination
        23.44° · sin(2π (284 + day) / 365) and the hour angle at local mean solar time (UTC + lon / 15).
    """
    n_sub = 4  # sub-samples per period: the period's mean output, not its midpoint's
    hour_utc = (np.arange(n_periods)[:, None] + (np.arange(n_sub) + 0.5) / n_sub) * period_hours  # (T, n_sub)
    day = day_of_year + hour_utc // 24.0
    declination = np.radians(23.44) * np.sin(2 * np.pi * (284.0 + day) / 365.0)
    solar_time = hour_utc[None] + np.asarray(lon, dtype=float)[:, None, None] / 15.0
    hour_angle = np.radians(15.0 * (solar_time - 12.0))
    phi = np.radians(np.asarray(lat, dtype=float))[:, None, None]
    sin_elev = np.sin(phi) * np.sin(declination) + np.cos(phi) * np.cos(declination) * np.cos(hour_angle)
    return (0.9 * np.clip(sin_elev, 0.0, 1.0) ** 0.7).mean(axis=2)


def _weather(seed: int, site: dict, T: int, dt: float, doy: int) -> dict[str, np.ndarray]:
    """Sun, clouds, wind, ambient temperature and PUE, all (S, T)."""
    rng = _stream(seed, "weather")
    rng.integers(1, 366)  # the day-of-year draw of generate(): keep the stream aligned either way
    S = len(site["name"])
    t = np.arange(T)
    clear_sky = clear_sky_solar_cf(site["lat"], site["lon"], doy, T, dt)

    phi_cloud = 0.9 ** dt  # hourly lag-one correlation 0.9
    clear_mean = np.where(site["solar_rich"], rng.uniform(0.78, 0.92, S), rng.uniform(0.55, 0.75, S))
    clearness = _sigmoid(_logit(clear_mean)[:, None] + 0.8 * _ar1(rng, S, T, phi_cloud))
    solar_cf = clear_sky * clearness

    mid_utc = (t + 0.5) * dt
    local_hour = (mid_utc[None, :] + site["utc_offset"][:, None]) % 24.0  # clock time
    solar_hour = (mid_utc[None, :] + site["lon"][:, None] / 15.0) % 24.0
    wind_z = _ar1(rng, S, T, 0.95 ** dt)  # hourly lag-one correlation 0.95: weather fronts last a day
    wind_mean = rng.uniform(0.25, 0.42, S)
    # Onshore hub-height wind peaks at night (nocturnal low-level jet over a stable surface layer).
    wind_cf = np.clip(_sigmoid(_logit(wind_mean)[:, None] + 1.0 * wind_z
                               + 0.25 * np.cos(2 * np.pi * (solar_hour - 2.0) / 24.0)), 0.0, 0.97)

    north = np.where(site["lat"] >= 0, 1.0, -1.0)
    season = np.cos(2 * np.pi * (doy - 200) / 365.0)  # +1 in late July
    daily_mean = site["temp_mean"].astype(float) + site["temp_seasonal"].astype(float) * season * north
    ambient = (daily_mean[:, None]
               + site["temp_diurnal"].astype(float)[:, None] * np.cos(2 * np.pi * (solar_hour - 15.0) / 24.0)
               + 1.0 * _ar1(rng, S, T, 0.9 ** dt))
    pue = site["pue_base"][:, None] + site["pue_slope"][:, None] * np.maximum(ambient - FREE_COOLING_C, 0.0)
    return {
        "clear_sky": clear_sky,
        "clearness": clearness,
        "solar_cf": solar_cf,
        "wind_cf": wind_cf,
        "wind_z": wind_z,
        "local_hour": local_hour,
        "ambient_c": ambient,
        "pue": _q(np.clip(pue, *PUE_RANGE), 4),
    }


def _market(seed: int, site: dict, weather: dict, T: int) -> dict[str, np.ndarray]:
    """Grid buy/sell prices ($/MWh) and carbon intensity (t/MWh), (S, T), around regional means."""
    rng = _stream(seed, "market")
    S = len(site["name"])
    h = weather["local_hour"]
    # Demand-driven daily shape: night trough, morning shoulder, evening peak (local clock time).
    shape = -0.18 * _circular_bump(h, 3.5, 3.0) + 0.12 * _circular_bump(h, 8.0, 1.5) + 0.30 * _circular_bump(h, 19.0,
                                                                                                              2.5)
    # Regional solar output (normalised clear-sky shape × today's clouds) depresses midday prices and
    # carbon; deep enough in solar-heavy grids to turn prices negative on clear days.
    solar = weather["clear_sky"] / np.maximum(weather["clear_sky"].max(axis=1, keepdims=True), 1e-9)
    solar = solar * weather["clearness"]
    rich = site["solar_rich"]
    price_dip = np.where(rich, rng.uniform(0.8, 1.6, S), rng.uniform(0.1, 0.3, S))
    co2_dip = np.where(rich, rng.uniform(0.25, 0.45, S), rng.uniform(0.05, 0.15, S))
    mean_price = site["price"].astype(float) * rng.uniform(0.9, 1.1, S)
    mean_co2 = site["grid_co2"].astype(float) * rng.uniform(0.92, 1.08, S)
    wind = weather["wind_z"]  # windy hours are cheaper and cleaner region-wide
    wholesale = mean_price[:, None] * (1.0 + shape - price_dip[:, None] * solar - 0.12 * wind
                                       + 0.05 * _ar1(rng, S, T, 0.7))
    # Buying pays network charges on top of wholesale; selling earns wholesale minus a fee.
    network_charge = rng.uniform(8.0, 20.0, S)
    export_fee = rng.uniform(1.0, 4.0, S)
    price_buy = _q(wholesale + network_charge[:, None], 2)
    price_sell = _q(wholesale - export_fee[:, None], 2)
    co2 = mean_co2[:, None] * (1.0 + 0.4 * shape - co2_dip[:, None] * solar - 0.10 * wind
                               + 0.03 * _ar1(rng, S, T, 0.7))
    return {
        "price_buy": price_buy,
        "price_sell": np.minimum(price_sell, price_buy),
        "grid_co2": _q(np.maximum(co2, 0.3 * mean_co2[:, None]), 5),
    }


def _assets(seed: int, site: dict, weather: dict, dt: float) -> dict[str, np.ndarray]:
    """Renewables (MW, (S, T)), grid connection, battery and generator of each microgrid."""
    rng = _stream(seed, "assets")
    S = len(site["name"])
    peak_mw = site["gpus"] * site["gpu_busy_kw"] * weather["pue"].max(axis=1) / 1000.0  # facility at full load
    rich = site["solar_rich"]
    solar_mw = peak_mw * np.where(rich, rng.uniform(0.5, 1.5, S), rng.uniform(0.1, 0.6, S))
    wind_mw = peak_mw * rng.uniform(0.0, 1.0, S) * (rng.random(S) >= 0.35)
    renewable = solar_mw[:, None] * weather["solar_cf"] + wind_mw[:, None] * weather["wind_cf"]

    grid_import = peak_mw * rng.uniform(0.85, 1.25, S)
    grid_export = grid_import * rng.uniform(0.3, 1.0, S)

    has_battery = rng.random(S) < 0.7
    has_generator = rng.random(S) < 0.6
    # Every instance exercises both assets somewhere: the largest site has them.
    has_battery[int(np.argmax(site["gpus"]))] = True
    has_generator[int(np.argmax(site["gpus"]))] = True
    bat_power = peak_mw * rng.uniform(0.15, 0.5, S)
    bat_energy = bat_power * rng.uniform(2.0, 4.0, S)  # 2-4 h Li-ion
    eta_c, eta_d = rng.uniform(0.90, 0.97, S), rng.uniform(0.90, 0.97, S)
    soc0 = bat_energy * rng.uniform(0.3, 0.7, S)
    bat_cost = rng.uniform(5.0, 20.0, S)  # $/MWh throughput: degradation

    fuel_cell = rng.random(S) < 0.3  # else a gas-engine plant
    gen_max = peak_mw * rng.uniform(0.2, 0.7, S)
    min_load = np.where(fuel_cell, rng.uniform(0.10, 0.30, S), rng.uniform(0.20, 0.40, S))
    efficiency = np.where(fuel_cell, rng.uniform(0.46, 0.52, S), rng.uniform(0.37, 0.47, S))
    heat_rate = 1.0 / (MWH_PER_MMBTU * efficiency)  # MMBtu per MWh electric
    gas_price = site["gas_price"].astype(float) * rng.uniform(0.9, 1.1, S)
    variable_om = np.where(fuel_cell, rng.uniform(20.0, 35.0, S), rng.uniform(8.0, 15.0, S))
    startup_per_mw = np.where(fuel_cell, rng.uniform(150.0, 400.0, S), rng.uniform(10.0, 40.0, S))
    min_up_h = np.where(fuel_cell, rng.integers(3, 5, S), rng.integers(1, 3, S))
    min_down_h = np.where(fuel_cell, rng.integers(2, 5, S), rng.integers(1, 3, S))

    b, g = has_battery, has_generator
    gen_max_mw = _q(gen_max * g, 4)
    return {
        "renewable_mw": _q(renewable, 4),
        "grid_import_mw": _q(grid_import, 3),
        "grid_export_mw": _q(np.minimum(grid_export, grid_import), 3),
        "gen_max_mw": gen_max_mw,
        "gen_min_mw": np.minimum(_q(gen_max * min_load * g, 4), gen_max_mw),
        "gen_cost": _q((gas_price * heat_rate + variable_om) * g, 2),
        "gen_startup_cost": _q(startup_per_mw * gen_max * g, 2),
        "gen_co2": _q(CO2_T_PER_MMBTU * heat_rate * g, 4),
        "gen_min_up": np.where(g, np.ceil(min_up_h / dt), 1).astype(np.int64),
        "gen_min_down": np.where(g, np.ceil(min_down_h / dt), 1).astype(np.int64),
        "bat_energy_mwh": _q(bat_energy * b, 4),
        "bat_power_mw": _q(bat_power * b, 4),
        "bat_eta_charge": np.where(b, _q(eta_c, 4), SITE_DEFAULTS["bat_eta_charge"]),
        "bat_eta_discharge": np.where(b, _q(eta_d, 4), SITE_DEFAULTS["bat_eta_discharge"]),
        "bat_soc0_mwh": np.minimum(_q(soc0 * b, 4), _q(bat_energy * b, 4)),
        "bat_cost": _q(bat_cost * b, 2),
    }


def _inference(seed: int, site: dict, K: int, T: int, dt: float,
               fixed: tuple[tuple[str, str], ...] | None) -> Inference:
    """Inference classes (metro × model): diurnal demand, SLOs and latencies over the fiber graph."""
    rng = _stream(seed, "inference")
    users = user_region_table()
    model_names = [m.name for m in MODELS]
    if fixed is not None:
        metro = np.array([user_region_index(u) for u, _ in fixed], dtype=np.int64)
        model = np.array([model_names.index(m) for _, m in fixed], dtype=np.int64)
    else:
        # Users sit near the capacity that serves them: anchor each class at a site (by GPUs) and take
        # one of the two metros closest to it.
        anchor = rng.choice(len(site["name"]), K, p=site["gpus"] / site["gpus"].sum())
        d = great_circle_km(site["lat"][anchor][:, None], site["lon"][anchor][:, None],
                            users["lat"][None, :].astype(float), users["lon"][None, :].astype(float))
        two_nearest = np.argsort(d, axis=1, kind="stable")[:, :2]
        metro = two_nearest[np.arange(K), rng.integers(0, 2, K)]
        share = np.array([m.share for m in MODELS])
        model = rng.choice(len(MODELS), K, p=share / share.sum())

    graph = build_network(site["name"], site["lat"], site["lon"], site["continent"], seed=seed)
    latency = _q(latency_matrix(graph, [user_node(str(users["name"][m])) for m in metro],
                                [site_node(str(n)) for n in site["name"]], access_ms=ACCESS_RTT_MS), 2)

    slo_lo = np.array([MODELS[m].slo_ms[0] for m in model])
    slo_hi = np.array([MODELS[m].slo_ms[1] for m in model])
    slo = rng.uniform(slo_lo, slo_hi)
    nearest = latency.min(axis=1) if latency.size else np.zeros(K)
    # Operators deploy a model where its users can reach it: widen an SLO the nearest site misses.
    slo = np.maximum(slo, np.ceil(nearest * rng.uniform(1.1, 1.3, K) / 5.0) * 5.0)
    revenue = np.array([MODELS[m].revenue for m in model]) * rng.uniform(0.9, 1.1, K)
    penalty = revenue * rng.uniform(0.2, 0.8, K)
    cost_lo = np.array([MODELS[m].latency_cost[0] for m in model])
    cost_hi = np.array([MODELS[m].latency_cost[1] for m in model])
    latency_cost = rng.uniform(cost_lo, cost_hi)

    # Demand: per-class mean ∝ model share × noise, scaled so inference asks for INFERENCE_SHARE of all GPUs;
    # daily cycle peaking in the users' afternoon/evening.
    share = np.array([MODELS[m].share for m in model]) * rng.lognormal(0.0, 0.4, K)
    mean_gpus = INFERENCE_SHARE * float(site["gpus"].sum()) * share / max(share.sum(), 1e-12)
    amplitude = rng.uniform(0.3, 0.6, K)
    user_hour = ((np.arange(T) + 0.5) * dt)[None, :] + users["utc_offset"][metro].astype(float)[:, None]
    cycle = 1.0 + amplitude[:, None] * np.cos(2 * np.pi * (user_hour - 16.0) / 24.0)
    noise = np.exp(0.08 * _ar1(rng, K, T, 0.8 ** dt))
    demand = mean_gpus[:, None] * cycle * noise

    names = _unique_names([f"{users['name'][m]}/{model_names[md]}" for m, md in zip(metro, model, strict=True)], False)
    return Inference(
        name=names,
        demand=_q(demand, 2).reshape(K, T),
        revenue=_q(revenue, 3),
        penalty=_q(penalty, 3),
        latency_ms=latency.reshape(K, len(site["name"])),
        latency_slo_ms=_q(slo, 1),
        latency_cost=_q(latency_cost, 5),
    )


def _jobs(seed: int, site: dict, J: int, T: int, dt: float, job_sites: int = 10) -> Jobs:
    """Training jobs: sizes, durations, windows, allowed sites (values are set by the caller)."""
    rng = _stream(seed, "jobs")
    S = len(site["name"])
    G = site["gpus"]
    home = rng.choice(S, J, p=G / G.sum())  # where the job's data lives; always allowed
    n_mandatory = int(round(0.1 * J))
    mandatory = np.zeros(J, dtype=bool)
    mandatory[rng.permutation(J)[:n_mandatory]] = True

    max_periods = max(1, int(0.75 * T))  # leave every window some slack
    hours = np.where(mandatory, _log_uniform(rng, 1.0, 6.0, J), _log_uniform(rng, 2.0, 24.0, J))
    duration = np.clip(np.ceil(hours / dt), 1, max_periods).astype(np.int64)
    u_release, u_slack = rng.random(J), rng.uniform(0.3, 1.0, J)
    release = np.floor(u_release * 0.6 * (T - duration)).astype(np.int64)
    deadline = release + duration + np.round(u_slack * (T - release - duration)).astype(np.int64)
    # Mandatory jobs (evaluations, fine-tunes on a contract) are small with the whole horizon as window.
    release = np.where(mandatory, 0, release)
    deadline = np.where(mandatory, T, deadline)

    m = min(S, max(int(job_sites), 1))
    n_allowed = np.where(mandatory, m, rng.integers(-(-m // 2), m + 1, J))
    score = rng.random((J, S))
    score[np.arange(J), home] = -1.0  # home ranks first
    rank = np.argsort(np.argsort(score, axis=1, kind="stable"), axis=1, kind="stable")
    allowed = rank < n_allowed[:, None]

    # Sizes: log-uniform shape, scaled so that all jobs together ask for JOB_SHARE of the GPU-hours,
    # each bounded by 50-90 % of its home site (a few rounds re-spread what the bound cuts off).
    raw = np.where(mandatory, _log_uniform(rng, 8.0, 256.0, J), _log_uniform(rng, 8.0, 4096.0, J))
    cap = np.floor(rng.uniform(0.5, 0.9, J) * G[home] / 8) * 8
    # Mandatory jobs at one home may not together exceed a quarter of it: they always fit side by side.
    mand_per_home = np.bincount(home, weights=raw * mandatory, minlength=S)
    shrink = np.minimum(1.0, 0.25 * G / np.maximum(mand_per_home, 1e-12))
    mand_gpus = np.maximum(8, np.floor(raw * shrink[home] / 8) * 8)
    gpu_h_target = JOB_SHARE * float(G.sum()) * T * dt - float((mand_gpus * duration * dt)[mandatory].sum())
    size = raw.copy()
    free = ~mandatory
    for _ in range(4):
        gh = size * duration * dt
        capped = free & (size >= cap)
        room = gpu_h_target - gh[capped].sum()
        loose = free & ~capped
        if room <= 0 or gh[loose].sum() <= 0:
            break
        size = np.where(loose, size * room / gh[loose].sum(), size)
        size = np.minimum(size, cap)
    gpus = np.where(mandatory, mand_gpus, np.maximum(8, np.round(size / 8) * 8)).astype(np.int64)
    gpus = np.minimum(gpus, np.maximum(cap, 8).astype(np.int64))

    kind = np.where(gpus >= 1024, "pretrain", np.where(gpus >= 64, "finetune", "eval"))
    names = np.array([f"{k}-{j:04d}" for j, k in enumerate(kind)], dtype=object)
    return Jobs(
        name=names,
        gpus=gpus.reshape(J),
        duration=duration.reshape(J),
        release=release.reshape(J),
        deadline=deadline.reshape(J),
        value=np.zeros(J),
        mandatory=mandatory,
        allowed=allowed.reshape(J, S),
    )
