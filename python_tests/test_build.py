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


def registered_ops() -> set[str]:
    """The names of every operator the dispatcher knows in the gmkernels namespace (the C++
    schemas; the fakes and autograd formulas are registered by the Python layer on import)."""
    return {n.split("::", 1)[1] for n in torch._C._dispatch_get_all_op_names()
            if n.startswith("gmkernels::")}


def _f32(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _f64(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _bits(B, n, seed=1):
    return (torch.rand(B, n, generator=torch.Generator().manual_seed(seed)) < 0.5).double()


def _spins(B, D, seed=1):
    return (torch.randint(0, 2, (B, D), generator=torch.Generator().manual_seed(seed)) * 2 - 1).float()


def _sym(D, seed=0):
    A = _f32(D, D, seed=seed)
    W = (A + A.T) / 2
    return W.fill_diagonal_(0)


# One small, valid call of every registered op (the schemas' argument order), for the opcheck
# below: the family test files opcheck each op in more configurations; this table is what makes
# a new op without a fake or without a sample fail here. Built on demand (fresh tensors).
OP_SAMPLES = {
    "random_uint32_": lambda: (torch.empty(5, 7, dtype=torch.int64), 3, 2**40, 1),
    "random_uniform_": lambda: (torch.empty(5, 7), 3, 2**40, 1),
    "random_normal_": lambda: (torch.empty(5, 7), 3, 2**40, 1),
    "random_rademacher_": lambda: (torch.empty(5, 7), 3, 2**40, 1),
    "random_bernoulli": lambda: (torch.rand(6, 5), 3, 1, 0),
    "langevin_step": lambda: (_f32(6, 5).requires_grad_(), _f32(6, 5, seed=1), None, 0.1, None,
                              0.3, 3, 2**33, 1, -1.0, 1.0),
    "langevin_step_": lambda: (_f32(6, 5), _f32(6, 5, seed=1), torch.rand(6), 0.0, None, 0.3, 3,
                               1, 0, None, None),
    "langevin_step_backward": lambda: (_f32(6, 5), _f32(6, 5, seed=1), _f32(6, 5, seed=2),
                                       torch.rand(6), 0.0, 3, 1, 0, -1.0, 1.0, True, True),
    "euler_maruyama_step": lambda: (_f32(6, 5).requires_grad_(), _f32(6, 5, seed=1),
                                    torch.rand(6).requires_grad_(), 0.5, -0.1, 3, 2**33, 1),
    "euler_maruyama_step_backward": lambda: (_f32(6, 5), torch.rand(6), 0.1, 3, 1, 0, [6, 5],
                                             True),
    "reverse_sde_step": lambda: (_f32(6, 5).requires_grad_(), _f32(6, 5, seed=1).requires_grad_(),
                                 torch.rand(6), 0.4, 0.01, 1, 0.1, 20.0, 1, False, 3, 2, 1),
    "reverse_sde_step_backward": lambda: (_f32(6, 5), torch.rand(6), 0.0, 0.01, 1, 0.1, 20.0, 1,
                                          False, [6, 5]),
    "langevin_corrector_step": lambda: (_f32(6, 5), _f32(6, 5, seed=1), torch.rand(6), 1.0, 0.16,
                                        3, 1, 0),
    "affine_noise_step": lambda: (_f32(6, 5).requires_grad_(), _f32(6, 5, seed=1), torch.rand(6),
                                  1.1, None, 0.2, None, 0.3, 3, 2**40, 1),
    "affine_noise_step_backward": lambda: (_f32(6, 5), _f32(6, 5, seed=1), _f32(6, 5, seed=2),
                                           torch.rand(6), 1.0, torch.rand(6), 0.5, 3, 1, 0, True,
                                           True, True),
    "planar_flow": lambda: (_f32(6, 4).requires_grad_(), 0.3 * _f32(3, 4, seed=1),
                            0.3 * _f32(3, 4, seed=2), _f32(3, seed=3)),
    "planar_flow_backward": lambda: (_f32(6, 4, seed=4), _f32(6, seed=5), _f32(6, 4),
                                     0.3 * _f32(3, 4, seed=1), 0.3 * _f32(3, 4, seed=2),
                                     _f32(3, seed=3)),
    "affine_coupling": lambda: (_f64(4, 6).requires_grad_(), _f64(4, 6, seed=1), _f64(4, 6, seed=2),
                                torch.arange(6) < 3, False, 0, 2.5),
    "affine_coupling_backward": lambda: (_f64(4, 6, seed=3), _f64(4, seed=4), _f64(4, 6),
                                         _f64(4, 6, seed=1), _f64(4, 6, seed=2),
                                         torch.arange(6) < 3, True, 1, None),
    "rbm_gibbs": lambda: (_bits(6, 7), _f64(7, 5), _f64(7, seed=1), _f64(5, seed=2), 2, None,
                          1.0, 3, 4, 0),
    "rbm_free_energy": lambda: (_bits(6, 7).requires_grad_(), _f64(7, 5).requires_grad_(),
                                _f64(7, seed=1), _f64(5, seed=2)),
    "rbm_free_energy_backward": lambda: (_f64(6, seed=3), _bits(6, 7), _f64(7, 5), _f64(7, seed=1),
                                         _f64(5, seed=2)),
    "rbm_log_z_exact": lambda: (_f64(7, 5), _f64(7, seed=1), _f64(5, seed=2)),
    "rbm_ais": lambda: (_f64(7, 5), _f64(7, seed=1), _f64(5, seed=2),
                        torch.linspace(0, 1, 5, dtype=torch.float64), 4, None, 1, 0),
    "bm_gibbs": lambda: (_spins(5, 7), _sym(7), _f32(7, seed=1), 3, None, 0.9, 0, 5, 1, 0),
    "rbm_fit_epoch_": lambda: (_f64(7, 5), _f64(7, seed=1), _f64(5, seed=2), _f64(7, 5, seed=3),
                               _f64(7, seed=4), _f64(5, seed=5), _bits(4, 7), _bits(9, 7, seed=2),
                               torch.randperm(9, generator=torch.Generator().manual_seed(0)),
                               4, 1, True, 0.1, 0.5, 0.01, 3, 8),
    "bm_fit_epoch_": lambda: (_sym(7), _f32(7, seed=1), _f32(7, 7, seed=2), _f32(7, seed=3),
                              _spins(4, 7), _spins(9, 7, seed=2),
                              torch.randperm(9, generator=torch.Generator().manual_seed(0)),
                              4, 1, 0, 0.1, 0.5, 0.01, True, 2.0, 0, 3, 8),
}


def test_every_registered_op_has_a_sample():
    """The opcheck table covers exactly the registered ops: a new op without a sample (or a
    sample for an op the build lacks) fails here."""
    names = registered_ops()
    assert names, "no gmkernels:: operators are registered"
    missing = sorted(names - set(OP_SAMPLES))
    stale = sorted(set(OP_SAMPLES) - names)
    assert not missing and not stale, (f"registered ops without an opcheck sample: {missing}; "
                                       f"samples for ops not registered: {stale}")


def test_every_op_has_a_cpu_kernel_and_a_fake():
    from torch._library.simple_registry import singleton as registry

    def has(q, key):  # a kernel registered for exactly this key (no fallbacks)
        return torch._C._dispatch_has_kernel_for_dispatch_key(q, key)

    no_cpu, no_fake = [], []
    for n in sorted(registered_ops()):
        q = f"gmkernels::{n}"
        # a CompositeExplicitAutograd kernel serves the CPU and Meta keys too
        cea = has(q, "CompositeExplicitAutograd")
        if not (has(q, "CPU") or cea):
            no_cpu.append(n)
        if registry.find(q).fake_impl.kernel is None and not (has(q, "Meta") or cea):
            no_fake.append(n)
    assert not no_cpu, f"ops without a CPU kernel: {no_cpu}"
    assert not no_fake, f"ops without a fake (torch.library.register_fake) or Meta kernel: {no_fake}"


@pytest.mark.parametrize("name", sorted(OP_SAMPLES))
def test_opcheck_every_op(name, device):
    """opcheck (schema, fake vs real, autograd registration, AOT dispatch) of one call per op."""
    if name not in registered_ops():  # test_every_registered_op_has_a_sample names it
        pytest.fail(f"gmkernels::{name} is not registered")
    torch.library.opcheck(getattr(torch.ops.gmkernels, name), OP_SAMPLES[name]())


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


def _import_a_copy(tmp_path, files=None):
    """Import a copy of the gmkernels package in a fresh process from ``tmp_path`` (outside the
    checkout), with no compiled extension but ``files`` (name -> bytes) beside its modules;
    returns the gmkernels warnings of the import and build_info's extension_error."""
    import shutil
    dst = tmp_path / "gmkernels"
    shutil.copytree(os.path.join(ROOT, "gmkernels"), dst,
                    ignore=shutil.ignore_patterns("_C*", "__pycache__", "bench"))
    for name, data in (files or {}).items():
        (dst / name).write_bytes(data)
    code = textwrap.dedent("""
        import json, sys, warnings
        # An editable install of the checkout maps gmkernels._C to the checkout's build
        # whatever package is imported: drop its finder, so the copy is all there is.
        sys.meta_path[:] = [f for f in sys.meta_path
                            if not getattr(f, "__module__", "").startswith("__editable__")]
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            import gmkernels
        print(json.dumps({"file": gmkernels.__file__,
                          "warnings": [str(x.message) for x in w if "gmkernels" in str(x.message)],
                          "error": gmkernels.build_info()["extension_error"]}))
    """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(tmp_path)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=str(tmp_path), timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    import json
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["file"].startswith(str(dst)), got["file"]  # the copy, not the checkout
    assert len(got["warnings"]) == 1, got["warnings"]
    return got["warnings"][0], got["error"], str(dst)


def test_import_without_a_build_names_the_cause_and_the_fix(tmp_path):
    """A source tree that was never built: the warning says so, where, and how to build, and
    does not pass on the import system's guess of a circular import."""
    msg, error, pkg = _import_a_copy(tmp_path)
    assert f"the compiled extension was not built in {pkg}" in msg, msg
    assert "bash tools/test.sh" in msg and "pip install --no-build-isolation -e ." in msg, msg
    assert "circular" not in msg, msg
    assert error is not None and "was not built" in error, error


def test_import_of_a_build_that_does_not_load_says_so(tmp_path):
    """A _C that exists but fails to load (here: not a shared library at all, carrying the
    torch version a build records): the warning names the file, the torch it was built
    against, the torch that runs, and the loader's own error."""
    import importlib.machinery
    name = "_C" + importlib.machinery.EXTENSION_SUFFIXES[0]
    msg, _, pkg = _import_a_copy(tmp_path, {name: b"not an ELF file\x002.0.1+cu118\x00"})
    assert f"{os.path.join(pkg, name)} exists but failed to load" in msg, msg
    assert "built against torch 2.0.1+cu118" in msg, msg
    assert f"runs torch {torch.__version__}" in msg, msg
    assert "the loader said: ImportError" in msg, msg
    assert "pip install --no-build-isolation -e ." in msg and "circular" not in msg, msg


def test_import_of_a_build_for_another_python_says_so(tmp_path):
    msg, _, _ = _import_a_copy(tmp_path, {"_C.cpython-30-x86_64-linux-gnu.so": b""})
    assert "was built for another Python" in msg, msg
    assert "_C.cpython-30-x86_64-linux-gnu.so" in msg, msg


def test_backend_override_and_errors(monkeypatch):
    assert _backend.choose_backend("langevin_step", torch.device("cpu")) == "native"
    with gmkernels.use_backend("reference"):
        assert _backend.choose_backend("langevin_step", torch.device("cpu")) == "reference"
        with gmkernels.use_backend("native"):
            assert _backend.choose_backend("langevin_step", torch.device("cpu")) == "native"
        assert _backend.choose_backend("langevin_step", torch.device("cpu")) == "reference"
    with pytest.raises(ValueError, match="expected one of"):
        with gmkernels.use_backend("cudnn"):
            pass
    monkeypatch.setenv("GMK_BACKEND", "reference")
    assert _backend.choose_backend("langevin_step", torch.device("cpu")) == "reference"
    monkeypatch.setenv("GMK_BACKEND", "bogus")
    with pytest.raises(ValueError, match="GMK_BACKEND"):
        _backend.choose_backend("langevin_step", torch.device("cpu"))
    monkeypatch.delenv("GMK_BACKEND")
    if not gmkernels.build_info()["cuda"]:
        with gmkernels.use_backend("native"), pytest.raises(RuntimeError, match="without CUDA kernels"):
            _backend.choose_backend("langevin_step", torch.device("cuda"))
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with gmkernels.use_backend("triton"), pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        _backend.choose_backend("langevin_step", torch.device("cpu"))


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
