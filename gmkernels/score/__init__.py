"""Score-based sampling: Langevin samplers built on the fused steps."""
