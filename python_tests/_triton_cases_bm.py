"""PTX compile cases of gmkernels/triton/bm.py (read by test_triton_compile.py): the Gibbs sweep
kernel in float32 and float64, sequential and random scan, at the GPU tiles the launcher picks
for D = 256 (8 chains of 256) and D = 1024 (2 chains of 1024)."""

STREAM = {k: "u32" for k in ("seed_lo", "seed_hi", "off_lo", "off_hi", "row0")}


def cases() -> list[dict]:
    out = []
    for ty in ("fp32", "fp64"):
        for random in (False, True):
            for block_b, block_d in ((8, 256), (2, 1024)):
                if ty == "fp64" and block_d == 1024 and random:
                    continue  # one large-D case per dtype is enough
                sig = {"y_ptr": "*" + ty, "h_ptr": "*" + ty, "w_ptr": "*" + ty,
                       "beta_ptr": "*" + ty, "B": "i32", "D": "i32", "n_sweeps": "i32",
                       **STREAM, "RANDOM": "constexpr", "BLOCK_B": "constexpr",
                       "BLOCK_D": "constexpr"}
                out.append(dict(module="gmkernels.triton.bm", kernel="_bm_gibbs_kernel",
                                signature=sig,
                                constexprs=dict(RANDOM=random, BLOCK_B=block_b, BLOCK_D=block_d),
                                label=f"_bm_gibbs_kernel[{ty},{'random' if random else 'seq'},"
                                      f"{block_b}x{block_d}]"))
    return out
