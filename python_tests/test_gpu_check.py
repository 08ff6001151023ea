"""tools/gpu_check.sh, the one command for a GPU machine, checked here where there is none: its
dry mode (GMK_GPU_CHECK_DRY=1) runs every stage's commands on the CPU with tiny settings, so a
typo or a broken stage shows in CI and not in the few minutes a GPU is lent. Also: the shards
of GMK_TEST_SHARD split a selection without losing or repeating a test."""

import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "tools" / "gpu_check.sh"
# what the dry run's test stage selects (tools/gpu_check.sh, stage_tests)
DRY_SELECTION = ["python_tests/test_device_axis.py", "-m", "not cuda", "-k", "params or audit"]


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GMK_GPU_CHECK", "GMK_TEST_SHARD"))}
    env.update(PYTHON=sys.executable, **extra)
    return env


def test_script_parses_and_wants_one_argument():
    r = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, env=_env())
    assert r.returncode == 2 and "usage: bash tools/gpu_check.sh OUTDIR" in r.stderr, r


def _cases(xml: Path) -> set[str]:
    root = ET.parse(xml).getroot()
    return {f"{c.get('classname')}::{c.get('name')}" for c in root.iter("testcase")}


@pytest.mark.slow
def test_dry_run_runs_every_stage(tmp_path):
    out = tmp_path / "out"
    r = subprocess.run(["bash", str(SCRIPT), str(out)], capture_output=True, text=True, cwd=ROOT,
                       env=_env(GMK_GPU_CHECK_DRY="1", GMK_GPU_CHECK_SHARDS="2"), timeout=900)
    log = r.stdout[-6000:] + r.stderr[-3000:]
    assert r.returncode == 0, log
    stages = [line.split("\t") for line in (out / "stages.tsv").read_text().splitlines()]
    assert [s[0] for s in stages] == ["env", "build", "tests", "bench", "summary"], stages
    assert all(s[1] == "0" for s in stages), stages
    # every stage left what the summary reads
    env = (out / "env.txt").read_text()
    assert "torch " in env and "nvidia-smi: none" in env, env
    reg = (out / "registration.txt").read_text()
    assert re.search(r"(\d+) of \1 gmkernels ops have a CPU kernel", reg), reg
    for name in ("build.log", "bench.log", "results.json", "results.md", "summary.md"):
        assert (out / name).stat().st_size > 0, name
    summary = (out / "summary.md").read_text()
    assert "DRY RUN" in summary and "| tests | ok |" in summary and "| bench | ok |" in summary, summary
    assert re.search(r"\*\*Total: (\d+) tests, \1 passed, 0 failed, 0 errors, 0 skipped", summary), summary
    # the two shards split the selection: disjoint, and together all of it
    shards = [_cases(out / f"tests-{i}.xml") for i in range(2)]
    assert shards[0] and shards[1] and not shards[0] & shards[1], shards
    collect = subprocess.run([sys.executable, "-m", "pytest", *DRY_SELECTION, "--collect-only", "-q",
                              "-p", "no:cacheprovider"], capture_output=True, text=True, cwd=ROOT,
                             env=_env(PYTHONPATH=str(ROOT)), timeout=300)
    ids = [line for line in collect.stdout.splitlines() if "::" in line]
    assert len(ids) == len(shards[0]) + len(shards[1]), (len(ids), [len(s) for s in shards])
