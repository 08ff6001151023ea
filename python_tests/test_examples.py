"""The scripts in examples/: each runs with --quick from any directory and writes the files it
says it wrote; --help shows every default; the pictures go to one place by default.

Every ``examples/*.py`` except the shared ``_common.py`` is collected, so a new example is
covered without editing this file. The quick runs start a fresh interpreter each (a few
seconds of imports) and are marked slow.
"""

import argparse
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import gmkernels

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"
EXAMPLES = sorted(p for p in EXAMPLES_DIR.glob("*.py") if not p.name.startswith("_"))
IDS = [p.stem for p in EXAMPLES]
# what a quick run may take here before the test calls it hung (the target is under 20 s)
QUICK_TIMEOUT_S = 180


def load(path: Path, monkeypatch):
    """Import an example as a module (its ``main`` does not run), with examples/ importable."""
    monkeypatch.syspath_prepend(str(EXAMPLES_DIR))
    spec = importlib.util.spec_from_file_location(f"gmk_example_{path.stem}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class _Parsed(Exception):
    pass


def script_parser(path: Path, monkeypatch) -> argparse.ArgumentParser:
    """The parser the example's ``main`` builds, caught when ``main`` parses its arguments."""
    mod = load(path, monkeypatch)
    caught = []

    def catch(self, args=None, namespace=None):
        caught.append(self)
        raise _Parsed

    with monkeypatch.context() as m:
        m.setattr(argparse.ArgumentParser, "parse_known_args", catch)
        m.setattr(sys, "argv", [str(path)])
        with pytest.raises(_Parsed):
            mod.main()
    return caught[0]


def option_blocks(help_text: str) -> dict:
    """``--flag`` -> the text of its entry in ``--help`` (up to the next option)."""
    blocks, current = {}, None
    for line in help_text.splitlines():
        m = re.match(r"^  (-\S+)", line)
        if m:
            current = m.group(1).split(",")[0]
            blocks[current] = line
        elif current is not None and line.startswith("    "):
            blocks[current] += " " + line.strip()
        else:
            current = None
    return blocks


def test_examples_are_found():
    assert len(EXAMPLES) >= 1, f"no example scripts found in {EXAMPLES_DIR}"
    assert (EXAMPLES_DIR / "_common.py").is_file()


@pytest.mark.parametrize("path", EXAMPLES, ids=IDS)
def test_help_shows_every_default(path, monkeypatch):
    parser = script_parser(path, monkeypatch)
    blocks = option_blocks(parser.format_help())
    options = [a for a in parser._actions if a.option_strings and a.dest != "help"]
    assert {"quick", "out"} <= {a.dest for a in options}
    for action in options:
        flag = action.option_strings[0]
        assert flag in blocks, f"{path.name}: {flag} missing from --help"
        assert "(default:" in blocks[flag], f"{path.name}: --help of {flag} shows no default: " \
                                            f"{blocks[flag]!r}"


@pytest.mark.parametrize("path", EXAMPLES, ids=IDS)
def test_default_out_is_beside_the_scripts(path, monkeypatch, tmp_path):
    parser = script_parser(path, monkeypatch)
    monkeypatch.chdir(tmp_path)
    out = Path(parser.parse_args([]).out)
    assert out.is_absolute(), f"{path.name}: default --out {out} depends on the current directory"
    assert out == EXAMPLES_DIR / "out"


@pytest.mark.parametrize("path", EXAMPLES, ids=IDS)
def test_quick_applies_what_its_help_promises(path, monkeypatch):
    parser = script_parser(path, monkeypatch)
    assert any("--quick" in a.option_strings for a in parser._actions), f"{path.name}: no --quick"
    assert getattr(parser, "quick", None), f"{path.name}: --quick lists no settings it applies"
    full, quick = parser.parse_args([]), parser.parse_args(["--quick"])
    quick_help = option_blocks(parser.format_help())["--quick"]
    for dest, value in parser.quick.items():
        flag = "--" + dest.replace("_", "-")
        assert getattr(quick, dest) == value != getattr(full, dest), (path.name, dest)
        assert f"{flag} {value}" in quick_help, (path.name, quick_help)
    # an option given on the command line wins over --quick
    dest = next(iter(parser.quick))
    action = next(a for a in parser._actions if a.dest == dest)
    given = type(parser.quick[dest])(parser.get_default(dest)) * 2 + 1
    assert getattr(parser.parse_args(["--quick", action.option_strings[0], str(given)]),
                   dest) == given


@pytest.mark.slow
@pytest.mark.parametrize("path", EXAMPLES, ids=IDS)
def test_quick_run_from_another_directory(path, tmp_path):
    cwd, out = tmp_path / "cwd", tmp_path / "out"
    cwd.mkdir()
    env = dict(os.environ, MPLBACKEND="Agg")
    # the gmkernels under test, whatever the current directory
    root = str(Path(gmkernels.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in [env.get("PYTHONPATH")] if p])
    proc = subprocess.run([sys.executable, str(path), "--quick", "--out", str(out)], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=QUICK_TIMEOUT_S)
    log = f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    assert proc.returncode == 0, f"{path.name} --quick exited {proc.returncode}\n{log}"
    written = [Path(m) for m in re.findall(r"^wrote (.+)$", proc.stdout, flags=re.M)]
    assert written, f"{path.name} printed no 'wrote <path>' line\n{log}"
    for p in written:
        assert p.is_absolute(), f"{path.name} printed a relative path {p}"
        assert p.is_file() and p.stat().st_size > 0, f"{path.name}: {p} missing or empty\n{log}"
        assert p.parent == out, f"{path.name} wrote {p} outside --out {out}"
    assert not any(cwd.iterdir()), f"{path.name} wrote into the current directory: " \
                                   f"{sorted(cwd.iterdir())}"
