"""The device axis itself (python_tests/_device.py, conftest.py): which (backend, device) pairs
the fixtures take on a machine with and without a GPU, that a fixture really puts its test on
its device, that seeded CPU generators give the same inputs on every device, that the build has
a kernel of every op for each device the suite runs on, and that GMK_DEVICE_AUDIT finds what
would fail on a GPU.

A non-CPU device is simulated with "meta" where a test needs one here: the CPU-only machines of
CI have no other."""

import pytest
import torch

import gmkernels
from gmkernels import _backend
import _device
from _device import DeviceAudit, TestDevice, device_backend_params, item_device, pair_id
from _helpers import assert_close

# ---------------------------------------------------------------------------------------------
# the parameters, for every kind of machine


def ids(pairs):
    return [pair_id(p) for p in pairs]


def test_params_without_a_gpu():
    p = device_backend_params(cuda_available=False, cuda_built=False, triton_available=True)
    assert p["devices"] == ["cpu"]
    assert ids(p["backend"]) == ["native-cpu", "triton-cpu"]
    assert ids(p["any_backend"]) == ["native-cpu", "triton-cpu", "reference-cpu"]
    assert ids(p["triton"]) == ["triton-cpu"]
    # a CUDA build on a machine without a GPU (tools/cuda_build_check.sh's venv) is the same
    assert device_backend_params(False, True, True) == p


def test_params_on_a_gpu_with_the_cuda_kernels():
    p = device_backend_params(cuda_available=True, cuda_built=True, triton_available=True)
    assert p["devices"] == ["cpu", "cuda"]
    # Triton compiles for the GPU there: no interpreter, so no triton on the CPU
    assert ids(p["backend"]) == ["native-cpu", "native-cuda", "triton-cuda"]
    assert ids(p["any_backend"]) == ["native-cpu", "native-cuda", "triton-cuda", "reference-cpu",
                                     "reference-cuda"]
    assert ids(p["triton"]) == ["triton-cuda"]


def test_params_on_a_gpu_without_the_cuda_kernels():
    # a CPU-only build on a GPU machine: no cuda device for native (conftest refuses this run
    # under GMK_NO_SKIPS=1), but the compiled Triton kernels still run on CUDA tensors
    p = device_backend_params(True, False, True)
    assert p["devices"] == ["cpu"]
    assert ids(p["backend"]) == ["native-cpu", "triton-cuda"]


def test_params_with_the_interpreter_forced_or_without_triton():
    p = device_backend_params(True, True, True, triton_interpret=True)
    assert ids(p["triton"]) == ["triton-cpu"]
    assert ids(p["backend"]) == ["native-cpu", "native-cuda", "triton-cpu"]
    assert device_backend_params(False, False, True, triton_interpret=False)["triton"] == []
    p = device_backend_params(True, True, False)
    assert p["triton"] == [] and ids(p["backend"]) == ["native-cpu", "native-cuda"]
    p = device_backend_params(False, False, True, extension=False)
    assert ids(p["backend"]) == ["triton-cpu"]
    assert ids(p["any_backend"]) == ["triton-cpu", "reference-cpu"]


def test_item_device_reads_the_parameters():
    assert item_device({"backend": ("native", "cuda"), "shape": (3,)}) == "cuda"
    assert item_device({"any_backend": ("reference", "cpu")}) == "cpu"
    assert item_device({"device": "cuda", "dtype": torch.float32}) == "cuda"
    assert item_device({"dtype": torch.float32}) is None


# ---------------------------------------------------------------------------------------------
# the fixtures on this machine

def test_backend_fixture_puts_the_test_on_its_device(backend, request):
    name, dev = request.node.callspec.params["backend"]
    assert backend == name
    assert request.node.callspec.id.startswith(f"{name}-{dev}")
    assert torch.get_default_device().type == dev
    x = torch.zeros(3)
    assert x.device.type == dev
    assert _backend.choose_backend("langevin_step", x.device) == name
    assert gmkernels.langevin_step(x, x, 0.1, 0.2, seed=0).device == x.device
    assert gmkernels.random.normal((2, 3), seed=1).device == x.device
    assert (request.node.get_closest_marker("cuda") is not None) == (dev == "cuda")


