"""Score-based sampling: Langevin samplers built on the fused steps, forward SDEs
(VE / VP / sub-VP), predictor-corrector and probability-flow sampling, DDPM, and the
denoising score matching loss."""

from .ddpm import DDPMSchedule
from .langevin import annealed_langevin_sample, langevin_sample, sgld_sample
from .losses import denoising_score_matching_loss
from .sampling import ddpm_sample, sample
from .sde import VESDE, VPSDE, subVPSDE

__all__ = ["langevin_sample", "annealed_langevin_sample", "sgld_sample", "VESDE", "VPSDE",
           "subVPSDE", "DDPMSchedule", "sample", "ddpm_sample", "denoising_score_matching_loss"]
