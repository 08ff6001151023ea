"""Every ``>>>`` example in gmkernels runs as written: the doctests of every module.

Each module's examples run in one namespace with ``torch`` and ``gmkernels`` imported (an
example defines everything else it uses). A failure reports the module, the example's line
and what it printed or raised.
"""

import doctest
import importlib
import pkgutil

import pytest
import torch

import gmkernels

FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _modules():
    names = ["gmkernels"]
    for info in pkgutil.walk_packages(gmkernels.__path__, "gmkernels."):
        if info.name.startswith("gmkernels.bench") or info.name == "gmkernels._C":
            continue
        if info.name.startswith("gmkernels.triton"):
            try:
                import triton  # noqa: F401
            except ImportError:  # optional: its modules import triton at the top
                continue
        names.append(info.name)
    return names


MODULES = _modules()


def test_the_modules_are_found():
    for name in ("gmkernels.ops.sde", "gmkernels.random", "gmkernels.score.sde",
                 "gmkernels.boltzmann.rbm", "gmkernels._checks"):
        assert name in MODULES, f"{name} not collected: {MODULES}"


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    tests = finder.find(module, name, globs={"torch": torch, "gmkernels": gmkernels})
    out = []
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    for test in tests:
        torch.manual_seed(0)  # examples draw random inputs; their results must not depend on it
        runner.run(test, out=out.append)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed:\n" + "".join(out)
