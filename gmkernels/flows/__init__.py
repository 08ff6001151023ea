"""Normalizing-flow models on top of the fused flow ops (SPEC §1)."""
from .realnvp import RealNVP

__all__ = ["RealNVP"]
