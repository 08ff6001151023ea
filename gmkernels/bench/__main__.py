"""``python -m gmkernels.bench``: time every registered case against its baselines.

See ``python -m gmkernels.bench --help`` and :mod:`gmkernels.bench`.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time

EPILOG = """\
providers:
  eager              what a user writes in plain PyTorch, e.g. x + a*g + c*torch.randn_like(x)
  compile            the same function under torch.compile (compiled before timing; the
                     Inductor cache lives in OUT/inductor_cache unless TORCHINDUCTOR_CACHE_DIR
                     is set, so a second run skips most of the ~12-30 s first compile)
  gmkernels          the fused gmkernels op, out of place
  gmkernels_inplace  the in-place gmkernels op (langevin_step_)
  floor              the memory floor: torch.add(a, b, out=c) for a step, out.fill_() for a fill

eager/compile draw noise from torch's RNG, gmkernels from Philox: different streams of the same
distribution. A provider that fails is reported as error[n] in its table; the run goes on.

examples:
  python -m gmkernels.bench                          # quick suite (about 4 min on 2 cores)
  python -m gmkernels.bench --filter langevin --no-compile
  python -m gmkernels.bench --family bm              # one family (--filter bm matches rbm too)
  python -m gmkernels.bench --full --threads 1 --out bench_out/full_t1
  python -m gmkernels.bench --list --full            # the case ids --filter matches
"""


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m gmkernels.bench",
        description="Benchmark gmkernels ops against eager PyTorch, torch.compile and the "
                    "memory floor; print a table per op and write results.json, results.md "
                    "and results.png.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    suite = p.add_mutually_exclusive_group()
    suite.add_argument("--quick", dest="suite", action="store_const", const="quick",
                       help="the default: each op at its target size, float32 (Langevin and "
                            "SDE steps and normal fills of 2^22, planar K=32 D=16 B=65536, "
                            "coupling (65536, 64) and images, RBM 784x500 k=10, BM D=256); "
                            "about 4 min on 2 cores")
    suite.add_argument("--full", dest="suite", action="store_const", const="full",
                       help="sizes 2^16 .. 2^24, float32 and float64, both row layouts "
                            "(several minutes)")
    p.set_defaults(suite="quick")
    p.add_argument("--filter", action="append", default=[], metavar="SUBSTR",
                   help="run only cases whose id (family/op/shape/dtype, e.g. "
                        "sde/langevin_step/1024x4096/float32) contains SUBSTR; repeatable "
                        "(any match)")
    p.add_argument("--family", action="append", default=[], metavar="NAME",
                   help="run only the cases of this op family: one of "
                        "random, sde, planar, coupling, rbm, bm, trace; repeatable (any match)")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="torch.set_num_threads(N) first (default: torch.get_num_threads(), "
                        "recorded per row)")
    p.add_argument("--repeat", type=int, default=None, metavar="N",
                   help="timed samples per provider (default: adaptive, about 1 s per "
                        "provider, at least 7, at most 50)")
    p.add_argument("--out", default="bench_out", metavar="DIR",
                   help="output directory for results.{json,md,png} (default: bench_out)")
    p.add_argument("--no-compile", action="store_true",
                   help="skip the torch.compile provider (saves the compile warm-up)")
    p.add_argument("--providers", default=None, metavar="LIST",
                   help="comma-separated providers to run (default: all)")
    p.add_argument("--device", default="cpu",
                   help="device of the inputs (default: cpu); CUDA runs are synchronized "
                        "around each sample")
    p.add_argument("--list", action="store_true", help="list the selected case ids and exit")
    p.add_argument("--no-plot", action="store_true", help="do not write results.png")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    args = p.parse_args(argv)
    from .registry import FAMILIES

    unknown = [f for f in args.family if f not in FAMILIES]
    if unknown:
        p.error(f"--family must be one of {', '.join(FAMILIES)}, got {', '.join(unknown)}")
    if args.threads is not None and args.threads < 1:
        p.error("--threads must be >= 1")
    if args.repeat is not None and args.repeat < 1:
        p.error("--repeat must be >= 1")
    return args


def main(argv=None) -> int:
    t_start = time.perf_counter()
    args = parse_args(argv)
    argv = sys.argv[1:] if argv is None else list(argv)

    os.makedirs(args.out, exist_ok=True)

    import torch

    from . import registry, report, runner

    # Before anything compiles: a cache under the output folder makes a second run's
    # compiles cheap without touching the user's global cache.
    registry.use_inductor_cache(os.path.join(args.out, "inductor_cache"))

    if args.threads is not None:
        torch.set_num_threads(args.threads)

    cases = registry.select(args.suite, args.filter, args.family)
    if args.list:
        for c in cases:
            print(f"{c.id}  providers: {', '.join(p for p in registry.PROVIDERS if p in c.providers)}")
        return 0
    if not cases:
        print(f"gmkernels.bench: no {args.suite} case matches --filter {args.filter} "
              f"--family {args.family}; see --list", file=sys.stderr)
        return 2

    providers = list(registry.PROVIDERS)
    if args.providers:
        providers = [s.strip() for s in args.providers.split(",") if s.strip()]
        unknown = [s for s in providers if s not in registry.PROVIDERS]
        if unknown:
            print(f"gmkernels.bench: unknown providers {unknown}; known: {registry.PROVIDERS}",
                  file=sys.stderr)
            return 2
    if args.no_compile:
        providers = [s for s in providers if s != "compile"]

    machine = runner.machine_info(args.device)
    threads = torch.get_num_threads()
    print(f"gmkernels.bench: {len(cases)} {args.suite} cases, providers {', '.join(providers)}, "
          f"{runner.hardware_label(machine, threads)}", file=sys.stderr)

    records = runner.run(cases, providers=providers, device=args.device, repeat=args.repeat,
                         progress=not args.no_progress)

    # Wall time of the whole command, imports and compiles included (what the quick suite's
    # "about 4 min" is about); the in-process timer misses the torch import, so prefer /proc
    # when present.
    wall = runner.process_wall_s() or (time.perf_counter() - t_start)
    machine["load_average_end"] = runner.load_average()
    meta = {
        "machine": machine,
        "run": {
            "command": "python -m gmkernels.bench" + "".join(" " + shlex.quote(a) for a in argv),
            "suite": args.suite, "threads": threads, "repeat": args.repeat,
            "filters": args.filter, "providers": providers, "wall_s": round(wall, 1),
            "inductor_cache_dir": os.environ.get("TORCHINDUCTOR_CACHE_DIR"),
        },
    }
    notes = report.case_notes(cases)
    json_path = os.path.join(args.out, "results.json")
    md_path = os.path.join(args.out, "results.md")
    png_path = os.path.join(args.out, "results.png")
    report.write_json(json_path, records, meta)
    with open(md_path, "w") as f:
        f.write(report.markdown(records, meta, notes))
    written = [json_path, md_path]
    if not args.no_plot:
        try:
            report.write_png(png_path, records, meta)
            written.append(png_path)
        except Exception as e:  # a plotting problem must not lose the numbers
            print(f"gmkernels.bench: results.png not written: {type(e).__name__}: {e}",
                  file=sys.stderr)

    print(f"# {runner.hardware_label(machine, threads)}; {machine['date']}")
    print(f"# {meta['run']['command']}")
    print(f"# load average (1/5/15 min): {report.load_line(machine)}")
    print(f"# {report.RNG_NOTE}")
    print()
    print(report.text_tables(records, notes))
    n_err = sum(r["status"] != "ok" for r in records)
    print(f"{len(records)} timings ({n_err} errors) in {wall:.0f} s; wrote {', '.join(written)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
