"""Turns result records into the printed tables, results.md, results.json and results.png.

One table per (family, op): a row per (shape, dtype, threads), the median ms of every
provider, and the ratios the performance targets are stated in: how much faster than eager
(``eager/gmk``), than torch.compile (``compile/gmk``), and how far from the memory floor
(``gmk/floor``; 1.0 would be as fast as moving the bytes).
"""

from __future__ import annotations

import json
import math
from typing import Iterable, Sequence

from .registry import PROVIDER_NOTES, PROVIDERS

__all__ = ["load_line", "text_tables", "markdown", "write_json", "write_png", "RATIOS", "RNG_NOTE"]

# (label, numerator provider, denominator provider)
RATIOS = (
    ("eager/gmk", "eager", "gmkernels"),
    ("compile/gmk", "compile", "gmkernels"),
    ("peer/gmk", "peer", "gmkernels"),
    ("gmk/floor", "gmkernels", "floor"),
)

RNG_NOTE = ("eager and compile draw their noise from torch's own generator, gmkernels from "
            "Philox (docs/spec.md §0): the same distribution, different streams. The bit-exact "
            "pure-PyTorch Philox reference (gmkernels.reference) is the test oracle, not a "
            "provider: it is far slower than all of these.")

MISSING = "—"   # the case does not define this provider, or it was not selected
ERROR = "error"


def fmt_ms(v: float | None) -> str:
    """Four significant digits, without scientific notation for the sizes that occur."""
    if v is None or not math.isfinite(v):
        return MISSING
    if v >= 1e4:
        return f"{v:.0f}"
    return f"{v:.4g}"


def fmt_spread(v: float | None) -> str:
    """Two significant digits: a spread is itself noisy."""
    if v is None or not math.isfinite(v):
        return MISSING
    return f"{v:.0f}" if v >= 100 else f"{v:.2g}"


def fmt_ratio(v: float | None) -> str:
    return MISSING if v is None else f"{v:.2f}x"


def _groups(records: Sequence[dict]) -> dict[tuple[str, str], list[dict]]:
    """(family, op) -> its records, in the order the run made them."""
    out: dict[tuple[str, str], list[dict]] = {}
    for r in records:
        out.setdefault((r["family"], r["op"]), []).append(r)
    return out


def _rows(recs: Sequence[dict]):
    """Rows keyed by (shape, dtype, threads) in first-seen order: provider -> record."""
    rows: dict[tuple, dict[str, dict]] = {}
    for r in recs:
        rows.setdefault((tuple(r["shape"]), r["dtype"], r["threads"]), {})[r["provider"]] = r
    return rows


def _providers_in(recs: Iterable[dict]) -> list[str]:
    seen = {r["provider"] for r in recs}
    return [p for p in PROVIDERS if p in seen]


def _ratio(row: dict[str, dict], num: str, den: str) -> float | None:
    a, b = row.get(num), row.get(den)
    if not a or not b or a["status"] != "ok" or b["status"] != "ok" or not b["median_ms"]:
        return None
    return a["median_ms"] / b["median_ms"]


def _shape_str(shape) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


class _Errors:
    """Numbers the distinct error messages so that table cells stay short."""

    def __init__(self):
        self.msgs: dict[str, int] = {}
        self.where: dict[int, list[str]] = {}

    def cell(self, rec: dict, where: str) -> str:
        n = self.msgs.setdefault(rec["error"] or "?", len(self.msgs) + 1)
        self.where.setdefault(n, []).append(where)
        return f"{ERROR}[{n}]"

    def lines(self) -> list[str]:
        inv = {n: m for m, n in self.msgs.items()}
        return [f"[{n}] {', '.join(self.where[n])}: {inv[n]}" for n in sorted(inv)]


def _table(recs: Sequence[dict], *, with_iqr: bool) -> tuple[list[str], list[list[str]], list[str]]:
    provs = _providers_in(recs)
    header = ["shape", "dtype", "threads"] + [f"{p} ms" for p in provs] + [r[0] for r in RATIOS]
    errors = _Errors()
    body = []
    for (shape, dtype, threads), row in _rows(recs).items():
        cells = [_shape_str(shape), dtype, str(threads)]
        for p in provs:
            rec = row.get(p)
            if rec is None:
                cells.append(MISSING)
            elif rec["status"] != "ok":
                cells.append(errors.cell(rec, f"{p} {_shape_str(shape)} {dtype}"))
            elif with_iqr:
                cells.append(f"{fmt_ms(rec['median_ms'])} ± {fmt_spread(rec['iqr_ms'] / 2)}")
            else:
                cells.append(fmt_ms(rec["median_ms"]))
        cells += [fmt_ratio(_ratio(row, num, den)) for _, num, den in RATIOS]
        body.append(cells)
    return header, body, errors.lines()


