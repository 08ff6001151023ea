"""gmkernels: fused PyTorch kernels for the hot loops of classic generative models.

Each op is a ``torch.ops.gmkernels.*`` dispatcher operator with a C++ CPU kernel, a CUDA
kernel, a Triton kernel and a plain-PyTorch reference, with autograd and ``torch.compile``
support. All randomness comes from one counter-based Philox stream (:mod:`gmkernels.random`),
so every backend draws the same numbers for the same seed.

>>> import torch, gmkernels
>>> x = torch.randn(1024, 2)
>>> a = gmkernels.langevin_step(x, -x, 0.01, (2 * 0.01) ** 0.5, seed=0, offset=0)
>>> b = gmkernels.langevin_step(x, -x, 0.01, (2 * 0.01) ** 0.5, seed=0, offset=0)
>>> a.shape, torch.equal(a, b)              # the same seed gives the same step
(torch.Size([1024, 2]), True)
"""

from . import _backend
from ._backend import build_info, extension_available, use_backend
from . import random
from . import ops
from .ops.sde import (affine_noise_step, ddpm_step, euler_maruyama_step, langevin_corrector_step,
                      langevin_step, langevin_step_, reverse_sde_step)
from .ops.planar import planar_flow, planar_u_hat
from .ops.coupling import affine_coupling
from .ops.rbm import rbm_ais, rbm_free_energy, rbm_gibbs, rbm_log_z_exact
from .ops.bm import bm_exact, bm_gibbs
from . import flows
from . import boltzmann
from . import score
from . import trace

__version__ = "0.1.0"

__all__ = [
    "build_info",
    "extension_available",
    "use_backend",
    "random",
    "langevin_step",
    "langevin_step_",
    "euler_maruyama_step",
    "reverse_sde_step",
    "langevin_corrector_step",
    "affine_noise_step",
    "ddpm_step",
    "score",
    "planar_flow",
    "planar_u_hat",
    "affine_coupling",
    "flows",
    "rbm_gibbs",
    "rbm_free_energy",
    "rbm_log_z_exact",
    "rbm_ais",
    "boltzmann",
    "bm_gibbs",
    "bm_exact",
    "trace",
]
