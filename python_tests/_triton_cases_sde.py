"""PTX compile cases of gmkernels/triton/sde.py (read by test_triton_compile.py): the Langevin
step forward and backward for every dtype (and each constexpr switch in float32), and the SDE
step kernels: every dtype once, and in float32 each constexpr branch (the reverse step's
3 kinds x 2 predictors x probability flow)."""

FLOAT_TYPES = ("fp16", "bf16", "fp32", "fp64")
STREAM = {k: "u32" for k in ("seed_lo", "seed_hi", "off_lo", "off_hi", "row0")}
INTS32 = {"rows": "i32", "M": "i32", "n_gblocks": "i32"}
# The GPU tiles the launchers pick (gmkernels.triton._philox.tile_config) for long rows and for
# short rows; they differ in shape ((1, 256) vs (256, 1) counters).
LONG_ROWS = dict(BLOCK_R=1, BLOCK_G=256)
SHORT_ROWS = dict(BLOCK_R=256, BLOCK_G=1)


def cases() -> list[dict]:
    long_rows, short_rows = LONG_ROWS, SHORT_ROWS
    out = []
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
    return out


def _sde_step_cases(long_rows, short_rows) -> list[dict]:
    """The SDE step kernels: every dtype once, and in float32 each constexpr branch."""
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
               "means_ptr": "*" + acc, "alpha": "fp64", "snr": "fp64", **tail,
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
