"""HDF5 storage: exact round trip, interoperability with plain h5py both ways, atomic writes."""

from __future__ import annotations

import math
import os
import stat

import carbonsched.instances.storage as storage
import h5py
import numpy as np
import pytest
from carbonsched.errors import OutputError
from carbonsched.instances import Instance, InstanceError, load, make_instance, save
from carbonsched.instances.schema import FIELDS, GROUPS, group_fields
from carbonsched.instances.validation import MAX_MAGNITUDE
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp


# ----------------------------------------------------------------------------- helpers
def assert_identical(a: Instance, b: Instance) -> None:
    """Every scalar and array equal, float bits included (-0.0, inf, subnormals), dtypes normalized."""
    for key in ("name", "n_periods", "period_hours", "voll", "carbon_budget_t", "carbon_price"):
        va, vb = getattr(a, key), getattr(b, key)
        assert type(va) is type(vb) and (va == vb), (key, va, vb)
        if isinstance(va, float):
            assert math.copysign(1.0, va) == math.copysign(1.0, vb), key
    for spec in FIELDS:
        x = np.asarray(getattr(a.group(spec.group), spec.name))
        y = getattr(b.group(spec.group), spec.name)
        where = f"/{spec.group}/{spec.name}"
        assert y.shape == x.shape, where
        if spec.kind == "float":
            assert y.dtype == np.float64, where
            assert np.array_equal(x.astype(np.float64).view(np.uint64), y.view(np.uint64)), where
        elif spec.kind == "int":
            assert y.dtype == np.int64 and np.array_equal(x, y), where
        elif spec.kind == "bool":
            assert y.dtype == np.bool_ and np.array_equal(x, y), where
        else:
            assert y.dtype == object and all(type(s) is str for s in y.ravel()), where
            assert x.tolist() == y.tolist(), where


