"""The integer codes that the dispatcher schemas take for their enum arguments.

The public Python API takes names (``kind="vp"``, ``predictor="reverse_diffusion"``,
``scale="sigmoid"``, ``order="random"``); the wrappers in :mod:`gmkernels.ops` turn a name into
its code here, once, and the schemas receive a plain ``int``. Each table must equal the C++
enum named beside it (the kernels switch on these values); a code never changes meaning, and
a new member takes the next free number.

>>> from gmkernels import _enums
>>> _enums.SDE_KINDS["vp"], _enums.PREDICTORS["reverse_diffusion"], _enums.ORDERS["random"]
(1, 1, 1)
"""

from __future__ import annotations

__all__ = ["SDE_KINDS", "PREDICTORS", "SCALES", "ORDERS", "DRAWS", "names"]

#: kind of a forward SDE (``reverse_sde_step``); C++ ``SdeKind`` in csrc/sde/sde.h.
SDE_KINDS = {"ve": 0, "vp": 1, "subvp": 2}

#: predictor of a reverse-time step (``reverse_sde_step``); C++ ``SdePredictor`` in csrc/sde/sde.h.
PREDICTORS = {"euler_maruyama": 0, "reverse_diffusion": 1}

#: log-scale of an affine coupling (``affine_coupling``); C++ ``CouplingScale`` in
#: csrc/flows/coupling.h.
SCALES = {"exp": 0, "sigmoid": 1}

#: site order of a Boltzmann machine sweep (``bm_gibbs``); C++ ``BmOrder`` in csrc/boltzmann/bm.h.
ORDERS = {"sequential": 0, "random": 1}

#: what a random fill draws (the Triton fill kernel's switch; the native ops are one op per
#: draw); C++ ``Draw`` in csrc/random/random.h. Code 4 (Bernoulli) is Triton-only.
DRAWS = {"uint32": 0, "uniform": 1, "normal": 2, "rademacher": 3, "bernoulli": 4}


def names(table: dict) -> dict:
    """The inverse table, code -> name.

    >>> gmkernels._enums.names(gmkernels._enums.SCALES)
    {0: 'exp', 1: 'sigmoid'}
    """
    return {v: k for k, v in table.items()}
