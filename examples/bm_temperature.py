"""Magnetization and energy of a small fully connected Boltzmann machine against temperature:
Gibbs sampling with :func:`gmkernels.bm_gibbs` next to the exact curves from
:func:`gmkernels.bm_exact`.

The machine is a ferromagnet on D = 16 spins with random positive couplings,
``W_ij = J_ij / D`` with ``J_ij ~ U(0.5, 1.5)`` (a Curie-Weiss magnet with disorder: mean-field
critical temperature about 1, smoothed into a crossover near T = 0.75 at this size), ``b = 0``.
For each of ``--temps`` temperatures, ``--chains`` independent chains run ``--burn`` sweeps
from random spins and then ``--sweeps`` more, with the state recorded after every sweep; all
temperatures run in ONE op call per sweep, since ``beta`` may be a per-chain tensor. The
estimates of ⟨|m|⟩ = ⟨|Σ y_i| / D⟩ and ⟨E⟩ / D are plotted with error bars (standard error
over the independent chains' time averages) on top of the exact curves, which enumerate all
2^16 states. A second row shows sampled minus exact with the same error bars, at a scale where
they can be seen.

Writes bm_temperature.png to --out (default: examples/out/ beside this script).

Wall times measured on a busy 2-core machine (about 6 s of each is importing torch):

    python examples/bm_temperature.py           # ~13 s
    python examples/bm_temperature.py --quick   # ~10 s
"""

import math
import time

import torch

import gmkernels
import gmkernels.reference.bm
from _common import ExampleParser, pyplot, save

try:
    from tqdm.auto import tqdm
except ImportError:  # tqdm is optional
    def tqdm(it, **kw):
        return it


def ferromagnet(D, seed=0):
    g = torch.Generator().manual_seed(seed)
    J = 0.5 + torch.rand(D, D, generator=g, dtype=torch.float64)
    W = torch.triu(J, 1)
    W = (W + W.T) / D
    return W, torch.zeros(D, dtype=torch.float64)


def build_parser():
    ap = ExampleParser(__doc__, quick=dict(d=12, temps=12, chains=128, burn=100, sweeps=100))
    ap.add_argument("--d", type=int, default=16, help="spins (<= 20 for the exact curve)")
    ap.add_argument("--temps", type=int, default=24, help="temperatures in [0.3, 3]")
    ap.add_argument("--chains", type=int, default=256, help="independent chains per temperature")
    ap.add_argument("--burn", type=int, default=200, help="burn-in sweeps")
    ap.add_argument("--sweeps", type=int, default=300, help="recorded sweeps")
    ap.add_argument("--order", default="sequential", choices=["sequential", "random"],
                    help="Gibbs scan order of bm_gibbs")
    ap.add_argument("--seed", type=int, default=0, help="seed of the couplings and the chains")
    return ap


