"""Bad instance files are refused by ``instances.load`` with a one-line message (INSTANCE.md, Validation).

Every case starts from a valid small instance written by ``instances.save`` (jobs, inference classes,
battery and generator all live), corrupts it with plain h5py, and checks that the message names the
dataset or attribute, the rule and, for arrays, the first offending index.
"""

from __future__ import annotations

import math
import shutil

import h5py
import numpy as np
import pytest
from carbonsched.instances import InstanceError, load, make_instance, save
from carbonsched.instances.schema import FIELDS

T, S, J, K = 4, 3, 4, 2  # sizes of the conftest instance


# ----------------------------------------------------------------------------- helpers
def _read(f: h5py.File, path: str) -> np.ndarray:
    ds = f[path]
    if h5py.check_string_dtype(ds.dtype) is not None:
        return np.array(ds.asstr()[()], dtype=object)
    return np.array(ds[()])


def _replace(f: h5py.File, path: str, data, dtype=None) -> None:
    del f[path]
    if isinstance(data, h5py.Empty):
        f.create_dataset(path, data=data)
        return
    data = np.asarray(data) if dtype is None else data
    if dtype is None and data.dtype.kind == "O":
        dtype = h5py.string_dtype("utf-8")
    f.create_dataset(path, data=data, dtype=dtype)


def set_item(path: str, idx, value):
    """Mutator: ``path[idx] = value``, keeping the dataset's dtype."""

    def mutate(f: h5py.File) -> None:
        arr = _read(f, path)
        arr[idx] = value
        _replace(f, path, arr)

    return mutate


def set_attr(key: str, value):
    def mutate(f: h5py.File) -> None:
        f.attrs[key] = value

    return mutate


def del_attr(key: str):
    def mutate(f: h5py.File) -> None:
        del f.attrs[key]

    return mutate


def delete(path: str):
    def mutate(f: h5py.File) -> None:
        del f[path]

    return mutate


def replace(path: str, data, dtype=None):
    """Mutator: replace dataset ``path`` by ``data`` (a callable gets the old array)."""

    def mutate(f: h5py.File) -> None:
        new = data(_read(f, path)) if callable(data) else data
        _replace(f, path, new, dtype)

    return mutate


def chain(*mutators):
    def mutate(f: h5py.File) -> None:
        for m in mutators:
            m(f)

    return mutate


def _group_to_dataset(f: h5py.File) -> None:
    del f["jobs"]
    f["jobs"] = np.zeros(3)


def _name_is_group(f: h5py.File) -> None:
    del f["jobs/name"]
    f["jobs"].create_group("name")


def _field_is_group(f: h5py.File) -> None:
    del f["sites/pue"]
    f["sites"].create_group("pue")


def _dangling_link(f: h5py.File) -> None:
    del f["jobs/gpus"]
    f["jobs/gpus"] = h5py.SoftLink("/nowhere/gpus")


def _zero_sites(f: h5py.File) -> None:
    for spec in FIELDS:
        path = f"{spec.group}/{spec.name}"
        old = _read(f, path)
        if spec.group == "sites":
            shape = (0,) + old.shape[1:]
        elif "S" in spec.dims:
            shape = (old.shape[0], 0)
        else:
            continue
        _replace(f, path, np.empty(shape, dtype=old.dtype), h5py.string_dtype() if old.dtype == object else None)


def case(id_, mutator, *expected):
    return pytest.param(mutator, expected, id=id_)


ROOT_KEYS = ["schema", "schema_version", "name", "n_periods", "period_hours", "voll", "carbon_budget_t", "carbon_price"]

