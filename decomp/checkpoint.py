"""Checkpoint files of the decompositions: write a run's state atomically, read it back to resume.

A checkpoint (HDF5, root attribute ``schema = carbonsched-checkpoint``) holds what the hub knows (method,
the instance's fingerprint, elapsed seconds, iteration, best bound, the incumbent's compute plan, the
trace rows, the options that must match) and the algorithm's own state
(:meth:`~carbonsched.decomp.engine.DecompositionAlgorithm.state_dict`: multipliers, bundle cuts and pool
for the Lagrangian; the cut pool and core point for Benders). Every value is a dataset carrying the
project's CRC-32 checksum (:func:`~carbonsched.instances.storage.write_array`) and is checked on load, so a
corrupted or edited checkpoint is refused with one line naming the dataset, never resumed from.

The file is written with :func:`~carbonsched.instances.storage.atomic_hdf5`: a run killed (even by
SIGKILL) while writing leaves the previous checkpoint intact.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
from carbonsched.errors import CarbonschedError, InputError
from carbonsched.formulations.plan import ComputePlan
from carbonsched.formulations.solution import Trace
from carbonsched.instances.schema import GROUPS, Instance, group_fields
from carbonsched.instances.storage import (
    atomic_hdf5,
    check_dataset_storage,
    checked_node,
    open_hdf5,
    verify_checksum,
    write_array,
)

log = logging.getLogger(__name__)

SCHEMA = "carbonsched-checkpoint"
SCHEMA_VERSION = 1

#: A value of an algorithm's state: an array or a scalar (bools are stored as integers).
StateValue = np.ndarray | float | int | str
StateDict = dict[str, StateValue]


def instance_fingerprint(inst: Instance) -> str:
    """SHA-256 (hex) over the instance's root attributes and every array of its groups, in file order.

    Two instances with the same fingerprint have the same data; a checkpoint is resumed only on its own.
    """
    digest = hashlib.sha256()
    for key in ("name", "n_periods", "period_hours", "voll", "carbon_budget_t", "carbon_price"):
        digest.update(f"{key}={getattr(inst, key)!r};".encode())
    for group in GROUPS:
        obj = inst.group(group)
        for spec in group_fields(group):
            arr = np.asarray(getattr(obj, spec.name))
            digest.update(f"/{group}/{spec.name}{arr.shape};".encode())
            if arr.dtype == object or arr.dtype.kind in "US":
                digest.update("\0".join(str(v) for v in arr.ravel()).encode("utf-8", "surrogatepass"))
            else:
                digest.update(np.ascontiguousarray(arr).tobytes())
    return digest.hexdigest()


@dataclass
class Checkpoint:
    """The content of one checkpoint file.

    Attributes
    ----------
    method : str
        ``benders`` or ``lagrangian``.
    fingerprint : str
        :func:`instance_fingerprint` of the instance solved.
    instance_name : str
        Its name (for messages).
    seconds : float
        Wall time of the run when the checkpoint was taken, s.
    iteration : int
        The hub's iteration counter then.
    bound : float
        Best proven upper bound on the optimal Z then, $ (``inf``: none).
    options : dict of str to str
        The options a resumed run must repeat (name -> repr of the value).
    plan : ComputePlan or None
        The incumbent's compute plan (re-scored exactly on resume; its stored score is not trusted).
    trace : Trace
        The trace rows so far.
    algorithm : dict
        The algorithm's :meth:`state_dict`.
    """

    method: str
    fingerprint: str
    instance_name: str
    seconds: float
    iteration: int
    bound: float
    options: dict[str, str]
    plan: ComputePlan | None
    trace: Trace
    algorithm: StateDict = field(default_factory=dict)


def _as_array(value: StateValue) -> np.ndarray:
    if isinstance(value, (bool, np.bool_)):
        return np.asarray(int(value), dtype=np.int64)
    if isinstance(value, np.ndarray) and value.dtype == np.bool_:
        return value.astype(np.int8)
    return np.asarray(value)


def save_checkpoint(path: str | os.PathLike, ckpt: Checkpoint) -> None:
    """Write ``ckpt`` to ``path`` atomically (temporary file beside it, then rename).

    Raises
    ------
    OutputError
        The file could not be written; the previous checkpoint at ``path`` is intact.
    """
    with atomic_hdf5(path) as f:
        f.attrs["schema"] = SCHEMA
        f.attrs["schema_version"] = np.int64(SCHEMA_VERSION)
        hub = f.create_group("hub")
        for name, value in (("method", ckpt.method), ("instance_fingerprint", ckpt.fingerprint),
                            ("instance_name", ckpt.instance_name), ("seconds", float(ckpt.seconds)),
                            ("iteration", np.int64(ckpt.iteration)), ("bound", float(ckpt.bound))):
            write_array(hub, name, _as_array(value))
        options = f.create_group("options")
        for name, value in ckpt.options.items():
            write_array(options, name, np.asarray(value))
        if ckpt.plan is not None:
            inc = f.create_group("incumbent")
            write_array(inc, "job_site", np.asarray(ckpt.plan.job_site, dtype=np.int64))
            write_array(inc, "job_start", np.asarray(ckpt.plan.job_start, dtype=np.int64))
            write_array(inc, "served", np.asarray(ckpt.plan.served, dtype=np.float64))
        trace = f.create_group("trace")
        for name, values in ckpt.trace.to_arrays().items():
            write_array(trace, name, values)
        algo = f.create_group("algorithm")
        for name, value in ckpt.algorithm.items():
            write_array(algo, name, _as_array(value))


def _read_group(f: h5py.File, group: str, required: bool = True) -> dict[str, StateValue] | None:
    """Every dataset of ``/group``, checksums verified; 0-d values as Python scalars or str."""
    node = checked_node(f, group, f"/{group}", InputError)
    if node is None:
        if required:
            raise InputError(f"/{group}: missing group")
        return None
    if not isinstance(node, h5py.Group):
        raise InputError(f"/{group}: must be a group")
    out: dict[str, StateValue] = {}
    for name in node:
        where = f"/{group}/{name}"
        ds = checked_node(node, name, where, InputError)
        if not isinstance(ds, h5py.Dataset):
            raise InputError(f"{where}: must be a dataset")
        check_dataset_storage(where, ds, InputError)
        data = ds[()]
        verify_checksum(where, ds, np.asarray(data), InputError)
        if isinstance(data, bytes):
            out[name] = data.decode("utf-8")
        elif isinstance(data, np.ndarray):
            out[name] = data
        elif isinstance(data, np.generic):
            out[name] = data.item()
        else:
            out[name] = data
    return out


def _field(values: dict[str, StateValue], group: str, name: str, kind: type) -> StateValue:
    if name not in values:
        raise InputError(f"/{group}/{name}: missing dataset")
    value = values[name]
    if kind is str and not isinstance(value, str):
        raise InputError(f"/{group}/{name}: must be a string")
    if kind in (int, float) and (isinstance(value, (str, bytes, np.ndarray)) or isinstance(value, bool)):
        raise InputError(f"/{group}/{name}: must be a number")
    return kind(value)


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read a checkpoint file written by :func:`save_checkpoint` (checksums verified).

    Raises
    ------
    InputError
        One line naming the file and the dataset or attribute at fault (not a checkpoint, another schema
        version, a missing or corrupted dataset).
    """
    path = Path(path)
    try:
        with open_hdf5(path, InputError) as f:
            schema = f.attrs.get("schema", "")
            schema = schema.decode() if isinstance(schema, bytes) else str(schema)
            if schema != SCHEMA:
                raise InputError(f"attribute 'schema': must be '{SCHEMA}' (got {schema!r}); not a checkpoint file")
            version = f.attrs.get("schema_version")
            if version is None or int(np.asarray(version)) != SCHEMA_VERSION:
                raise InputError(f"attribute 'schema_version': unknown version {version!r} "
                                 f"(this reader knows {SCHEMA_VERSION})")
            hub = _read_group(f, "hub")
            options = _read_group(f, "options")
            inc = _read_group(f, "incumbent", required=False)
            trace = _read_group(f, "trace")
            algo = _read_group(f, "algorithm")
        plan = None
        if inc is not None:
            missing = [k for k in ("job_site", "job_start", "served") if k not in inc]
            if missing:
                raise InputError(f"/incumbent/{missing[0]}: missing dataset")
            plan = ComputePlan(job_site=inc["job_site"], job_start=inc["job_start"], served=inc["served"])
        for name in ("seconds", "primal", "dual", "iteration"):
            if name not in trace:
                raise InputError(f"/trace/{name}: missing dataset")
        rows = Trace(**{name: np.asarray(trace[name]) for name in ("seconds", "primal", "dual", "iteration")})
        seconds = _field(hub, "hub", "seconds", float)
        if not (math.isfinite(seconds) and seconds >= 0.0):
            raise InputError(f"/hub/seconds: must be a finite number >= 0 (got {seconds!r})")
        bound = _field(hub, "hub", "bound", float)
        if math.isnan(bound) or bound == -math.inf:
            raise InputError(f"/hub/bound: must be a number or +inf (got {bound!r})")
        return Checkpoint(
            method=_field(hub, "hub", "method", str), fingerprint=_field(hub, "hub", "instance_fingerprint", str),
            instance_name=_field(hub, "hub", "instance_name", str), seconds=seconds,
            iteration=_field(hub, "hub", "iteration", int), bound=bound,
            options={k: str(v) for k, v in options.items()}, plan=plan, trace=rows, algorithm=algo)
    except CarbonschedError as exc:
        raise InputError(f"resume: {path}: {exc}") from None
    except (Exception, MemoryError) as exc:  # noqa: BLE001 - corrupted HDF5 structures raise many kinds
        text = " ".join(str(exc).split())[:200]
        raise InputError(f"resume: {path}: cannot read checkpoint ({type(exc).__name__}: {text})") from None


