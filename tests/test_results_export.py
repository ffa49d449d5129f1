"""Labelled exports (pandas, xarray, CSV, netCDF) and pictures of a solution, from the shipped instance."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from carbonsched.cli import main
from carbonsched.formulations.baselines import run_strategy
from carbonsched.formulations.checker import check_solution
from carbonsched.formulations.compare import format_comparison, unproven
from carbonsched.formulations.plots import SOLUTION_FIGURES, plot_comparison
from carbonsched.formulations.solution import Solution
from carbonsched.formulations.tables import solution_tables
from carbonsched.instances import load_default
from carbonsched.instances.shipped import default_instance_path


@pytest.fixture(scope="module")
def paper():
    return load_default()


@pytest.fixture(scope="module")
def solution_file(paper, tmp_path_factory):
    sol = run_strategy(paper, "joint", time_limit=60)
    assert check_solution(paper, sol).ok
    path = tmp_path_factory.mktemp("sol") / "joint.h5"
    sol.save(path)
    return path


def test_tables_carry_the_names_and_values_of_the_file(paper, solution_file):
    sol = Solution.load(solution_file)
    tables = solution_tables(paper, sol)
    jobs = tables["jobs"]
    assert list(jobs["job"]) == [str(n) for n in paper.jobs.name]
    for j, row in jobs.iterrows():
        if sol.job_site[j] >= 0:
            assert row["site"] == paper.sites.name[sol.job_site[j]]
            assert row["start_period"] == sol.job_start[j]
            assert row["end_period"] == sol.job_start[j] + paper.jobs.duration[j]
        else:
            assert row["site"] == "" and not row["scheduled"]
    energy = tables["energy"].set_index(["site", "period"])
    for i, name in enumerate(paper.sites.name):
        for field in ("grid_import", "soc", "gen_on", "renewable_used"):
            np.testing.assert_array_equal(energy.loc[str(name)][field].to_numpy(), getattr(sol, field)[i])
    served = tables["inference"].set_index(["class", "site", "period"])["served_gpus"]
    k, i, t = 2, 1, 17
    assert served.loc[(paper.inference.name[k], paper.sites.name[i], t)] == sol.served[k, i, t]
    # the derived emissions column adds up to the file's emissions
    assert tables["energy"]["emissions_t"].sum() == pytest.approx(sol.emissions_t, rel=1e-12)
    summary = tables["summary"].iloc[0]
    assert summary["objective"] == sol.objective and summary["status"] == sol.status.value


def test_export_cli_csv_and_netcdf_match_the_file(paper, solution_file, tmp_path):
    inst_path = str(default_instance_path())
    assert main(["export", str(solution_file), "--instance", inst_path, "--csv", str(tmp_path / "csv"),
                 "--netcdf", str(tmp_path / "sol.nc")]) == 0
    sol = Solution.load(solution_file)
    energy = pd.read_csv(tmp_path / "csv" / "energy.csv")
    assert energy.shape[0] == paper.n_sites * paper.n_periods
    np.testing.assert_allclose(energy["gen"].to_numpy(), sol.gen.ravel(), rtol=1e-15)
    with xr.open_dataset(tmp_path / "sol.nc", engine="scipy") as ds:
        assert list(ds["site"].values) == [str(n) for n in paper.sites.name]
        assert list(ds["class"].values) == [str(n) for n in paper.inference.name]
        np.testing.assert_array_equal(ds["served"].values, sol.served)
        np.testing.assert_array_equal(ds["soc"].sel(site=str(paper.sites.name[0])).values, sol.soc[0])
        assert ds.attrs["objective"] == sol.objective and ds.attrs["status"] == sol.status.value
        placed = sol.job_site >= 0
        assert list(ds["job_site"].values[placed]) == [str(paper.sites.name[i]) for i in sol.job_site[placed]]
    # an instance exports too, as netCDF with the same dimensions
    assert main(["export", inst_path, "--netcdf", str(tmp_path / "inst.nc")]) == 0
    with xr.open_dataset(tmp_path / "inst.nc", engine="scipy") as ds:
        np.testing.assert_array_equal(ds["price_buy"].values, paper.sites.price_buy)
        np.testing.assert_array_equal(ds["allowed"].values.astype(bool), paper.jobs.allowed)


def test_plot_writes_one_png_per_figure(solution_file, tmp_path, capsys):
    out = tmp_path / "plots"
    assert main(["plot", str(default_instance_path()), str(solution_file), "-o", str(out)]) == 0
    written = sorted(p.name for p in out.iterdir())
    assert written == sorted(f"{name}.png" for name in SOLUTION_FIGURES)
    for path in out.iterdir():
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000


def test_plot_aggregates_sites_beyond_the_limit(solution_file, tmp_path):
    out = tmp_path / "agg"
    assert main(["plot", str(default_instance_path()), str(solution_file), "-o", str(out), "--sites", "1"]) == 0
    assert (out / "dispatch.png").exists()


def test_compare_marks_unproven_differences_and_prints_no_inf(paper, tmp_path):
    results = {name: run_strategy(paper, name, time_limit=0.5) for name in ("joint", "compute-only", "energy-only")}
    for name, sol in results.items():
        assert check_solution(paper, sol).ok, name
    text = format_comparison(paper, results)
    assert not re.search(r"\b(inf|nan)\b|-0\.00%|\s-0\s", text), text
    header = text.splitlines()[0]
    assert "status" in header and "bound $" in header and "gap" in header
    marks = unproven(results)
    if results["joint"].status.value not in ("optimal", "gap_limit"):
        assert marks["compute-only"] and "* unproven" in text
    else:
        assert "* unproven" not in text
    png = plot_comparison(paper, results, tmp_path / "compare.png", unproven=marks)
    assert png.stat().st_size > 10_000