ROOT_CASES = [
    *(case(f"missing-attr-{k}", del_attr(k), f"attribute '{k}'", "missing root attribute") for k in ROOT_KEYS),
    case("schema-wrong", set_attr("schema", "other-schema"), "attribute 'schema'",
         "must be 'carbonsched-instance'", "'other-schema'"),
    case("schema-not-str", set_attr("schema", np.int64(1)), "attribute 'schema'", "must be 'carbonsched-instance'"),
    case("schema-version-2", set_attr("schema_version", np.int64(2)), "attribute 'schema_version'",
         "unknown schema_version 2"),
    case("schema-version-0", set_attr("schema_version", np.int64(0)), "attribute 'schema_version'",
         "unknown schema_version 0"),
    case("schema-version-float", set_attr("schema_version", 1.0), "attribute 'schema_version'",
         "must be an integer"),
    case("schema-version-str", set_attr("schema_version", "1"), "attribute 'schema_version'", "must be an integer"),
    case("schema-version-bool", set_attr("schema_version", np.bool_(True)), "attribute 'schema_version'",
         "must be an integer"),
    case("schema-version-array", set_attr("schema_version", np.array([1])), "attribute 'schema_version'",
         "must be an integer"),
    case("name-not-str", set_attr("name", np.int64(7)), "attribute 'name'", "must be a string"),
    case("name-not-utf8", set_attr("name", np.bytes_(b"caf\xe9")), "attribute 'name'", "must be UTF-8"),
    case("n-periods-0", set_attr("n_periods", np.int64(0)), "attribute 'n_periods'", "must be >= 1", "(got 0)"),
    case("n-periods-neg", set_attr("n_periods", np.int64(-3)), "attribute 'n_periods'", "must be >= 1"),
    case("n-periods-float", set_attr("n_periods", 4.0), "attribute 'n_periods'", "must be an integer"),
    case("period-hours-0", set_attr("period_hours", 0.0), "attribute 'period_hours'", "must be > 0"),
    case("period-hours-neg", set_attr("period_hours", -1.0), "attribute 'period_hours'", "must be > 0"),
    case("period-hours-str", set_attr("period_hours", "1.0"), "attribute 'period_hours'", "must be a number"),
    case("period-hours-inf", set_attr("period_hours", math.inf), "attribute 'period_hours'", "must be finite"),
    case("voll-0", set_attr("voll", 0.0), "attribute 'voll'", "must be > 0"),
    case("voll-neg", set_attr("voll", -10.0), "attribute 'voll'", "must be > 0"),
    case("voll-nan", set_attr("voll", math.nan), "attribute 'voll'", "must not be NaN"),
    case("budget-neg", set_attr("carbon_budget_t", -1.0), "attribute 'carbon_budget_t'", "must be >= 0"),
    case("budget-nan", set_attr("carbon_budget_t", math.nan), "attribute 'carbon_budget_t'", "must not be NaN"),
    case("budget-minus-inf", set_attr("carbon_budget_t", -math.inf), "attribute 'carbon_budget_t'",
         "must be finite"),
    case("carbon-price-neg", set_attr("carbon_price", -0.5), "attribute 'carbon_price'", "must be >= 0"),
    case("carbon-price-inf", set_attr("carbon_price", math.inf), "attribute 'carbon_price'", "must be finite"),
]

STRUCTURE_CASES = [
    *(case(f"missing-group-{g}", delete(g), f"/{g}", "missing group") for g in ("sites", "jobs", "inference")),
    case("group-is-dataset", _group_to_dataset, "/jobs", "missing group"),
    *(
        case(f"missing-{p.replace('/', '-')}", delete(p), f"/{p}", "missing dataset")
        for p in ("sites/name", "sites/pue", "sites/bat_cost", "jobs/name", "jobs/allowed", "inference/name",
                  "inference/latency_ms", "inference/latency_cost")
    ),
    case("dangling-soft-link", _dangling_link, "/jobs/gpus", "missing dataset"),
    case("name-is-group", _name_is_group, "/jobs/name", "must be a dataset"),
    case("field-is-group", _field_is_group, "/sites/pue", "must be a dataset"),
    case("zero-sites", _zero_sites, "/sites/name", "at least one site is required"),
]

