"""Train a binary RBM on 8x8 digits with PCD and measure its test log-likelihood by AIS.

sklearn's load_digits (1797 images of 8x8 pixels with values 0..16) is binarized at 8 and
split into train / test (80 / 20, fixed seed). An RBM with 64 visible and --hidden hidden
units (:class:`gmkernels.boltzmann.RBM`) is trained by persistent contrastive divergence
(PCD-k, Tieleman 2008): every update runs k block-Gibbs steps of the persistent chains in one
fused :func:`gmkernels.rbm_gibbs` call. Then

* log Z by AIS (:func:`gmkernels.rbm_ais`, Salakhutdinov & Murray 2008, base-rate model from
  the training marginals, 100 chains, 10000 inverse temperatures), with its standard error,
  and, since the hidden layer is small, the exact log Z by enumeration as a check;
* the average test log-likelihood -F(v) - log Z, the pseudo-log-likelihood, and the same for
  the training set;
* rbm_digits_samples.png (100 samples after 1000 Gibbs steps from random bits, shown as
  visible probabilities) and rbm_digits_filters.png (the learned filters: the columns of W as
  8x8 images, on one colour scale), both in --out (default: examples/out/ beside this script).

Wall times measured on a busy 2-core machine (about 6 s of each is importing torch):

    python examples/rbm_digits.py           # ~16 s
    python examples/rbm_digits.py --quick   # ~15 s
"""

import math
import time

import torch
from sklearn.datasets import load_digits

from _common import ExampleParser, pyplot, save
from gmkernels.boltzmann import RBM


def digits(seed: int):
    x = torch.tensor(load_digits().data, dtype=torch.float32)
    x = (x >= 8).float()
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(x.shape[0], generator=g)
    n_train = int(0.8 * x.shape[0])
    return x[perm[:n_train]], x[perm[n_train:]]


def grid(imgs: torch.Tensor, nrow: int, pad: int = 1, fill: float = 1.0) -> torch.Tensor:
    """(n, 8, 8) images -> one (rows * 9 + 1, nrow * 9 + 1) picture, gaps of value ``fill``."""
    n, h, w = imgs.shape
    rows = math.ceil(n / nrow)
    out = torch.full((rows * (h + pad) + pad, nrow * (w + pad) + pad), fill)
    for i in range(n):
        r, c = divmod(i, nrow)
        out[pad + r * (h + pad):pad + r * (h + pad) + h, pad + c * (w + pad):pad + c * (w + pad) + w] = imgs[i]
    return out


def build_parser():
    p = ExampleParser(__doc__, quick=dict(epochs=30, n_betas=2000))
    p.add_argument("--hidden", type=int, default=20,
                   help="hidden units (<= 24: exact log Z by enumeration as well)")
    p.add_argument("--epochs", type=int, default=300, help="passes over the training set")
    p.add_argument("--k", type=int, default=5, help="Gibbs steps per PCD update")
    p.add_argument("--lr", type=float, default=0.05, help="learning rate")
    p.add_argument("--batch-size", type=int, default=64, help="minibatch size")
    p.add_argument("--n-betas", type=int, default=10000, help="AIS inverse temperatures")
    p.add_argument("--seed", type=int, default=0, help="seed of the split, training and AIS")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    # the GEMMs are 64 x 64 x 20: one PCD run took 0.4 s on one thread and 16 s on two, on a
    # loaded 2-core machine
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    train, test = digits(args.seed)
    print(f"digits: {train.shape[0]} train / {test.shape[0]} test, 64 binary pixels; "
          f"RBM 64 x {args.hidden}, PCD-{args.k}, {args.epochs} epochs")

    rbm = RBM(64, args.hidden)
    t0 = time.perf_counter()
    hist = rbm.fit(train, epochs=args.epochs, lr=args.lr, k=args.k, persistent=True,
                   batch_size=args.batch_size, weight_decay=1e-4, momentum=0.5, progress=True)
    print(f"trained in {time.perf_counter() - t0:.1f} s; reconstruction error "
          f"{hist[0]:.4f} -> {hist[-1]:.4f}")

    t0 = time.perf_counter()
    log_z, se = rbm.log_partition("ais", n_chains=100, n_betas=args.n_betas, seed=args.seed)
    t_ais = time.perf_counter() - t0
    exact = None
    if args.hidden <= 24:
        exact, _ = rbm.log_partition("exact")
    with torch.no_grad():
        ll_test = (-rbm.free_energy(test).double()).mean().item() - log_z
        ll_train = (-rbm.free_energy(train).double()).mean().item() - log_z
        pl_test = rbm.pseudo_likelihood(test).mean().item()
    print(f"AIS log Z = {log_z:.3f} ± {se:.3f} ({args.n_betas} betas, 100 chains, {t_ais:.1f} s)"
          + (f"; exact log Z = {exact:.3f} (AIS error {log_z - exact:+.3f})" if exact is not None else ""))
    print(f"average log-likelihood: test {ll_test:.3f} ± {se:.3f} nats, train {ll_train:.3f} nats "
          f"(64 pixels; a factorized base-rate model gets "
          f"{base_rate_ll(train, test):.3f} on test); test pseudo-log-likelihood {pl_test:.3f}")

    plt = pyplot()
    samples = rbm.sample(100, k=1000, seed=args.seed + 1, return_probs=True)
    fig, ax = plt.subplots(figsize=(6.6, 6), layout="constrained")
    cmap = plt.get_cmap("gray_r").copy()
    cmap.set_bad("#9ecae1")  # the gaps between samples, in a colour outside the scale
    im = ax.imshow(grid(samples.reshape(-1, 8, 8), 10, fill=float("nan")), cmap=cmap,
                   vmin=0, vmax=1)
    ax.set_title(f"RBM samples (1000 Gibbs steps; test LL {ll_test:.2f} ± {se:.2f} nats)")
    ax.axis("off")
    fig.colorbar(im, ax=ax, shrink=0.8, label="P(pixel on | hidden state)")
    save(fig, args.out, "rbm_digits_samples.png", dpi=120)

    # the raw weights on one symmetric scale, so filters can be compared with one another
    W = rbm.W.detach().t().reshape(-1, 8, 8)
    lim = W.abs().max().item()
    rows = math.ceil(args.hidden / 10)
    fig, ax = plt.subplots(figsize=(6.6, 0.6 * rows + 1.1), layout="constrained")
    cmap = plt.get_cmap("RdBu_r").copy()
    cmap.set_bad("0.45")  # the gaps between filters, darker than any weight near zero
    im = ax.imshow(grid(W, 10, fill=float("nan")), cmap=cmap, vmin=-lim, vmax=lim)
    ax.set_title(f"learned filters (columns of W, {args.hidden} hidden units)")
    ax.axis("off")
    fig.colorbar(im, ax=ax, orientation="horizontal", fraction=0.08, aspect=40, pad=0.02,
                 label="weight $W_{ij}$ (visible pixel $i$, hidden unit $j$)")
    save(fig, args.out, "rbm_digits_filters.png", dpi=120)


def base_rate_ll(train, test):
    """Test log-likelihood of independent pixels with the training marginals (a baseline)."""
    p = (train.double().mean(0) + 0.05) / 1.1
    t = test.double()
    return (t * torch.log(p) + (1 - t) * torch.log1p(-p)).sum(1).mean().item()


if __name__ == "__main__":
    main()
