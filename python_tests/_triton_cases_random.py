"""PTX compile cases of gmkernels/triton/random.py (read by test_triton_compile.py): the fill
kernel for every draw and storage dtype, short-row tiles, and int64 sizes (tensors past 2^31
elements)."""

FLOAT_TYPES = ("fp16", "bf16", "fp32", "fp64")
STREAM = {k: "u32" for k in ("seed_lo", "seed_hi", "off_lo", "off_hi", "row0")}
INTS32 = {"rows": "i32", "M": "i32", "n_gblocks": "i32"}
# The GPU tiles the launchers pick (gmkernels.triton._philox.tile_config) for long rows and for
# short rows; they differ in shape ((1, 256) vs (256, 1) counters).
LONG_ROWS = dict(BLOCK_R=1, BLOCK_G=256)
SHORT_ROWS = dict(BLOCK_R=256, BLOCK_G=1)
INTS64 = {"rows": "i64", "M": "i64", "n_gblocks": "i32"}


def cases() -> list[dict]:
    long_rows, short_rows = LONG_ROWS, SHORT_ROWS
    out = []

    def fill(draw, name, out_ty, p_ty, fp64, tile=long_rows, ints=INTS32, label=""):
        sig = {"out_ptr": "*" + out_ty, "p_ptr": "*" + p_ty, **ints, **STREAM,
               "DRAW": "constexpr", "FP64": "constexpr", "TOP": "constexpr",
               "BLOCK_R": "constexpr", "BLOCK_G": "constexpr"}
        # TOP: the largest uniform stored (gmkernels.reference.random.uniform_top of out)
        top = {"fp16": 1 - 2.0 ** -11, "bf16": 1 - 2.0 ** -8}.get(out_ty, 1 - 2.0 ** -24)
        out.append(dict(module="gmkernels.triton.random", kernel="_fill_kernel", signature=sig,
                        constexprs=dict(DRAW=draw, FP64=fp64, TOP=top, **tile),
                        label=f"_fill_kernel[{name},{out_ty}{label}]"))

    fill(0, "uint32", "i64", "i64", False)
    for draw, name in ((1, "uniform"), (2, "normal"), (3, "rademacher"), (4, "bernoulli")):
        for ty in FLOAT_TYPES:
            fill(draw, name, ty, ty, ty == "fp64")
    fill(2, "normal", "fp32", "fp32", False, tile=short_rows, label=",short rows")
    fill(2, "normal", "fp32", "fp32", False, ints=INTS64, label=",int64 sizes")

    return out