SHAPE_CASES = [
    case("1d-gets-2d", replace("sites/gpus", lambda a: a[:, None]), "/sites/gpus", "shape must be (S) = (3,)",
         "got (3, 1)"),
    case("2d-gets-1d", replace("sites/pue", lambda a: a[:, 0]), "/sites/pue", "shape must be (S,T) = (3, 4)",
         "got (3,)"),
    case("wrong-T", replace("sites/price_buy", lambda a: np.hstack([a, a[:, :1]])), "/sites/price_buy",
         "shape must be (S,T) = (3, 4)", "got (3, 5)"),
    case("n-periods-mismatch", set_attr("n_periods", np.int64(5)), "/sites/pue", "shape must be (S,T) = (3, 5)",
         "got (3, 4)"),
    case("wrong-S", replace("sites/lat", lambda a: a[:2]), "/sites/lat", "shape must be (S) = (3,)", "got (2,)"),
    case("wrong-J", replace("jobs/gpus", lambda a: a[:3]), "/jobs/gpus", "shape must be (J) = (4,)", "got (3,)"),
    case("allowed-transposed", replace("jobs/allowed", lambda a: a.T), "/jobs/allowed",
         "shape must be (J,S) = (4, 3)", "got (3, 4)"),
    case("demand-wrong-T", replace("inference/demand", lambda a: a[:, :3]), "/inference/demand",
         "shape must be (K,T) = (2, 4)", "got (2, 3)"),
    case("latency-wrong-S", replace("inference/latency_ms", lambda a: a[:, :2]), "/inference/latency_ms",
         "shape must be (K,S) = (2, 3)", "got (2, 2)"),
    case("scalar-dataset", replace("sites/lat", np.float64(1.0)),
         "/sites/lat", "shape must be (S) = (3,)", "got ()"),
    case("null-dataspace", replace("sites/lon", h5py.Empty("f8")), "/sites/lon", "shape must be (S)"),
    case("name-2d", replace("sites/name", lambda a: a[:, None]), "/sites/name", "must be one-dimensional"),
]

DTYPE_CASES = [
    case("float-for-int", replace("sites/gpus", lambda a: a.astype(float)), "/sites/gpus", "must be integer",
         "float64"),
    case("float-for-int-jobs", replace("jobs/duration", lambda a: a.astype(np.float32)), "/jobs/duration",
         "must be integer", "float32"),
    case("bool-for-int", replace("sites/gen_min_up", lambda a: a.astype(bool)), "/sites/gen_min_up",
         "must be integer"),
    case("str-for-float", replace("sites/pue", lambda a: a.astype(str).astype(object)), "/sites/pue",
         "must be float"),
    case("str-for-int", replace("jobs/release", lambda a: a.astype(str).astype(object)), "/jobs/release",
         "must be int"),
    case("bool-for-float", replace("sites/lat", lambda a: a > 0), "/sites/lat", "must be float", "bool"),
    case("complex-for-float", replace("inference/revenue", lambda a: a.astype(complex)), "/inference/revenue",
         "must be float", "complex128"),
    case("float-for-bool", replace("jobs/mandatory", lambda a: a.astype(float)), "/jobs/mandatory",
         "must be boolean", "float64"),
    case("str-for-bool", replace("jobs/allowed", lambda a: a.astype(str).astype(object)), "/jobs/allowed",
         "must be bool"),
    case("int8-2-for-bool", replace("jobs/allowed", lambda a: np.where(np.arange(S) == 2, 2, a).astype(np.int8)),
         "/jobs/allowed[0, 2]", "must be boolean (0 or 1)", "(got 2)"),
    case("int8-neg-for-bool", replace("jobs/mandatory", np.array([1, 0, -1, 0], dtype=np.int8)),
         "/jobs/mandatory[2]", "must be boolean (0 or 1)", "(got -1)"),
    case("int-for-str", replace("inference/name", np.array([1, 2])), "/inference/name",
         "must be a string dataset"),
    case("str-not-utf8", replace("sites/name", np.array([b"a", b"caf\xe9", b"c"])), "/sites/name",
         "strings must be UTF-8"),
    case("uint64-overflow", replace("sites/gpus", np.array([1, 2**64 - 1, 2], dtype=np.uint64)), "/sites/gpus[1]",
         "must fit in a 64-bit signed integer"),
]

