"""Fit planar flows to the four 2-D test energies of Rezende & Mohamed (2015), Table 1 / Fig. 3.

Each target is p(z) ∝ exp(-U(z)) for U1 (ring with two modes), U2 (sine wave), U3 and U4 (split
sine waves). U2-U4 are periodic in z1, so exp(-U) has no finite integral and the reverse-KL
optimum would spread along z1 without end (a flat band); the paper's figure shows them on the box
[-4, 4]^2, and so the fits here target exp(-U) times a soft wall at |z1| = 4 (a Gaussian edge of
width 0.2 outside the box: the density inside the box is unchanged). Every target then has a
finite log Z, computed by quadrature, and the fit's free energy measures its KL exactly.

A :class:`gmkernels.flows.PlanarFlow` with K = 32 layers over N(0, I) is trained by minimizing
the reverse KL divergence, i.e. the free energy

    F(q) = E_q[log q(x) + β U(x)]  >=  -log Z_β,    KL(q || p) = F(q) + log Z  (at β = 1),

with reparameterized samples (``flow.sample_with_log_prob``: the fused planar-flow op and its
fused backward), Adam, and the paper's annealing β_t = min(1, 0.01 + t / (steps/2)). The picture
shows, per energy, the target density exp(-U) above and the flow's density q(x) below (exact:
``flow.log_prob`` inverts the layers numerically), like the paper's Figure 3.

Wall times measured on a busy 2-core machine (about 6 s of each is importing torch):

    python examples/planar_flow_energies.py           # ~2 min (6000 Adam steps per energy)
    python examples/planar_flow_energies.py --quick   # ~15 s (a rough fit)

Writes planar_flow_energies.png to --out (default: examples/out/ beside this script).
"""

import math
import time

import torch

from _common import ExampleParser, pyplot, save
from gmkernels.flows import PlanarFlow

try:
    from tqdm.auto import tqdm
except ImportError:  # a plain fallback: the loop works without a progress bar
    def tqdm(it, desc="", **_):
        print(desc, "...")
        return it


def _w1(z):
    return torch.sin(2 * math.pi * z[:, 0] / 4)


def _w2(z):
    return 3 * torch.exp(-0.5 * ((z[:, 0] - 1) / 0.6) ** 2)


def _w3(z):
    return 3 * torch.sigmoid((z[:, 0] - 1) / 0.3)


def U1(z):
    r = z.norm(dim=1)
    a = -0.5 * ((z[:, 0] - 2) / 0.6) ** 2
    b = -0.5 * ((z[:, 0] + 2) / 0.6) ** 2
    return 0.5 * ((r - 2) / 0.4) ** 2 - torch.logaddexp(a, b)


def U2(z):
    return 0.5 * ((z[:, 1] - _w1(z)) / 0.4) ** 2


def U3(z):
    a = -0.5 * ((z[:, 1] - _w1(z)) / 0.35) ** 2
    b = -0.5 * ((z[:, 1] - _w1(z) + _w2(z)) / 0.35) ** 2
    return -torch.logaddexp(a, b)


def U4(z):
    a = -0.5 * ((z[:, 1] - _w1(z)) / 0.4) ** 2
    b = -0.5 * ((z[:, 1] - _w1(z) + _w3(z)) / 0.35) ** 2
    return -torch.logaddexp(a, b)


def boxed(U, half_width=4.0, edge=0.2):
    """exp(-U) times a soft wall at |z1| = half_width: U + ((|z1| - half_width)_+ / edge)^2 / 2."""
    def U_boxed(z):
        return U(z) + 0.5 * (torch.relu(z[:, 0].abs() - half_width) / edge) ** 2
    U_boxed.__name__ = U.__name__
    return U_boxed


# U1 is normalizable as it is; U2-U4 are fitted on the paper's box (see the module docstring).
ENERGIES = {"U1": U1, "U2": boxed(U2), "U3": boxed(U3), "U4": boxed(U4)}


def fit(U, steps, batch, layers, seed):
    torch.manual_seed(seed)
    flow = PlanarFlow(2, layers, init_scale=0.2)
    opt = torch.optim.Adam(flow.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=1e-3)
    # the paper's annealing: beta from 0.01 to 1 over the first half of the steps
    bar = tqdm(range(steps), desc="reverse KL")
    for t in bar:
        beta = min(1.0, 0.01 + t / (steps / 2))
        x, log_q = flow.sample_with_log_prob(batch)
        loss = (log_q + beta * U(x)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if hasattr(bar, "set_postfix") and t % 50 == 0:
            bar.set_postfix(F=f"{loss.item():.3f}", beta=f"{beta:.2f}")
    with torch.no_grad():
        x, log_q = flow.sample_with_log_prob(20000)
        free_energy = float((log_q + U(x)).mean())  # = KL(q || p) - log Z >= -log Z
    return flow, free_energy


def grid(lim=4.0, n=120):
    g = torch.linspace(-lim, lim, n)
    xx, yy = torch.meshgrid(g, g, indexing="xy")
    return xx, yy, torch.stack([xx.flatten(), yy.flatten()], 1)


def log_z(U, lim=6.0, n=600):
    """-log Z of exp(-U) restricted to the box [-lim, lim]^2, by quadrature."""
    xx, _, pts = grid(lim, n)
    h = (2 * lim / (n - 1)) ** 2
    return -float(torch.logsumexp(-U(pts.double()), 0) + math.log(h))


def build_parser():
    ap = ExampleParser(__doc__, quick=dict(steps=600, grid=60, iters=30))
    ap.add_argument("--steps", type=int, default=6000, help="Adam steps per energy")
    ap.add_argument("--batch", type=int, default=256, help="flow samples per step")
    ap.add_argument("--layers", type=int, default=32, help="planar layers K")
    ap.add_argument("--grid", type=int, default=120,
                    help="points per side of the [-4, 4]^2 grid the densities are drawn on")
    ap.add_argument("--iters", type=int, default=50,
                    help="bisection steps per layer when log_prob inverts the flow on the grid")
    ap.add_argument("--seed", type=int, default=0, help="seed of energy U1 (U2-U4: seed+1..3)")
    return ap


def main(argv=None):
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)  # K = 32 layers on batches of 256: small tensors
    plt = pyplot()

    xx, yy, pts = grid(n=args.grid)
    fig, axes = plt.subplots(2, 4, figsize=(12, 6.8), layout="constrained")
    t0 = time.time()
    for j, (name, U) in enumerate(ENERGIES.items()):
        flow, F = fit(U, args.steps, args.batch, args.layers, args.seed + j)
        ref = log_z(U)  # -log Z by quadrature on [-6, 6]^2 (the targets' mass lies inside)
        print(f"{name}: free energy E_q[log q + U] = {F:.3f}, -log Z = {ref:.3f}, "
              f"KL(q || p) = {F - ref:.3f} nats")
        with torch.no_grad():
            p = torch.exp(-U(pts)).reshape(xx.shape)
            q = flow.log_prob(pts, iters=args.iters).exp().reshape(xx.shape)
        for i, (dens, title) in enumerate(((p, f"{name}: exp(-U)"),
                                           (q, f"planar K={args.layers}, KL={F - ref:.3f}"))):
            ax = axes[i, j]
            ax.pcolormesh(xx.numpy(), yy.numpy(), dens.numpy(), cmap="viridis", shading="auto")
            ax.set_title(title, fontsize=10)
            ax.set_aspect("equal")
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle("Rezende & Mohamed (2015) test energies: target (top) vs planar flow (bottom)")
    save(fig, args.out, "planar_flow_energies.png")
    print(f"done in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
