"""Instances as folders of tables (CSV or Parquet) and as labelled pandas / xarray objects.

The folder layout (docs/own-data.md) is what people usually have: one row per site, one hourly
series per quantity with one column per site, one row per job and per inference class.
:func:`read_instance_folder` turns such a folder into an :class:`Instance` and refuses every shape,
orientation, unit or name mismatch with an :class:`InputError` that names the table, the column and
what was expected; :func:`write_instance_folder` writes exactly that layout, so that an instance
exported and imported back is identical.

Tables of a folder (``.csv``, or ``.parquet`` when pyarrow is installed):

* ``instance``: columns ``key, value, type`` — the root attributes (name, period_hours, voll,
  carbon_budget_t, carbon_price, n_periods) and any optional ones;
* ``sites``: one row per site, columns ``name`` and the per-site parameters of :data:`SITE_COLUMNS`;
* ``price_buy``, ``price_sell`` ($/MWh), ``grid_co2`` (t/MWh), ``renewable_mw`` (MW), ``pue`` (-):
  one row per period, a ``period`` column (0..T−1) or a ``timestamp`` column, then one column per site
  named as in ``sites``;
* ``jobs``: one row per job, columns of :data:`JOB_COLUMNS` (``allowed``: site names separated by
  ``;``, or ``*`` for every site);
* ``inference``: one row per class, columns of :data:`CLASS_COLUMNS`;
* ``demand``: one row per period (``period`` or ``timestamp``), one column per class (GPUs);
* ``latency_ms``: one row per class (column ``class``), one column per site (ms; empty or ``inf``:
  no route).
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from carbonsched.errors import InputError

from .schema import SCHEMA, SCHEMA_VERSION, Instance, group_fields
from .validation import validate

log = logging.getLogger(__name__)

#: Per-site columns of the ``sites`` table (all of INSTANCE.md's (S,) site datasets but ``name``).
SITE_COLUMNS: tuple[str, ...] = tuple(f.name for f in group_fields("sites") if f.dims == ("S",) and f.name != "name")
#: The (S,T) site series, one table each.
SITE_SERIES: tuple[str, ...] = tuple(f.name for f in group_fields("sites") if f.dims == ("S", "T"))
#: Columns of the ``jobs`` table (``allowed`` holds site names).
JOB_COLUMNS: tuple[str, ...] = ("name", "gpus", "duration", "release", "deadline", "value", "mandatory", "allowed")
#: Columns of the ``inference`` table.
CLASS_COLUMNS: tuple[str, ...] = ("name", "revenue", "penalty", "latency_slo_ms", "latency_cost")
#: Root attributes every ``instance`` table must give.
REQUIRED_KEYS: tuple[str, ...] = ("name", "n_periods", "period_hours", "voll", "carbon_budget_t", "carbon_price")
#: Root attribute holding the ISO time stamp of the start of period 0 (optional).
START_TIME_ATTR = "start_time"
#: Units of each column or table, for the documentation and the refusals.
UNITS: dict[str, str] = {f.name: f.unit for f in group_fields("sites")} | {
    "demand": "GPUs", "latency_ms": "ms", "revenue": "$/GPU-h", "penalty": "$/GPU-h", "latency_slo_ms": "ms",
    "latency_cost": "$/GPU-h/ms", "gpus": "GPUs", "duration": "periods", "release": "period", "deadline": "period",
    "value": "$",
}

#: Unit suffixes a column name may end with, and the quantity each measures.
_UNIT_SUFFIXES: dict[str, str] = {
    "w": "power", "kw": "power", "mw": "power", "gw": "power",
    "wh": "energy", "kwh": "energy", "mwh": "energy", "gwh": "energy",
    "ms": "time", "s": "time", "sec": "time", "us": "time",
    "t": "mass", "kg": "mass", "g": "mass", "lb": "mass",
    "kg_per_mwh": "intensity", "g_per_kwh": "intensity", "lb_per_mwh": "intensity", "t_per_mwh": "intensity",
}
#: Largest credible carbon intensity in t/MWh (coal plants emit about 1); above it the data is in kg or g.
MAX_CO2_T_PER_MWH = 3.0
#: read_csv options that parse every float written by to_csv back to the same bits (pandas 3 does by default).
_EXACT_FLOATS: dict[str, str] = {} if int(pd.__version__.split(".")[0]) >= 3 else {"float_precision": "round_trip"}
_TYPES = {"str": str, "int": int, "float": float, "bool": lambda s: str(s).strip().lower() in ("true", "1")}


# ----------------------------------------------------------------------------------------- reading
def _table_path(folder: Path, table: str, required: bool = True) -> Path | None:
    found = [p for p in (folder / f"{table}.csv", folder / f"{table}.parquet") if p.exists()]
    if len(found) > 1:
        raise InputError(f"table {table}: both {table}.csv and {table}.parquet exist in {folder}; keep one")
    if not found:
        if required:
            raise InputError(f"table {table}: missing ({table}.csv or {table}.parquet in {folder})")
        return None
    return found[0]


def _read_table(folder: Path, table: str, required: bool = True) -> pd.DataFrame | None:
    path = _table_path(folder, table, required)
    if path is None:
        return None
    if path.suffix == ".parquet":
        try:
            return pd.read_parquet(path)
        except ImportError as exc:
            raise InputError(f"table {table}: reading {path.name} needs pyarrow ({exc}); give {table}.csv") from None
    try:
        return pd.read_csv(path, **_EXACT_FLOATS, keep_default_na=False, na_values=[""],
                           dtype={"name": str, "class": str, "key": str, "value": str, "type": str, "allowed": str}
                           if table in ("sites", "jobs", "inference", "latency_ms", "instance") else None)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(f"table {table}: cannot read {path.name}: {str(exc).splitlines()[0]}") from None


def _unit_mismatch(table: str, column: str, columns: list[str]) -> None:
    """Refuse a column that names the expected quantity in another unit (``gpu_busy_w`` for ``gpu_busy_kw``)."""
    base, _, unit = column.rpartition("_")
    if unit not in _UNIT_SUFFIXES:
        base, unit = column, ""
    for other in columns:
        if not other.startswith(base + "_") or other == column:
            continue
        suffix = other[len(base) + 1:].lower()
        if suffix in _UNIT_SUFFIXES:
            want = UNITS.get(column, unit)
            raise InputError(f"table {table}: column '{other}' is in {suffix}; expected column '{column}' in "
                             f"{want} (convert the values and rename the column)")


def _require_columns(table: str, df: pd.DataFrame, wanted: tuple[str, ...], optional: tuple[str, ...] = ()) -> None:
    columns = [str(c) for c in df.columns]
    for column in wanted:
        if column not in columns and column not in optional:
            _unit_mismatch(table, column, columns)
            raise InputError(f"table {table}: missing column '{column}'"
                             + (f" ({UNITS[column]})" if UNITS.get(column) else "")
                             + f"; expected columns {', '.join(wanted)}")
    unknown = [c for c in columns if c not in wanted]
    if unknown:
        for column in wanted:
            _unit_mismatch(table, column, unknown)
        raise InputError(f"table {table}: unknown column '{unknown[0]}'; expected columns {', '.join(wanted)}")


def _numbers(table: str, df: pd.DataFrame, column: str, kind: str = "float") -> np.ndarray:
    values = pd.to_numeric(df[column], errors="coerce")
    bad = values.isna().to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise InputError(f"table {table}: column '{column}' row {row}: expected a number, got {df[column].iloc[row]!r}")
    out = values.to_numpy(dtype=np.float64)
    if kind == "int":
        frac = out != np.round(out)
        if frac.any():
            row = int(np.flatnonzero(frac)[0])
            raise InputError(f"table {table}: column '{column}' row {row}: expected an integer, got {out[row]:g}")
        return out.astype(np.int64)
    return out


def _names(table: str, df: pd.DataFrame, column: str) -> np.ndarray:
    values = df[column]
    if values.isna().any():
        row = int(np.flatnonzero(values.isna().to_numpy())[0])
        raise InputError(f"table {table}: column '{column}' row {row}: empty name")
    names = np.array([str(v) for v in values], dtype=object)
    uniq, counts = np.unique(names.astype(str), return_counts=True)
    if (counts > 1).any():
        raise InputError(f"table {table}: column '{column}': name '{uniq[counts > 1][0]}' appears more than once")
    return names


def _time_index(table: str, df: pd.DataFrame, n_periods: int, period_hours: float, start: str | None
                ) -> tuple[pd.DataFrame, str | None]:
    """Check the period column (0..T−1) or the time stamps (Δ apart) and drop it; the start time if stamped."""
    if "period" in df.columns:
        periods = _numbers(table, df, "period", "int")
        if periods.shape[0] != n_periods or not np.array_equal(periods, np.arange(n_periods)):
            raise InputError(f"table {table}: column 'period' must be 0..{n_periods - 1} in order, one row each "
                             f"(T = {n_periods} from table instance); got {periods.shape[0]} rows "
                             f"{'starting ' + str(periods[0]) if periods.size else ''}")
        if "hour" in df.columns:
            hours = _numbers(table, df, "hour")
            if not np.allclose(hours, periods * period_hours, rtol=0, atol=1e-9):
                raise InputError(f"table {table}: column 'hour' must be period × {period_hours:g} h "
                                 "(period_hours of table instance)")
        return df.drop(columns=[c for c in ("period", "hour", "timestamp") if c in df.columns]), start
    if "timestamp" in df.columns:
        stamps = pd.to_datetime(df["timestamp"], errors="coerce")
        if stamps.isna().any():
            row = int(np.flatnonzero(stamps.isna().to_numpy())[0])
            raise InputError(f"table {table}: column 'timestamp' row {row}: not a date-time: "
                             f"{df['timestamp'].iloc[row]!r}")
        if stamps.shape[0] != n_periods:
            raise InputError(f"table {table}: expected {n_periods} rows (one per period, T from table instance), "
                             f"got {stamps.shape[0]}")
        steps = np.diff(stamps.to_numpy().astype("datetime64[ns]").astype(np.int64)) / 3.6e12
        if steps.size and not np.allclose(steps, period_hours, rtol=0, atol=1e-9):
            bad = int(np.flatnonzero(~np.isclose(steps, period_hours, rtol=0, atol=1e-9))[0])
            raise InputError(f"table {table}: column 'timestamp': rows {bad} and {bad + 1} are {steps[bad]:g} h "
                             f"apart; expected period_hours = {period_hours:g} h (resample the series first)")
        first = stamps.iloc[0].isoformat()
        if start is not None and pd.Timestamp(start) != stamps.iloc[0]:
            raise InputError(f"table {table}: column 'timestamp' starts at {first}, but {START_TIME_ATTR} is {start}")
        return df.drop(columns=["timestamp"]), first
    raise InputError(f"table {table}: missing column 'period' (or 'timestamp'): the rows must be periods")


def _matrix(table: str, df: pd.DataFrame, names: np.ndarray, what: str, n_rows: int, row_what: str) -> np.ndarray:
    """The columns ``names`` of ``df`` as an (n_rows, len(names)) float array, refusing transposed tables."""
    columns = [str(c) for c in df.columns]
    expected = [str(n) for n in names]
    if set(columns) != set(expected):
        if set(columns) & set(expected) == set() and df.shape[0] == len(expected):
            raise InputError(f"table {table}: the columns must be the {what} names ({', '.join(expected[:4])}"
                             f"{', ...' if len(expected) > 4 else ''}) and the rows the {row_what}; the table looks "
                             f"transposed (got columns {', '.join(columns[:4])}{', ...' if len(columns) > 4 else ''})")
        missing = [n for n in expected if n not in columns]
        if missing:
            raise InputError(f"table {table}: missing column '{missing[0]}' (a {what} name); expected one column per "
                             f"{what}: {', '.join(expected)}")
        extra = [c for c in columns if c not in expected]
        raise InputError(f"table {table}: column '{extra[0]}' is not a {what} name; expected one column per {what}: "
                         f"{', '.join(expected)}")
    if df.shape[0] != n_rows:
        raise InputError(f"table {table}: expected {n_rows} rows ({row_what}), got {df.shape[0]}")
    return np.column_stack([_numbers(table, df, n) for n in expected]) if expected else np.zeros((n_rows, 0))


def _check_intensity(table: str, column: str, values: np.ndarray) -> None:
    finite = values[np.isfinite(values)]
    if finite.size and finite.max() > MAX_CO2_T_PER_MWH:
        raise InputError(f"table {table}: column '{column}': values up to {finite.max():g} look like kg/MWh or g/kWh; "
                         f"expected t/MWh (divide by 1000)")


def _root_attrs(df: pd.DataFrame) -> tuple[dict[str, Any], dict[str, Any]]:
    _require_columns("instance", df, ("key", "value", "type"), optional=("type",))
    attrs: dict[str, Any] = {}
    for row, (key, value) in enumerate(zip(df["key"], df["value"], strict=True)):
        kind = str(df["type"].iloc[row]) if "type" in df.columns and not pd.isna(df["type"].iloc[row]) else "str"
        if kind not in _TYPES:
            raise InputError(f"table instance: column 'type' row {row}: must be one of {', '.join(_TYPES)}, "
                             f"got {kind!r}")
        if key in attrs:
            raise InputError(f"table instance: column 'key': '{key}' appears more than once")
        text = "" if pd.isna(value) else str(value)
        try:
            attrs[str(key)] = _TYPES[kind](text)
        except ValueError:
            raise InputError(f"table instance: key '{key}': value {text!r} is not of type {kind}") from None
    missing = [k for k in REQUIRED_KEYS if k not in attrs]
    if missing:
        raise InputError(f"table instance: missing key '{missing[0]}' (column 'key'); required keys: "
                         f"{', '.join(REQUIRED_KEYS)}")
    core = {}
    for key in REQUIRED_KEYS:
        value = attrs.pop(key)
        try:
            core[key] = str(value) if key == "name" else int(value) if key == "n_periods" else float(value)
        except ValueError:
            raise InputError(f"table instance: key '{key}': expected a number, got {value!r}") from None
    attrs.pop("schema", None)
    attrs.pop("schema_version", None)
    return core, attrs


def read_instance_folder(folder: str | os.PathLike) -> Instance:
    """Read a folder of tables (docs/own-data.md) into a validated :class:`Instance`.

    Parameters
    ----------
    folder : path
        The folder holding the tables (``.csv``, or ``.parquet`` with pyarrow installed).

    Raises
    ------
    InputError
        A table is missing or unreadable, a column is missing, unknown or in another unit, a series is
        transposed or has the wrong number of rows, or a name does not match the ``sites`` / ``inference``
        tables (the message names the table and the column).
    InstanceError
        The assembled instance breaks a rule of the instance format (docs/file-formats.md).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"import: '{folder}' is not a folder")
    core, extra = _root_attrs(_read_table(folder, "instance"))
    T, dt = core["n_periods"], core["period_hours"]
    if T < 1 or not dt > 0:
        raise InputError(f"table instance: n_periods must be >= 1 and period_hours > 0 (got {T}, {dt:g})")
    start = extra.get(START_TIME_ATTR)

    sites_df = _read_table(folder, "sites")
    _require_columns("sites", sites_df, ("name", *SITE_COLUMNS))
    site_names = _names("sites", sites_df, "name")
    S = len(site_names)
    kinds = {f.name: f.kind for f in group_fields("sites")}
    sites: dict[str, Any] = {"name": site_names}
    for column in SITE_COLUMNS:
        sites[column] = _numbers("sites", sites_df, column, kinds[column])
    _check_intensity("sites", "gen_co2", sites["gen_co2"])
    for table in SITE_SERIES:
        _unit_mismatch_table(folder, table)
        df = _read_table(folder, table)
        df, start = _time_index(table, df, T, dt, start)
        sites[table] = _matrix(table, df, site_names, "site", T, "periods").T
        if table == "grid_co2":
            _check_intensity(table, str(site_names[int(np.argmax(np.max(sites[table], axis=1)))]) if S else "",
                             sites[table])

    jobs_df = _read_table(folder, "jobs")
    _require_columns("jobs", jobs_df, JOB_COLUMNS)
    jobs: dict[str, Any] = {"name": _names("jobs", jobs_df, "name") if len(jobs_df) else np.array([], dtype=object)}
    for column in ("gpus", "duration", "release", "deadline"):
        jobs[column] = _numbers("jobs", jobs_df, column, "int")
    jobs["value"] = _numbers("jobs", jobs_df, "value")
    mandatory = jobs_df["mandatory"].astype(str).str.strip().str.lower()
    bad = ~mandatory.isin(["true", "false", "1", "0"])
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise InputError(f"table jobs: column 'mandatory' row {row}: expected true or false, "
                         f"got {jobs_df['mandatory'].iloc[row]!r}")
    jobs["mandatory"] = mandatory.isin(["true", "1"]).to_numpy()
    index = {str(n): i for i, n in enumerate(site_names)}
    allowed = np.zeros((len(jobs_df), S), dtype=bool)
    for row, text in enumerate(jobs_df["allowed"]):
        text = "*" if pd.isna(text) else str(text).strip()
        if text in ("*", ""):
            allowed[row] = True
            continue
        for name in (p.strip() for p in text.split(";")):
            if name not in index:
                raise InputError(f"table jobs: column 'allowed' row {row}: '{name}' is not a site name of table sites")
            allowed[row, index[name]] = True
    jobs["allowed"] = allowed

    inf_df = _read_table(folder, "inference")
    _require_columns("inference", inf_df, CLASS_COLUMNS)
    class_names = _names("inference", inf_df, "name") if len(inf_df) else np.array([], dtype=object)
    inference: dict[str, Any] = {"name": class_names}
    for column in CLASS_COLUMNS[1:]:
        inference[column] = _numbers("inference", inf_df, column)
    df, start = _time_index("demand", _read_table(folder, "demand"), T, dt, start)
    inference["demand"] = _matrix("demand", df, class_names, "class", T, "periods").T
    _unit_mismatch_table(folder, "latency_ms")
    lat_df = _read_table(folder, "latency_ms")
    if "class" not in lat_df.columns:
        raise InputError("table latency_ms: missing column 'class' (one row per inference class, one column per site)")
    order = [str(c) for c in lat_df["class"]]
    if sorted(order) != sorted(str(c) for c in class_names):
        missing = [str(c) for c in class_names if str(c) not in order]
        raise InputError("table latency_ms: column 'class' must list the classes of table inference once each"
                         + (f"; missing '{missing[0]}'" if missing else f"; got {', '.join(order[:4])}"))
    lat_df = lat_df.set_index("class").loc[[str(c) for c in class_names]].reset_index(drop=True)
    lat_df = lat_df.replace({"inf": np.inf})
    latency = _matrix("latency_ms", lat_df.fillna(np.inf), site_names, "site", len(class_names), "classes")
    inference["latency_ms"] = latency

    if start is not None:
        extra[START_TIME_ATTR] = start
    from .build import make_instance

    try:
        inst = make_instance(T, S, n_jobs=len(jobs_df), n_classes=len(class_names), period_hours=dt, voll=core["voll"],
                             carbon_budget_t=core["carbon_budget_t"], carbon_price=core["carbon_price"],
                             name=core["name"], sites=sites, jobs=jobs, inference=inference, validate_result=False)
    except ValueError as exc:  # a broadcast that cannot happen after the checks above; name it all the same
        raise InputError(f"import: {exc}") from None
    inst.extra_attrs = extra
    log.info("read %s: S=%d T=%d J=%d K=%d", folder, S, T, inst.n_jobs, inst.n_classes)
    return validate(inst)