NONFINITE_CASES = [
    case("nan-pue", set_item("sites/pue", (1, 2), np.nan), "/sites/pue[1, 2]", "must not be NaN"),
    case("nan-lat", set_item("sites/lat", 0, np.nan), "/sites/lat[0]", "must not be NaN"),
    case("nan-gen-cost", set_item("sites/gen_cost", 2, np.nan), "/sites/gen_cost[2]", "must not be NaN"),
    case("nan-value", set_item("jobs/value", 3, np.nan), "/jobs/value[3]", "must not be NaN"),
    case("nan-latency", set_item("inference/latency_ms", (1, 0), np.nan), "/inference/latency_ms[1, 0]",
         "must not be NaN"),
    case("nan-demand", set_item("inference/demand", (0, 3), np.nan), "/inference/demand[0, 3]", "must not be NaN"),
    case("nan-float32", replace("sites/renewable_mw", lambda a: np.where(a > 0, np.nan, a).astype(np.float32)),
         "/sites/renewable_mw[0, 1]", "must not be NaN"),
    case("inf-gen-cost", set_item("sites/gen_cost", 1, np.inf), "/sites/gen_cost[1]", "must be finite", "(got inf)"),
    case("inf-pue", set_item("sites/pue", (2, 3), np.inf), "/sites/pue[2, 3]", "must be finite"),
    case("minus-inf-price", set_item("sites/price_buy", (0, 2), -np.inf), "/sites/price_buy[0, 2]",
         "must be finite", "(got -inf)"),
    case("inf-value", set_item("jobs/value", 0, np.inf), "/jobs/value[0]", "must be finite"),
    case("inf-revenue", set_item("inference/revenue", 1, np.inf), "/inference/revenue[1]", "must be finite"),
    case("inf-bat-energy", set_item("sites/bat_energy_mwh", 0, np.inf), "/sites/bat_energy_mwh[0]",
         "must be finite"),
    case("minus-inf-latency", set_item("inference/latency_ms", (0, 1), -np.inf), "/inference/latency_ms[0, 1]",
         "must be finite"),
    case("inf-slo", set_item("inference/latency_slo_ms", 1, np.inf), "/inference/latency_slo_ms[1]",
         "must be finite"),
]

