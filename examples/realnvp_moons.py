"""Train RealNVP on two moons by maximum likelihood and draw its samples and density.

A :class:`gmkernels.flows.RealNVP` (8 affine coupling layers, alternating masks, MLP
conditioners, soft-clamped log-scales; every coupling step is the fused
:func:`gmkernels.affine_coupling` op with its fused backward) is fitted to sklearn's
make_moons (standardized) by Adam on the negative log-likelihood. It reports the NLL of a
held-out test set (nats per sample; lower is better) and writes realnvp_moons.png (the data,
the flow's samples and its density exp(log p(x)) on a grid) to --out (default: examples/out/
beside this script).

Wall times measured on a busy 2-core machine (about 6 s of each is importing torch):

    python examples/realnvp_moons.py           # ~15 s
    python examples/realnvp_moons.py --quick   # ~15 s, a rough fit
"""

import math
import time

import torch
from sklearn.datasets import make_moons

try:
    from tqdm.auto import tqdm
except ImportError:  # a plain fallback with the same interface as far as we use it
    def tqdm(it, desc=""):
        it = list(it)
        for i, v in enumerate(it):
            if i % max(1, len(it) // 10) == 0:
                print(f"{desc}: {i}/{len(it)}", flush=True)
            yield v

from _common import ExampleParser, pyplot, save
from gmkernels.flows import RealNVP


def moons(n, seed):
    x, _ = make_moons(n_samples=n, noise=0.05, random_state=seed)
    x = torch.tensor(x, dtype=torch.float32)
    return (x - torch.tensor([0.5, 0.25])) / torch.tensor([0.87, 0.5])


def build_parser():
    p = ExampleParser(__doc__, quick=dict(steps=400))
    p.add_argument("--steps", type=int, default=1000, help="training steps")
    p.add_argument("--batch", type=int, default=256, help="training batch size")
    p.add_argument("--layers", type=int, default=8, help="affine coupling layers")
    p.add_argument("--hidden", type=int, default=64, help="width of each conditioner MLP")
    p.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate (cosine decay)")
    p.add_argument("--clamp", type=float, default=3.0, help="soft clamp of the log-scales")
    p.add_argument("--seed", type=int, default=0, help="seed of the data and the training")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    # small MLPs on batches of 256: intra-op threads do not pay off on a 2-core box
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    train, test = moons(20000, args.seed), moons(5000, args.seed + 1)
    flow = RealNVP(2, args.layers, args.hidden, clamp=args.clamp)
    opt = torch.optim.Adam(flow.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.steps)
    t0 = time.time()
    bar = tqdm(range(args.steps), desc="train (NLL)")
    avg = None
    for step in bar:
        idx = torch.randint(0, train.shape[0], (args.batch,))
        loss = -flow.log_prob(train[idx]).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        avg = loss.item() if avg is None else 0.98 * avg + 0.02 * loss.item()
        if step % 50 == 0 and hasattr(bar, "set_postfix"):
            bar.set_postfix(nll=f"{avg:.3f}")
    with torch.no_grad():
        test_nll = -flow.log_prob(test).mean().item()
        base_nll = math.log(2 * math.pi) + 0.5 * (test ** 2).sum(1).mean().item()
    print(f"trained {args.steps} steps in {time.time() - t0:.1f} s; test NLL {test_nll:.3f} "
          f"nats (a standard normal fit: {base_nll:.3f})")

    with torch.no_grad():
        samples = flow.sample(3000)
        n = 200
        c = torch.linspace(-3, 3, n)
        X, Y = torch.meshgrid(c, c, indexing="xy")
        dens = flow.log_prob(torch.stack([X.flatten(), Y.flatten()], 1)).exp().reshape(n, n)

    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.8), layout="constrained")
    axes[0].scatter(test[:3000, 0], test[:3000, 1], s=2, alpha=0.5, color="tab:gray")
    axes[0].set_title("data (make_moons, test set)")
    axes[1].scatter(samples[:, 0], samples[:, 1], s=2, alpha=0.5, color="tab:blue")
    axes[1].set_title("RealNVP samples")
    axes[2].imshow(dens.numpy(), extent=(-3, 3, -3, 3), origin="lower", cmap="viridis")
    axes[2].set_title(f"RealNVP density, test NLL {test_nll:.3f}")
    for ax in axes:
        ax.set_xlim(-3, 3)
        ax.set_ylim(-3, 3)
        ax.set_aspect("equal")
    fig.suptitle(f"RealNVP ({args.layers} coupling layers, gmkernels.affine_coupling) trained "
                 f"by maximum likelihood, {args.steps} steps")
    save(fig, args.out, "realnvp_moons.png")


if __name__ == "__main__":
    main()
