"""The seeded instance generator: determinism, validity, storage, shipped file and physical sanity."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest
from carbonsched.instances import (
    PRESETS,
    InputError,
    Instance,
    default_instance_path,
    format_summary,
    generate,
    latency_matrix,
    load,
    load_default,
    save,
    summarize,
    validate,
)
from carbonsched.instances.generator import _sample_sites, _weather, clear_sky_solar_cf
from carbonsched.instances.network import build_network, great_circle_km, site_node
from carbonsched.instances.regions import REGIONS
from carbonsched.instances.summary import all_grid_emissions


def assert_instances_equal(a: Instance, b: Instance, *, extra: bool = True) -> None:
    """Every root attribute and every array equal, exactly (NaN-free by validation)."""
    for attr in ("name", "n_periods", "period_hours", "voll", "carbon_budget_t", "carbon_price"):
        assert getattr(a, attr) == getattr(b, attr), attr
    for group in ("sites", "jobs", "inference"):
        ga, gb = a.group(group), b.group(group)
        for f in dataclasses.fields(ga):
            x, y = np.asarray(getattr(ga, f.name)), np.asarray(getattr(gb, f.name))
            assert x.shape == y.shape, f"{group}/{f.name}"
            if x.dtype == object or y.dtype == object:
                assert x.tolist() == y.tolist(), f"{group}/{f.name}"
            else:
                assert x.dtype.kind == y.dtype.kind, f"{group}/{f.name}"
                assert np.array_equal(x, y), f"{group}/{f.name}"
    if extra:
        assert a.extra_attrs == b.extra_attrs


@pytest.fixture(scope="module")
def medium() -> Instance:
    return generate("medium", seed=0)


# ------------------------------------------------------------------------------ determinism
def test_same_seed_same_instance():
    assert_instances_equal(generate("small", seed=3), generate("small", seed=3))


def test_different_seeds_differ():
    a, b = generate("small", seed=0), generate("small", seed=1)
    assert not np.array_equal(a.sites.renewable_mw, b.sites.renewable_mw)
    assert not np.array_equal(a.sites.price_buy, b.sites.price_buy)
    assert a.extra_attrs["seed"] == 0 and b.extra_attrs["seed"] == 1


def test_streams_are_independent_of_job_count():
    """More jobs leave the sites' weather and markets unchanged (one random stream per part)."""
    a, b = generate("small", seed=5), generate("small", seed=5, jobs=7)
    assert b.n_jobs == 7
    for f in ("renewable_mw", "price_buy", "grid_co2", "pue", "gpus"):
        assert np.array_equal(getattr(a.sites, f), getattr(b.sites, f)), f


# ------------------------------------------------------------------------------ presets and sizes
@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_validates(preset):
    inst = generate(preset, seed=0)
    validate(inst)
    spec = PRESETS[preset]
    assert inst.n_sites == spec.sites and inst.n_periods == spec.periods
    assert inst.extra_attrs["preset"] == preset and inst.extra_attrs["generator"]
    assert inst.n_jobs >= 1 and inst.n_classes >= 3
    assert np.isfinite(inst.carbon_budget_t)


def test_paper_preset_sizes():
    inst = generate("paper", seed=0)
    assert inst.dims() == {"S": 3, "T": 24, "J": 6, "K": 3}
    assert inst.period_hours == 1.0


def test_xl_names_unique_and_numbered():
    inst = generate("xl", seed=0)
    names = inst.sites.name.tolist()
    assert len(set(names)) == len(names) == 1000
    assert all(re.search(r"-\d{3}$", n) for n in names)
    assert len(set(inst.inference.name.tolist())) == inst.n_classes


def test_by_size_half_hour_periods():
    inst = generate(sites=7, periods=48, period_hours=0.5, seed=2)
    validate(inst)
    assert inst.dims()["S"] == 7 and inst.n_periods == 48 and inst.period_hours == 0.5
    assert inst.n_jobs == 21 and inst.n_classes == 3
    assert inst.extra_attrs["preset"] == "custom"
    gen = inst.sites.gen_max_mw > 0
    assert gen.any()
    # Minimum up/down times are whole hours, so at least two half-hour periods.
    assert (inst.sites.gen_min_up[gen] >= 2).all() and (inst.sites.gen_min_down[gen] >= 2).all()
    assert (inst.jobs.duration <= 36).all()


