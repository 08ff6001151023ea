"""Progress bars for the samplers and the training loops: tqdm when one is asked for, imported
only then (``import gmkernels`` does not import tqdm), and a silent stand-in otherwise.

One default for every long loop of gmkernels (the samplers of :mod:`gmkernels.score` and the
``fit`` methods of the models): ``progress: bool = False``, quiet unless asked.

>>> from gmkernels._progress import progress_bar
>>> sum(progress_bar(range(4), enabled=False, desc="quiet"))
6
"""

from __future__ import annotations


class _Silent:
    """What a disabled bar is: iterates its iterable; update / set_postfix do nothing."""

    def __init__(self, iterable=None):
        self.iterable = iterable

    def __iter__(self):
        return iter(self.iterable)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, *args, **kwargs) -> None:
        pass


class _Printed(_Silent):
    """The fallback where tqdm is not installed: one line per item."""

    def __init__(self, iterable, desc: str, total):
        super().__init__(iterable)
        self.desc, self.total, self.n = desc, total, 0

    def __iter__(self):
        for x in self.iterable:
            self.update()
            yield x

    def update(self, n: int = 1) -> None:
        self.n += n
        total = self.total if self.total is not None else len(self.iterable)
        print(f"{self.desc}: {self.n}/{total}", flush=True)


def progress_bar(iterable=None, enabled: bool = False, desc: str = "", *, total=None,
                 leave: bool = False):
    """A tqdm bar over ``iterable`` (or of ``total`` steps, updated by hand) when ``enabled``."""
    if not enabled:
        return _Silent(iterable)
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _Printed(iterable, desc, total)
    return tqdm(iterable, desc=desc, total=total, leave=leave)