def text_tables(records: Sequence[dict], notes: dict[tuple[str, str], list[str]] | None = None) -> str:
    """Aligned plain-text tables, one per op, for stdout."""
    out = []
    for (family, op), recs in _groups(records).items():
        header, body, errs = _table(recs, with_iqr=False)
        widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(header)]
        line = lambda cells: "  ".join(  # noqa: E731
            c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
        out.append(f"{family} / {op}  (median ms per call; ratios > 1 on eager/gmk, "
                   "compile/gmk and peer/gmk mean gmkernels is faster)")
        out.append(line(header))
        out.append("  ".join("-" * w for w in widths))
        out += [line(r) for r in body]
        out += ["  " + e for e in errs]
        for n in (notes or {}).get((family, op), []):
            out.append("  note: " + n)
        out.append("")
    return "\n".join(out)


def markdown(records: Sequence[dict], meta: dict, notes: dict[tuple[str, str], list[str]] | None = None) -> str:
    """results.md: the machine, the command, the providers, then one table per op with
    median ± half the IQR."""
    from .runner import hardware_label

    m, run = meta["machine"], meta["run"]
    lines = [
        "# gmkernels benchmark results",
        "",
        f"- machine: {hardware_label(m, run.get('threads'))}; OpenMP {m.get('openmp')}; "
        f"{m.get('platform')}",
        f"- date (UTC): {m.get('date')}; gmkernels {m.get('gmkernels')} (git {m.get('git')}); python {m.get('python')}",
        f"- command: `{run.get('command')}` (suite `{run.get('suite')}`; "
        f"{run.get('wall_s', 0):.0f} s from process start to the last timing)",
        f"- load average (1/5/15 min): {load_line(m)}",
        "- cells: median ms per call ± half the interquartile range; ratios of medians.",
        "",
        "Providers:",
        "",
    ]
    lines += [f"- `{p}`: {PROVIDER_NOTES[p]}" for p in PROVIDERS]
    lines += ["", RNG_NOTE, ""]
    for (family, op), recs in _groups(records).items():
        header, body, errs = _table(recs, with_iqr=True)
        lines += [f"## {family} / {op}", ""]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "|".join("---" if i < 2 else "--:" for i in range(len(header))) + "|")
        lines += ["| " + " | ".join(r) + " |" for r in body]
        lines.append("")
        lines += [f"- error {e}" for e in errs]
        lines += [f"- {n}" for n in (notes or {}).get((family, op), [])]
        if errs or (notes or {}).get((family, op)):
            lines.append("")
    return "\n".join(lines)


def load_line(machine: dict) -> str:
    """'start [a, b, c], end [d, e, f] on N cores': tells a reader whether other work shared
    the cores during the run (these machines are shared)."""
    return (f"start {machine.get('load_average_start')}, end {machine.get('load_average_end')} "
            f"on {machine.get('nproc')} cores")


def write_json(path: str, records: Sequence[dict], meta: dict) -> None:
    """results.json: ``{"schema": 1, "machine": {...}, "run": {...}, "records": [...]}``.
    Each record: family, op, shape, dtype, provider, median_ms, iqr_ms, threads, status,
    error, and more (q1/q3/min, samples, inner, setup_s, rng, numel, device)."""
    with open(path, "w") as f:
        json.dump({"schema": 1, **meta, "records": list(records)}, f, indent=1)
        f.write("\n")


# A fixed colour per provider, so that every figure reads the same way.
_COLOURS = {"eager": "#d62728", "compile": "#ff7f0e", "gmkernels": "#1f77b4",
            "gmkernels_inplace": "#17becf", "peer": "#2ca02c", "floor": "#7f7f7f"}


def write_png(path: str, records: Sequence[dict], meta: dict) -> None:
    """results.png: per op, a grouped bar chart of median ms per provider per case (log
    scale, whiskers from Q1 to Q3), titled with the hardware."""
    import matplotlib

    matplotlib.use("Agg")  # no display on CI and servers
    import matplotlib.pyplot as plt

    from .runner import hardware_label

    groups = _groups(records)
    if not groups:
        return
    widest = max(len(_rows(r)) for r in groups.values())
    fig, axes = plt.subplots(len(groups), 1, squeeze=False,
                             figsize=(max(7.0, 1.3 * widest + 2.5), 3.4 * len(groups)))
    for ax, ((family, op), recs) in zip(axes[:, 0], groups.items()):
        rows = _rows(recs)
        provs = _providers_in(recs)
        width = 0.8 / max(1, len(provs))
        for j, p in enumerate(provs):
            xs, ys, lo, hi, bad = [], [], [], [], []
            for i, row in enumerate(rows.values()):
                rec = row.get(p)
                x = i - 0.4 + width * (j + 0.5)
                if rec is None:
                    continue
                if rec["status"] != "ok":
                    bad.append(x)
                    continue
                xs.append(x)
                ys.append(rec["median_ms"])
                lo.append(rec["median_ms"] - rec["q1_ms"])
                hi.append(rec["q3_ms"] - rec["median_ms"])
            ax.bar(xs, ys, width, label=p, color=_COLOURS.get(p), yerr=[lo, hi],
                   error_kw={"elinewidth": 0.8, "capsize": 1.5})
            for x in bad:  # a failed provider: a marker where its bar would be
                ax.annotate("err", (x, 0), xycoords=("data", "axes fraction"), ha="center",
                            va="bottom", fontsize=7, color=_COLOURS.get(p), rotation=90)
        ax.set_yscale("log")
        ax.set_xticks(range(len(rows)))
        ax.set_xticklabels([f"{_shape_str(s)}\n{d}, {t} thr" for s, d, t in rows], fontsize=8)
        ax.set_ylabel("median ms per call")
        ax.set_title(f"{family} / {op}", fontsize=10)
        ax.grid(axis="y", which="both", alpha=0.3)
        ax.legend(fontsize=7, ncol=len(provs), loc="upper left")
    run = meta["run"]
    fig.suptitle(f"gmkernels ({run.get('suite')}): {hardware_label(meta['machine'], run.get('threads'))}",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def case_notes(cases) -> dict[tuple[str, str], list[str]]:
    """(family, op) -> the distinct notes of its cases, as 'shape: note' lines."""
    out: dict[tuple[str, str], list[str]] = {}
    for c in cases:
        if c.note:
            line = f"{_shape_str(c.shape)}: {c.note}"
            lst = out.setdefault((c.family, c.op), [])
            if line not in lst:
                lst.append(line)
    return out
