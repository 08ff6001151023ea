"""Normalizing-flow models on top of the fused flow ops: :class:`PlanarFlow` (Rezende &
Mohamed 2015)."""
from .planar import PlanarFlow

__all__ = ["PlanarFlow"]
"""Normalizing-flow models on top of the fused flow ops (SPEC §1)."""
from .realnvp import RealNVP

__all__ = ["RealNVP"]
