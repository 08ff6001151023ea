"""Score-based sampling: Langevin samplers built on the fused steps, forward SDEs
(VE / VP / sub-VP), predictor-corrector and probability-flow sampling, DDPM, the
denoising, sliced and exact score matching losses, and the SDE / DDPM coefficient maths
(:mod:`gmkernels.score.coefficients`) that the fused steps and the samplers share."""

from . import coefficients
from .ddpm import DDPMSchedule
from .langevin import annealed_langevin_sample, langevin_sample, sgld_sample
from .losses import denoising_score_matching_loss, score_matching_loss, sliced_score_matching_loss
from .sampling import ddpm_sample, sample
from .sde import VESDE, VPSDE, subVPSDE

__all__ = ["langevin_sample", "annealed_langevin_sample", "sgld_sample", "VESDE", "VPSDE",
           "subVPSDE", "DDPMSchedule", "sample", "ddpm_sample", "denoising_score_matching_loss",
           "sliced_score_matching_loss", "score_matching_loss",
           "coefficients"]