RANGE_CASES = [
    case("site-gpus-neg", set_item("sites/gpus", 1, -1), "/sites/gpus[1]", "must be >= 0", "(got -1)"),
    case("idle-neg", set_item("sites/gpu_idle_kw", 0, -0.1), "/sites/gpu_idle_kw[0]", "must be >= 0"),
    case("busy-neg", set_item("sites/gpu_busy_kw", 1, -0.1), "/sites/gpu_busy_kw[1]", "must be >= 0"),
    case("idle-gt-busy", set_item("sites/gpu_idle_kw", 2, 0.45), "/sites/gpu_idle_kw[2]", "must be <= gpu_busy_kw",
         "(got 0.45)"),
    case("pue-lt-1", set_item("sites/pue", (1, 2), 0.9), "/sites/pue[1, 2]", "must be >= 1", "(got 0.9)"),
    case("renewable-neg", set_item("sites/renewable_mw", (2, 3), -0.5), "/sites/renewable_mw[2, 3]",
         "must be >= 0"),
    case("import-neg", set_item("sites/grid_import_mw", 0, -1.0), "/sites/grid_import_mw[0]", "must be >= 0"),
    case("export-neg", set_item("sites/grid_export_mw", 2, -1.0), "/sites/grid_export_mw[2]", "must be >= 0"),
    case("sell-gt-buy", set_item("sites/price_sell", (2, 1), 21.0), "/sites/price_sell[2, 1]",
         "must be <= price_buy", "(got 21)"),
    case("grid-co2-neg", set_item("sites/grid_co2", (0, 3), -0.1), "/sites/grid_co2[0, 3]", "must be >= 0"),
    case("gen-max-neg", set_item("sites/gen_max_mw", 1, -1.0), "/sites/gen_max_mw[1]", "must be >= 0"),
    case("gen-min-neg", set_item("sites/gen_min_mw", 1, -1.0), "/sites/gen_min_mw[1]", "must be >= 0"),
    case("gen-min-gt-max", set_item("sites/gen_min_mw", 2, 1.5), "/sites/gen_min_mw[2]", "must be <= gen_max_mw",
         "(got 1.5)"),
    case("startup-neg", set_item("sites/gen_startup_cost", 2, -1.0), "/sites/gen_startup_cost[2]", "must be >= 0"),
    case("gen-co2-neg", set_item("sites/gen_co2", 0, -0.1), "/sites/gen_co2[0]", "must be >= 0"),
    case("min-up-0", set_item("sites/gen_min_up", 1, 0), "/sites/gen_min_up[1]", "must be >= 1", "(got 0)"),
    case("min-down-0", set_item("sites/gen_min_down", 2, 0), "/sites/gen_min_down[2]", "must be >= 1"),
    case("bat-energy-neg", set_item("sites/bat_energy_mwh", 1, -1.0), "/sites/bat_energy_mwh[1]", "must be >= 0"),
    case("bat-power-neg", set_item("sites/bat_power_mw", 2, -1.0), "/sites/bat_power_mw[2]", "must be >= 0"),
    case("eta-charge-0", set_item("sites/bat_eta_charge", 0, 0.0), "/sites/bat_eta_charge[0]",
         "must be in (0, 1]", "(got 0)"),
    case("eta-charge-gt-1", set_item("sites/bat_eta_charge", 2, 1.01), "/sites/bat_eta_charge[2]",
         "must be in (0, 1]", "(got 1.01)"),
    case("eta-discharge-neg", set_item("sites/bat_eta_discharge", 1, -0.5), "/sites/bat_eta_discharge[1]",
         "must be in (0, 1]"),
    case("eta-discharge-gt-1", set_item("sites/bat_eta_discharge", 0, 1.5), "/sites/bat_eta_discharge[0]",
         "must be in (0, 1]"),
    case("soc0-gt-energy", set_item("sites/bat_soc0_mwh", 0, 5.0), "/sites/bat_soc0_mwh[0]",
         "must be <= bat_energy_mwh", "(got 5)"),
    case("soc0-neg", set_item("sites/bat_soc0_mwh", 2, -0.1), "/sites/bat_soc0_mwh[2]", "must be >= 0"),
    case("bat-cost-neg", set_item("sites/bat_cost", 1, -1.0), "/sites/bat_cost[1]", "must be >= 0"),
    case("job-gpus-0", set_item("jobs/gpus", 1, 0), "/jobs/gpus[1]", "must be >= 1", "(got 0)"),
    case("duration-0", set_item("jobs/duration", 2, 0), "/jobs/duration[2]", "must be >= 1"),
    case("release-neg", set_item("jobs/release", 1, -1), "/jobs/release[1]", "must be >= 0"),
    case("deadline-too-early", set_item("jobs/deadline", 0, 1), "/jobs/deadline[0]",
         "must be >= release + duration", "(got 1)"),
    case("deadline-after-release-shift", set_item("jobs/release", 2, 2), "/jobs/deadline[2]",
         "must be >= release + duration"),
    case("deadline-gt-T", set_item("jobs/deadline", 3, 5), "/jobs/deadline[3]", "must be <= n_periods = 4",
         "(got 5)"),
    case("no-allowed-site", set_item("jobs/allowed", 2, False), "/jobs/allowed[2]", "job has no allowed site"),
    case("dup-site-name", set_item("sites/name", 2, "Zürich"), "/sites/name[2]", "names must be unique",
         "'Zürich' repeats entry 0"),
    case("dup-job-name", set_item("jobs/name", 3, "train-b"), "/jobs/name[3]", "names must be unique",
         "repeats entry 1"),
    case("dup-class-name", set_item("inference/name", 1, "chat"), "/inference/name[1]", "names must be unique",
         "repeats entry 0"),
    case("dup-name-newline", replace("sites/name", np.array(["a\nb", "c", "a\nb"], dtype=object)),
         "/sites/name[2]", "names must be unique", "repeats entry 0"),
    case("demand-neg", set_item("inference/demand", (1, 0), -1.0), "/inference/demand[1, 0]", "must be >= 0"),
    case("penalty-neg", set_item("inference/penalty", 0, -1.0), "/inference/penalty[0]", "must be >= 0"),
    case("latency-neg", set_item("inference/latency_ms", (1, 2), -1.0), "/inference/latency_ms[1, 2]",
         "must be >= 0"),
    case("slo-neg", set_item("inference/latency_slo_ms", 0, -1.0), "/inference/latency_slo_ms[0]", "must be >= 0"),
    case("latency-cost-neg", set_item("inference/latency_cost", 1, -0.01), "/inference/latency_cost[1]",
         "must be >= 0"),
    case("first-offender-row-major", chain(set_item("sites/pue", (2, 0), 0.5), set_item("sites/pue", (1, 3), 0.7)),
         "/sites/pue[1, 3]", "must be >= 1", "(got 0.7)"),
]

