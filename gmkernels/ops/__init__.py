"""Public functional ops: argument checks, backend dispatch, fake kernels and autograd."""
from . import random, sde  # noqa: F401
