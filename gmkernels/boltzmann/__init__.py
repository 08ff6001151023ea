"""Boltzmann machines on the fused Gibbs kernels (docs/spec.md §2): the restricted Boltzmann machine
(:class:`RBM`, on :func:`gmkernels.rbm_gibbs`) and the fully connected ±1 machine
(:class:`BoltzmannMachine`, on :func:`gmkernels.bm_gibbs` and :func:`gmkernels.bm_exact`)."""

from .bm import BoltzmannMachine
from .rbm import RBM

__all__ = ["BoltzmannMachine", "RBM"]