ALL_CASES = ROOT_CASES + STRUCTURE_CASES + SHAPE_CASES + DTYPE_CASES + NONFINITE_CASES + RANGE_CASES


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def base_file(tmp_path_factory, small_instance_factory):
    path = tmp_path_factory.mktemp("base") / "base.h5"
    save(small_instance_factory(), path)
    return path


@pytest.fixture
def copy(base_file, tmp_path):
    path = tmp_path / "inst.h5"
    shutil.copyfile(base_file, path)
    return path


def refused(path) -> str:
    """Load ``path``, expect InstanceError, check the message is one line starting with the path."""
    with pytest.raises(InstanceError) as info:
        load(path)
    msg = str(info.value)
    assert "\n" not in msg and "\r" not in msg, msg
    assert msg.startswith(f"{path}: "), msg
    assert "Traceback" not in msg
    assert info.value.__cause__ is None and info.value.__suppress_context__
    return msg


# ----------------------------------------------------------------------------- bad files
def test_base_file_is_valid(base_file):
    inst = load(base_file)
    assert (inst.n_sites, inst.n_periods, inst.n_jobs, inst.n_classes) == (S, T, J, K)
    assert inst.sites.bat_energy_mwh.any() and inst.sites.gen_max_mw.any() and inst.jobs.mandatory.any()


@pytest.mark.parametrize("mutate, expected", ALL_CASES)
def test_corrupted_file_refused(copy, mutate, expected):
    with h5py.File(copy, "r+") as f:
        mutate(f)
    msg = refused(copy)
    for part in expected:
        assert part in msg, f"{part!r} not in {msg!r}"


def test_text_file_refused(tmp_path):
    path = tmp_path / "inst.h5"
    path.write_text("schema = carbonsched-instance\n")
    assert "not an HDF5 file" in refused(path)


def test_empty_file_refused(tmp_path):
    path = tmp_path / "inst.h5"
    path.write_bytes(b"")
    assert "not an HDF5 file" in refused(path)


def test_directory_refused(tmp_path):
    assert "is a directory" in refused(tmp_path)


def test_missing_file_refused(tmp_path):
    assert "file not found" in refused(tmp_path / "nope.h5")