# ------------------------------------------------------------------------- helpers for the algorithms
def state_array(d: StateDict, key: str, *, shape: tuple[int | None, ...] | None = None,
                dtype: type = np.float64) -> np.ndarray:
    """``d[key]`` as an array of ``dtype`` whose shape matches ``shape`` (None: any length on that axis).

    Raises
    ------
    InputError
        Missing, not numeric, or of another shape: one line naming ``/algorithm/key``.
    """
    if key not in d:
        raise InputError(f"/algorithm/{key}: missing dataset")
    arr = np.asarray(d[key])
    if arr.dtype.kind not in "biuf":
        raise InputError(f"/algorithm/{key}: must be numeric (got dtype {arr.dtype})")
    if shape is not None:
        ok = arr.ndim == len(shape) and all(want is None or want == got
                                            for want, got in zip(shape, arr.shape, strict=True))
        if not ok:
            raise InputError(f"/algorithm/{key}: shape must be {shape} (got {arr.shape})")
    return arr.astype(dtype)


def state_scalar(d: StateDict, key: str, kind: type) -> float | int | str:
    """``d[key]`` as a ``kind`` (float, int or str); InputError naming ``/algorithm/key`` otherwise."""
    return _field(d, "algorithm", key, kind)


def pack_rows(rows: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate 1-D arrays of any lengths into (values, offsets) with offsets of length n + 1."""
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([r.size for r in rows]) if rows else []
    values = np.concatenate(rows) if rows else np.zeros(0)
    return values, offsets


def unpack_rows(values: np.ndarray, offsets: np.ndarray, key: str) -> list[np.ndarray]:
    """The rows packed by :func:`pack_rows` (InputError naming ``key`` when the offsets do not fit)."""
    if offsets.ndim != 1 or offsets.size < 1 or offsets[0] != 0 or (np.diff(offsets) < 0).any() \
            or offsets[-1] != values.shape[0]:
        raise InputError(f"/algorithm/{key}: offsets do not fit the values")
    return [values[a:b] for a, b in zip(offsets[:-1], offsets[1:], strict=True)]
