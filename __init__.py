"""carbonsched: carbon-aware compute–power scheduling of AI data centers with microgrids.

The import package's subpackages follow the layers of the design, each importing only from the
layers before it:

``carbonsched.instances``
    instance data: schema, HDF5 storage, validation, generator, summaries;
``carbonsched.formulations``
    SCIP models, plans and their exact evaluation, solution files, the independent checker;
``carbonsched.decomp``
    the decompositions (Benders, Lagrangian), their parallel layer and heuristics;
``carbonsched.cli``, ``carbonsched.bench``
    the command line, benchmarks and experiments.

``carbonsched.errors`` (the exception classes) and ``carbonsched.progress`` (the progress event)
are shared by every layer.
"""

import logging

__version__ = "0.2.0"

# the library never prints: without a handler configured by the application, records go nowhere
logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = ["__version__"]
