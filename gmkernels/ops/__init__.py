"""Public functional ops: argument checks, backend dispatch, fake kernels and autograd."""
from . import bm, coupling, planar, random, rbm, sde  # noqa: F401
