"""Build facts, the fallback when the extension is missing, and backend choice."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch

import gmkernels
from gmkernels import _backend

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_build_info_keys():
    info = gmkernels.build_info()
    for key in ("torch", "cuda", "cuda_archs", "openmp", "triton", "extension", "cpu_isa"):
        assert key in info, f"build_info lacks {key!r}: {info}"
    assert info["extension"] is True
    assert info["torch"].split("+")[0] == torch.__version__.split("+")[0], info
    assert info["openmp"] is True, "the CPU kernels are built without OpenMP: at::parallel_for runs serially"
    assert info["cuda"] == _backend.native_has("langevin_step", "cuda")
    assert info["cpu_isa"] in ("baseline", "avx2", "avx512")


EXPECTED_OPS = {"random_uint32_", "random_uniform_", "random_normal_", "random_rademacher_",
                "random_bernoulli", "langevin_step", "langevin_step_", "langevin_step_backward"}


def test_every_op_has_a_cpu_kernel_and_a_fake():
    names = {n.split("::")[1] for n in torch._C._dispatch_get_all_op_names()
             if n.startswith("gmkernels::")}
    assert EXPECTED_OPS <= names, f"missing ops: {EXPECTED_OPS - names}"
    from torch._subclasses.fake_tensor import FakeTensorMode
    for n in sorted(names):
        assert torch._C._dispatch_has_kernel_for_dispatch_key(f"gmkernels::{n}", "CPU"), n
    # The fake kernels run (opcheck in the family tests checks them against the real ones).
    with FakeTensorMode():
        y = torch.ops.gmkernels.langevin_step(torch.empty(3, 2), torch.empty(3, 2), None, 0.1,
                                              None, 0.1, 0, 0, 0, None, None)
        assert y.shape == (3, 2)


def test_missing_extension_falls_back_to_reference():
    """A checkout whose _C does not load: import works, warns once with the fix, and the ops
    run on the reference with the same results."""
    code = textwrap.dedent("""
        import sys, warnings
        sys.modules["gmkernels._C"] = None          # makes `from . import _C` fail
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            import gmkernels
            import gmkernels.random
        msgs = [str(x.message) for x in w if "gmkernels" in str(x.message)]
        assert len(msgs) == 1, msgs
        assert "pip install --no-build-isolation" in msgs[0], msgs[0]
        assert gmkernels.build_info()["extension"] is False
        import torch
        x = torch.zeros(4, 3)
        y = gmkernels.langevin_step(x, x, 0.1, 1.0, seed=5)
        print(repr(y.tolist()))
        try:
            with gmkernels.use_backend("native"):
                gmkernels.langevin_step(x, x, 0.1, 1.0, seed=5)
        except RuntimeError as e:
            assert "cannot run" in str(e), e
        else:
            raise AssertionError("native backend without the extension did not raise")
    """)
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    got = torch.tensor(eval(out.stdout.strip().splitlines()[-1]))
    want = gmkernels.langevin_step(torch.zeros(4, 3), torch.zeros(4, 3), 0.1, 1.0, seed=5)
    assert torch.allclose(got, want, atol=1e-6), (got, want)


def test_backend_override_and_errors(monkeypatch):
    assert _backend.choose("langevin_step", torch.device("cpu")) == "native"
    with gmkernels.use_backend("reference"):
        assert _backend.choose("langevin_step", torch.device("cpu")) == "reference"
        with gmkernels.use_backend("native"):
            assert _backend.choose("langevin_step", torch.device("cpu")) == "native"
        assert _backend.choose("langevin_step", torch.device("cpu")) == "reference"
    with pytest.raises(ValueError, match="expected one of"):
        with gmkernels.use_backend("cudnn"):
            pass
    monkeypatch.setenv("GMK_BACKEND", "reference")
    assert _backend.choose("langevin_step", torch.device("cpu")) == "reference"
    monkeypatch.setenv("GMK_BACKEND", "bogus")
    with pytest.raises(ValueError, match="GMK_BACKEND"):
        _backend.choose("langevin_step", torch.device("cpu"))
    monkeypatch.delenv("GMK_BACKEND")
    if not gmkernels.build_info()["cuda"]:
        with gmkernels.use_backend("native"), pytest.raises(RuntimeError, match="without CUDA kernels"):
            _backend.choose("langevin_step", torch.device("cuda"))
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with gmkernels.use_backend("triton"), pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        _backend.choose("langevin_step", torch.device("cpu"))


def test_choose_backend_falls_back_with_one_warning_and_overrides_raise():
    """An op the loaded build lacks (a stale build) runs on the reference with one warning
    that names the op and the reason; the "native" override raises instead."""
    import warnings
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        for _ in range(3):
            assert _backend.choose_backend("op_of_a_newer_source", "cpu") == "reference"
    msgs = [str(m.message) for m in w if "op_of_a_newer_source" in str(m.message)]
    assert len(msgs) == 1 and "no gmkernels::op_of_a_newer_source" in msgs[0], msgs
    with gmkernels.use_backend("native"), pytest.raises(RuntimeError, match="cannot run"):
        _backend.choose_backend("op_of_a_newer_source", "cpu")


def test_import_needs_no_tqdm_and_seed_none_fails_clearly_under_compile():
    code = textwrap.dedent("""
        import sys
        sys.modules["tqdm"] = None                  # any import of tqdm fails
        import torch, gmkernels
        x = gmkernels.score.langevin_sample(lambda x: -x, torch.zeros(4, 2), 3, 0.1, seed=0)
        f = torch.compile(lambda x: gmkernels.langevin_step(x, -x, 0.01, 0.1), fullgraph=True)
        try:
            f(x)
        except Exception as e:
            assert "seed=None" in str(e) and "pass seed=<int>" in str(e), str(e)[-2000:]
        else:
            raise AssertionError("seed=None under torch.compile did not raise")
        g = torch.compile(lambda x: gmkernels.langevin_step(x, -x, 0.01, 0.1, seed=3), fullgraph=True)
        assert torch.allclose(g(x), gmkernels.langevin_step(x, -x, 0.01, 0.1, seed=3))
    """)
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