def test_truncated_file_refused(base_file, tmp_path):
    path = tmp_path / "inst.h5"
    data = base_file.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert "cannot open HDF5 file" in refused(path)


def test_corrupted_chunk_refused(tmp_path):
    """A damaged compressed chunk surfaces as an h5py OSError on read; it must become an InstanceError."""
    big = 300  # >= storage.COMPRESS_MIN_ELEMENTS, so pue is stored gzip-chunked
    inst = make_instance(big, 1, sites={"pue": 1.0 + np.linspace(0, 1, big)}, jobs={"gpus": [], "duration": []})
    path = tmp_path / "inst.h5"
    save(inst, path)
    with h5py.File(path, "r") as f:
        info = f["sites/pue"].id.get_chunk_info(0)
    raw = bytearray(path.read_bytes())
    for k in range(info.byte_offset + 8, info.byte_offset + 64):
        raw[k] ^= 0x5A
    path.write_bytes(bytes(raw))
    assert "cannot read HDF5 file" in refused(path)


# ----------------------------------------------------------------------------- valid edge cases
def _empty_groups(full_shapes: bool):
    """Mutator: J = K = 0 as another tool might write it (2-D empties as (0,S)/(0,T), or flattened (0,))."""

    def mutate(f: h5py.File) -> None:
        dims = {"S": S, "T": T, "J": 0, "K": 0}
        for spec in FIELDS:
            if spec.group == "sites":
                continue
            shape = tuple(dims[d] for d in spec.dims) if full_shapes else (0,)
            old = f[f"{spec.group}/{spec.name}"]
            dtype = h5py.string_dtype() if spec.kind == "str" else old.dtype
            del f[f"{spec.group}/{spec.name}"]
            f.create_dataset(f"{spec.group}/{spec.name}", shape=shape, dtype=dtype)

    return mutate


@pytest.mark.parametrize("full_shapes", [True, False], ids=["2d-empties", "flat-empties"])
def test_empty_jobs_and_classes_load(copy, full_shapes):
    with h5py.File(copy, "r+") as f:
        _empty_groups(full_shapes)(f)
    inst = load(copy)
    assert inst.n_jobs == 0 and inst.n_classes == 0
    assert inst.jobs.allowed.shape == (0, S) and inst.jobs.allowed.dtype == bool
    assert inst.inference.demand.shape == (0, T) and inst.inference.demand.dtype == np.float64
    assert inst.inference.latency_ms.shape == (0, S)
    assert inst.jobs.name.shape == (0,) and inst.jobs.gpus.dtype == np.int64


def test_empty_groups_written_by_project_load(tmp_path):
    inst = make_instance(3, 2, sites={"gpus": [1, 2]}, jobs={"gpus": [], "duration": []})
    path = tmp_path / "inst.h5"
    save(inst, path)
    with h5py.File(path, "r") as f:
        assert f["jobs/allowed"].shape == (0, 2) and f["inference/demand"].shape == (0, 3)
    back = load(path)
    assert back.n_jobs == 0 and back.n_classes == 0 and back.jobs.allowed.shape == (0, 2)


def _to_int8_bools(f: h5py.File) -> None:
    for p in ("jobs/mandatory", "jobs/allowed"):
        _replace(f, p, _read(f, p).astype(np.int8))


def _to_fixed_bytes(f: h5py.File) -> None:
    for g in ("sites", "jobs", "inference"):
        names = [s.encode("utf-8") for s in _read(f, f"{g}/name")]
        _replace(f, f"{g}/name", np.array(names, dtype="S24"))


def _to_fixed_utf8(f: h5py.File) -> None:
    for g in ("sites", "jobs", "inference"):
        names = [s.encode("utf-8") for s in _read(f, f"{g}/name")]
        utf8 = h5py.string_dtype("utf-8", 24)
        _replace(f, f"{g}/name", np.array(names, dtype=utf8), dtype=utf8)


