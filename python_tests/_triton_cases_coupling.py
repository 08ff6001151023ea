"""PTX compile cases of gmkernels/triton/coupling.py for test_triton_compile.py: every kernel,
each storage dtype, and the constexpr variants (scale, clamp, direction) in float32."""

FLOAT_TYPES = ("fp32", "fp64", "fp16", "bf16")
TILE = dict(BLOCK_R=4, BLOCK_M=1024)  # what _tiles picks for M >= 1024 on a GPU
INTS = {"rows": "i32", "M": "i32", "mrs": "i32"}
FLAGS = {"SCALE": "constexpr", "CLAMP": "constexpr", "INVERSE": "constexpr", "FP64": "constexpr",
         "BLOCK_R": "constexpr", "BLOCK_M": "constexpr"}
# (SCALE, CLAMP, INVERSE): each flag on and off at least once
VARIANTS = [(0, False, False), (0, True, True), (1, False, True), (1, True, False)]


def cases() -> list[dict]:
    out = []
    mod = "gmkernels.triton.coupling"
    for ty in FLOAT_TYPES:
        for scale, clamp, inverse in (VARIANTS if ty == "fp32" else VARIANTS[1:2]):
            cx = dict(SCALE=scale, CLAMP=clamp, INVERSE=inverse, FP64=ty == "fp64", **TILE)
            label = f"{ty},scale={scale},clamp={clamp},inverse={inverse}"
            sig = {"x_ptr": "*" + ty, "s_ptr": "*" + ty, "t_ptr": "*" + ty, "m_ptr": "*i1",
                   "y_ptr": "*" + ty, "ld_ptr": "*" + ty, "c": "fp64", "ic": "fp64", **INTS,
                   **FLAGS}
            out.append(dict(module=mod, kernel="_coupling_fwd_kernel", signature=sig,
                            constexprs=cx, label=f"_coupling_fwd_kernel[{label}]"))
            sig = {"gy_ptr": "*" + ty, "gld_ptr": "*" + ty, "x_ptr": "*" + ty, "s_ptr": "*" + ty,
                   "t_ptr": "*" + ty, "m_ptr": "*i1", "gx_ptr": "*" + ty, "gs_ptr": "*" + ty,
                   "gt_ptr": "*" + ty, "c": "fp64", "ic": "fp64", **INTS, **FLAGS}
            out.append(dict(module=mod, kernel="_coupling_bwd_kernel", signature=sig,
                            constexprs=cx, label=f"_coupling_bwd_kernel[{label}]"))
    return out