def test_device_fixture_sets_the_default_device(device, request):
    assert device in ("cpu", "cuda") and request.node.callspec.id == device
    assert torch.get_default_device().type == device
    # the default backend: the native kernels of the device
    assert _backend.choose_backend("langevin_step", torch.device(device)) == "native"


def test_device_and_backend_together_are_one_axis(any_backend, device, request):
    assert device == request.node.callspec.params["any_backend"][1]
    assert torch.get_default_device().type == device


def test_seeded_cpu_generators_give_the_same_inputs_on_every_device(device):
    g = torch.Generator().manual_seed(7)
    x = torch.randn(4, 5, generator=g, dtype=torch.float64)
    i = torch.randint(0, 9, (6,), generator=g)
    assert x.device.type == device and i.device.type == device
    g2 = torch.Generator().manual_seed(7)
    want_x = torch.randn(4, 5, generator=g2, dtype=torch.float64, device="cpu")
    want_i = torch.randint(0, 9, (6,), generator=g2, device="cpu")
    assert torch.equal(x.cpu(), want_x) and torch.equal(i.cpu(), want_i)


def test_every_registered_op_has_a_kernel_on_the_device(device):
    """On each device the suite runs on, the build has a kernel of every op (on a GPU: the
    CUDA build is complete, so no op of a cuda test silently runs on the reference)."""
    key = {"cpu": "CPU", "cuda": "CUDA"}[device]
    ops = sorted(n for n in torch._C._dispatch_get_all_op_names() if n.startswith("gmkernels::"))
    assert ops
    missing = [n for n in ops if not (torch._C._dispatch_has_kernel_for_dispatch_key(n, key)
                                      or torch._C._dispatch_has_kernel_for_dispatch_key(
                                          n, "CompositeExplicitAutograd"))]
    assert not missing, f"ops without a {key} kernel: {missing}"


# ---------------------------------------------------------------------------------------------
# TestDevice: seeded CPU generators on another device ("meta" stands in for "cuda")

@pytest.mark.parametrize("draw", [lambda g, **kw: torch.randn(3, 4, generator=g, **kw),
                                  lambda g, **kw: torch.rand((5,), generator=g, **kw),
                                  lambda g, **kw: torch.randint(0, 7, (2, 3), generator=g, **kw),
                                  lambda g, **kw: torch.randperm(6, generator=g, **kw)],
                         ids=["randn", "rand", "randint", "randperm"])
def test_cpu_generator_draws_on_the_host_and_moves(draw):
    g, ref = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    with torch.device("meta"), TestDevice("meta"):
        got = draw(g)
    want = draw(ref, device="cpu")
    assert got.device.type == "meta" and got.shape == want.shape and got.dtype == want.dtype
    # the draw came from g on the CPU: g advanced exactly as the CPU draw advanced ref (the
    # meta device itself ignores a generator: without the mode g would not move)
    assert torch.equal(g.get_state(), ref.get_state())
    with torch.device("meta"):
        draw(g)
    assert torch.equal(g.get_state(), ref.get_state()), "meta drew from g: the check above is void"


def test_cpu_generator_draw_keeps_requires_grad_and_explicit_devices():
    g = torch.Generator().manual_seed(0)
    with torch.device("meta"), TestDevice("meta"):
        x = torch.randn(3, generator=g, dtype=torch.float64, requires_grad=True)
        y = torch.randn(3, generator=g, device="cpu")  # an explicit device is left alone
    assert x.device.type == "meta" and x.requires_grad and x.is_leaf and x.dtype == torch.float64
    assert y.device.type == "cpu"


# ---------------------------------------------------------------------------------------------
# GMK_DEVICE_AUDIT: each rule finds its pattern, and code that is right on a GPU passes

MODULE_TENSOR = torch.ones(3)  # created at import: on a GPU run it stays on the CPU


def audited(fn):
    audit = DeviceAudit([MODULE_TENSOR])
    with _device.on_device("cpu", audit):
        fn()
    return audit.findings


