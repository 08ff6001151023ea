"""Public functional ops: argument checks, backend dispatch, fake kernels and autograd."""
from . import random, rbm, sde  # noqa: F401
