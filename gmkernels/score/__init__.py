"""Score-based sampling: Langevin samplers built on the fused steps."""

from .langevin import annealed_langevin_sample, langevin_sample, sgld_sample

__all__ = ["langevin_sample", "annealed_langevin_sample", "sgld_sample"]
