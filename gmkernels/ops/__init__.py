"""Public functional ops, one module per family: argument checks (:mod:`gmkernels._checks`),
backend choice (:func:`gmkernels._backend.choose_backend`), and each dispatcher op's fake
kernel and autograd registered beside its wrapper. The random family lives in
:mod:`gmkernels.random` (its public namespace), also reachable as ``gmkernels.ops.random``."""
from .. import random  # noqa: F401
from . import bm, coupling, planar, rbm, sde  # noqa: F401
