"""Normalizing-flow models on top of the fused flow ops (docs/spec.md §1): :class:`PlanarFlow`
(Rezende & Mohamed 2015) and :class:`RealNVP` (Dinh et al. 2017)."""
from .planar import PlanarFlow
from .realnvp import RealNVP

__all__ = ["PlanarFlow", "RealNVP"]