def _unit_mismatch_table(folder: Path, table: str) -> None:
    """Refuse a series table named in another unit (``renewable_kw.csv`` for ``renewable_mw``)."""
    base, _, unit = table.rpartition("_")
    if unit not in _UNIT_SUFFIXES:
        base = table
    for path in folder.iterdir():
        stem = path.stem
        if stem != table and stem.startswith(base + "_") and stem[len(base) + 1:].lower() in _UNIT_SUFFIXES:
            raise InputError(f"table {stem}: in {stem[len(base) + 1:]}; expected table '{table}' in "
                             f"{UNITS.get(table) or unit} (convert the values and rename the file)")


# ----------------------------------------------------------------------------------------- writing
def _type_of(value: Any) -> tuple[str, str]:
    if isinstance(value, (bool, np.bool_)):
        return "bool", str(bool(value)).lower()
    if isinstance(value, (int, np.integer)):
        return "int", str(int(value))
    if isinstance(value, (float, np.floating)):
        return "float", repr(float(value))
    return "str", str(value)


def period_index(inst: Instance) -> pd.DataFrame:
    """``period`` (0..T−1) and ``hour`` (start of the period, h since period 0), plus ``timestamp`` if known."""
    T = int(inst.n_periods)
    frame = pd.DataFrame({"period": np.arange(T), "hour": np.arange(T) * float(inst.period_hours)})
    start = inst.extra_attrs.get(START_TIME_ATTR)
    if start is not None:
        frame["timestamp"] = pd.Timestamp(str(start)) + pd.to_timedelta(frame["hour"], unit="h")
    return frame


