"""HDF5 storage of instances (INSTANCE.md layout) and the atomic-write helper every writer uses."""

from __future__ import annotations

import contextlib
import errno
import io
import os
import secrets
import zlib
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
from carbonsched.errors import CarbonschedError, InstanceError, OutputError

from .schema import (
    GROUP_CLASSES,
    GROUPS,
    ROOT_ATTRS,
    SCHEMA,
    SCHEMA_VERSION,
    FieldSpec,
    Instance,
    group_fields,
)
from .validation import check_mask, validate, validate_root

#: Arrays at least this large are stored gzip-compressed (chunked); small ones stay contiguous.
COMPRESS_MIN_ELEMENTS = 256
#: Attribute holding the CRC-32 of a dataset's values, written on save and checked on load when present.
CHECKSUM_ATTR = "carbonsched_crc32"
#: A chunked (compressed) dataset may declare at most this many bytes per byte it occupies in the file
#: (gzip's best ratio is about 1030:1), plus :data:`STORAGE_SLACK_BYTES`; more is refused before reading.
MAX_COMPRESSION_RATIO = 1100
STORAGE_SLACK_BYTES = 1 << 20


@contextlib.contextmanager
def atomic_hdf5(path: str | os.PathLike) -> Iterator[h5py.File]:
    """Build an HDF5 file in memory, then write it beside ``path`` and rename it onto ``path``.

    The file is assembled in memory and written with plain ``os.write``, so a full disk or an I/O error
    is an ``OSError`` here (HDF5 itself crashed the process on ENOSPC), reported as
    :class:`~carbonsched.errors.OutputError` (exit status 5). A crash or exception inside the block, or a
    failed write, leaves any existing file at ``path`` untouched and removes the temporary file.
    """
    path = Path(path)
    buffer = io.BytesIO()
    with h5py.File(buffer, "w", libver="earliest") as f:
        yield f
    write_atomically(path, buffer.getbuffer())


def write_atomically(path: str | os.PathLike, data: bytes | memoryview) -> None:
    """Write ``data`` to a temporary file beside ``path``, sync it, rename it onto ``path``.

    Raises
    ------
    OutputError
        The folder is missing or read-only, the disk is full, or another I/O error: one line naming
        ``path``; the previous file at ``path`` is intact and no temporary file is left.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    # Not tempfile.mkstemp: it creates the file with mode 0600, and os.replace would keep that mode,
    # leaving the result unreadable by group/others.  O_EXCL with 0666 lets the umask apply as usual.
    tmp = None
    try:
        while True:
            tmp = str(folder / f".{path.name}.{secrets.token_hex(6)}.tmp")
            try:
                fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
                break
            except FileExistsError:
                continue
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                if written <= 0:
                    raise OSError(errno.EIO, "write returned no progress")
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise OutputError(f"{path}: cannot write ({exc.strerror or exc}); the previous file is unchanged") from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def checksum(values: np.ndarray) -> int:
    """CRC-32 of a dataset's values as stored (numbers: their bytes; strings: UTF-8, NUL-separated)."""
    arr = np.asarray(values)
    if arr.dtype == object or arr.dtype.kind in "US":
        items = [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in arr.ravel()]
        return zlib.crc32("\0".join(items).encode("utf-8", "surrogatepass"))
    if arr.dtype.kind == "b":
        arr = arr.astype(np.uint8)
    return zlib.crc32(np.ascontiguousarray(arr).tobytes())


def checksum_problem(where: str, ds: h5py.Dataset, values: np.ndarray) -> str | None:
    """Why ``values`` read from ``ds`` do not match the dataset's checksum, or None (also without one)."""
    stored = ds.attrs.get(CHECKSUM_ATTR)
    if stored is None:
        return None  # a file written by another tool: no checksum to check
    try:
        expected = int(np.asarray(stored).reshape(-1)[0])
    except (TypeError, ValueError, IndexError):
        return f"{where}: checksum attribute '{CHECKSUM_ATTR}' is not an integer"
    if checksum(values) != expected:
        return (f"{where}: checksum mismatch (the file is corrupted, or was edited in place without removing "
                f"the '{CHECKSUM_ATTR}' attribute)")
    return None


def verify_checksum(where: str, ds: h5py.Dataset, values: np.ndarray, error: type[Exception]) -> None:
    """Refuse ``values`` read from ``ds`` (raise ``error``) if the dataset's checksum does not match."""
    problem = checksum_problem(where, ds, values)
    if problem is not None:
        raise error(problem)


