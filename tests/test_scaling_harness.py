"""The scaling harness (bench/scaling.py, bench/report.py): sweep, resume, report, failures, kills."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from carbonsched.bench import scaling
from carbonsched.bench.report import fit_exponent, write_report

METHODS = ["monolithic", "benders", *(["highs"] if scaling.highs_available() else []), "fail"]
SITES, PERIODS = [2, 3], [4]


def _snapshot(path: Path) -> dict[str, object]:
    """Every attribute and dataset of the file, by path."""
    out: dict[str, object] = {}
    with h5py.File(path, "r") as f:
        def visit(name: str, obj) -> None:
            out[name + "@attrs"] = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in obj.attrs.items()}
            if isinstance(obj, h5py.Dataset):
                out[name] = obj[()].tolist()

        f.visititems(visit)
    return out


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> tuple[Path, dict[str, int], list[str]]:
    path = tmp_path_factory.mktemp("scaling") / "results.h5"
    lines: list[str] = []
    counts = scaling.sweep(path, SITES, PERIODS, [0], METHODS, time_limit=5.0, jobs=1, echo=lines.append)
    return path, counts, lines


def test_sweep_stores_every_run(results) -> None:
    path, counts, lines = results
    assert counts == {"run": len(SITES) * len(METHODS), "skipped": 0, "failed": len(SITES)}
    keys = scaling.stored_runs(path)
    assert keys == {scaling.run_key(s, 4, 0, m) for s in SITES for m in METHODS}
    with h5py.File(path, "r") as f:
        assert scaling.STAGING not in f
        for s in SITES:
            for m in METHODS:
                if m == "fail":
                    continue
                g = f[scaling.run_key(s, 4, 0, m)]
                assert g.attrs["ok"] and g.attrs["certified"] and g.attrs["complete"]
                assert g.attrs["gap"] <= 1e-3
                assert g.attrs["n_vars"] > 0 and g.attrs["n_rows"] > 0 and g.attrs["n_nonzeros"] > 0
                assert g.attrs["peak_rss_mb"] > 10
                assert 0 < g.attrs["wall_seconds"] < 5 + 30
                assert len(g["seconds"]) == len(g["primal"]) == len(g["dual"]) == len(g["iteration"]) >= 1
                assert math.isfinite(g["primal"][-1])
        # the same optimum from every solver on each size
        for s in SITES:
            objs = [f[scaling.run_key(s, 4, 0, m)].attrs["objective"] for m in METHODS if m != "fail"]
            assert max(objs) - min(objs) <= 1e-3 * max(1.0, abs(objs[0]))
    assert any("running" in line for line in lines) and any("gap" in line for line in lines)


def test_failed_method_is_recorded_not_fatal(results) -> None:
    path, _, lines = results
    with h5py.File(path, "r") as f:
        g = f[scaling.run_key(3, 4, 0, "fail")]
        assert not g.attrs["ok"] and not g.attrs["certified"]
        assert g.attrs["status"] == "failed"
        assert "deliberate failure" in g.attrs["error"]
    assert any("deliberate failure" in line for line in lines)


def test_resume_skips_stored_runs_and_changes_nothing(results) -> None:
    path, _, _ = results
    before = _snapshot(path)
    lines: list[str] = []
    counts = scaling.sweep(path, SITES, PERIODS, [0], METHODS, time_limit=5.0, jobs=1, echo=lines.append)
    assert counts == {"run": 0, "skipped": len(SITES) * len(METHODS), "failed": 0}
    assert _snapshot(path) == before


def test_incomplete_group_is_run_again(tmp_path) -> None:
    path = tmp_path / "r.h5"
    key = scaling.run_key(2, 4, 0, "fail")
    with h5py.File(path, "w") as f:  # what a crash in the middle of a write could leave
        f.create_group(key).attrs["status"] = "half-written"
        f.create_group(f"{scaling.STAGING}/run")
    assert scaling.stored_runs(path) == set()
    counts = scaling.sweep(path, [2], [4], [0], ["fail"], time_limit=5.0, echo=lambda _line: None)
    assert counts["run"] == 1
    with h5py.File(path, "r") as f:
        assert f[key].attrs["complete"] and f[key].attrs["status"] == "failed"
        assert scaling.STAGING not in f


def test_run_is_killed_from_outside(tmp_path) -> None:
    out = scaling.run_child("hang", 3, 4, 0, time_limit=0.0, gap=1e-4, jobs=1, grace=0.5,
                            mem_limit_mb=math.inf, echo=lambda _line: None)
    assert out.summary["status"] == "killed"
    assert "killed after" in out.summary["error"]
    path = tmp_path / "r.h5"
    scaling.store_run(path, "S3/T4/seed0/monolithic", out, {"method": "monolithic"})
    with h5py.File(path, "r") as f:
        g = f["S3/T4/seed0/monolithic"]
        assert g.attrs["status"] == "killed" and not g.attrs["certified"]


def test_highs_missing_gives_clear_message(monkeypatch, tmp_path) -> None:
    from carbonsched.instances.generator import generate

    monkeypatch.setitem(sys.modules, "highspy", None)
    assert not scaling.highs_available()
    with pytest.raises(RuntimeError, match="highspy is not installed"):
        scaling._solve_highs(generate(sites=2, periods=4, seed=0), 5.0, 1e-4, tmp_path)


def test_report_tables_and_plots(results, tmp_path) -> None:
    path, _, _ = results
    text = write_report(path, img_dir=tmp_path / "img", prefix="t", link_dir="img")
    assert "| 2 | 4 | 0 | monolithic |" in text and "| 3 | 4 | 0 | benders |" in text
    assert "t(1 %) s" in text and "peak MB" in text and "nonzeros" in text
    assert "deliberate failure" in text
    pngs = sorted(p.name for p in (tmp_path / "img").glob("*.png"))
    assert pngs == ["t_gap_S2_T4.png", "t_gap_S3_T4.png", "t_memory_T4.png", "t_t1_vs_sites_T4.png"]
    assert "![t_gap_S2_T4](img/t_gap_S2_T4.png)" in text


def test_fit_exponent() -> None:
    assert fit_exponent([10, 100, 1000], [1.0, 100.0, 10000.0]) == pytest.approx(2.0)
    assert fit_exponent([10, 100], [1.0, math.inf]) is None