def instance_tables(inst: Instance) -> dict[str, pd.DataFrame]:
    """The tables of the import folder layout, by table name (wide series: one column per site or class)."""
    s, jb, inf = inst.sites, inst.jobs, inst.inference
    root = {"name": inst.name, "n_periods": int(inst.n_periods), "period_hours": float(inst.period_hours),
            "voll": float(inst.voll), "carbon_budget_t": float(inst.carbon_budget_t),
            "carbon_price": float(inst.carbon_price)}
    root |= {k: v for k, v in inst.extra_attrs.items() if k not in root and k not in ("schema", "schema_version")}
    rows = [(k, *_type_of(v)[::-1]) for k, v in root.items()]
    tables = {"instance": pd.DataFrame(rows, columns=["key", "value", "type"])}
    tables["sites"] = pd.DataFrame({"name": [str(n) for n in s.name]} | {c: getattr(s, c) for c in SITE_COLUMNS})
    index = period_index(inst)[["period", "hour"]]
    for table in SITE_SERIES:
        values = getattr(s, table)
        tables[table] = pd.concat([index, pd.DataFrame(values.T, columns=[str(n) for n in s.name])], axis=1)
    names = np.array([str(n) for n in s.name], dtype=object)
    allowed = ["*" if row.all() else ";".join(names[row]) for row in np.asarray(jb.allowed, dtype=bool)]
    tables["jobs"] = pd.DataFrame({"name": [str(n) for n in jb.name], "gpus": jb.gpus, "duration": jb.duration,
                                   "release": jb.release, "deadline": jb.deadline, "value": jb.value,
                                   "mandatory": np.where(jb.mandatory, "true", "false"), "allowed": allowed},
                                  columns=list(JOB_COLUMNS))
    tables["inference"] = pd.DataFrame({"name": [str(n) for n in inf.name]}
                                       | {c: getattr(inf, c) for c in CLASS_COLUMNS[1:]},
                                       columns=list(CLASS_COLUMNS))
    tables["demand"] = pd.concat([index, pd.DataFrame(inf.demand.T, columns=[str(n) for n in inf.name])], axis=1)
    lat = pd.DataFrame(inf.latency_ms, columns=[str(n) for n in s.name])
    lat.insert(0, "class", [str(n) for n in inf.name])
    tables["latency_ms"] = lat
    return tables