def check_dataset_storage(where: str, ds: h5py.Dataset, error: type[Exception]) -> None:
    """Refuse a dataset before reading it if it reads another file or declares more than the file holds.

    External raw storage (data in another file) is refused. A contiguous dataset must occupy its full
    declared size in the file; a chunked (compressed) one at least 1/:data:`MAX_COMPRESSION_RATIO` of it.
    So nothing is allocated for a dataset whose declared shape the file cannot back.
    """
    plist = ds.id.get_create_plist()
    if plist.get_external_count() > 0:
        raise error(f"{where}: external raw storage (data kept in another file) is not allowed")
    declared = int(np.prod(ds.shape, dtype=np.float64)) * ds.dtype.itemsize if ds.shape else ds.dtype.itemsize
    if declared == 0:
        return
    stored = ds.id.get_storage_size()
    vlen = h5py.check_string_dtype(ds.dtype) is not None or ds.dtype.kind == "O"
    if ds.chunks is None and not vlen:
        if stored < declared:
            raise error(f"{where}: declares {declared} bytes but the file holds {stored} (truncated or resized)")
    elif declared > MAX_COMPRESSION_RATIO * stored + STORAGE_SLACK_BYTES:
        raise error(f"{where}: declares {declared} bytes but the file holds {stored} (resized or corrupted)")


def checked_node(group: h5py.Group, name: str, where: str, error: type[Exception]):
    """``group[name]`` or None if absent; external links are refused (they read other files)."""
    link = group.get(name, getlink=True)
    if link is None:
        return None
    if isinstance(link, h5py.ExternalLink):
        raise error(f"{where}: external link to '{link.filename}' is not allowed")
    return group.get(name)


def write_array(group: h5py.Group, name: str, arr: np.ndarray) -> None:
    """Write one dataset; strings as UTF-8 variable length, large arrays compressed."""
    arr = np.asarray(arr)
    if arr.dtype == object or arr.dtype.kind == "U":
        ds = group.create_dataset(name, data=np.asarray(arr, dtype=object), dtype=h5py.string_dtype("utf-8"))
    elif arr.size >= COMPRESS_MIN_ELEMENTS:
        ds = group.create_dataset(name, data=arr, compression="gzip", compression_opts=4, shuffle=True)
    else:
        ds = group.create_dataset(name, data=arr)
    ds.attrs[CHECKSUM_ATTR] = np.int64(checksum(arr))


def save(inst: Instance, path: str | os.PathLike) -> None:
    """Write ``inst`` to ``path`` in the INSTANCE.md layout, atomically.

    The instance is validated first, so the project never writes a file it would refuse to load.
    """
    validate(inst)
    with atomic_hdf5(path) as f:
        for key in inst.extra_attrs:
            if key not in ROOT_ATTRS:
                f.attrs[key] = inst.extra_attrs[key]
        f.attrs["schema"] = SCHEMA
        f.attrs["schema_version"] = np.int64(SCHEMA_VERSION)
        f.attrs["name"] = inst.name
        f.attrs["n_periods"] = np.int64(inst.n_periods)
        f.attrs["period_hours"] = float(inst.period_hours)
        f.attrs["voll"] = float(inst.voll)
        f.attrs["carbon_budget_t"] = float(inst.carbon_budget_t)
        f.attrs["carbon_price"] = float(inst.carbon_price)
        for g in GROUPS:
            grp = f.create_group(g)
            obj = inst.group(g)
            for spec in group_fields(g):
                write_array(grp, spec.name, getattr(obj, spec.name))


def _read_attr(key: str, val):
    if isinstance(val, np.ndarray) and val.shape == ():
        val = val[()]
    if isinstance(val, bytes):  # also np.bytes_
        try:
            return bytes(val).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InstanceError(f"attribute '{key}': strings must be UTF-8 ({exc.reason})") from None
    if isinstance(val, np.str_):
        return str(val)
    return val


def _read_dataset(spec: FieldSpec, ds: h5py.Dataset, dims: dict[str, int], mismatches: list[str]) -> np.ndarray:
    where = f"/{spec.group}/{spec.name}"
    shape = tuple(dims[d] for d in spec.dims)
    if ds.shape != shape:
        # An empty group written by another tool may lose trailing dimensions: accept any empty shape.
        if not (0 in shape and ds.size == 0):
            raise InstanceError(f"{where}: shape must be ({','.join(spec.dims)}) = {shape}, got {ds.shape}")
    check_dataset_storage(where, ds, InstanceError)
    data = _read_values(spec, ds, shape, where)
    if ds.size and (problem := checksum_problem(where, ds, ds[()] if spec.kind != "str" else data)) is not None:
        mismatches.append(problem)
    return data


