"""Boltzmann machines on the fused Gibbs kernels: the restricted Boltzmann machine (RBM).
(The fully connected BoltzmannMachine is added by the bm family.)"""

from .rbm import RBM

__all__ = ["RBM"]
