"""Plain-PyTorch versions of every op: the test oracle and the fallback when the extension is
not built. Short, readable, float64-able."""
from . import planar, random, sde  # noqa: F401
from . import coupling, random, sde  # noqa: F401
from . import random, rbm, sde  # noqa: F401
