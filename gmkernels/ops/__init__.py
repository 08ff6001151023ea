"""Public functional ops: argument checks, backend dispatch, fake kernels and autograd."""
from . import planar, random, sde  # noqa: F401
from . import coupling, random, sde  # noqa: F401
from . import random, rbm, sde  # noqa: F401