def write_instance_folder(inst: Instance, folder: str | os.PathLike, fmt: str = "csv") -> list[Path]:
    """Write ``inst`` as the folder of tables that :func:`read_instance_folder` reads back identically.

    Parameters
    ----------
    inst : Instance
        The instance to write.
    folder : path
        Created if needed; existing tables of the same names are replaced.
    fmt : {"csv", "parquet"}
        Table format (Parquet needs pyarrow).

    Returns
    -------
    list of Path
        The files written.
    """
    if fmt not in ("csv", "parquet"):
        raise InputError(f"format must be csv or parquet, got {fmt!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for table, df in instance_tables(inst).items():
        other = folder / f"{table}.{'parquet' if fmt == 'csv' else 'csv'}"
        if other.exists():
            other.unlink()  # one table, one file: a stale copy in the other format would be refused on import
        path = folder / f"{table}.{fmt}"
        if fmt == "csv":
            df.to_csv(path, index=False)
        else:
            df.to_parquet(path, index=False)
        written.append(path)
    return written


def instances_equal(a: Instance, b: Instance) -> bool:
    """True when the two instances hold the same root attributes and bit-identical arrays."""
    if (a.name, a.n_periods, a.period_hours, a.voll, a.carbon_price) != (
            b.name, b.n_periods, b.period_hours, b.voll, b.carbon_price):
        return False
    same_budget = a.carbon_budget_t == b.carbon_budget_t
    if not (same_budget or (math.isinf(a.carbon_budget_t) and math.isinf(b.carbon_budget_t))):
        return False
    for group in ("sites", "jobs", "inference"):
        for spec in group_fields(group):
            x, y = getattr(a.group(group), spec.name), getattr(b.group(group), spec.name)
            if spec.kind == "str":
                if [str(v) for v in x] != [str(v) for v in y]:
                    return False
            elif x.shape != y.shape or not np.array_equal(x, y):
                return False
    return {k: v for k, v in a.extra_attrs.items()} == {k: v for k, v in b.extra_attrs.items()}


# ------------------------------------------------------------------------------------------ labelled
def instance_to_xarray(inst: Instance):
    """The instance as an ``xarray.Dataset`` with dims ``site``, ``period``, ``job``, ``class``.

    Coordinates carry the site, job and class names and ``hour`` (and ``time`` when the instance records
    its ``start_time``); every dataset keeps its instance-format name, with its unit in ``attrs["units"]``.
    """
    import xarray as xr

    dims_of = {"S": "site", "T": "period", "J": "job", "K": "class"}
    data = {}
    for group in ("sites", "jobs", "inference"):
        for spec in group_fields(group):
            if spec.name == "name":
                continue
            values = getattr(inst.group(group), spec.name)
            # job datasets share names with site datasets (gpus), so they carry a prefix
            name = f"job_{spec.name}" if group == "jobs" and spec.name != "allowed" else spec.name
            units = {"units": spec.unit} if spec.unit else {}
            data[name] = ([dims_of[d] for d in spec.dims], np.asarray(values), units)
    index = period_index(inst)
    coords: dict[str, Any] = {
        "site": [str(n) for n in inst.sites.name], "period": index["period"].to_numpy(),
        "job": [str(n) for n in inst.jobs.name], "class": [str(n) for n in inst.inference.name],
        "hour": ("period", index["hour"].to_numpy()),
    }
    if "timestamp" in index:
        coords["time"] = ("period", index["timestamp"].to_numpy())
    attrs = {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "name": inst.name,
             "n_periods": int(inst.n_periods), "period_hours": float(inst.period_hours), "voll": float(inst.voll),
             "carbon_budget_t": float(inst.carbon_budget_t), "carbon_price": float(inst.carbon_price)}
    return xr.Dataset(data, coords=coords, attrs=attrs)
