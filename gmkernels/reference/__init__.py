"""Plain-PyTorch versions of every op: the test oracle and the fallback when the extension is
not built. Short, readable, float64-able."""
from . import bm, coupling, planar, random, rbm, sde  # noqa: F401
