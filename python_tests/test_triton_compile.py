"""Every launched Triton kernel of gmkernels/triton/*.py compiles to PTX for sm_80 and sm_90,
for each dtype (and each variant of its constexpr switches) that the launchers instantiate.

No GPU is needed: ``triton.compile`` with a ``GPUTarget`` runs the whole pipeline down to PTX
and ptxas. This is what keeps the Triton kernels from rotting here, where test_triton_backend.py
can only run them in the interpreter, which accepts code the compiler rejects (and vice versa).

The compiles run in a subprocess with TRITON_INTERPRET removed from its environment: conftest.py
sets TRITON_INTERPRET=1 for the whole session and ``@triton.jit`` reads it when a kernel module
is imported, so the kernels of this process are interpreter objects. The same file is the
subprocess' script (``python test_triton_compile.py`` prints the results as JSON).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CCS = (80, 90)
TIMEOUT_S = 600

FLOAT_TYPES = {"fp16": "float16", "bf16": "bfloat16", "fp32": "float32", "fp64": "float64"}
STREAM = {k: "u32" for k in ("seed_lo", "seed_hi", "off_lo", "off_hi", "row0")}
INTS32 = {"rows": "i32", "M": "i32", "n_gblocks": "i32"}
INTS64 = {"rows": "i64", "M": "i64", "n_gblocks": "i32"}  # tensors past 2^31 elements


def _tiles():
    """The GPU tiles the launchers pick (gmkernels.triton._philox.tile_config) for long rows
    and for short rows; they differ in shape ((1, 256) vs (256, 1) counters)."""
    long_rows = dict(BLOCK_R=1, BLOCK_G=256)
    short_rows = dict(BLOCK_R=256, BLOCK_G=1)
    return long_rows, short_rows


def cases() -> list[dict]:
    """(module, kernel, signature, constexprs, label) of every compiled variant.

    A signature names every argument of the kernel (the test checks this against the kernel),
    with the Triton type a launch gives it: pointers ``*fp32``, small ints ``i32``, the stream
    halves ``u32`` and the float scalars ``fp64`` (both declared by annotation in the kernels).
    """
    long_rows, short_rows = _tiles()
    out = []

    def fill(draw, name, out_ty, p_ty, fp64, tile=long_rows, ints=INTS32, label=""):
        sig = {"out_ptr": "*" + out_ty, "p_ptr": "*" + p_ty, **ints, **STREAM,
               "DRAW": "constexpr", "FP64": "constexpr", "BLOCK_R": "constexpr",
               "BLOCK_G": "constexpr"}
        out.append(dict(module="gmkernels.triton.random", kernel="_fill_kernel", signature=sig,
                        constexprs=dict(DRAW=draw, FP64=fp64, **tile),
                        label=f"_fill_kernel[{name},{out_ty}{label}]"))

    fill(0, "uint32", "i64", "i64", False)
    for draw, name in ((1, "uniform"), (2, "normal"), (3, "rademacher"), (4, "bernoulli")):
        for ty in FLOAT_TYPES:
            fill(draw, name, ty, ty, ty == "fp64")
    fill(2, "normal", "fp32", "fp32", False, tile=short_rows, label=",short rows")
    fill(2, "normal", "fp32", "fp32", False, ints=INTS64, label=",int64 sizes")

    for ty in FLOAT_TYPES:
        acc = "fp64" if ty == "fp64" else "fp32"
        for on in ([True, False] if ty == "fp32" else [True]):
            sig = {"x_ptr": "*" + ty, "g_ptr": "*" + ty, "y_ptr": "*" + ty, "a_ptr": "*" + acc,
                   "c_ptr": "*" + acc, "a": "fp64", "c": "fp64", "lo": "fp64", "hi": "fp64",
                   **INTS32, **STREAM, "HAS_A": "constexpr", "HAS_C": "constexpr",
                   "CLAMP": "constexpr", "FP64": "constexpr", "BLOCK_R": "constexpr",
                   "BLOCK_G": "constexpr"}
            out.append(dict(module="gmkernels.triton.sde", kernel="_langevin_fwd_kernel",
                            signature=sig,
                            constexprs=dict(HAS_A=on, HAS_C=on, CLAMP=on, FP64=ty == "fp64",
                                            **long_rows),
                            label=f"_langevin_fwd_kernel[{ty},flags={on}]"))
            sig = {"gy_ptr": "*" + ty, "y_ptr": "*" + ty, "g_ptr": "*" + ty, "a_ptr": "*" + acc,
                   "gx_ptr": "*" + ty, "gg_ptr": "*" + ty, "pa_ptr": "*" + acc,
                   "pc_ptr": "*" + acc, "a": "fp64", "lo": "fp64", "hi": "fp64", **INTS32,
                   **STREAM, "HAS_A": "constexpr", "CLAMP": "constexpr", "NEED_A": "constexpr",
                   "NEED_C": "constexpr", "FP64": "constexpr", "BLOCK_R": "constexpr",
                   "BLOCK_G": "constexpr"}
            out.append(dict(module="gmkernels.triton.sde", kernel="_langevin_bwd_kernel",
                            signature=sig,
                            constexprs=dict(HAS_A=on, CLAMP=on, NEED_A=on, NEED_C=on,
                                            FP64=ty == "fp64", **long_rows),
                            label=f"_langevin_bwd_kernel[{ty},flags={on}]"))
    out += _sde_step_cases(long_rows, short_rows)
    out += _family_cases()
    return out


def _family_cases() -> list[dict]:
    """Cases of the later families, each in ``python_tests/_triton_cases_<family>.py`` with a
    ``cases()`` that returns dicts of the same form (module, kernel, signature, constexprs,
    label). Sorted by file name so that case indices are stable across processes."""
    out = []
    for path in sorted(Path(__file__).resolve().parent.glob("_triton_cases_*.py")):
        spec = importlib.util.spec_from_file_location(path.stem, path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        out += mod.cases()
    return out


def _sde_step_cases(long_rows, short_rows) -> list[dict]:
    """The issue-3 SDE step kernels (gmkernels/triton/sde.py): every dtype once, and in float32
    each constexpr branch (the reverse step's 3 kinds x 2 predictors x probability flow)."""
    out = []
    mod = "gmkernels.triton.sde"
    tail = {**INTS32, **STREAM}
    tiles = {"BLOCK_R": "constexpr", "BLOCK_G": "constexpr"}

    def add(kernel, sig, constexprs, label, tile=long_rows):
        out.append(dict(module=mod, kernel=kernel, signature=sig,
                        constexprs=dict(constexprs, **tile), label=f"{kernel}[{label}]"))

    for ty in FLOAT_TYPES:
        acc = "fp64" if ty == "fp64" else "fp32"
        fp64 = ty == "fp64"
        for diff in ([0, 1, 2] if ty == "fp32" else [2]):
            sig = {"x_ptr": "*" + ty, "f_ptr": "*" + ty, "y_ptr": "*" + ty,
                   "d_ptr": "*" + (ty if diff == 2 else acc), "diffusion": "fp64", "dt": "fp64",
                   "sqrt_dt": "fp64", **tail, "DIFF": "constexpr", "FP64": "constexpr", **tiles}
            add("_euler_maruyama_fwd_kernel", sig, dict(DIFF=diff, FP64=fp64),
                f"{ty},diffusion={diff}")
        sig = {"x_ptr": "*" + ty, "s_ptr": "*" + ty, "y_ptr": "*" + ty, "t_ptr": "*" + acc,
               "t": "fp64", "dt": "fp64", "p0": "fp64", "p1": "fp64", **tail,
               "HAS_T": "constexpr", "KIND": "constexpr", "PREDICTOR": "constexpr",
               "PF": "constexpr", "FP64": "constexpr", **tiles}
        # fp32: every kind x predictor, and the probability flow (no draws) once;
        # fp64: the paths of libdevice's float64 pow and exp; the half types as fp32's math
        variants = {"fp32": [(k, p, False) for k in range(3) for p in range(2)] + [(1, 0, True)],
                    "fp64": [(0, 1, False), (2, 0, False)]}.get(ty, [(2, 1, False)])
        for kind, pred, pf in variants:
            add("_reverse_sde_fwd_kernel", sig,
                dict(HAS_T=kind != 1, KIND=kind, PREDICTOR=pred, PF=pf, FP64=fp64),
                f"{ty},kind={kind},predictor={pred},pf={pf}")
        sig = {"s_ptr": "*" + ty, "pn_ptr": "*" + acc, "ps_ptr": "*" + acc, **tail,
               "FP64": "constexpr", **tiles}
        add("_corrector_norms_kernel", sig, dict(FP64=fp64), ty)
        sig = {"x_ptr": "*" + ty, "s_ptr": "*" + ty, "y_ptr": "*" + ty, "a_ptr": "*" + acc,
               "nn_ptr": "*" + acc, "sn_ptr": "*" + acc, "alpha": "fp64", "snr": "fp64", **tail,
               "HAS_A": "constexpr", "FP64": "constexpr", **tiles}
        for has_a in ([True, False] if ty == "fp32" else [True]):
            add("_corrector_fwd_kernel", sig, dict(HAS_A=has_a, FP64=fp64),
                f"{ty},per_sample_alpha={has_a}")
        sig = {"x_ptr": "*" + ty, "e_ptr": "*" + ty, "y_ptr": "*" + ty, "cx_ptr": "*" + acc,
               "ce_ptr": "*" + acc, "cn_ptr": "*" + acc, "cx": "fp64", "ce": "fp64",
               "cn": "fp64", **tail, "HAS_CX": "constexpr", "HAS_CE": "constexpr",
               "HAS_CN": "constexpr", "NOISE": "constexpr", "FP64": "constexpr", **tiles}
        for flags in ([True, False] if ty == "fp32" else [True]):
            add("_affine_noise_fwd_kernel", sig,
                dict(HAS_CX=flags, HAS_CE=not flags, HAS_CN=flags, NOISE=flags, FP64=fp64),
                f"{ty},flags={flags}")
    # short rows: (256, 1) tiles, the per-row coefficients computed for 256 rows at once, and
    # the norms' per-row sums over a single counter
    sig = {"x_ptr": "*fp32", "s_ptr": "*fp32", "y_ptr": "*fp32", "t_ptr": "*fp32", "t": "fp64",
           "dt": "fp64", "p0": "fp64", "p1": "fp64", **tail, "HAS_T": "constexpr",
           "KIND": "constexpr", "PREDICTOR": "constexpr", "PF": "constexpr", "FP64": "constexpr",
           **tiles}
    add("_reverse_sde_fwd_kernel", sig, dict(HAS_T=True, KIND=0, PREDICTOR=1, PF=False,
                                             FP64=False), "fp32,short rows", tile=short_rows)
    sig = {"s_ptr": "*fp32", "pn_ptr": "*fp32", "ps_ptr": "*fp32", **tail, "FP64": "constexpr",
           **tiles}
    add("_corrector_norms_kernel", sig, dict(FP64=False), "fp32,short rows", tile=short_rows)
    return out


# --------------------------------------------------------------------------------------------
# the subprocess (no TRITON_INTERPRET)

def launched_kernels() -> list[str]:
    """``module:name`` of every @triton.jit kernel defined in gmkernels/triton/*.py whose name
    ends in ``_kernel`` (the launched ones; helpers such as philox4x32_10 are compiled as part
    of them)."""
    import triton
    import gmkernels.triton as pkg

    found = []
    for info in pkgutil.iter_modules(pkg.__path__):
        mod = importlib.import_module(f"{pkg.__name__}.{info.name}")
        for name, obj in vars(mod).items():
            if (isinstance(obj, triton.runtime.JITFunction) and name.endswith("_kernel")
                    and obj.fn.__module__ == mod.__name__):
                found.append(f"{mod.__name__}:{name}")
    return sorted(found)


def _compile_one(job):
    index, cc = job
    case = cases()[index]
    result = dict(label=case["label"], cc=cc, ok=False, error="")
    try:
        import triton
        from triton.backends.compiler import GPUTarget

        fn = getattr(importlib.import_module(case["module"]), case["kernel"])
        if list(case["signature"]) != list(fn.arg_names):
            raise ValueError(f"signature names {list(case['signature'])} do not match the "
                             f"kernel's arguments {list(fn.arg_names)}")
        src = triton.compiler.ASTSource(fn=fn, signature=case["signature"],
                                        constexprs=case["constexprs"])
        ptx = triton.compile(src, target=GPUTarget("cuda", cc, 32)).asm["ptx"]
        if ".entry" not in ptx or f".target sm_{cc}" not in ptx:
            raise ValueError(f"PTX without an .entry for sm_{cc}: {ptx[:300]!r}")
        result["ok"] = True
    except Exception as e:  # reported by the parent, with the case
        result["error"] = f"{type(e).__name__}: {e}"[-3000:]
    return result


def main() -> None:
    from concurrent.futures import ProcessPoolExecutor

    assert os.environ.get("TRITON_INTERPRET", "0") != "1", "run without TRITON_INTERPRET"
    jobs = [(i, cc) for i in range(len(cases())) for cc in CCS]
    # The first compile sets up the NVIDIA backend (ptxas and libdevice look-ups, a few
    # seconds): do it here, before forking, so that the workers inherit it.
    results = [_compile_one(jobs[0])]
    # ~1 s per compile, independent: spread them over the cores (fork: no re-import cost).
    workers = max(1, min(8, os.cpu_count() or 1))
    with ProcessPoolExecutor(workers) as ex:
        results += list(ex.map(_compile_one, jobs[1:]))
    print(json.dumps(dict(kernels=launched_kernels(), results=results)))


# --------------------------------------------------------------------------------------------
# the test

@pytest.fixture(scope="module")
def compiled():
    pytest.importorskip("triton")
    from triton.backends import backends

    if "nvidia" not in backends:
        pytest.skip(f"this triton has no NVIDIA backend (has {sorted(backends)})")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in [env.get("PYTHONPATH")] if p])
    proc = subprocess.run([sys.executable, __file__], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=TIMEOUT_S)
    assert proc.returncode == 0, (f"compile subprocess failed (rc {proc.returncode}):\n"
                                  f"{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_every_launched_kernel_has_a_compile_case(compiled):
    covered = sorted({f"{c['module']}:{c['kernel']}" for c in cases()})
    missing = sorted(set(compiled["kernels"]) - set(covered))
    assert not missing, f"kernels without a PTX compile case in {Path(__file__).name}: {missing}"


@pytest.mark.parametrize("cc", CCS)
def test_kernels_compile_to_ptx(compiled, cc):
    results = [r for r in compiled["results"] if r["cc"] == cc]
    assert len(results) == len(cases()), (len(results), len(cases()))
    failed = [f"{r['label']}: {r['error']}" for r in results if not r["ok"]]
    assert not failed, f"{len(failed)} of {len(results)} failed for sm_{cc}:\n" + "\n".join(failed)


if __name__ == "__main__":
    main()
