"""Public functional ops: argument checks, backend dispatch, fake kernels and autograd."""
from . import coupling, random, sde  # noqa: F401
