#!/usr/bin/env python3
"""summary.md of a tools/gpu_check.sh run, from what its stages left in the output folder.

    GMK_OUT=OUTDIR GMK_T0=<epoch start> python tools/gpu_check_summary.py > OUTDIR/summary.md

Reads stages.tsv (stage, exit status, seconds), env.txt, registration.txt, build_times.txt,
tests-<i>.xml / tests-<i>.log (one per pytest shard) and results.md; a missing file is said to
be missing, so a run cut short still gets a summary of what it did.
"""

from __future__ import annotations

import collections
import os
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

OUT = Path(os.environ.get("GMK_OUT", "."))
T0 = int(os.environ.get("GMK_T0", "0") or 0)
DRY = os.environ.get("GMK_DRY", "0") == "1"
MAX_LISTED = 40


def read(name: str) -> str | None:
    p = OUT / name
    return p.read_text(errors="replace") if p.exists() else None


def status_word(rc: str) -> str:
    return {"0": "ok", "124": "TIMEOUT", "137": "KILLED (timeout)", "skipped": "skipped"}.get(
        rc, f"FAILED (exit {rc})")


def stages() -> list[str]:
    text = read("stages.tsv") or ""
    rows = [line.split("\t") for line in text.splitlines() if line.strip()]
    out = ["| stage | status | seconds |", "| --- | --- | ---: |"]
    out += [f"| {r[0]} | {status_word(r[1])} | {r[2]} |" for r in rows if len(r) == 3]
    return out


def junit(i_path: Path) -> dict:
    """Counts and the failed / skipped cases of one junit file."""
    root = ET.parse(i_path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    res = dict(tests=0, failures=0, errors=0, skipped=0, time=0.0, failed=[], skips=[])
    for s in suites:
        for k in ("tests", "failures", "errors", "skipped"):
            res[k] += int(s.get(k, 0))
        res["time"] += float(s.get("time", 0.0))
        for case in s.iter("testcase"):
            name = f"{case.get('classname', '')}::{case.get('name', '')}"
            for tag in ("failure", "error"):
                el = case.find(tag)
                if el is not None:
                    msg = (el.get("message") or "").strip().splitlines()
                    res["failed"].append((tag, name, msg[0][:200] if msg else ""))
            sk = case.find("skipped")
            if sk is not None:
                res["skips"].append((sk.get("message") or "").strip()[:200])
    return res


def tests() -> list[str]:
    logs = sorted(OUT.glob("tests-*.log"), key=lambda p: int(p.stem.split("-")[1]))
    if not logs:
        return ["No test shard ran."]
    out = ["| shard | tests | passed | failed | errors | skipped | seconds | last line |",
           "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    total = collections.Counter()
    failed, skips = [], collections.Counter()
    for log in logs:
        i = log.stem.split("-")[1]
        last = (log.read_text(errors="replace").strip().splitlines() or [""])[-1][:120]
        xml = OUT / f"tests-{i}.xml"
        if xml.exists():
            try:
                r = junit(xml)
            except ET.ParseError as e:
                out.append(f"| {i} | junit file unreadable: {e} | | | | | | {last} |")
                continue
            passed = r["tests"] - r["failures"] - r["errors"] - r["skipped"]
            out.append(f"| {i} | {r['tests']} | {passed} | {r['failures']} | {r['errors']} | "
                       f"{r['skipped']} | {r['time']:.0f} | {last} |")
            total.update(tests=r["tests"], passed=passed, failures=r["failures"],
                         errors=r["errors"], skipped=r["skipped"])
            failed += r["failed"]
            skips.update(r["skips"])
        else:
            out.append(f"| {i} | no junit file (killed before pytest wrote it?) | | | | | | {last} |")
    out.append("")
    out.append(f"**Total: {total['tests']} tests, {total['passed']} passed, {total['failures']} "
               f"failed, {total['errors']} errors, {total['skipped']} skipped.**")
    if failed:
        out += ["", f"Failures and errors ({len(failed)}; the first {MAX_LISTED}, the rest in the "
                    "tests-*.log / tests-*.xml files):", ""]
        out += [f"- {tag}: `{name}`: {msg}" for tag, name, msg in failed[:MAX_LISTED]]
    if skips:
        out += ["", "Skips by reason (under GMK_NO_SKIPS=1 each is a failure of the run):", ""]
        out += [f"- {n} x {reason}" for reason, n in skips.most_common(15)]
    return out


def main() -> int:
    now = int(time.time())
    env = (read("env.txt") or "env.txt missing\n").strip().splitlines()
    lines = [f"# gmkernels GPU check{' (DRY RUN on the CPU)' if DRY else ''}", ""]
    lines.append(f"Total {now - T0 if T0 else '?'} s. Files: env.txt, build.log, build_times.txt, "
                 "registration.txt, tests-*.log/xml, bench.log, results.json/md/png.")
    lines += ["", "## Stages", ""] + stages()
    lines += ["", "## Machine", "", "```"] + env[:30] + ["```"]
    lines += ["", "## Build", ""]
    reg = read("registration.txt")
    lines += ["```"] + (reg.strip().splitlines()[-3:] if reg else ["registration.txt missing"]) + ["```"]
    bt = read("build_times.txt")
    if bt:
        lines += ["", "Slowest compile units (ninja's times):", "", "```"]
        lines += bt.strip().splitlines()[:8] + ["```"]
    lines += ["", "## Tests (pytest -m cuda)" if not DRY else "## Tests (dry: a CPU selection)", ""]
    lines += tests()
    lines += ["", "## Benchmark", ""]
    res = read("results.md")
    if res:
        body = res.strip().splitlines()
        lines += body[:80] + ([f"... ({len(body) - 80} more lines in results.md)"] if len(body) > 80 else [])
    else:
        bench_log = (read("bench.log") or "bench.log missing").strip().splitlines()
        lines += ["results.md missing; the end of bench.log:", "", "```"] + bench_log[-15:] + ["```"]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
