"""PTX compile cases of the RBM Triton kernel (gmkernels/triton/rbm.py), collected by
test_triton_compile.py: both dtypes, each constexpr switch, long-row and short-row tiles."""

STREAM = {k: "u32" for k in ("seed_lo", "seed_hi", "off_lo", "off_hi", "row0")}
INTS32 = {"rows": "i32", "M": "i32", "n_gblocks": "i32"}
LONG_ROWS = dict(BLOCK_R=1, BLOCK_G=256)
SHORT_ROWS = dict(BLOCK_R=256, BLOCK_G=1)


def cases() -> list[dict]:
    out = []
    for ty in ("fp32", "fp64"):
        for beta_t, base, prob in ((False, False, False), (True, True, True), (False, False, True),
                                   (False, True, False)):
            if ty == "fp64" and (beta_t, base, prob) != (True, True, True):
                continue
            for tile in ((LONG_ROWS, SHORT_ROWS) if (beta_t, base, prob) == (False, False, False)
                         else (LONG_ROWS,)):
                sig = {"pre_ptr": "*" + ty, "bias_ptr": "*" + ty, "base_ptr": "*" + ty,
                       "beta_ptr": "*" + ty, "beta": "fp64", "sample_ptr": "*" + ty,
                       "prob_ptr": "*" + ty, **INTS32, **STREAM,
                       "HAS_BETA_T": "constexpr", "HAS_BASE": "constexpr",
                       "WRITE_PROB": "constexpr", "FP64": "constexpr", "BLOCK_R": "constexpr",
                       "BLOCK_G": "constexpr"}
                out.append(dict(module="gmkernels.triton.rbm", kernel="_rbm_pass_kernel",
                                signature=sig,
                                constexprs=dict(HAS_BETA_T=beta_t, HAS_BASE=base, WRITE_PROB=prob,
                                                FP64=ty == "fp64", **tile),
                                label=f"_rbm_pass_kernel[{ty},beta_t={beta_t},base={base},"
                                      f"prob={prob},BLOCK_R={tile['BLOCK_R']}]"))
    return out