def test_week_long_horizon():
    inst = generate("small", periods=168, seed=1)
    assert inst.n_periods == 168 and inst.sites.pue.shape == (10, 168)


@pytest.mark.parametrize(
    "kwargs",
    [dict(preset="huge"), dict(), dict(preset="small", seed=-1), dict(sites=0), dict(sites=3, period_hours=0.0),
     dict(preset="small", jobs=-2), dict(preset="small", day_of_year=400)],
)
def test_bad_parameters_raise_input_error(kwargs):
    with pytest.raises(InputError):
        generate(**kwargs)


# ------------------------------------------------------------------------------ storage and shipped file
def test_save_load_round_trip_exact(tmp_path):
    inst = generate("small", seed=4)
    path = tmp_path / "small.h5"
    save(inst, path)
    assert_instances_equal(inst, load(path))


def test_shipped_paper_equals_generated():
    path = default_instance_path()
    assert path.name == "paper.h5" and path.exists()
    assert_instances_equal(load_default(), generate("paper", seed=0))


# ------------------------------------------------------------------------------ physical sanity
def test_solar_is_zero_at_local_night():
    lat = np.array([r.lat for r in REGIONS])
    lon = np.array([r.lon for r in REGIONS])
    cf = clear_sky_solar_cf(lat, lon, 196, 24, 1.0)
    solar_hour = ((np.arange(24) + 0.5)[None, :] + lon[:, None] / 15.0) % 24.0
    night = (solar_hour >= 23.0) | (solar_hour <= 1.0)  # within an hour of local solar midnight
    assert night.sum() >= len(REGIONS)
    assert (cf[night] == 0.0).all()
    noon = np.abs(solar_hour - 12.0) <= 1.0
    assert (cf[noon] > 0.4).all()


def test_capacity_factors_plausible():
    site = _sample_sites(0, 50, None)
    weather = _weather(0, site, 24 * 7, 1.0, 196)
    solar, wind = weather["solar_cf"], weather["wind_cf"]
    assert (solar >= 0).all() and (solar <= 1).all() and (wind >= 0).all() and (wind <= 1).all()
    assert 0.15 <= solar.mean() <= 0.35
    assert 0.25 <= wind.mean() <= 0.42
    # Night periods (solar zero) exist at every site within a summer day.
    assert ((solar[:, :24] == 0).sum(axis=1) >= 4).all()


def test_market_sanity(medium):
    s = medium.sites
    assert (s.price_sell <= s.price_buy).all()
    assert (s.grid_co2 >= 0).all()
    assert 1.1 <= s.pue.min() and s.pue.max() <= 1.4
    assert (s.grid_export_mw <= s.grid_import_mw).all()
    assert (s.gen_min_mw <= s.gen_max_mw).all() and (s.bat_soc0_mwh <= s.bat_energy_mwh).all()
    has_gen = s.gen_max_mw > 0
    assert has_gen.any() and (~has_gen).any()
    assert ((s.gen_co2[has_gen] >= 0.35) & (s.gen_co2[has_gen] <= 0.49)).all()
    has_bat = s.bat_energy_mwh > 0
    assert has_bat.any() and (~has_bat).any()
    duration_h = s.bat_energy_mwh[has_bat] / s.bat_power_mw[has_bat]
    assert ((duration_h >= 2 - 1e-3) & (duration_h <= 4 + 1e-3)).all()
    assert (s.gpu_idle_kw < s.gpu_busy_kw).all()


def test_regional_carbon_means():
    by_name = {r.name: r.grid_co2 for r in REGIONS}
    assert by_name["eu-west-fr"] == pytest.approx(0.056)
    assert by_name["eu-central-de"] == pytest.approx(0.381)
    assert by_name["ap-south-mum"] == pytest.approx(0.713)
    assert len(REGIONS) >= 30 and {r.continent for r in REGIONS} == {"NA", "SA", "EU", "AS", "OC", "AF"}


@pytest.mark.parametrize("preset", ["paper", "small", "medium", "large"])
def test_budget_below_all_grid_emissions(preset):
    inst = generate(preset, seed=0)
    gross, net = all_grid_emissions(inst)
    assert inst.carbon_budget_t < net < gross
    assert 0.6 * net - 0.1 <= inst.carbon_budget_t <= 0.75 * net + 0.1


