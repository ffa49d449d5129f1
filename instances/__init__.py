"""Instances: the data model of INSTANCE.md, HDF5 storage, validation, generator and shipped files."""

from .errors import CarbonschedError, InputError, InstanceError
from .schema import FIELDS, Inference, Instance, Jobs, Sites
from .build import make_instance
from .storage import atomic_hdf5, load, save
from .validation import validate

__all__ = [
    "FIELDS",
    "CarbonschedError",
    "Inference",
    "InputError",
    "Instance",
    "InstanceError",
    "Jobs",
    "Sites",
    "atomic_hdf5",
    "load",
    "make_instance",
    "save",
    "validate",
]
