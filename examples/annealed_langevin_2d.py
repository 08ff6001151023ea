"""Annealed vs plain Langevin on a 2-D mixture of Gaussians with unequal weights.

Eight Gaussians on a ring of radius 4 (std 0.4) with weights 8:1:4:1:8:1:4:1 (normalised).
Both samplers start from uniform noise on [-6, 6]² and use the exact score (the mixture
convolved with N(0, σ² I) is again a mixture, with variances s² + σ²):

* plain Langevin (gmkernels.score.langevin_sample) on the data score: each chain settles in
  the mode whose basin it started in, so every mode gets about the same mass whatever its
  weight (Song & Ermon 2019, Sec. 3.2 and Fig. 3);
* annealed Langevin (gmkernels.score.annealed_langevin_sample, Song & Ermon 2019, Alg. 1)
  over σ = 8 -> 0.05: at large σ the chains move between modes freely, so the mass is shared
  out by weight before the modes separate.

Writes annealed_langevin_2d.png (true density and samples, samples of both samplers, per-mode
fractions) to --out (default: examples/out/ beside this script), and prints the fractions.

Wall times measured on a busy 2-core machine (about 6 s of each is importing torch):

    python examples/annealed_langevin_2d.py           # ~8 s
    python examples/annealed_langevin_2d.py --quick   # ~8 s
"""

import math
import time

import torch

import gmkernels
from _common import ExampleParser, pyplot, save
from gmkernels.score import annealed_langevin_sample, langevin_sample

RADIUS, STD = 4.0, 0.4
N_MODES = 8
MEANS = torch.stack([torch.tensor([RADIUS * math.cos(2 * math.pi * k / N_MODES),
                                   RADIUS * math.sin(2 * math.pi * k / N_MODES)])
                     for k in range(N_MODES)])                        # (K, 2)
WEIGHTS = torch.tensor([8.0, 1.0, 4.0, 1.0, 8.0, 1.0, 4.0, 1.0])
WEIGHTS = WEIGHTS / WEIGHTS.sum()


def log_resp(x, var):
    """log w_k N(x; m_k, var I) up to a constant, (B, K)."""
    d2 = ((x[:, None, :] - MEANS.to(x)) ** 2).sum(-1)
    return torch.log(WEIGHTS.to(x)) - d2 / (2 * var)


def score(x, sigma=0.0):
    """∇_x log p_σ(x) for p_σ = p * N(0, σ² I): Σ_k r_k(x) (m_k - x) / (s² + σ²)."""
    var = STD ** 2 + sigma ** 2
    r = torch.softmax(log_resp(x, var), dim=1)                        # (B, K)
    return (r @ MEANS.to(x) - x) / var


def density(x):
    var = STD ** 2
    return torch.logsumexp(log_resp(x, var), dim=1).exp() / (2 * math.pi * var)


def nearest_mode_fractions(x):
    idx = torch.cdist(x, MEANS.to(x)).argmin(dim=1)
    return torch.bincount(idx, minlength=N_MODES).double() / x.shape[0]


def exact_samples(n, seed):
    g = torch.Generator().manual_seed(seed)
    k = torch.multinomial(WEIGHTS, n, replacement=True, generator=g)
    return MEANS[k] + STD * torch.randn(n, 2, generator=g)