@pytest.mark.parametrize("preset", ["paper", "small", "medium", "large"])
def test_calibration(preset):
    d = summarize(generate(preset, seed=0))
    assert 0.7 <= d["demand_ratio"] <= 1.1
    assert 0.9 <= d["peak_demand_ratio"] <= 1.3
    assert 1.0 <= d["value_cost_ratio"][1] <= 3.0
    assert d["classes_without_site"] == 0


def test_jobs_and_classes(medium):
    jb, inf = medium.jobs, medium.inference
    assert (jb.gpus >= 8).all() and jb.gpus.max() >= 1000
    assert (jb.release + jb.duration <= jb.deadline).all() and (jb.deadline <= medium.n_periods).all()
    assert jb.allowed.any(axis=1).all()
    assert 0 < jb.mandatory.sum() < medium.n_jobs
    # Mandatory jobs are small with the whole horizon: first-fit on whole-horizon reservations places them all.
    free = medium.sites.gpus.astype(float).copy()
    for j in np.flatnonzero(jb.mandatory):
        assert jb.release[j] == 0 and jb.deadline[j] == medium.n_periods
        fits = np.flatnonzero(jb.allowed[j] & (free >= jb.gpus[j]))
        assert fits.size, f"mandatory job {j} does not fit"
        free[fits[0]] -= jb.gpus[j]
    # Inference margins are calibrated against the energy + carbon cost of the class's SLO sites.
    ratio = summarize(medium)["inference_revenue_cost_ratio"]
    assert 1.0 <= ratio <= 6.0
    assert (inf.revenue > 0).all() and (inf.penalty <= inf.revenue).all()
    assert (inf.latency_cost > 0).all() and (inf.latency_cost * inf.latency_slo_ms <= inf.revenue).all()
    assert (inf.demand >= 0).all()
    assert (jb.value > 0).all()


# ------------------------------------------------------------------------------ network
@pytest.fixture(scope="module")
def region_graph():
    return build_network([r.name for r in REGIONS], [r.lat for r in REGIONS], [r.lon for r in REGIONS],
                         [r.continent for r in REGIONS], seed=0)


def latency(graph, a: str, b: str) -> float:
    return float(latency_matrix(graph, [site_node(a)], [site_node(b)])[0, 0])


def test_latency_sanity(region_graph):
    assert 60.0 <= latency(region_graph, "us-east-va", "eu-west-ie") <= 100.0
    assert 50.0 <= latency(region_graph, "us-east-va", "us-west-or") <= 100.0
    assert latency(region_graph, "eu-central-de", "eu-west-fr") <= 25.0
    assert 120.0 <= latency(region_graph, "us-east-va", "ap-northeast-tyo") <= 220.0
    # Never faster than light in fiber along the great circle.
    va, ie = REGIONS[0], next(r for r in REGIONS if r.name == "eu-west-ie")
    assert latency(region_graph, "us-east-va", "eu-west-ie") >= 0.01 * great_circle_km(va.lat, va.lon, ie.lat, ie.lon)


def test_latency_symmetric_and_connected(region_graph):
    names = [site_node(r.name) for r in REGIONS]
    lat = latency_matrix(region_graph, names, names)
    assert np.isfinite(lat).all()
    assert np.allclose(lat, lat.T)
    assert np.allclose(np.diag(lat), 0.0)


# ------------------------------------------------------------------------------ summary
def test_summary_text(medium):
    text = format_summary(medium)
    lines = text.splitlines()
    assert len(lines) > 20
    value_column = {re.match(r"(.*?\S)( {2,})(\S)", line).start(3) for line in lines}
    assert len(value_column) == 1  # one aligned value column
    assert "carbon budget" in text and "GPU-h capacity" in text


def test_summary_of_any_instance(small_instance):
    """Hand-built files (inf latency, no budget) summarize too."""
    d = summarize(small_instance)
    assert d["carbon_budget_t"] == float("inf") and d["S"] == 3
    assert "instance" in format_summary(small_instance)


def test_no_jobs_no_classes():
    inst = generate(sites=2, jobs=0, classes=0, seed=1)
    assert inst.n_jobs == 0 and inst.n_classes == 0
    assert "n/a" in format_summary(inst)