def _narrow_numbers(f: h5py.File) -> None:
    for spec in FIELDS:
        p = f"{spec.group}/{spec.name}"
        if spec.kind == "float":
            _replace(f, p, _read(f, p).astype(np.float32))
        elif spec.kind == "int":
            _replace(f, p, _read(f, p).astype(np.int32 if spec.group == "jobs" else np.uint16))


def _attrs_as_other_widths(f: h5py.File) -> None:
    f.attrs["schema_version"] = np.uint8(1)
    f.attrs["n_periods"] = np.int32(T)
    f.attrs["period_hours"] = np.float32(0.5)
    f.attrs["schema"] = np.bytes_(b"carbonsched-instance")
    f.attrs["name"] = np.bytes_("smäll".encode())


def _no_site_within_slo(f: h5py.File) -> None:
    _replace(f, "inference/latency_slo_ms", np.array([1.0, 100.0]))


def _extra_root_attrs(f: h5py.File) -> None:
    f.attrs["description"] = "written by hand"
    f.attrs["seed"] = 12
    f.attrs["generator"] = "other-tool 0.1"


def _budget(value):
    return set_attr("carbon_budget_t", value)


VALID_CASES = [
    pytest.param(_budget(math.inf), lambda i: i.carbon_budget_t == math.inf, id="budget-inf"),
    pytest.param(_budget(0.0), lambda i: i.carbon_budget_t == 0.0, id="budget-zero"),
    pytest.param(set_attr("carbon_price", 0.0), lambda i: i.carbon_price == 0.0, id="carbon-price-zero"),
    pytest.param(lambda f: None, lambda i: (i.sites.price_buy < 0).any() and (i.sites.price_sell < 0).any(),
                 id="negative-prices"),
    pytest.param(lambda f: None, lambda i: np.isinf(i.inference.latency_ms[0, 2]), id="latency-inf"),
    pytest.param(set_item("inference/latency_ms", (1, 1), np.inf), lambda i: np.isinf(i.inference.latency_ms[1, 1]),
                 id="latency-inf-extra"),
    pytest.param(_to_int8_bools, lambda i: i.jobs.allowed.dtype == bool and i.jobs.mandatory.tolist()
                 == [True, False, False, True], id="bool-as-int8"),
    pytest.param(_to_fixed_bytes, lambda i: i.sites.name.tolist() == ["Zürich", "Oslo", "東京"]
                 and i.jobs.name[0] == "train-a", id="names-fixed-length-bytes"),
    pytest.param(_to_fixed_utf8, lambda i: i.sites.name.tolist() == ["Zürich", "Oslo", "東京"],
                 id="names-fixed-length-utf8"),
    pytest.param(_narrow_numbers, lambda i: i.sites.pue.dtype == np.float64 and i.jobs.gpus.dtype == np.int64
                 and i.sites.gpus.tolist() == [8, 4, 2] and i.jobs.deadline.tolist() == [3, 4, 4, 4]
                 and np.array_equal(i.sites.bat_eta_charge, np.float32([0.95, 1.0, 0.9]).astype(np.float64)),
                 id="float32-int32-uint16"),
    pytest.param(_attrs_as_other_widths, lambda i: i.n_periods == T and i.name == "smäll", id="attr-widths"),
    pytest.param(_no_site_within_slo, lambda i: not i.slo_mask()[0].any(), id="class-with-no-site-in-slo"),
    pytest.param(_extra_root_attrs, lambda i: i.extra_attrs.get("seed") == 12, id="extra-root-attrs"),
    pytest.param(set_item("jobs/deadline", 0, 2), lambda i: i.jobs.deadline[0] == 2, id="deadline-tight"),
]


@pytest.mark.parametrize("mutate, check", VALID_CASES)
def test_valid_edge_case_loads(copy, mutate, check):
    with h5py.File(copy, "r+") as f:
        mutate(f)
    assert check(load(copy))