def _read_values(spec: FieldSpec, ds: h5py.Dataset, shape: tuple[int, ...], where: str) -> np.ndarray:
    dt = ds.dtype
    if spec.kind == "str":
        if h5py.check_string_dtype(dt) is None:
            raise InstanceError(f"{where}: must be a string dataset, got dtype {dt}")
        try:
            vals = ds.asstr("utf-8")[()] if ds.size else np.empty(shape, dtype=object)
        except UnicodeDecodeError as exc:
            raise InstanceError(f"{where}: strings must be UTF-8 ({exc.reason})") from None
        return np.array([str(v) for v in np.ravel(vals)], dtype=object).reshape(shape)
    if dt.kind not in "biuf":
        raise InstanceError(f"{where}: must be {spec.kind}, got dtype {dt}")
    data = ds[()] if ds.size else np.empty(shape, dtype=dt)
    data = np.asarray(data).reshape(shape)
    if spec.kind == "bool":
        if dt.kind == "b":
            return data.astype(bool)
        if dt.kind in "iu":
            check_mask(where, (data != 0) & (data != 1), "must be boolean (0 or 1)", data)
            return data.astype(bool)
        raise InstanceError(f"{where}: must be boolean, got dtype {dt}")
    if spec.kind == "int":
        if dt.kind not in "iu":
            raise InstanceError(f"{where}: must be integer, got dtype {dt}")
        if dt.kind == "u" and dt.itemsize == 8:  # values above int64 max would wrap to negatives
            check_mask(where, data > np.iinfo(np.int64).max, "must fit in a 64-bit signed integer", data)
        return data.astype(np.int64)
    if dt.kind == "b":
        raise InstanceError(f"{where}: must be float, got dtype {dt}")
    return data.astype(np.float64)


def load(path: str | os.PathLike) -> Instance:
    """Read and validate an instance file.

    Parameters
    ----------
    path : path-like
        An HDF5 file in the INSTANCE.md layout, written by any tool.

    Returns
    -------
    Instance
        Validated; float arrays float64, integer arrays int64, strings ``str``.

    Raises
    ------
    InstanceError
        One-line message naming the file, the dataset or attribute, the rule and index.
    """
    path = Path(path)
    try:
        mismatches: list[str] = []
        inst = validate(_load_unchecked(path, mismatches))
        # after validation, so that a value edited in place is reported by the rule it breaks, if any
        if mismatches:
            raise InstanceError(mismatches[0])
        return inst
    except InstanceError as exc:
        raise InstanceError(f"{path}: {exc}") from None
    except CarbonschedError:
        raise
    except (Exception, MemoryError) as exc:  # noqa: BLE001 - corrupted HDF5 structures raise many kinds
        raise InstanceError(f"{path}: cannot read HDF5 file ({type(exc).__name__}: {_one_line(exc)})") from None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]


def open_hdf5(path: Path, error: type[Exception]) -> h5py.File:
    """Open an HDF5 file for reading, or raise ``error`` with a one-line reason (missing, folder, not HDF5)."""
    if not path.exists():
        raise error("file not found")
    if path.is_dir():
        raise error("is a directory, not an HDF5 file")
    if not h5py.is_hdf5(path):
        raise error("not an HDF5 file")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise error(f"cannot open HDF5 file ({exc})") from None


def _load_unchecked(path: Path, mismatches: list[str]) -> Instance:
    with open_hdf5(path, InstanceError) as f:
        attrs = {k: _read_attr(k, v) for k, v in f.attrs.items()}
        if "schema" in attrs and attrs["schema"] != SCHEMA:
            raise InstanceError(f"attribute 'schema': must be '{SCHEMA}' (got {attrs['schema']!r})")
        validate_root(attrs)
        # .get, not `in` + []: a dangling soft link is "in" the group but raises KeyError when opened.
        for g in GROUPS:
            if not isinstance(checked_node(f, g, f"/{g}", InstanceError), h5py.Group):
                raise InstanceError(f"/{g}: missing group")
        for g in GROUPS:
            node = checked_node(f[g], "name", f"/{g}/name", InstanceError)
            if node is None:
                raise InstanceError(f"/{g}/name: missing dataset")
            if not isinstance(node, h5py.Dataset):
                raise InstanceError(f"/{g}/name: must be a dataset")
            if node.ndim != 1:
                raise InstanceError(f"/{g}/name: must be one-dimensional, got shape {f[g]['name'].shape}")
            check_dataset_storage(f"/{g}/name", node, InstanceError)
        dims = {
            "S": f["sites/name"].shape[0],
            "T": int(attrs["n_periods"]),
            "J": f["jobs/name"].shape[0],
            "K": f["inference/name"].shape[0],
        }
        groups = {}
        for g in GROUPS:
            values = {}
            for spec in group_fields(g):
                node = checked_node(f[g], spec.name, f"/{g}/{spec.name}", InstanceError)
                if node is None:
                    raise InstanceError(f"/{g}/{spec.name}: missing dataset")
                if not isinstance(node, h5py.Dataset):
                    raise InstanceError(f"/{g}/{spec.name}: must be a dataset")
                values[spec.name] = _read_dataset(spec, node, dims, mismatches)
            groups[g] = GROUP_CLASSES[g](**values)
        extra = {k: v for k, v in attrs.items() if k not in ROOT_ATTRS}
    return Instance(
        name=attrs["name"],
        n_periods=int(attrs["n_periods"]),
        period_hours=float(attrs["period_hours"]),
        voll=float(attrs["voll"]),
        carbon_budget_t=float(attrs["carbon_budget_t"]),
        carbon_price=float(attrs["carbon_price"]),
        extra_attrs=extra,
        **groups,
    )
