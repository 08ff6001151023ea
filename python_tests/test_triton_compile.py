"""Every launched Triton kernel of gmkernels/triton/*.py compiles to PTX for sm_80 and sm_90,
for each dtype (and each variant of its constexpr switches) that the launchers instantiate.

No GPU is needed: ``triton.compile`` with a ``GPUTarget`` runs the whole pipeline down to PTX
and ptxas. This is what keeps the Triton kernels from rotting here, where the family tests
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


def cases() -> list[dict]:
    """(module, kernel, signature, constexprs, label) of every compiled variant, from the
    ``python_tests/_triton_cases_<family>.py`` data modules, each with a ``cases()`` that returns
    dicts of this form. Sorted by file name so that case indices are stable across processes.

    A signature names every argument of the kernel (the test checks this against the kernel),
    with the Triton type a launch gives it: pointers ``*fp32``, small ints ``i32``, the stream
    halves ``u32`` and the float scalars ``fp64`` (both declared by annotation in the kernels).

    They are data modules, not part of the family test files, because this file's subprocess
    imports them without pytest and without TRITON_INTERPRET: a family test file imports
    conftest, which sets TRITON_INTERPRET=1 and would turn the kernels into interpreter objects.
    """
    out = []
    for path in sorted(Path(__file__).resolve().parent.glob("_triton_cases_*.py")):
        spec = importlib.util.spec_from_file_location(path.stem, path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        out += mod.cases()
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