def test_audit_finds_a_tensor_from_before_the_test():
    found = audited(lambda: torch.zeros(3) + MODULE_TENSOR)
    assert len(found) == 1 and "add" in found[0] and "test_device_axis.py" in found[0], found
    # ... and what is computed from it (still on the host in a GPU run)
    found = audited(lambda: torch.zeros(3) * (MODULE_TENSOR * 2))
    assert len(found) == 1 and "mul" in found[0], found


def test_audit_finds_explicit_cpu_tensors_and_cpu_moves():
    found = audited(lambda: torch.zeros(2, 3) @ torch.ones(3, 2, device="cpu"))
    assert len(found) == 1 and "matmul" in found[0], found
    found = audited(lambda: torch.equal(torch.zeros(3), torch.zeros(3).cpu()))
    assert len(found) == 1 and "equal" in found[0], found
    # x.device is where x is (the test's device), a literal "cpu" the host
    found = audited(lambda: torch.zeros(3) + torch.ones(3, device=torch.zeros(1).device))
    assert found == [], found
    found = audited(lambda: torch.zeros(3) + torch.ones(3).to("cpu"))
    assert len(found) == 1 and "add" in found[0], found


def test_audit_finds_numpy_of_a_device_tensor():
    found = audited(lambda: torch.zeros(3).numpy())
    assert len(found) == 1 and ".numpy()" in found[0], found


def test_audit_finds_a_host_tensor_passed_to_a_gmkernels_op():
    found = audited(lambda: gmkernels.langevin_step(torch.zeros(4, 3), torch.zeros(4, 3),
                                                    torch.full((4,), 0.1, device="cpu"), 0.2,
                                                    seed=0))
    assert found and "langevin_step" in found[-1], found


def test_audit_passes_code_that_is_right_on_a_gpu():
    def right():
        x = torch.zeros(3)
        y = x + MODULE_TENSOR.to(x.device)        # moved first
        z = x * torch.tensor(2.0, device="cpu")    # a 0-d host scalar in an element-wise op
        w = MODULE_TENSOR * 2                      # host with host
        y.cpu().numpy()                            # numpy of a host copy
        x[MODULE_TENSOR.long()[:1]] = 1.0          # indexing with a host index
        return y, z, w
    assert audited(right) == []


# ---------------------------------------------------------------------------------------------
# The default device is the tests' convenience, not something the ops may depend on

