"""Train a score-based SDE model on two moons and sample it three ways.

A small MLP s_θ(x, t) is trained with denoising score matching
(:func:`gmkernels.score.denoising_score_matching_loss`, λ(σ) = σ², Song et al. 2021 eq. 7) on
sklearn's make_moons (generated offline, standardized) under a VP SDE (β 0.1 -> 20). The
network predicts -z, and the score is its output divided by the marginal std σ(t) (a
common parameterization that keeps the target O(1) at every noise level). It is then sampled
from the prior with

* Euler-Maruyama on the reverse SDE (:func:`gmkernels.score.sample`, predictor only),
* predictor-corrector: EM + one Langevin corrector step per step (snr 0.16, batch norms),
* the probability-flow ODE (deterministic),

and writes score_sde_2d.png (data and the three sample sets, each with its sliced 1-D
Wasserstein distance to a fresh data set) to --out (default: examples/out/ beside this script).

Wall times measured on a busy 2-core machine (about 6 s of each is importing torch):

    python examples/score_sde_2d.py           # ~75 s
    python examples/score_sde_2d.py --quick   # ~15 s
"""

import math
import time

import torch
from sklearn.datasets import make_moons
from tqdm.auto import tqdm

from _common import ExampleParser, pyplot, save
from gmkernels.score import VPSDE, denoising_score_matching_loss, sample


class ScoreMLP(torch.nn.Module):
    """s(x, t) = net([x, Fourier features of t]) / σ(t)."""

    def __init__(self, sde, hidden=128, n_freq=4):
        super().__init__()
        self.sde = sde
        self.register_buffer("freqs", torch.arange(1, n_freq + 1) * math.pi)
        self.net = torch.nn.Sequential(
            torch.nn.Linear(2 + 2 * n_freq, hidden), torch.nn.SiLU(),
            torch.nn.Linear(hidden, hidden), torch.nn.SiLU(),
            torch.nn.Linear(hidden, hidden), torch.nn.SiLU(),
            torch.nn.Linear(hidden, 2))

    def forward(self, x, t):
        emb = t[:, None] * self.freqs[None]
        h = self.net(torch.cat([x, torch.sin(emb), torch.cos(emb)], dim=1))
        _, std = self.sde.marginal_prob(x, t)
        return h / std.reshape(-1, 1)


def moons(n, seed):
    x, _ = make_moons(n_samples=n, noise=0.06, random_state=seed)
    x = torch.tensor(x, dtype=torch.float32)
    return (x - torch.tensor([0.5, 0.25])) / torch.tensor([0.87, 0.5])


def sliced_w1(a, b, n_proj=64, seed=0):
    """Mean over random directions of the 1-D Wasserstein-1 distance (equal sizes)."""
    g = torch.Generator().manual_seed(seed)
    d = torch.randn(n_proj, 2, generator=g)
    d = d / d.norm(dim=1, keepdim=True)
    pa, pb = (a @ d.T).sort(0).values, (b @ d.T).sort(0).values
    return (pa - pb).abs().mean().item()


def build_parser():
    p = ExampleParser(__doc__, quick=dict(steps=1500, hidden=128, sample_steps=200, n=1000))
    p.add_argument("--steps", type=int, default=5000, help="training steps")
    p.add_argument("--batch", type=int, default=512, help="training batch size")
    p.add_argument("--hidden", type=int, default=256, help="width of the score MLP")
    p.add_argument("--lr", type=float, default=2e-3, help="Adam learning rate (cosine decay)")
    p.add_argument("--sample-steps", type=int, default=500, help="steps of each sampler")
    p.add_argument("--n", type=int, default=2000, help="samples per sampler")
    p.add_argument("--seed", type=int, default=0, help="seed of the data, training and samplers")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    # a 256-wide MLP on batches of 512 is too small for intra-op threads to pay off (one
    # thread was faster on the 2-core dev box)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    sde = VPSDE(0.1, 20.0)
    data = moons(20000, args.seed)
    model = ScoreMLP(sde, hidden=args.hidden)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.steps)
    t0 = time.time()
    bar = tqdm(range(args.steps), desc="train (DSM)")
    avg = None
    for step in bar:
        idx = torch.randint(0, data.shape[0], (args.batch,))
        loss = denoising_score_matching_loss(model, data[idx], sde, seed=args.seed, offset=2 * step)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        avg = loss.item() if avg is None else 0.98 * avg + 0.02 * loss.item()
        if step % 50 == 0:
            bar.set_postfix(loss=f"{avg:.3f}")
    print(f"trained {args.steps} steps in {time.time() - t0:.1f} s, DSM loss {avg:.3f}")

    model.eval()
    score = lambda x, t: model(x, t)  # noqa: E731
    runs = {
        "Euler-Maruyama": dict(),
        "PC (EM + Langevin)": dict(corrector="langevin", snr=0.16),
        "probability flow ODE": dict(probability_flow=True),
    }
    ref = moons(args.n, args.seed + 1)
    results = {}
    for k, (name, kw) in enumerate(runs.items()):
        t0 = time.time()
        x = sample(score, sde, (args.n, 2), n_steps=args.sample_steps, seed=args.seed + 10 + k,
                   progress=True, **kw)
        results[name] = x
        print(f"{name}: {time.time() - t0:.1f} s, sliced W1 to data {sliced_w1(x, ref):.3f}")

    plt = pyplot()
    fig, axes = plt.subplots(1, 4, figsize=(16, 4.8), sharex=True, sharey=True,
                             layout="constrained")
    panels = [("data (make_moons)", ref, "tab:gray")] + [
        (f"{name}\nsliced W1 {sliced_w1(x, ref):.3f}", x, c)
        for (name, x), c in zip(results.items(), ["tab:blue", "tab:orange", "tab:green"])]
    for ax, (title, x, c) in zip(axes, panels):
        ax.scatter(x[:, 0], x[:, 1], s=2, alpha=0.5, color=c)
        ax.set_title(title)
        ax.set_xlim(-2.5, 2.5)
        ax.set_ylim(-2.5, 2.5)
        ax.set_aspect("equal")
    fig.suptitle(f"VP SDE score model trained by denoising score matching ({args.steps} steps); "
                 f"{args.sample_steps} sampler steps, {args.n} samples each (gmkernels)")
    save(fig, args.out, "score_sde_2d.png")


if __name__ == "__main__":
    main()
