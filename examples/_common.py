"""What every example shares: its command line, where it writes, and how it saves a picture.

* ``ExampleParser`` builds the command line: the script's docstring as the description (line
  breaks kept), every option's default in ``--help``, ``--quick`` (a short run whose settings
  are listed in its help and applied to every option left at its default) and ``--out``.
* ``--threads`` (default 1): each ``main`` passes it to ``torch.set_num_threads``.
* ``--out`` is a directory. Its default is ``out/`` beside the scripts (``examples/out/``,
  git-ignored), whatever the current directory; a relative ``--out`` is taken relative to the
  current directory, as a user would expect of a path typed on the command line.
* ``save`` writes a figure there and prints ``wrote <absolute path>``, one line per file.
"""

import argparse
from pathlib import Path

OUT_DIR = Path(__file__).resolve().parent / "out"


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The description as written, and ``(default: ...)`` after every option's help."""


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


class ExampleParser(argparse.ArgumentParser):
    """An example's command line: its own options plus ``--quick`` and ``--out``.

    ``quick`` maps option names (``dest``) to the values ``--quick`` uses. An option given on
    the command line keeps its value under ``--quick`` unless it equals the default.
    """

    def __init__(self, doc: str, quick: dict, quick_note: str = ""):
        super().__init__(description=doc, formatter_class=HelpFormatter)
        self.quick = dict(quick)
        settings = " ".join(f"{_flag(k)} {v}" for k, v in self.quick.items())
        self.add_argument("--quick", action="store_true",
                          help=f"a short run (under 20 s on 2 cores): {settings}"
                               + (f"; {quick_note}" if quick_note else ""))
        self.add_argument("--out", type=Path, default=OUT_DIR,
                          help="directory the pictures are written to (created if missing)")
        self.add_argument("--threads", type=int, default=1,
                          help="torch CPU threads. The examples' tensors are small: on the 2-core "
                               "machine they were measured on, one thread was the fastest, and "
                               "two threads on a busy machine were many times slower")

    def parse_args(self, args=None, namespace=None):
        ns = super().parse_args(args, namespace)
        unknown = [k for k in self.quick if not hasattr(ns, k)]
        if unknown:  # a typo in an example's quick settings, not a user error
            raise AttributeError(f"--quick sets options the parser does not have: {unknown}")
        if ns.quick:
            for k, v in self.quick.items():
                if getattr(ns, k) == self.get_default(k):
                    setattr(ns, k, v)
        if ns.threads < 1:
            self.error(f"--threads must be >= 1, got {ns.threads}")
        return ns


def pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend (the examples only write files)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save(fig, out_dir, name: str, **savefig_kw) -> Path:
    """Write ``fig`` to ``out_dir / name``, close it, print and return the absolute path."""
    import matplotlib.pyplot as plt
    path = (Path(out_dir).expanduser() / name).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    savefig_kw.setdefault("dpi", 110)
    fig.savefig(path, **savefig_kw)
    plt.close(fig)
    print(f"wrote {path}", flush=True)
    return path