def _public_op_calls(dev):
    """One call of every public op on tensors made on `dev` explicitly (drawn on the CPU from
    one seeded generator, then moved), as a dict name -> zero-argument function."""
    g = torch.Generator().manual_seed(0)

    def r(*shape, dtype=torch.float32, scale=1.0):
        return (scale * torch.randn(*shape, generator=g, dtype=torch.float64, device="cpu")).to(
            device=dev, dtype=dtype)

    def u(*shape):
        return torch.rand(*shape, generator=g, dtype=torch.float64, device="cpu").to(dev)

    x, y, per = r(6, 5), r(6, 5), u(6).float()
    W, b, c = r(7, 4, dtype=torch.float64), r(7, dtype=torch.float64), r(4, dtype=torch.float64)
    v = (u(6, 7) < 0.5).double()
    A = r(5, 5, dtype=torch.float64, scale=0.5)
    Wbm = ((A + A.T) / 2).fill_diagonal_(0)
    spins = torch.where(u(4, 5) < 0.5, 1.0, -1.0).double()
    pw, pu, pb = r(3, 5, scale=0.3), r(3, 5, scale=0.3), r(3)
    vp = gmkernels.score.VPSDE()
    ts = torch.tensor([0, 9, 3, 0, 5, 1], device=dev)
    return {
        "random.uint32": lambda: gmkernels.random.uint32((4, 5), seed=1, device=dev),
        "random.uniform": lambda: gmkernels.random.uniform((4, 5), seed=1, device=dev),
        "random.normal": lambda: gmkernels.random.normal((4, 5), seed=1, device=dev),
        "random.rademacher": lambda: gmkernels.random.rademacher((4, 5), seed=1, device=dev),
        "random.bernoulli": lambda: gmkernels.random.bernoulli(per, seed=1),
        "langevin_step": lambda: gmkernels.langevin_step(x, y, per, 0.3, seed=2),
        "langevin_step_": lambda: gmkernels.langevin_step_(x.clone(), y, 0.1, per, seed=2),
        "euler_maruyama_step": lambda: gmkernels.euler_maruyama_step(x, y, per, 0.01, seed=3),
        "reverse_sde_step": lambda: gmkernels.reverse_sde_step(x, y, per, 0.01, vp, seed=3),
        "langevin_corrector_step": lambda: gmkernels.langevin_corrector_step(x, y, 0.16,
                                                                             alpha=per, seed=3),
        "affine_noise_step": lambda: gmkernels.affine_noise_step(x, y, per, 0.1, per, seed=3),
        # the schedule built inside the call: it must not depend on the default device either
        "ddpm_step": lambda: gmkernels.ddpm_step(
            x, y, ts, gmkernels.score.DDPMSchedule.cosine(10, sigma="posterior"), seed=4),
        "planar_u_hat": lambda: gmkernels.planar_u_hat(pu, pw),
        "planar_flow": lambda: gmkernels.planar_flow(x, gmkernels.planar_u_hat(pu, pw), pw, pb),
        "affine_coupling": lambda: gmkernels.affine_coupling(x, y, x * 0.5,
                                                             torch.arange(5, device=dev) < 2),
        "rbm_gibbs": lambda: gmkernels.rbm_gibbs(v, W, b, c, 3, seed=5),
        "rbm_free_energy": lambda: gmkernels.rbm_free_energy(v, W, b, c),
        "rbm_log_z_exact": lambda: gmkernels.rbm_log_z_exact(W, b, c),
        "rbm_ais": lambda: gmkernels.rbm_ais(W, b, c, n_chains=8, n_betas=20, seed=6),
        "bm_gibbs": lambda: gmkernels.bm_gibbs(spins, Wbm, b[:5], 2, seed=7),
        "bm_exact": lambda: (lambda e: (e.log_z, e.probs, e.mean))(gmkernels.bm_exact(Wbm, b[:5])),
    }


def _leaves(out):
    return [out] if isinstance(out, torch.Tensor) else [t for o in out for t in _leaves(o)]


def test_every_public_op_is_covered_by_the_default_device_check():
    public = {n for n in gmkernels.__all__ if callable(getattr(gmkernels, n))}
    public -= {"build_info", "extension_available", "use_backend"}
    public |= {f"random.{n}" for n in ("uint32", "uniform", "normal", "rademacher", "bernoulli")}
    assert public == set(_public_op_calls("cpu")), sorted(public ^ set(_public_op_calls("cpu")))


def test_results_do_not_depend_on_the_default_device(device):
    """Every public op on tensors of the test's device gives the same result whether that device
    is torch's default device (as in every device-axis test) or another one is (a user who
    passes CUDA tensors and leaves the default at the CPU; "meta" on any machine): no op makes a
    tensor on the default device and mixes it in. Same kernel, same inputs, so the same
    numbers: equal, up to the order in which a CUDA kernel's atomic additions land (tolerance
    kind "cross_backend" for float results)."""
    calls = _public_op_calls(device)
    # "meta" as the default stands in for "a device the tensors are not on" on any machine:
    # a tensor an op made on the default device would be a meta tensor, which no kernel takes
    others = ["meta"] + (["cpu"] if device != "cpu" else [])
    for name, call in calls.items():
        want = _leaves(call())  # the fixture made `device` the default
        for other in others:
            with torch.device(other):
                got = _leaves(call())
            assert len(got) == len(want), (name, other)
            for k, (a, e) in enumerate(zip(got, want)):
                what = f"{name} output {k}, default device {other}"
                assert a.device.type == e.device.type == device, (what, a.device, e.device)
                if a.dtype.is_floating_point:
                    assert_close(a, e, kind="cross_backend", what=what)
                else:
                    assert torch.equal(a, e), what
