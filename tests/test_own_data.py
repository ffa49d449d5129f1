"""Bringing one's own data: a folder of tables -> instance, refusals that name table and column."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from carbonsched.cli import main
from carbonsched.errors import InputError
from carbonsched.instances import default_instance_path, load, load_default, make_instance
from carbonsched.instances.tables import instances_equal, read_instance_folder, write_instance_folder

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "examples" / "own-data"


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_export_import_round_trip_is_identical(small_instance_factory, tmp_path, fmt):
    if fmt == "parquet":
        pytest.importorskip("pyarrow")
    no_jobs = make_instance(4, 1, sites={"gpus": 10, "grid_import_mw": 1.0}, name="no-jobs")
    for inst in (load_default(), small_instance_factory(), no_jobs):
        folder = tmp_path / f"{inst.name}-{fmt}"
        write_instance_folder(inst, folder, fmt)
        back = read_instance_folder(folder)
        assert instances_equal(inst, back)
        assert back.inference.latency_ms.dtype == np.float64 and np.isinf(back.inference.latency_ms).any() == \
            np.isinf(inst.inference.latency_ms).any()


def test_cli_export_then_import_gives_the_same_file(tmp_path, capsys):
    src = tmp_path / "paper.h5"
    shutil.copy(default_instance_path(), src)
    assert main(["export", str(src), "--csv", str(tmp_path / "tables")]) == 0
    assert main(["import", str(tmp_path / "tables"), "-o", str(tmp_path / "back.h5")]) == 0
    assert instances_equal(load(src), load(tmp_path / "back.h5"))


def test_shipped_example_folder_imports(tmp_path):
    inst = read_instance_folder(EXAMPLE)
    assert inst.n_sites == 2 and inst.n_periods == 6
    assert inst.extra_attrs["start_time"].startswith("2025-07-01T00:00")
    assert main(["import", str(EXAMPLE), "-o", str(tmp_path / "own.h5")]) == 0


def _refusal(folder: Path, capsys) -> str:
    with pytest.raises(InputError):
        read_instance_folder(folder)
    assert main(["import", str(folder), "-o", str(folder.parent / "x.h5")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    return err


@pytest.fixture
def folder(tmp_path):
    out = tmp_path / "tables"
    write_instance_folder(load_default(), out)
    return out


def test_transposed_series_is_refused(folder, capsys):
    df = pd.read_csv(folder / "price_buy.csv").drop(columns=["hour"]).set_index("period").T
    df.index.name = "site"
    df.reset_index().to_csv(folder / "price_buy.csv", index=False)
    err = _refusal(folder, capsys)
    assert "table price_buy" in err and "'period'" in err


def test_transposed_series_with_period_column_named_is_refused(folder, capsys):
    # sites as rows, periods as columns, but the user kept a 'period' header over the site names
    df = pd.read_csv(folder / "grid_co2.csv").drop(columns=["hour", "period"]).T
    df.columns = [str(c) for c in df.columns]
    df.insert(0, "period", range(df.shape[0]))
    df.to_csv(folder / "grid_co2.csv", index=False)
    err = _refusal(folder, capsys)
    assert "table grid_co2" in err and "column 'period'" in err


def test_missing_column_is_refused(folder, capsys):
    pd.read_csv(folder / "sites.csv").drop(columns=["gen_min_up"]).to_csv(folder / "sites.csv", index=False)
    err = _refusal(folder, capsys)
    assert "table sites" in err and "missing column 'gen_min_up'" in err


def test_unit_mismatch_in_a_column_name_is_refused(folder, capsys):
    sites = pd.read_csv(folder / "sites.csv")
    sites = sites.rename(columns={"gpu_busy_kw": "gpu_busy_w"})
    sites["gpu_busy_w"] *= 1000
    sites.to_csv(folder / "sites.csv", index=False)
    err = _refusal(folder, capsys)
    assert "table sites" in err and "'gpu_busy_w'" in err and "'gpu_busy_kw'" in err


def test_unit_mismatch_in_values_is_refused(folder, capsys):
    co2 = pd.read_csv(folder / "grid_co2.csv")
    sites = [c for c in co2.columns if c not in ("period", "hour")]
    co2[sites] *= 1000  # kg/MWh instead of t/MWh
    co2.to_csv(folder / "grid_co2.csv", index=False)
    err = _refusal(folder, capsys)
    assert "table grid_co2" in err and "t/MWh" in err


def test_unit_mismatch_in_a_table_name_is_refused(folder, capsys):
    (folder / "renewable_mw.csv").rename(folder / "renewable_kw.csv")
    err = _refusal(folder, capsys)
    assert "renewable_kw" in err and "renewable_mw" in err


def test_unknown_site_name_and_wrong_period_count_are_refused(folder, capsys):
    demand = pd.read_csv(folder / "demand.csv")
    demand.iloc[:-1].to_csv(folder / "demand.csv", index=False)
    err = _refusal(folder, capsys)
    assert "table demand" in err and "column 'period'" in err
    write_instance_folder(load_default(), folder)
    jobs = pd.read_csv(folder / "jobs.csv", keep_default_na=False)
    jobs.loc[1, "allowed"] = "us-east-va;mars"
    jobs.to_csv(folder / "jobs.csv", index=False)
    err = _refusal(folder, capsys)
    assert "table jobs" in err and "column 'allowed'" in err and "'mars'" in err


def test_timestamps_must_be_one_period_apart(folder, capsys):
    price = pd.read_csv(folder / "price_sell.csv").drop(columns=["period", "hour"])
    price.insert(0, "timestamp", pd.date_range("2025-01-01", periods=len(price), freq="30min"))
    price.to_csv(folder / "price_sell.csv", index=False)
    err = _refusal(folder, capsys)
    assert "table price_sell" in err and "column 'timestamp'" in err and "0.5 h apart" in err


def test_make_instance_names_a_transposed_field_and_its_documented_example_runs():
    import doctest

    from carbonsched.instances import build, make_instance

    with pytest.raises(InputError, match=r"sites field 'price_buy': expected shape \(S,T\) = \(2, 24\).*transposed"):
        make_instance(24, 2, sites={"price_buy": np.zeros((24, 2))})
    with pytest.raises(InputError, match=r"inference field 'demand'"):
        make_instance(24, 2, n_classes=3, inference={"demand": np.zeros((3, 23))})
    assert doctest.testmod(build).failed == 0
