"""The README's promises that a test can check: every ```python block runs as written, and every
file, command option and public name it mentions exists."""

import pathlib
import re

import pytest

import gmkernels

ROOT = pathlib.Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def python_blocks():
    return re.findall(r"```python\n(.*?)```", README, flags=re.S)


def test_readme_has_python_blocks():
    assert python_blocks(), "README has no ```python block to check"


@pytest.mark.parametrize("i", range(len(python_blocks())))
def test_python_block_runs(i, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a block must not depend on the repository as current directory
    code = python_blocks()[i]
    exec(compile(code, f"README.md python block {i}", "exec"), {"__name__": "__readme__"})


def test_paths_it_names_exist():
    # `path/with/slash.ext` or `folder/` in backquotes, relative to the repository root
    names = set(re.findall(r"`((?:[\w.-]+/)+[\w.-]*)`", README))
    names = {n for n in names if not n.startswith("gmkernels.")}  # op names, checked below
    # folders the project writes at run time (git-ignored: examples/out/, build/, bench_out/)
    written = tuple(line.strip().lstrip("/") for line in
                    (ROOT / ".gitignore").read_text().splitlines() if line.strip().endswith("/"))
    missing = [n for n in sorted(names)
               if not n.startswith(("http", "../") + written) and "<" not in n
               and not (ROOT / n).exists()]
    assert not missing, f"README names paths that do not exist: {missing}"


def test_ops_in_the_table_exist():
    ops = re.findall(r"^\| `gmkernels\.([\w.]+)`", README, flags=re.M)
    assert ops, "no op table found"
    missing = []
    for entry in ops:  # "random.uint32/uniform" names random.uint32 and random.uniform
        module, _, last = entry.rpartition(".")
        for name in last.split("/"):
            obj = gmkernels
            for part in (module.split(".") if module else []) + [name]:
                obj = getattr(obj, part, None)
                if obj is None:
                    missing.append(f"{module}.{name}" if module else name)
                    break
    assert not missing, f"README's op table names missing ops: {missing}"
