"""Boltzmann machines on the fused Gibbs kernels: the restricted Boltzmann machine (RBM).
(The fully connected BoltzmannMachine is added by the bm family.)"""

from .rbm import RBM

__all__ = ["RBM"]
"""Boltzmann machines on the gmkernels ops: the fully connected ±1 machine
(:class:`BoltzmannMachine`, on :func:`gmkernels.bm_gibbs` and :func:`gmkernels.bm_exact`)."""

from .bm import BoltzmannMachine

__all__ = ["BoltzmannMachine"]
