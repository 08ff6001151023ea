"""PTX compile cases of the planar-flow Triton kernels (gmkernels/triton/planar.py), read by
python_tests/test_triton_compile.py: both kernels in float32 and float64, shared and per-sample
parameters, and the backward's optional-gradient switches, at the GPU block sizes of
gmkernels.triton.planar._config for D = 16 (BLOCK_B = 256, BLOCK_D = 16)."""


def cases() -> list[dict]:
    mod = "gmkernels.triton.planar"
    ints = {"B": "i32", "K": "i32", "D": "i32"}
    blocks = dict(BLOCK_B=256, BLOCK_D=16)
    out = []
    for ty in ("fp32", "fp64"):
        p = "*" + ty
        fp64 = ty == "fp64"
        for ps in (False, True):
            sig = {"z_ptr": p, "u_ptr": p, "w_ptr": p, "b_ptr": p, "out_ptr": p, "ld_ptr": p,
                   **ints, "PS": "constexpr", "FP64": "constexpr", "BLOCK_B": "constexpr",
                   "BLOCK_D": "constexpr"}
            out.append(dict(module=mod, kernel="_planar_fwd_kernel", signature=sig,
                            constexprs=dict(PS=ps, FP64=fp64, **blocks),
                            label=f"_planar_fwd_kernel[{ty},per_sample={ps}]"))
            for has_gy, has_gl in ((True, True),) + (((False, True), (True, False)) if ty == "fp32" and not ps else ()):
                sig = {"gy_ptr": p, "gl_ptr": p, "z_ptr": p, "u_ptr": p, "w_ptr": p, "b_ptr": p,
                       "gz_ptr": p, "gu_ptr": p, "gw_ptr": p, "gb_ptr": p, "ws_ptr": p, **ints,
                       "HAS_GY": "constexpr", "HAS_GL": "constexpr", "PS": "constexpr",
                       "FP64": "constexpr", "BLOCK_B": "constexpr", "BLOCK_D": "constexpr"}
                out.append(dict(module=mod, kernel="_planar_bwd_kernel", signature=sig,
                                constexprs=dict(HAS_GY=has_gy, HAS_GL=has_gl, PS=ps, FP64=fp64,
                                                **blocks),
                                label=f"_planar_bwd_kernel[{ty},per_sample={ps},gy={has_gy},gl={has_gl}]"))
    return out