def _listing(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ----------------------------------------------------------------------------- round trip
def test_round_trip_exact(tmp_path, small_instance):
    small_instance.extra_attrs = {
        "description": "two sites, ünïcode",
        "seed": np.int64(1234),
        "generator": "carbonsched 0.1",
        "scale": 0.25,
        "weights": np.array([1.0, 2.0, 3.0]),
    }
    path = tmp_path / "inst.h5"
    save(small_instance, path)
    back = load(path)
    assert_identical(small_instance, back)
    extra = back.extra_attrs
    assert set(extra) == {"description", "seed", "generator", "scale", "weights"}
    assert extra["description"] == "two sites, ünïcode" and isinstance(extra["description"], str)
    assert extra["seed"] == 1234 and extra["generator"] == "carbonsched 0.1" and extra["scale"] == 0.25
    assert np.array_equal(extra["weights"], [1.0, 2.0, 3.0])
    # and a second generation is identical too
    save(back, path)
    again = load(path)
    assert_identical(small_instance, again)
    assert again.extra_attrs["seed"] == 1234


def test_round_trip_large_arrays_compressed(tmp_path):
    """Arrays past the compression threshold are chunked + gzip; the round trip is still exact."""
    rng = np.random.default_rng(0)
    t, s = 200, 3
    buy = rng.normal(50, 30, (s, t))
    inst = make_instance(
        t, s, n_classes=2,
        sites={"pue": 1 + rng.random((s, t)), "price_buy": buy, "price_sell": buy - 1.0, "gpus": [1, 2, 3]},
        jobs={"gpus": [], "duration": []},
        inference={"demand": rng.random((2, t)) * 10},
    )
    path = tmp_path / "big.h5"
    save(inst, path)
    with h5py.File(path, "r") as f:
        assert f["sites/pue"].compression == "gzip" and f["sites/pue"].chunks is not None
        assert f["sites/gpus"].chunks is None
    assert_identical(inst, load(path))


def test_relative_path_save(tmp_path, monkeypatch, small_instance):
    monkeypatch.chdir(tmp_path)
    save(small_instance, "rel.h5")
    assert _listing(tmp_path) == ["rel.h5"]
    assert_identical(small_instance, load("rel.h5"))


# hypothesis strategies for a random valid instance ------------------------------------------
# every finite number of an instance is at most MAX_MAGNITUDE in magnitude (the solver's limit)
FIN = st.floats(min_value=-MAX_MAGNITUDE, max_value=MAX_MAGNITUDE, allow_nan=False, allow_infinity=False)
GE0 = st.floats(min_value=0.0, max_value=MAX_MAGNITUDE, allow_nan=False, allow_infinity=False)
MAX_INT = int(MAX_MAGNITUDE)
NAME_CHARS = st.characters(codec="utf-8", exclude_characters="\x00")


def _names(n: int):
    return st.lists(st.text(NAME_CHARS, max_size=6), min_size=n, max_size=n, unique=True)


def _arr(shape, elements, dtype=np.float64):
    return hnp.arrays(dtype, shape, elements=elements)


@st.composite
def random_instance(draw):
    t = draw(st.integers(1, 5))
    s = draw(st.integers(1, 3))
    j = draw(st.integers(0, 3))
    k = draw(st.integers(0, 2))

    def pair(shape):
        a, b = draw(_arr(shape, FIN)), draw(_arr(shape, FIN))
        return np.minimum(a, b), np.maximum(a, b)

    def pair_ge0(shape):
        a, b = draw(_arr(shape, GE0)), draw(_arr(shape, GE0))
        return np.minimum(a, b), np.maximum(a, b)

    idle, busy = pair_ge0(s)
    sell, buy = pair((s, t))
    gmin, gmax = pair_ge0(s)
    soc0, energy = pair_ge0(s)
    unit = st.floats(min_value=0.0, max_value=1.0, exclude_min=True)
    ints64 = st.integers(0, MAX_INT)
    sites = {
        "name": draw(_names(s)),
        "lat": draw(_arr(s, FIN)),
        "lon": draw(_arr(s, FIN)),
        "gpus": draw(_arr(s, ints64, np.int64)),
        "gpu_idle_kw": idle,
        "gpu_busy_kw": busy,
        "pue": draw(_arr((s, t), st.floats(min_value=1.0, max_value=MAX_MAGNITUDE, allow_nan=False))),
        "renewable_mw": draw(_arr((s, t), GE0)),
        "grid_import_mw": draw(_arr(s, GE0)),
        "grid_export_mw": draw(_arr(s, GE0)),
        "price_buy": buy,
        "price_sell": sell,
        "grid_co2": draw(_arr((s, t), GE0)),
        "gen_max_mw": gmax,
        "gen_min_mw": gmin,
        "gen_cost": draw(_arr(s, FIN)),
        "gen_startup_cost": draw(_arr(s, GE0)),
        "gen_co2": draw(_arr(s, GE0)),
        "gen_min_up": draw(_arr(s, st.integers(1, MAX_INT), np.int64)),
        "gen_min_down": draw(_arr(s, st.integers(1, MAX_INT), np.int64)),
        "bat_energy_mwh": energy,
        "bat_power_mw": draw(_arr(s, GE0)),
        "bat_eta_charge": draw(_arr(s, unit)),
        "bat_eta_discharge": draw(_arr(s, unit)),
        "bat_soc0_mwh": soc0,
        "bat_cost": draw(_arr(s, GE0)),
    }
    durations, releases, deadlines = [], [], []
    for _ in range(j):
        d = draw(st.integers(1, t))
        r = draw(st.integers(0, t - d))
        durations.append(d)
        releases.append(r)
        deadlines.append(draw(st.integers(r + d, t)))
    allowed = draw(_arr((j, s), st.booleans(), np.bool_))
    for row in range(j):
        allowed[row, draw(st.integers(0, s - 1))] = True
    jobs = {
        "name": draw(_names(j)),
        "gpus": draw(_arr(j, st.integers(1, MAX_INT), np.int64)),
        "duration": durations,
        "release": releases,
        "deadline": deadlines,
        "value": draw(_arr(j, FIN)),
        "mandatory": draw(_arr(j, st.booleans(), np.bool_)),
        "allowed": allowed,
    }
    inference = {
        "name": draw(_names(k)),
        "demand": draw(_arr((k, t), GE0)),
        "revenue": draw(_arr(k, FIN)),
        "penalty": draw(_arr(k, GE0)),
        "latency_ms": draw(_arr((k, s), st.one_of(GE0, st.just(math.inf)))),
        "latency_slo_ms": draw(_arr(k, GE0)),
        "latency_cost": draw(_arr(k, GE0)),
    }
    inst = make_instance(
        t, s, n_jobs=j, n_classes=k,
        name=draw(st.text(NAME_CHARS, max_size=10)),
        period_hours=draw(st.floats(min_value=0.0, max_value=MAX_MAGNITUDE, exclude_min=True)),
        voll=draw(st.floats(min_value=0.0, max_value=MAX_MAGNITUDE, exclude_min=True)),
        carbon_budget_t=draw(st.one_of(st.just(math.inf), GE0)),
        carbon_price=draw(GE0),
        sites=sites, jobs=jobs, inference=inference,
    )
    inst.extra_attrs = {"description": draw(st.text(NAME_CHARS, max_size=10)), "seed": draw(ints64)}
    return inst


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(inst=random_instance())
def test_round_trip_property(tmp_path, inst):
    path = tmp_path / "prop.h5"  # overwritten by every example: also exercises replacing an existing file
    save(inst, path)
    back = load(path)
    assert_identical(inst, back)
    assert back.extra_attrs == inst.extra_attrs
    assert _listing(tmp_path) == ["prop.h5"]


# ----------------------------------------------------------------------------- plain h5py -> load
def _write_by_spec(path, *, compress: bool) -> dict:
    """An instance written field by field from the tables of INSTANCE.md, with plain h5py only."""
    kw = {"compression": "gzip", "shuffle": True, "fletcher32": True} if compress else {}
    strs = h5py.string_dtype("utf-8")
    v = {
        "sites/name": np.array(["nord", "süd"], dtype=object),
        "sites/lat": np.array([60.0, 40.0]), "sites/lon": np.array([10.0, -3.5]),
        "sites/gpus": np.array([16, 8]),
        "sites/gpu_idle_kw": np.array([0.1, 0.1]), "sites/gpu_busy_kw": np.array([0.7, 0.6]),
        "sites/pue": np.array([[1.1, 1.2, 1.15], [1.3, 1.3, 1.25]]),
        "sites/renewable_mw": np.array([[0.0, 2.0, 1.0], [3.0, 0.0, 0.5]]),
        "sites/grid_import_mw": np.array([10.0, 5.0]), "sites/grid_export_mw": np.array([2.0, 0.0]),
        "sites/price_buy": np.array([[40.0, -5.0, 60.0], [55.0, 50.0, 45.0]]),
        "sites/price_sell": np.array([[30.0, -8.0, 50.0], [55.0, 40.0, 0.0]]),
        "sites/grid_co2": np.array([[0.02, 0.03, 0.02], [0.4, 0.45, 0.5]]),
        "sites/gen_max_mw": np.array([0.0, 3.0]), "sites/gen_min_mw": np.array([0.0, 1.0]),
        "sites/gen_cost": np.array([0.0, 120.0]), "sites/gen_startup_cost": np.array([0.0, 300.0]),
        "sites/gen_co2": np.array([0.0, 0.6]),
        "sites/gen_min_up": np.array([1, 2]), "sites/gen_min_down": np.array([1, 3]),
        "sites/bat_energy_mwh": np.array([5.0, 0.0]), "sites/bat_power_mw": np.array([2.5, 0.0]),
        "sites/bat_eta_charge": np.array([0.95, 1.0]), "sites/bat_eta_discharge": np.array([0.95, 1.0]),
        "sites/bat_soc0_mwh": np.array([2.5, 0.0]), "sites/bat_cost": np.array([2.0, 0.0]),
        "jobs/name": np.array(["llm-pretrain", "vision"], dtype=object),
        "jobs/gpus": np.array([8, 4]), "jobs/duration": np.array([2, 1]), "jobs/release": np.array([0, 1]),
        "jobs/deadline": np.array([3, 3]), "jobs/value": np.array([1000.0, 250.0]),
        "jobs/mandatory": np.array([True, False]),
        "jobs/allowed": np.array([[True, True], [False, True]]),
        "inference/name": np.array(["chat"], dtype=object),
        "inference/demand": np.array([[2.0, 4.0, 3.0]]),
        "inference/revenue": np.array([2.5]), "inference/penalty": np.array([4.0]),
        "inference/latency_ms": np.array([[15.0, np.inf]]), "inference/latency_slo_ms": np.array([40.0]),
        "inference/latency_cost": np.array([0.001]),
    }
    with h5py.File(path, "w", libver="latest") as f:
        f.attrs["schema"] = "carbonsched-instance"
        f.attrs["schema_version"] = 1
        f.attrs["name"] = "by-hand"
        f.attrs["n_periods"] = 3
        f.attrs["period_hours"] = 1.0
        f.attrs["voll"] = 9000.0
        f.attrs["carbon_budget_t"] = 12.5
        f.attrs["carbon_price"] = 80.0
        f.attrs["description"] = "written with plain h5py from INSTANCE.md"
        for key, arr in v.items():
            if arr.dtype == object:
                f.create_dataset(key, data=arr, dtype=strs)
            else:
                f.create_dataset(key, data=arr, chunks=True if compress else None, **kw)
    return v


@pytest.mark.parametrize("compress", [False, True], ids=["contiguous", "chunked-gzip-fletcher32"])
def test_file_written_with_plain_h5py_loads(tmp_path, compress):
    path = tmp_path / "hand.h5"
    values = _write_by_spec(path, compress=compress)
    inst = load(path)
    assert inst.name == "by-hand" and inst.n_periods == 3 and inst.carbon_budget_t == 12.5
    assert (inst.period_hours, inst.voll, inst.carbon_price) == (1.0, 9000.0, 80.0)
    assert inst.extra_attrs == {"description": "written with plain h5py from INSTANCE.md"}
    assert inst.dims() == {"S": 2, "T": 3, "J": 2, "K": 1}
    for key, arr in values.items():
        g, name = key.split("/")
        got = getattr(inst.group(g), name)
        assert got.shape == arr.shape, key
        assert got.tolist() == arr.tolist(), key
    # the project can write it back, and the copy is identical
    save(inst, tmp_path / "copy.h5")
    assert_identical(inst, load(tmp_path / "copy.h5"))


# ----------------------------------------------------------------------------- project file -> plain h5py
def test_project_file_readable_with_plain_h5py(tmp_path, small_instance):
    small_instance.extra_attrs = {"seed": 7}
    path = tmp_path / "inst.h5"
    save(small_instance, path)
    dims = small_instance.dims()
    with h5py.File(path, "r") as f:
        a = f.attrs
        assert type(a["schema"]) is str and a["schema"] == "carbonsched-instance"
        assert type(a["name"]) is str and a["name"] == "small"
        for key in ("schema_version", "n_periods"):
            assert isinstance(a[key], np.integer) and not isinstance(a[key], np.bool_), key
        assert a["schema_version"] == 1 and a["n_periods"] == 4
        for key in ("period_hours", "voll", "carbon_budget_t", "carbon_price"):
            assert isinstance(a[key], np.floating), key
        assert a["carbon_budget_t"] == np.inf and a["period_hours"] == 0.5
        assert a["seed"] == 7
        assert set(f.keys()) == set(GROUPS)
        for g in GROUPS:
            assert isinstance(f[g], h5py.Group)
            assert set(f[g].keys()) == {spec.name for spec in group_fields(g)}
        for spec in FIELDS:
            ds = f[spec.group][spec.name]
            where = f"/{spec.group}/{spec.name}"
            assert ds.shape == tuple(dims[d] for d in spec.dims), where
            if spec.kind == "str":
                info = h5py.check_string_dtype(ds.dtype)
                assert info is not None and info.encoding == "utf-8" and info.length is None, where
                assert [s.decode("utf-8") for s in ds[()]] == list(getattr(small_instance.group(spec.group),
                                                                           spec.name)), where
            elif spec.kind == "bool":
                assert ds.dtype == np.bool_, where
            elif spec.kind == "int":
                assert ds.dtype.kind == "i", where
            else:
                assert ds.dtype.kind == "f", where
        assert f["sites/name"].asstr()[()].tolist() == ["Zürich", "Oslo", "東京"]
        assert f["jobs/mandatory"][()].tolist() == [True, False, False, True]
        assert np.isinf(f["inference/latency_ms"][0, 2])


# ----------------------------------------------------------------------------- atomic writes
@pytest.fixture
def existing(tmp_path, small_instance):
    """A valid file already at the target path (a different instance: carbon price 1)."""
    old = small_instance.copy()
    old.carbon_price = 1.0
    target = tmp_path / "inst.h5"
    save(old, target)
    return target, target.read_bytes()


N_FIELDS = len(FIELDS)


@pytest.mark.parametrize("fail_at", [1, N_FIELDS // 2, N_FIELDS])
@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_failure_during_write_leaves_target_untouched(existing, small_instance, monkeypatch, fail_at, exc):
    target, before = existing
    calls = []
    real = storage.write_array

    def flaky(group, name, arr):
        calls.append(name)
        if len(calls) == fail_at:
            raise exc("disk full")
        real(group, name, arr)

    monkeypatch.setattr(storage, "write_array", flaky)
    with pytest.raises(exc, match="disk full"):
        save(small_instance, target)
    assert len(calls) == fail_at
    assert target.read_bytes() == before
    assert _listing(target.parent) == ["inst.h5"]
    assert load(target).carbon_price == 1.0


def test_failure_without_existing_target_leaves_nothing(tmp_path, small_instance, monkeypatch):
    def boom(group, name, arr):
        raise OSError("no space left on device")

    monkeypatch.setattr(storage, "write_array", boom)
    with pytest.raises(OSError, match="no space"):
        save(small_instance, tmp_path / "new.h5")
    assert _listing(tmp_path) == []


def test_failure_at_rename_leaves_target_untouched(existing, small_instance, monkeypatch):
    target, before = existing

    def no_replace(src, dst):
        raise PermissionError("rename refused")

    monkeypatch.setattr(storage.os, "replace", no_replace)
    with pytest.raises(OutputError, match="rename refused"):  # a failed write is OutputError (exit status 5)
        save(small_instance, target)
    monkeypatch.undo()
    assert target.read_bytes() == before
    assert _listing(target.parent) == ["inst.h5"]


def test_successful_save_replaces_target(existing, small_instance):
    target, before = existing
    save(small_instance, target)
    assert target.read_bytes() != before
    assert load(target).carbon_price == small_instance.carbon_price
    assert _listing(target.parent) == ["inst.h5"]


def test_saved_file_mode_follows_umask(tmp_path, small_instance):
    """Like a file opened for writing: the temporary file's private mode must not leak into the result."""
    plain = tmp_path / "plain.bin"
    plain.write_bytes(b"")
    target = tmp_path / "inst.h5"
    save(small_instance, target)
    assert stat.S_IMODE(os.stat(target).st_mode) == stat.S_IMODE(os.stat(plain).st_mode)


# ----------------------------------------------------------------------------- validate on save
@pytest.mark.parametrize(
    "breaks, expected",
    [
        (lambda i: i.sites.pue.__setitem__((1, 2), 0.9), "/sites/pue[1, 2]: must be >= 1"),
        (lambda i: i.jobs.deadline.__setitem__(0, 9), "/jobs/deadline[0]: must be <= n_periods = 4"),
        (lambda i: setattr(i, "voll", 0.0), "attribute 'voll': must be > 0"),
        (lambda i: i.inference.latency_ms.__setitem__((0, 0), np.nan), "/inference/latency_ms[0, 0]: must not be NaN"),
        (lambda i: i.sites.name.__setitem__(1, "bad\x00name"), "/sites/name[1]: strings must not contain NUL"),
        (lambda i: i.jobs.name.__setitem__(0, "\ud800"), "/jobs/name[0]: strings must be valid UTF-8"),
    ],
    ids=["pue", "deadline", "voll", "nan", "nul-in-name", "surrogate-in-name"],
)
def test_save_validates_first(tmp_path, existing, small_instance, breaks, expected):
    target, before = existing
    breaks(small_instance)
    with pytest.raises(InstanceError, match=expected.replace("[", r"\[").replace("]", r"\]")):
        save(small_instance, target)
    assert target.read_bytes() == before
    assert _listing(tmp_path) == ["inst.h5"]
    fresh = tmp_path / "sub"
    fresh.mkdir()
    with pytest.raises(InstanceError):
        save(small_instance, fresh / "new.h5")
    assert _listing(fresh) == []
