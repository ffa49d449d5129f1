"""Instance files shipped with the package (``instances/data``)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

from .schema import Instance
from .storage import load

#: The shipped ``paper`` preset (``generate("paper", seed=0)``).
DEFAULT_INSTANCE = "paper.h5"


def default_instance_path() -> Path:
    """Filesystem path of the shipped ``paper.h5`` (the ``paper`` preset, seed 0).

    Valid for an installed or source-tree package; a package imported from a zip archive is not
    supported (use :func:`load_default`, which extracts the file as needed).
    """
    return Path(str(resources.files(__package__).joinpath("data", DEFAULT_INSTANCE)))


@contextlib.contextmanager
def _as_file() -> Iterator[Path]:
    with resources.as_file(resources.files(__package__).joinpath("data", DEFAULT_INSTANCE)) as path:
        yield Path(path)


def load_default() -> Instance:
    """Load and validate the shipped ``paper`` instance."""
    with _as_file() as path:
        return load(path)
