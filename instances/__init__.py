"""Instances: the data model of INSTANCE.md, HDF5 storage, validation, generator and shipped files."""

from carbonsched.errors import CarbonschedError, InputError, InstanceError

from .build import make_instance
from .generator import PRESETS, generate
from .network import build_network, latency_matrix
from .schema import FIELDS, Inference, Instance, Jobs, Sites
from .shipped import default_instance_path, load_default
from .storage import atomic_hdf5, load, save
from .summary import format_summary, summarize
from .validation import validate

__all__ = [
    "FIELDS",
    "PRESETS",
    "CarbonschedError",
    "Inference",
    "InputError",
    "Instance",
    "InstanceError",
    "Jobs",
    "Sites",
    "atomic_hdf5",
    "build_network",
    "default_instance_path",
    "format_summary",
    "generate",
    "latency_matrix",
    "load",
    "load_default",
    "make_instance",
    "save",
    "summarize",
    "validate",
]