def main(argv=None):
    ap = build_parser()
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.d > 20:
        ap.error("--d must be <= 20 for the exact curve")

    t0 = time.time()
    D = args.d
    W, b = ferromagnet(D, args.seed)
    temps = torch.linspace(0.3, 3.0, args.temps, dtype=torch.float64)
    # Exact curves on a fine grid: the energies and |m| of all 2^D states do not depend on T, so
    # one enumeration serves every temperature (P_T(y) = softmax(-E / T)); at the sampled
    # temperatures bm_exact itself is called below (and agrees with this).
    ys = gmkernels.reference.bm.states(D)
    E_all = gmkernels.ops.bm.bm_energy(ys, W, b)
    m_all = ys.sum(1).abs() / D
    fine = torch.linspace(0.3, 3.0, 200, dtype=torch.float64)
    P = torch.softmax(-E_all[None, :] / fine[:, None], dim=1)
    m_exact = P @ m_all
    e_exact = P @ E_all / D

    # all temperatures in one batch: chain c runs at beta[c]
    C = args.chains
    beta = (1 / temps).repeat_interleave(C)
    g = torch.Generator().manual_seed(args.seed)
    y = (torch.randint(0, 2, (len(beta), D), generator=g) * 2 - 1).to(torch.float64)
    y = gmkernels.bm_gibbs(y, W, b, args.burn, beta=beta, order=args.order, seed=args.seed)
    offset = args.burn
    m_sum = torch.zeros(len(beta), dtype=torch.float64)
    e_sum = torch.zeros(len(beta), dtype=torch.float64)
    for _ in tqdm(range(args.sweeps), desc="bm_gibbs sweeps"):
        y = gmkernels.bm_gibbs(y, W, b, 1, beta=beta, order=args.order, seed=args.seed, offset=offset)
        offset += 1
        m_sum += y.sum(1).abs() / D
        e_sum += gmkernels.ops.bm.bm_energy(y, W, b) / D
    m_chain = (m_sum / args.sweeps).view(args.temps, C)   # per-chain time averages
    e_chain = (e_sum / args.sweeps).view(args.temps, C)
    m_est, m_se = m_chain.mean(1), m_chain.std(1) / math.sqrt(C)
    e_est, e_se = e_chain.mean(1), e_chain.std(1) / math.sqrt(C)

    ex_at = [gmkernels.bm_exact(W, b, 1 / t.item()) for t in tqdm(temps, desc="bm_exact")]
    m_at = torch.stack([e.mean_abs_magnetization for e in ex_at])
    e_at = torch.stack([e.mean_energy for e in ex_at]) / D
    z_m = ((m_est - m_at) / m_se.clamp_min(1e-12)).abs().max().item()
    z_e = ((e_est - e_at) / e_se.clamp_min(1e-12)).abs().max().item()
    updates = len(beta) * D * (args.burn + args.sweeps)
    print(f"D = {D}, {args.temps} temperatures x {C} chains, {args.burn} + {args.sweeps} sweeps "
          f"({updates:.3g} site updates)")
    print(f"max |sampled - exact| / SE: |m| {z_m:.2f}, E/D {z_e:.2f} (over {args.temps} temperatures)")

    plt = pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(11, 6.4), sharex=True, layout="constrained",
                             gridspec_kw={"height_ratios": [3, 1.6]})
    t = temps.numpy()
    rows = [("$\\langle|m|\\rangle = \\langle|\\Sigma_i\\, y_i|\\rangle / D$", fine, m_exact,
             m_est, m_se, m_at, "tab:red"),
            ("$\\langle E\\rangle / D$", fine, e_exact, e_est, e_se, e_at, "tab:blue")]
    for j, (label, tf, exact, est, se, at, color) in enumerate(rows):
        top, bottom = axes[0, j], axes[1, j]
        top.plot(tf, exact, "k-", lw=1.0, label="exact (bm_exact)", zorder=1)
        # small open markers over the bars, so that the bars stay visible where they are short
        top.errorbar(t, est, yerr=se, fmt="o", ms=3.5, mfc="white", mew=1.0, color=color,
                     ecolor=color, elinewidth=1.2, capsize=3, zorder=2,
                     label=f"bm_gibbs ({args.order}), ±1 SE")
        top.set_ylabel(label)
        top.legend()
        bottom.axhline(0.0, color="k", lw=1.0)
        bottom.errorbar(t, est - at, yerr=se, fmt="o", ms=3.5, mfc="white", mew=1.0,
                        color=color, elinewidth=1.2, capsize=3)
        bottom.set_ylabel("sampled − exact")
        bottom.set_xlabel("temperature $T = 1/\\beta$")
        for ax in (top, bottom):
            ax.grid(alpha=0.3)
    fig.suptitle(f"Ferromagnetic Boltzmann machine, D = {D}: {C} chains per temperature, "
                 f"{args.sweeps} recorded sweeps")
    save(fig, args.out, "bm_temperature.png")
    print(f"done in {time.time() - t0:.1f} s")


if __name__ == "__main__":
    main()