def build_parser():
    p = ExampleParser(__doc__, quick=dict(n=1000, levels=10, steps_each=20))
    p.add_argument("--n", type=int, default=4000, help="number of chains")
    p.add_argument("--levels", type=int, default=20, help="number of noise levels L")
    p.add_argument("--steps-each", type=int, default=50, help="Langevin steps per level T")
    p.add_argument("--seed", type=int, default=0, help="seed of the start points and samplers")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    # --threads 1 (the default): each step is ~10 ops on ~10^5 elements, where OpenMP's
    # fork-join costs more than the work (100 ms vs 3 ms per step with 2 vs 1 threads on a
    # loaded 2-core machine)
    torch.set_num_threads(args.threads)

    # σ_1 = 8 ≈ the largest distance between modes (Song & Ermon 2020, technique 1);
    # ε = 0.5 σ_L², so α_i = 0.5 σ_i²: at every level the step is half the added variance σ_i².
    sigmas = torch.logspace(math.log10(8.0), math.log10(0.05), args.levels).tolist()
    eps = 0.5 * sigmas[-1] ** 2
    n_steps = args.levels * args.steps_each
    x0 = gmkernels.random.uniform((args.n, 2), seed=args.seed + 1) * 12 - 6

    t0 = time.perf_counter()
    annealed = annealed_langevin_sample(score, x0, sigmas, n_steps_each=args.steps_each, eps=eps,
                                        seed=args.seed, progress=True, denoise=True)
    # plain Langevin: the same number of score evaluations, with a step (0.02) that relaxes
    # each mode (variance 0.16) many times over in those steps and is far from unstable.
    plain = langevin_sample(score, x0, n_steps, 0.02, seed=args.seed, progress=True)
    elapsed = time.perf_counter() - t0
    truth = exact_samples(args.n, args.seed)

    f_true = WEIGHTS.double()
    f_plain, f_ann = nearest_mode_fractions(plain), nearest_mode_fractions(annealed)
    se = (f_true * (1 - f_true) / args.n).sqrt()
    print(f"{args.n} chains, {n_steps} steps each, both samplers in {elapsed:.1f} s")
    print("mode   weight   plain    annealed   (SE of a fraction)")
    for k in range(N_MODES):
        print(f"{k:4d}   {f_true[k]:.3f}    {f_plain[k]:.3f}    {f_ann[k]:.3f}      ({se[k]:.3f})")

    plt = pyplot()

    lim = 7.0
    g = torch.linspace(-lim, lim, 300)
    gx, gy = torch.meshgrid(g, g, indexing="xy")
    dens = density(torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1)).reshape(gx.shape)

    fig, axes = plt.subplots(1, 4, figsize=(20, 5.2), gridspec_kw={"width_ratios": [1, 1, 1, 1.25]})
    panels = [(truth, "exact samples", "tab:green"),
              (plain, f"plain Langevin ({n_steps} steps, ε = 0.02)", "tab:red"),
              (annealed, f"annealed Langevin ({args.levels} levels × {args.steps_each} steps, "
                         f"σ {sigmas[0]:g} → {sigmas[-1]:g})", "tab:blue")]
    # log-spaced levels so that the light modes (1/8 of the heaviest peak) get rings too
    levels = (dens.max() * torch.tensor([0.002, 0.01, 0.05, 0.25])).tolist()
    for ax, (x, title, color) in zip(axes, panels):
        ax.scatter(x[:, 0], x[:, 1], s=2, alpha=0.3, color=color, rasterized=True)
        ax.contour(gx, gy, dens, levels=levels, colors="0.15", linewidths=0.7, zorder=3)
        for k in range(N_MODES):
            ax.annotate(str(k), 1.52 * MEANS[k], ha="center", va="center", fontsize=11,
                        fontweight="bold",
                        color="0.25")
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        ax.set_title(title, fontsize=11)
        ax.set_xticks([-6, -3, 0, 3, 6])
        ax.set_yticks([-6, -3, 0, 3, 6])

    ax = axes[3]
    k = torch.arange(N_MODES)
    w = 0.27
    ax.bar(k - w, f_true, w, color="tab:green", label="true weight")
    ax.bar(k, f_plain, w, color="tab:red", label="plain Langevin")
    ax.bar(k + w, f_ann, w, color="tab:blue", label="annealed Langevin",
           yerr=2 * se, capsize=2, ecolor="0.2")
    ax.set_xticks(k.tolist())
    ax.set_xlabel("mode (numbered as in the scatter plots)")
    ax.set_ylabel("fraction of samples nearest the mode")
    ax.set_title(f"mass per mode ({args.n} chains; bars ±2 SE)", fontsize=11)
    ax.legend(fontsize=9, loc="upper right")
    ax.set_ylim(0, max(f_true.max(), f_plain.max(), f_ann.max()).item() * 1.35)

    fig.suptitle("Langevin sampling of 8 Gaussians with weights 8:1:4:1:8:1:4:1 from uniform "
                 "noise on [-6, 6]² (black: contours of the true density)", fontsize=12)
    fig.tight_layout()
    save(fig, args.out, "annealed_langevin_2d.png")


if __name__ == "__main__":
    main()
