"""Probe every public op and model with the bad-input table and count what happens.

    python tools/probe_bad_input.py [--filter SUBSTR] [--timeout S] [--json PATH] [--all]

The table is python_tests/_bad_input_cases.py (the one python_tests/test_bad_input.py runs):
wrong types, integer and bool dtypes, meta tensors, wrong shapes, empty and 0-d tensors, NaN
and inf in every tensor and float argument, negative and huge counts, seeds and offsets at and
past their limits, non-contiguous and expanded inputs, torch.inference_mode().

Each case is classified:

* good: a clear error (ValueError / TypeError / RuntimeError whose message starts with the
  entry point's name, ``gmkernels.<op>:`` or ``Model.method:``, and names the argument), or a
  correct result;
* unclear: an error, but an internal or misleading one (or an error on a valid input);
* garbage: no error and a wrong or non-finite result, or a bad input accepted;
* hang: no answer within ``--timeout`` seconds;
* crash: the process died.

The cases run in a child process, one after another; a hang or a crash is recorded, the
child is killed and a new one resumes at the next case. Cases that another change fixes are
counted apart, marked with that change.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import select
import subprocess
import sys
import time
import warnings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python_tests"))


def _cases(filt):
    import _bad_input_cases as table
    cs = table.cases()
    return [c for c in cs if filt is None or filt in c.id]


def worker(start: int, filt) -> None:
    """Run the cases from index ``start`` on, one JSON line per case on stdout."""
    warnings.simplefilter("ignore")
    import torch
    torch.set_num_threads(1)
    import _bad_input_cases as table
    cs = _cases(filt)
    out = sys.stdout
    for i in range(start, len(cs)):
        out.write(json.dumps({"i": i, "begin": True}) + "\n")
        out.flush()
        cat, detail = table.classify(cs[i])
        out.write(json.dumps({"i": i, "cat": cat, "detail": detail}) + "\n")
        out.flush()


def probe(filt, timeout: float):
    cs = _cases(filt)
    results: dict = {}
    start = 0
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    while start < len(cs):
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", str(start)]
        if filt is not None:
            cmd += ["--filter", filt]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
                                text=True, bufsize=1)
        current, began = None, time.monotonic()
        next_start = len(cs)
        while True:
            # the first case also waits for the child's imports
            limit = timeout + (60 if current is None or current == start else 0)
            ready, _, _ = select.select([proc.stdout], [], [], max(0.0, began + limit - time.monotonic()))
            if not ready:  # a hang: no line within the limit
                proc.kill()
                proc.wait()
                i = start if current is None else current
                results[i] = ("hang", f"no result within {timeout:g} s")
                next_start = i + 1
                break
            line = proc.stdout.readline()
            if not line:  # the child died (a crash) or finished
                rc = proc.wait()
                if current is not None and current not in results:
                    results[current] = ("crash", f"the process died (exit code {rc})")
                    next_start = current + 1
                elif current is None and start < len(cs):
                    results[start] = ("crash", f"the worker died before its first case (exit code {rc})")
                    next_start = start + 1
                else:
                    next_start = max(results) + 1 if results else len(cs)
                break
            msg = json.loads(line)
            if msg.get("begin"):
                current, began = msg["i"], time.monotonic()
            else:
                results[msg["i"]] = (msg["cat"], msg["detail"])
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        start = next_start
    return cs, results


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--filter", default=None, help="only the cases whose id contains this")
    p.add_argument("--timeout", type=float, default=20.0, help="seconds per case before a hang")
    p.add_argument("--json", default=None, help="also write every case's result to this file")
    p.add_argument("--all", action="store_true", help="print every case, good ones too")
    p.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker is not None:
        worker(args.worker, args.filter)
        return 0

    import _bad_input_cases as table
    t0 = time.monotonic()
    cs, results = probe(args.filter, args.timeout)
    counts = {"in scope": collections.Counter(), "owned by another change": collections.Counter()}
    for i, c in enumerate(cs):
        cat = results.get(i, ("crash", "no result"))[0]
        counts["owned by another change" if c.owner else "in scope"][cat] += 1
    print(f"{len(cs)} cases, {time.monotonic() - t0:.0f} s")
    for group, ctr in counts.items():
        total = sum(ctr.values())
        line = ", ".join(f"{k} {ctr.get(k, 0)}" for k in table.CATEGORIES)
        print(f"  {group} ({total}): {line}")
    both = collections.Counter()
    for ctr in counts.values():
        both.update(ctr)
    print(f"  all ({len(cs)}): " + ", ".join(f"{k} {both.get(k, 0)}" for k in table.CATEGORIES))
    for i, c in enumerate(cs):
        cat, detail = results.get(i, ("crash", "no result"))
        if cat != "good" or args.all:
            mark = f"  [owned by another change: {c.owner}, {table.OWNERS[c.owner]}]" if c.owner else ""
            print(f"{cat:8s} {c.id} (expect {c.expect}){mark}\n           {detail}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump([{"id": c.id, "expect": c.expect, "owner": c.owner,
                        "category": results.get(i, ("crash", ""))[0],
                        "detail": results.get(i, ("", "no result"))[1]} for i, c in enumerate(cs)],
                      f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
